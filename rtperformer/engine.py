"""The render loop's engine: stamped MIDI events in, mixed audio out, one model step at a time.

Owned by one thread (the render thread in ``serve``, the main thread offline). Per instrument a
:class:`Voice` holds a :class:`~rtperformer.pianoroll.LivePianoroll`, the model runtime and its carried
state, the streaming phase reconstruction (RTPGHI by default) and the streaming iSTFT. :class:`Engine`
routes events to voices by MIDI channel and mixes them; :meth:`Engine.render_step` renders the next
``frames_per_step`` frames of every voice (hop samples each, at the model's rate), mixes, applies the
master gain and resamples to the output rate (python-soxr ``ResampleStream``) when they differ.

Render modes (``cfg.render.mode``):
- ``streaming``: ``backend.step(x (1, C_in, n), state)`` with carried state, n = ``serve.step_frames``.
- ``window``: the model runs offline (``model(x)``) over the last ``render.window_frames`` frames of the
  pianoroll, whose last ``serve.window_future_frames`` frames (the unknown future) extend the notes held
  now; each run yields ``serve.window_step_frames`` new frames, and the first ``render.crossfade_frames`` of
  them are crossfaded (linearly, on magnitudes) with what the previous run predicted for them.

Scheduling: ``schedule="asap"`` (live) applies each event at the next frame rendered; ``"exact"`` (offline,
tests) applies an event stamped at sample s (model rate) at frame round(s / hop), as the offline rolls do.

MIDI: note on/off (velocity 0 = off), velocity, CC64 sustain, CC11 expression (a model input when the
model has one, else a gain), CC7 volume (gain (v/127)^2), CC120 all sound off (gate closes at once),
CC123 all notes off, program change (GM 40/41 -> violin, 42/43 -> cello, 72/73 -> flute, when that
instrument is loaded), pitch bend (a frequency warp of that instrument's magnitude frames, +-
``serve.pitch_bend_range`` semitones, default 2).

Gate (``serve.gate``, default on): a voice's output is multiplied by an envelope that opens (in 1 ms) when a
note sounds and closes (in 20 ms) once no note has sounded for ``render.release_seconds`` plus the
voice's delay. A trained model is near-silent without notes anyway; an untrained one is not, and the gate
keeps "no note" silent. A closed voice skips the model; on the next note it restarts from its
precomputed silence state (the state after 256 frames of no notes), which is exact for a finite-memory
causal net.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtperformer.config import Config
from rtperformer.dsp.features import to_magnitude
from rtperformer.errors import UserError
from rtperformer.midi import decode as dec
from rtperformer.midi.score import PROGRAM_INSTRUMENTS

# Program change -> instrument live: the score programs (40, 42, 73) and their neighbours (41 viola,
# 43 contrabass, 72 piccolo) played by the nearest model.
LIVE_PROGRAMS = {**PROGRAM_INSTRUMENTS, 41: "violin", 43: "cello", 72: "flute"}
SILENCE_WARMUP_FRAMES = 256
GATE_OPEN_S = 0.001
GATE_CLOSE_S = 0.02


@dataclass
class Instrument:
    """A loaded model: ``name`` (violin|cello|flute|...), the nn.Module, its Config, its folder."""

    name: str
    model: Any
    cfg: Config
    model_dir: Path | None = None


def load_instruments(specs: list[str] | None, models_dir: Path | None = None) -> list[Instrument]:
    """Load models from ``--model`` specs: ``NAME`` (models/NAME), ``PATH`` or ``INSTRUMENT=NAME_OR_PATH``.

    No specs: every default model (violin, cello, flute) present in models/; none -> UserError.
    """
    try:
        from rtperformer.model.checkpoint import DEFAULT_MODELS, load_model
    except ImportError as exc:  # pragma: no cover - only while the model package is incomplete
        raise UserError(f"cannot load models: {exc}") from None

    root = models_dir or Path(__file__).resolve().parent.parent / "models"
    pairs: list[tuple[str, str]] = []
    if specs:
        for spec in specs:
            if "=" in spec:
                inst, src = spec.split("=", 1)
            else:
                src = spec
                inst = Path(spec).name if Path(spec).exists() else spec
            pairs.append((inst.strip(), src.strip()))
    else:
        pairs = [(inst, name) for inst, name in DEFAULT_MODELS.items() if (root / name).is_dir()]
        if not pairs:
            raise UserError(f"no model found in {root} (train one with `rtperformer train` or pass --model)")
    out = []
    for inst, src in pairs:
        model, cfg, _meta = load_model(src)
        p = Path(src)
        model_dir = p if p.is_dir() else (root / src if (root / src).is_dir() else None)
        model.eval()
        out.append(Instrument(inst, model, cfg, model_dir))
    return out


def _bend_table(n_bins: int, semitones: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights for a frequency warp by ``semitones``: out[k] = mag[k / r] (linear interp)."""
    r = 2.0 ** (semitones / 12.0)
    src = np.arange(n_bins, dtype=np.float64) / r
    valid = src <= n_bins - 1
    src = np.minimum(src, n_bins - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_bins - 1)
    w1 = (src - i0).astype(np.float32)
    w0 = (1.0 - w1) * valid
    w1 = w1 * valid
    return np.stack([i0, i1]), w0[:, None].astype(np.float32), w1[:, None].astype(np.float32)


def _make_backend(name: str, inst: Instrument, n_step: int):
    """The runtime for ``inst``'s streaming steps: ``name`` ("auto": the fastest available). A backend that
    is unavailable or fails to build for this model is a one-line UserError, never a silent fallback."""
    from rtperformer.backends import make_backend, require, select_backend

    if name == "auto":
        return select_backend(inst.model, inst.cfg, n_step, model_dir=inst.model_dir)
    require(name)
    try:
        return make_backend(name, inst.model, inst.cfg, chunk=n_step, model_dir=inst.model_dir)
    except UserError:
        raise
    except Exception as exc:  # an export or runtime that fails on this model
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"backend '{name}' failed for model '{inst.name}': {type(exc).__name__}: {first} "
                        "(choose another with --backend, e.g. torch)") from None


class Voice:
    """One instrument's chain: pianoroll -> model -> magnitude (-> bend warp) -> phase -> iSTFT -> gate."""

    def __init__(self, inst: Instrument, cfg: Config, mode: str, n_step: int):
        from rtperformer.dsp import StreamingISTFT, make_phase
        from rtperformer.pianoroll import LivePianoroll
        from rtperformer.rolls import input_channels

        self.name = inst.name
        self.cfg = inst.cfg
        a = inst.cfg.audio
        self.hop = a.hop
        self.n_bins = a.n_bins
        self.power_scale = np.float32(a.power_scale)
        self.mode = mode
        self.n_step = n_step
        self.channels_in = input_channels(inst.cfg.model)
        self.has_expression = bool(inst.cfg.model.expression)
        self.roll = LivePianoroll(inst.cfg.model, a, velocity_sensitive=cfg.render.velocity_sensitive,
                                  max_frames=max(n_step, 1))
        self.phase = make_phase(cfg.render.phase, a, cfg.render)
        if not getattr(self.phase, "streaming", False):
            raise UserError(f"render.phase '{cfg.render.phase}' is offline only; use rtpghi or rtisila to serve")
        try:
            self.istft = StreamingISTFT(a, trim_hops=cfg.serve.istft_trim_hops)
        except ValueError as exc:
            raise UserError(f"serve.istft_trim_hops: {exc}") from None
        self.model = inst.model
        self.lookahead = 0
        if mode == "streaming":
            if inst.cfg.model.form != "streaming":
                raise UserError(f"model '{inst.name}' has the {inst.cfg.model.form} form, which cannot stream; "
                                "use render.mode: window")
            self.backend = _make_backend(cfg.serve.backend, inst, n_step)
            self.lookahead = int(self.backend.lookahead_frames)
            self.state = self.backend.init_state()
            self.silence_state = self._silence_state()
        elif mode == "window":
            self.window = int(cfg.render.window_frames)
            self.future = int(cfg.serve.window_future_frames)
            self.xfade = int(cfg.render.crossfade_frames)
            if self.window < self.future + n_step + self.xfade:
                raise UserError("render.window_frames must be at least serve.window_future_frames + "
                                "serve.window_step_frames + render.crossfade_frames")
            self.history = np.zeros((self.channels_in, self.window), np.float32)
            self.prev_future: np.ndarray | None = None
            self.lookahead = 0
        else:
            raise UserError(f"unknown render.mode '{mode}' (choose streaming or window)")
        self.delay_frames = self.lookahead + int(self.phase.delay_frames)
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
        self.bend = 0.0
        self._bend = None
        self._ramp = np.arange(1, self.hop * n_step + 1, dtype=np.float32)
        self.frames_run = 0
        self._warmup()

    def _warmup(self) -> None:
        """Pay first-call costs now (numba compilation of the phase code, runtime allocation), not on
        the first note: run the whole chain on a few frames of a random input, then reset."""
        rng = np.random.default_rng(0)
        n = self.n_step
        x = (rng.random((1, self.channels_in, n)) < 0.05).astype(np.float32)
        for _ in range(3):
            if self.mode == "streaming":
                y, _ = self.backend.step(x, self.backend.init_state())
                lp = y[0]
            else:
                lp = self._window_predict(x[0])
            mag = to_magnitude(lp, power_scale=self.power_scale)
            self.istft.push(self.phase.process(mag))
        if self.mode == "window":
            self.history[:] = 0.0
            self.prev_future = None
        self.phase.reset()
        self.istft.reset()

    # -- model -------------------------------------------------------------------------------
    def _silence_state(self):
        chunk = self.backend.chunk or 64
        x = np.zeros((1, self.channels_in, chunk), np.float32)
        state = self.backend.init_state()
        for _ in range(max(1, SILENCE_WARMUP_FRAMES // chunk)):
            _, state = self.backend.step(x, state)
        return state

    def _window_predict(self, x: np.ndarray) -> np.ndarray:
        """x (C_in, n) new frames -> log-power (n_bins, n) for them (window mode)."""
        import torch

        n = x.shape[1]
        h = self.history
        h[:, :-n] = h[:, n:]
        h[:, -n:] = x
        f = self.future
        win = np.empty_like(h)
        win[:, : self.window - f] = h[:, f:]
        last = h[:, -1:]
        win[:, self.window - f :] = last
        p = self.cfg.model.n_pitches
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

    def wake(self) -> None:
        """Restart a closed voice from silence (state, phase, iSTFT at steady window sum)."""
        if self.mode == "streaming":
            self.state = self.silence_state
        else:
            self.history[:] = 0.0
            self.prev_future = None
        self.phase.reset()
        self.istft.reset()
        warm = self.istft.span // self.hop - 1  # earlier frames whose synthesis reaches the next output sample
        if warm > 0:
            self.istft.push(np.zeros((self.n_bins, warm), np.complex64))
        self.idle = False

    def set_bend(self, semitones: float) -> None:
        self.bend = semitones
        self._bend = None if abs(semitones) < 1e-4 else _bend_table(self.n_bins, semitones)

    # -- one step ----------------------------------------------------------------------------
    def render(self, f0: int, n: int) -> np.ndarray | None:
        """Render frames f0..f0+n: float32 (n*hop,) with gate and gains applied, or None when silent."""
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
        if self.mode == "streaming":
            y, self.state = self.backend.step(x[None], self.state)
            lp = y[0]
        else:
            lp = self._window_predict(x)
        self.frames_run += n
        mag = to_magnitude(lp, power_scale=self.power_scale)
        if self._bend is not None:
            idx, w0, w1 = self._bend
            mag = mag[idx[0]] * w0 + mag[idx[1]] * w1
        spec = self.phase.process(mag)
        audio = self.istft.push(spec)
        if not self.use_gate:
            g = self.volume * self.expression_gain
            if g != 1.0:
                audio *= np.float32(g)
            return audio
        target = 1.0 if (f0 + n - 1 - self.last_sound) <= self.release_frames else 0.0
        m = audio.shape[0]
        if self.gain == target:
            env = None if target == 1.0 else 0.0
        elif target > self.gain:
            env = np.minimum(self.gain + self.open_step * self._ramp[:m], 1.0)
        else:
            step = self.close_step * (8.0 if self.kill else 1.0)
            env = np.maximum(self.gain - step * self._ramp[:m], 0.0)
        g = np.float32(self.volume * self.expression_gain)
        if env is None:
            if g != 1.0:
                audio *= g
        elif isinstance(env, float):
            audio[:] = 0.0
        else:
            audio *= env * g
            self.gain = float(env[-1])
        if self.gain == 0.0 and target == 0.0 and self.roll.sounding == 0:
            self.idle = True
            self.kill = False
        return audio


@dataclass
class Onset:
    """A note-on applied in the last render step: its stamp (input clock), arrival time, and where its
    audio begins in that step's output, in output samples."""

    stamp: int
    wall: float
    offset: int
    pitch: int
    instrument: str


class Engine:
    """Routes stamped MIDI to voices and renders the mix.

    ``instruments``: loaded models (same audio config); ``cfg``: render + serve settings;
    ``out_rate``: output sample rate (None: the models' rate); ``schedule``: "asap" | "exact" (see module doc).
    """

    def __init__(self, instruments: list[Instrument], cfg: Config, out_rate: int | None = None,
                 schedule: str = "asap"):
        if not instruments:
            raise UserError("no instrument to play")
        a0 = instruments[0].cfg.audio
        for inst in instruments[1:]:
            a = inst.cfg.audio
            if (a.sample_rate, a.n_fft, a.hop) != (a0.sample_rate, a0.n_fft, a0.hop):
                raise UserError(f"model '{inst.name}' has a different audio config ({a.sample_rate} Hz, n_fft "
                                f"{a.n_fft}, hop {a.hop}) from '{instruments[0].name}'")
        self.cfg = cfg
        self.mode = cfg.render.mode
        self.schedule = schedule
        self.audio_cfg = a0
        self.hop = a0.hop
        self.sample_rate = a0.sample_rate
        self.out_rate = int(out_rate or a0.sample_rate)
        self.frames_per_step = int(cfg.serve.window_step_frames if self.mode == "window" else cfg.serve.step_frames)
        if self.frames_per_step < 1:
            raise UserError("serve.step_frames and serve.window_step_frames must be >= 1")
        self.voices: dict[str, Voice] = {i.name: Voice(i, cfg, self.mode, self.frames_per_step) for i in instruments}
        default = cfg.serve.default_instrument if cfg.serve.default_instrument in self.voices else instruments[0].name
        self.channel_instrument = [default] * 16
        for ch, name in dict(cfg.serve.channel_map).items():
            if not 0 <= int(ch) <= 15:
                raise UserError(f"serve.channel_map: channel {ch} is not 0-15")
            if name in self.voices:
                self.channel_instrument[int(ch)] = name
        self.bend_range = float(cfg.serve.pitch_bend_range)
        self.master = np.float32(cfg.serve.gain)
        self.frame = 0  # next frame to render
        self._pending: list[tuple[int, int, bytes, float]] = []  # (frame, seq, data, wall)
        self._held: dict[tuple[int, int], str] = {}
        self._seq = 0
        self.onsets: list[Onset] = []  # note-ons of the last step
        self.delay_frames = max(v.delay_frames for v in self.voices.values())
        self._resampler = None
        if self.out_rate != self.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.sample_rate, self.out_rate, 1, dtype="float32", quality="MQ")
        self._mix = np.zeros(self.hop * self.frames_per_step, np.float32)
        self._pool = None
        n_threads = min(int(cfg.serve.voice_threads), len(self.voices))
        if n_threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            from rtperformer.rtsched import set_realtime

            prio = int(cfg.serve.realtime_priority)  # set_realtime ignores 0 (off)
            self._pool = ThreadPoolExecutor(n_threads - 1, thread_name_prefix="voice",
                                            initializer=lambda: set_realtime(prio))
        self.busy_s = 0.0  # time spent in render_step
        self.rendered_s = 0.0  # audio produced, seconds
        self.unknown_programs = 0
        self.midi = dec.DecodeStats()  # messages applied / dropped as malformed

    # -- events (render thread) --------------------------------------------------------------
    def push(self, sample_time: int, data: bytes, wall: float = 0.0) -> None:
        """Queue one message. ``sample_time`` is at the model rate for ``exact`` and ignored for ``asap``
        (beyond being kept as the note's stamp for latency statistics)."""
        if self.schedule == "exact":
            frame = max(self.frame, int(math.floor(sample_time / self.hop + 0.5)))
        else:
            frame = self.frame
        self._seq += 1
        self._pending.append((frame, self._seq, bytes(data), wall, int(sample_time)))
        if self.schedule == "exact" and len(self._pending) > 1 and self._pending[-2][0] > frame:
            self._pending.sort(key=lambda e: (e[0], e[1]))

    def _voice_of(self, ch: int) -> Voice:
        return self.voices[self.channel_instrument[ch]]

    def _apply(self, frame: int, data: bytes, wall: float, stamp: int, f0: int) -> None:
        m = self.midi.decode(data)  # garbage (bad status/data bytes, wrong length) is dropped and counted
        if m is None or m.kind == dec.SYSTEM:
            return
        ch = m.channel
        sample = frame * self.hop
        if m.kind == dec.NOTE_ON:
            name = self.channel_instrument[ch]
            self._held[(ch, m.a)] = name
            self.voices[name].roll.apply((sample, data))
            offset = (frame - f0 + self.voices[name].delay_frames) * self.hop
            self.onsets.append(Onset(stamp, wall, int(offset * self.out_rate / self.sample_rate), m.a, name))
        elif m.kind == dec.NOTE_OFF:
            name = self._held.pop((ch, m.a), self.channel_instrument[ch])
            self.voices[name].roll.apply((sample, data))
        elif m.kind == dec.CONTROL:
            cc, val = m.a, m.b
            if cc == dec.CC_VOLUME:
                self._voice_of(ch).volume = (val / 127.0) ** 2
            elif cc == dec.CC_EXPRESSION:
                v = self._voice_of(ch)
                if not v.has_expression:
                    v.expression_gain = (val / 127.0) ** 2
                v.roll.apply((sample, data))
            elif cc in (dec.CC_SUSTAIN, dec.CC_ALL_SOUND_OFF, dec.CC_RESET_ALL_CONTROLLERS, dec.CC_ALL_NOTES_OFF):
                for v in self.voices.values():
                    v.roll.apply((sample, data))
                    if cc == dec.CC_ALL_SOUND_OFF:
                        v.kill = True
                if cc in (dec.CC_ALL_SOUND_OFF, dec.CC_ALL_NOTES_OFF):
                    for key in [k for k in self._held if k[0] == ch]:
                        del self._held[key]
            else:
                self._voice_of(ch).roll.apply((sample, data))
        elif m.kind == dec.PROGRAM:
            name = LIVE_PROGRAMS.get(m.a)
            if name in self.voices:
                self.channel_instrument[ch] = name
            else:
                self.unknown_programs += 1
        elif m.kind == dec.PITCH_BEND:
            self._voice_of(ch).set_bend(m.a / 8192.0 * self.bend_range)

    # -- rendering ---------------------------------------------------------------------------
    def render_step(self) -> np.ndarray:
        """Render the next ``frames_per_step`` frames: float32 (m,) mono at ``out_rate``."""
        t0 = time.perf_counter()
        n = self.frames_per_step
        f0 = self.frame
        self.onsets = []
        if self._pending:
            end = f0 + n
            keep = []
            for item in self._pending:
                if item[0] < end:
                    self._apply(max(item[0], f0), item[2], item[3], item[4], f0)
                else:
                    keep.append(item)
            self._pending = keep
        mix = self._mix
        mix[:] = 0.0
        if self._pool is None:
            parts = [v.render(f0, n) for v in self.voices.values()]
        else:  # the model runtimes and the phase code release the GIL: voices overlap on the cores
            first, *rest = self.voices.values()
            futures = [self._pool.submit(v.render, f0, n) for v in rest]
            parts = [first.render(f0, n)] + [f.result() for f in futures]
        for audio in parts:  # summed in voice order: the same mix either way
            if audio is not None:
                mix += audio
        out = mix * self.master
        self.frame = f0 + n
        if self._resampler is not None:
            out = self._resampler.resample_chunk(out)
        self.busy_s += time.perf_counter() - t0
        self.rendered_s += n * self.hop / self.sample_rate
        return out

    def close(self) -> None:
        """Stop the voice threads (``serve.voice_threads`` > 1); the engine renders in one thread after."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def render_offline(self, events: list[tuple[int, bytes]], n_frames: int) -> np.ndarray:
        """Render ``n_frames`` frames with all ``events`` ((sample_time at model rate, data)) queued up front
        (use ``schedule="exact"``). Returns float32 (N,) at ``out_rate``."""
        for s, d in sorted(events, key=lambda e: e[0]):
            self.push(s, d)
        chunks = []
        while self.frame < n_frames:
            chunks.append(self.render_step())
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    @property
    def notes_held(self) -> int:
        return sum(v.roll.sounding for v in self.voices.values())

    @property
    def rtf(self) -> float:
        """Real-time factor: render time / audio time (< 1 keeps up)."""
        return self.busy_s / self.rendered_s if self.rendered_s else 0.0

    @property
    def latency_frames(self) -> int:
        """Frames between applying a note-on and its first output sample (model + phase delay)."""
        return self.delay_frames
