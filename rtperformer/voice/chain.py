"""One voice chain, live and offline: model input frames -> model stage -> audio stage -> samples.

::

    x (C_in, n) --ModelStage--> log1p-power (n_bins, n) --AudioStage--> float32 (n*hop,)
                 delay L frames   magnitude -> [pitch-bend warp] -> phase (delay d frames) -> iSTFT

- :class:`ModelStage`: the streaming model through a runtime of :mod:`rtperformer.backends` with its
  carried state (``render.mode: streaming``) or, live only, the offline model over a sliding window
  (``window``). Its delay ``L`` is the backend's ``lookahead_frames`` (read from the model there, once).
- :class:`~rtperformer.voice.audio_stage.AudioStage` (rtperformer/voice/audio_stage.py):
  :func:`rtperformer.dsp.to_magnitude` (the one numpy log1p inversion), the pitch-bend frequency warp, the
  streaming phase (RTPGHI or RTISI-LA, delay ``d``), the texture noise (``render.noise``: the model's
  noise.json, :mod:`rtperformer.dsp.noise`; seeded, no delay) and the streaming iSTFT (``n_fft//2 -
  trim_hops*hop`` samples of delay); :class:`~rtperformer.voice.audio_stage.OfflineAudio` is it with the
  delays dropped.
- :class:`Voice` (live, one per instrument of :class:`rtperformer.live.engine.Engine`): pianoroll -> model
  stage -> audio stage -> gate and gains. The audio stage also gets the held-note roll (the input's first
  ``n_pitches`` rows, delayed by the model's ``L`` frames to line up with its output): RTPGHI takes the
  phase of low notes from it (score-informed phase, :class:`rtperformer.dsp.rtpghi.RTPGHI`).
- :func:`render_stream` (offline: ``render``, ``eval``): the same two stages with the delays dropped; it
  yields each output chunk with its input frames, whose roll goes to the audio stage the same way.

Delays add up: each stage declares its delay and :func:`chain_delay_samples` is their sum. Live, the
sound of signal sample s (a note-on at frame f is signal sample f*hop) comes out at output sample
s + ``delay_samples``; offline (``drop_delay``) the model's first L and the phase's first d output frames
and the iSTFT's first delay samples are dropped, and the end is flushed, so output sample s is signal
sample s. Offline differs from live only in settings (chunk size, phase method, whether delays are
dropped, trim hops, gate): ``tests/test_voice.py`` checks that for the same events and settings the live
engine's output is the offline render shifted by ``delay_samples``, and moves an impulse through the
audio stage to where its delay says.

Per hop, the live path allocates no audio buffers: magnitude, warp, phase and iSTFT write into arrays
allocated when the step size is first seen (the model runtime allocates its own outputs).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import numpy as np

from rtperformer.voice.audio_stage import AudioStage
from rtperformer.errors import UserError

SILENCE_WARMUP_FRAMES = 256
GATE_OPEN_S = 0.001
GATE_CLOSE_S = 0.02


# -- model stage ----------------------------------------------------------------------------------


def make_backend(name: str, model: Any, cfg: Any, n_step: int | None, model_dir: Any = None, label: str = ""):
    """The runtime for ``model``'s streaming steps: ``name`` ("auto": the fastest available). A backend that
    is unavailable or fails to build for this model is a one-line UserError, never a silent fallback."""
    from rtperformer.backends import make_backend as make, require, select_backend

    if name == "auto":
        return select_backend(model, cfg, n_step, model_dir=model_dir)
    require(name)
    try:
        return make(name, model, cfg, chunk=n_step, model_dir=model_dir)
    except UserError:
        raise
    except Exception as exc:  # an export or runtime that fails on this model
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"backend '{name}' failed for model '{label or cfg.name}': {type(exc).__name__}: {first} "
                        "(choose another with --backend, e.g. torch)") from None


class ModelStage:
    """Streaming model: ``step(x (C_in, n)) -> log1p-power (n_bins, n)`` float32, carrying the state.

    Emitted frame j estimates input frame j - ``delay_frames`` (the backend's ``lookahead_frames``).
    """

    def __init__(self, backend: Any):
        self.backend = backend
        self.delay_frames = int(backend.lookahead_frames)
        self.state = backend.init_state()

    def step(self, x: np.ndarray) -> np.ndarray:
        y, self.state = self.backend.step(x[None], self.state)
        return y[0]

    def silence_state(self) -> Any:
        """The state after ``SILENCE_WARMUP_FRAMES`` frames without notes (exact for a finite-memory net)."""
        chunk = self.backend.chunk or 64
        x = np.zeros((1, self.backend.in_channels, chunk), np.float32)
        state = self.backend.init_state()
        for _ in range(max(1, SILENCE_WARMUP_FRAMES // chunk)):
            _, state = self.backend.step(x, state)
        return state

    def reset(self, state: Any = None) -> None:
        self.state = self.backend.init_state() if state is None else state


class WindowModelStage:
    """Live window mode: the offline model over the last ``render.window_frames`` frames, whose last
    ``serve.window_future_frames`` (the unknown future) extend the notes held now; the first
    ``render.crossfade_frames`` new frames are crossfaded (linearly, on log-power) with what the previous
    run predicted for them. ``step(x (C_in, n)) -> (n_bins, n)``; no delay."""

    delay_frames = 0

    def __init__(self, model: Any, cfg: Any, n_step: int, channels: int):
        self.model = model
        self.n_pitches = cfg.model.n_pitches
        self.window = int(cfg.render.window_frames)
        self.future = int(cfg.serve.window_future_frames)
        self.xfade = int(cfg.render.crossfade_frames)
        if self.window < self.future + n_step + self.xfade:
            raise UserError("render.window_frames must be at least serve.window_future_frames + "
                            "serve.window_step_frames + render.crossfade_frames")
        self.history = np.zeros((channels, self.window), np.float32)
        self.prev_future: np.ndarray | None = None

    def reset(self, state: Any = None) -> None:
        self.history[:] = 0.0
        self.prev_future = None

    def step(self, x: np.ndarray) -> np.ndarray:
        import torch

        n = x.shape[1]
        h = self.history
        h[:, :-n] = h[:, n:]
        h[:, -n:] = x
        f = self.future
        win = np.empty_like(h)
        win[:, : self.window - f] = h[:, f:]
        win[:, self.window - f :] = h[:, -1:]
        p = self.n_pitches
        win[p : 2 * p, self.window - f :] = 0.0  # no onsets or offsets (the on/off roll) in the extended future
        with torch.inference_mode():
            y = self.model(torch.from_numpy(win[None])).float().numpy()[0]
        cur0 = self.window - f - n
        cur = y[:, cur0 : cur0 + n].copy()
        k = min(self.xfade, n)
        if k and self.prev_future is not None:
            w = (np.arange(1, k + 1, dtype=np.float32) / (k + 1))[None, :]
            cur[:, :k] = w * cur[:, :k] + (1.0 - w) * self.prev_future[:, :k]
        self.prev_future = y[:, self.window - f : self.window - f + self.xfade].copy() if self.xfade else None
        return cur


def chain_delay_samples(model_delay_frames: int, audio: AudioStage) -> int:
    """The whole chain's delay in samples at the model rate: model lookahead + phase + iSTFT."""
    return int(model_delay_frames) * audio.hop + audio.delay_samples


# -- offline ----------------------------------------------------------------------------------------


def render_stream(stage: ModelStage, next_inputs: Callable[[int], np.ndarray], n_frames: int, chunk: int,
                  progress: Callable[[int], None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Offline model stage with its delay dropped: yield (x (C_in, m), y (n_bins, m)) in order, y the
    log1p-power estimate of the input frames x, covering exactly ``n_frames`` frames.

    Steps of ``chunk`` frames; the first ``stage.delay_frames`` outputs (warm-up) are dropped and as many
    frames past the end are fed (``next_inputs`` returns zeros there), as ``forward`` does for a clip.
    """
    L = stage.delay_frames
    xs: list[np.ndarray] = []  # inputs not yet matched by outputs (at most L + chunk frames)
    skip, done, fed = L, 0, 0
    while done < n_frames:
        n = min(chunk, n_frames + L - fed)
        if n <= 0:  # pragma: no cover - the model returned fewer frames than it was given
            raise RuntimeError("the model stage returned fewer frames than it was fed")
        x = next_inputs(n)
        fed += n
        y = stage.step(x)
        xs.append(x)
        if skip:
            k = min(skip, y.shape[1])
            y = y[:, k:]
            skip -= k
        if y.shape[1] == 0:
            continue
        m = min(y.shape[1], n_frames - done)
        xin = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=1)
        yield xin[:, :m], y[:, :m]
        rest = xin[:, m:]
        xs = [rest] if rest.shape[1] else []
        done += m
        if progress:
            progress(m)


# -- live -------------------------------------------------------------------------------------------


class Voice:
    """One instrument's live chain: pianoroll -> model stage -> audio stage -> gate and gains.

    ``inst``: an :class:`rtperformer.live.engine.Instrument`; ``cfg``: the render and serve settings;
    ``mode``: streaming | window; ``n_step``: frames per :meth:`render`.

    Gate (``serve.gate``): the output is multiplied by an envelope that opens (in 1 ms) when a note sounds
    and closes (in 20 ms) once no note has sounded for ``render.release_seconds`` plus the chain's delay.
    A closed voice skips the model; on the next note it restarts from its precomputed silence state.
    """

    def __init__(self, inst: Any, cfg: Any, mode: str, n_step: int):
        from rtperformer.roll.pianoroll import Pianoroll
        from rtperformer.roll.painter import bend_spec
        from rtperformer.roll.rolls import input_channels

        self.name = inst.name
        self.cfg = inst.cfg
        a = inst.cfg.audio
        self.hop = a.hop
        self.n_bins = a.n_bins
        self.mode = mode
        self.n_step = n_step
        self.channels_in = input_channels(inst.cfg.model)
        self.has_expression = bool(inst.cfg.model.expression)
        self.roll = Pianoroll(inst.cfg.model, velocity_sensitive=cfg.render.velocity_sensitive,
                              max_frames=max(n_step, 1), bend=bend_spec(inst.cfg.model, a, cfg.serve.pitch_bend_range))
        # model.bend_warp: the audio stage warps the model's frames by the roll's bend row, frame by frame
        self.bend_warp = bool(getattr(inst.cfg.model, "bend_warp", True))
        noise = getattr(inst.model, "noise_table", None) if cfg.render.noise else None  # texture (dsp/noise.py)
        self.audio = AudioStage(a, cfg.render, trim_hops=cfg.serve.istft_trim_hops, noise=noise)
        if mode == "streaming":
            if inst.cfg.model.form != "streaming":
                raise UserError(f"model '{inst.name}' has the {inst.cfg.model.form} form, which cannot stream; "
                                "use render.mode: window")
            self.model = ModelStage(make_backend(cfg.serve.backend, inst.model, inst.cfg, n_step, inst.model_dir,
                                                  inst.name))
            self.silence_state = self.model.silence_state()
        elif mode == "window":
            self.model = WindowModelStage(inst.model, inst.cfg, n_step, self.channels_in)
            self.silence_state = None
        else:
            raise UserError(f"unknown render.mode '{mode}' (choose streaming or window)")
        self.delay_frames = self.model.delay_frames + self.audio.delay_frames  # whole frames, model + phase
        self.n_pitches = inst.cfg.model.n_pitches
        L = self.model.delay_frames  # the held notes and the bend wait as long as the model output they go with
        self._notes = np.zeros((self.n_pitches + 1, L + n_step), np.float32) if L else None  # rows: notes, bend
        self.delay_samples = chain_delay_samples(self.model.delay_frames, self.audio)
        sr = a.sample_rate
        self.release_frames = int(math.ceil(cfg.render.release_seconds * sr / self.hop)) + self.delay_frames
        self.open_step = 1.0 / max(1.0, GATE_OPEN_S * sr)
        self.close_step = 1.0 / max(1.0, GATE_CLOSE_S * sr)
        self.use_gate = bool(cfg.serve.gate)
        self.gain = 0.0 if self.use_gate else 1.0
        self.idle = self.use_gate
        self.last_sound = -(10 ** 9)
        self.kill = False
        self.volume = 1.0
        self.expression_gain = 1.0
        self._ramp = np.arange(1, self.hop * n_step + 1, dtype=np.float32)
        self._env = np.empty(self.hop * n_step, np.float32)
        self.frames_run = 0
        self._warmup()

    @property
    def backend(self) -> Any:
        """The model runtime (streaming mode)."""
        return getattr(self.model, "backend", None)

    def _warmup(self) -> None:
        """Pay first-call costs now (numba compilation of the phase code, runtime allocation), not on
        the first note: run the whole chain on a few frames of a random input, then reset."""
        rng = np.random.default_rng(0)
        x = (rng.random((self.channels_in, self.n_step)) < 0.05).astype(np.float32)
        for _ in range(3):
            self.model.reset()
            self._push_audio(self.model.step(x), x, np.zeros(self.n_step, np.float32))
        self.model.reset()
        self.audio.reset()
        if self._notes is not None:
            self._notes[:] = 0.0

    def wake(self) -> None:
        """Restart a closed voice from silence (state, phase, iSTFT at steady window sum)."""
        self.model.reset(self.silence_state)
        self.audio.reset(reseed=False)  # the texture noise goes on: a new phrase does not replay the last one's
        if self._notes is not None:
            self._notes[:] = 0.0
        warm = self.audio.istft.span // self.hop - 1  # earlier frames whose synthesis reaches the next output sample
        if warm > 0:
            self.audio.istft.push(np.zeros((self.n_bins, warm), np.complex64))
        self.idle = False

    def feed(self, frame: int, message: Any) -> None:
        """A decoded MIDI message for this voice at ``frame`` (:meth:`rtperformer.roll.pianoroll.Pianoroll.feed`)."""
        self.roll.feed(frame, message)

    @property
    def sounding(self) -> int:
        """Notes sounding now (held by key or pedal)."""
        return self.roll.sounding

    def _push_audio(self, y: np.ndarray, x: np.ndarray, bend: np.ndarray) -> np.ndarray:
        """The audio stage on model output y (n_bins, n) with the held notes and the bend row (n,) of the
        input frames it estimates (x's roll rows, ``L`` frames back); the bend warps only with
        ``model.bend_warp``."""
        P, n = self.n_pitches, y.shape[1]
        buf = self._notes
        if buf is None:
            return self.audio.push(y, x[:P], bend if self.bend_warp else None)
        L = buf.shape[1] - self.n_step
        buf[:P, L : L + n] = x[:P]
        buf[P, L : L + n] = bend
        audio = self.audio.push(y, buf[:P, :n], buf[P, :n] if self.bend_warp else None)
        buf[:, :L] = buf[:, n : n + L]
        return audio

    def render(self, f0: int, n: int) -> np.ndarray | None:
        """Render frames f0..f0+n: float32 (n*hop,) with gate and gains applied (a view of an internal
        buffer, valid until the next call), or None when silent."""
        x = self.roll.next_frames(n)
        if self.roll.sounding > 0:
            self.last_sound = f0 + n - 1
            self.kill = False
            if self.idle:
                self.wake()
        elif self.kill:
            self.last_sound = -(10 ** 9)
        if self.idle:
            return None
        audio = self._push_audio(self.model.step(x), x, self.roll.bend)
        self.frames_run += n
        if not self.use_gate:
            g = self.volume * self.expression_gain
            if g != 1.0:
                audio *= np.float32(g)
            return audio
        target = 1.0 if (f0 + n - 1 - self.last_sound) <= self.release_frames else 0.0
        m = audio.shape[0]
        g = np.float32(self.volume * self.expression_gain)
        if self.gain == target:
            if target == 1.0:
                if g != 1.0:
                    audio *= g
            else:
                audio[:] = 0.0
        else:
            env = self._env[:m] if m <= self._env.shape[0] else np.empty(m, np.float32)
            if target > self.gain:
                np.multiply(self._ramp[:m], self.open_step, out=env)
                env += self.gain
                np.minimum(env, 1.0, out=env)
            else:
                np.multiply(self._ramp[:m], self.close_step * (8.0 if self.kill else 1.0), out=env)
                np.subtract(self.gain, env, out=env)
                np.maximum(env, 0.0, out=env)
            self.gain = float(env[-1])
            env *= g
            audio *= env
        if self.gain == 0.0 and target == 0.0 and self.roll.sounding == 0:
            self.idle = True
            self.kill = False
        return audio
