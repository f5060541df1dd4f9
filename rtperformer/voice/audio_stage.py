"""The audio stage of the voice chain: log1p-power frames -> audio samples, live and offline (numpy only).

::

    features (n_bins, n) -> magnitude (to_magnitude) -> [pitch-bend warp] -> streaming phase (RTPGHI or
    RTISI-LA, delay d frames) -> [texture noise] -> streaming iSTFT (delay n_fft//2 - trim_hops*hop
    notes (P, n) ----------------------------------------^    samples) -> (n*hop,)
                                 (RTPGHI: score-informed phase for low notes)

:class:`AudioStage` is the one phase/iSTFT pipeline of the project: the live voices
(:class:`rtperformer.voice.chain.Voice`), offline render and eval (:class:`OfflineAudio`, the same stage with
its delays dropped) run it. Griffin-Lim, offline only, is :mod:`rtperformer.dsp.griffin_lim`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rtperformer.dsp.features import to_magnitude
from rtperformer.dsp.istft_stream import StreamingISTFT
from rtperformer.dsp.noise import NoiseLayer, NoiseTable
from rtperformer.dsp.phase import make_phase
from rtperformer.errors import UserError


BEND_EPS = 1e-4  # semitones: a smaller bend is no bend


def warp_frames(mag: np.ndarray, semitones: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Frequency warp of each frame: ``out[k, j] = mag[k / r_j, j]`` (linear interpolation between bins,
    0 above the top bin), ``r_j = 2 ** (semitones[j] / 12)``. ``mag``
    (n_bins, n) float32, ``semitones`` (n,); frames with ``|semitones| < BEND_EPS`` are copied. Returns
    ``out`` (n_bins, n) float32 (a new array when None; it must not be ``mag``)."""
    n_bins, n = mag.shape
    if out is None:
        out = np.empty_like(mag, dtype=np.float32)
    s = np.asarray(semitones, np.float64).reshape(-1)
    s = np.where(np.abs(s) < BEND_EPS, 0.0, s)
    src = np.arange(n_bins, dtype=np.float64)[:, None] * (2.0 ** (-s / 12.0))[None, :]  # (n_bins, n)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_bins - 1)
    w1 = (src - i0).astype(np.float32)
    v0 = np.take_along_axis(mag, i0, axis=0)
    v1 = np.take_along_axis(mag, np.minimum(i0 + 1, n_bins - 1), axis=0)
    np.multiply(v0, 1.0 - w1, out=out)
    out += v1 * w1
    out[src > n_bins - 1] = 0.0
    return out


def warp_features(features: np.ndarray, semitones: np.ndarray, power_scale: float) -> np.ndarray:
    """log1p-power features (n_bins, n) warped per frame by ``semitones`` (n,) in the magnitude domain
    (:func:`warp_frames`): a new float32 array (the same values where no frame is bent)."""
    s = np.asarray(semitones, np.float64).reshape(-1)
    if not np.any(np.abs(s) >= BEND_EPS):
        return np.array(features, np.float32)
    mag = to_magnitude(np.asarray(features, np.float32), power_scale=np.float32(power_scale))
    w = warp_frames(mag, s)
    return np.log1p(np.float32(power_scale) * w * w).astype(np.float32)


class AudioStage:
    """log1p-power frames -> audio: ``push(features (n_bins, n)) -> float32 (n*hop,)``.

    magnitude (:func:`rtperformer.dsp.to_magnitude`) -> pitch-bend warp (``bend``, per frame) -> streaming
    phase ``phase`` (rtpghi | rtisila, settings from ``render_cfg``) -> the texture noise of ``noise`` (a
    model's :class:`~rtperformer.dsp.noise.NoiseTable`, seeded by ``render_cfg.noise_seed``; None: off;
    :mod:`rtperformer.dsp.noise`) -> streaming iSTFT with ``trim_hops`` low-delay trimming.
    ``delay_samples`` = phase delay * hop + iSTFT delay (the noise adds none).

    ``notes`` (the held-note roll, (P, n), row = MIDI pitch, aligned with the features) lets RTPGHI take
    the phase of low notes from the score (``render.score_phase_below_bins``; the bend moves their f0 too).
    ``bend`` (n,) semitones per frame (the pianoroll's bend row, aligned with the features) warps the
    magnitudes frame by frame (:func:`warp_frames`). Live and offline callers pass the same rows.

    ``drop_delay`` False (live): output sample i is signal sample i - ``delay_samples``; :meth:`push`
    returns a view of an internal buffer, valid until the next push. True (offline): the phase's warm-up
    frames and the iSTFT's warm-up samples are dropped (output sample i is signal sample i) and
    :meth:`flush` returns the samples still pending after the last frame.
    """

    def __init__(self, audio_cfg: Any, render_cfg: Any, phase: str | None = None, trim_hops: int = 0,
                 drop_delay: bool = False, noise: NoiseTable | None = None):
        name = phase or render_cfg.phase
        self.phase = make_phase(name, audio_cfg, render_cfg)
        if not getattr(self.phase, "streaming", False):
            raise UserError(f"phase method '{name}' is offline only; use rtpghi or rtisila for a streaming chain")
        try:
            self.istft = StreamingISTFT(audio_cfg, trim_hops=trim_hops)
        except ValueError as exc:
            raise UserError(f"serve.istft_trim_hops: {exc}") from None
        self.hop = audio_cfg.hop
        self.n_bins = audio_cfg.n_bins
        self.power_scale = np.float32(audio_cfg.power_scale)
        self.delay_frames = int(self.phase.delay_frames)
        self.delay_samples = self.delay_frames * self.hop + int(self.istft.delay_samples)
        self.drop_delay = bool(drop_delay)
        self.noise = (NoiseLayer(noise, audio_cfg, self.delay_frames, getattr(render_cfg, "noise_seed", 0))
                      if noise is not None else None)
        self.score_informed = bool(getattr(self.phase, "score_informed", False))
        self._note_rows = 0  # rows of the last notes roll pushed (flush feeds as many silent ones)
        self._n = -1
        self.reset()

    def reset(self, reseed: bool = True) -> None:
        """Start a new stream (phase, iSTFT, the delays to drop; the texture noise from its seed, or going on
        with its generator when ``reseed`` is False)."""
        self.phase.reset()
        self.istft.reset()
        if self.noise is not None:
            self.noise.reset(reseed)
        self._skip_frames = self.delay_frames if self.drop_delay else 0
        self._skip_samples = int(self.istft.delay_samples) if self.drop_delay else 0

    def _buffers(self, n: int) -> None:
        if n != self._n:
            self._n = n
            self._mag = np.empty((self.n_bins, n), np.float32)
            self._warp = np.empty((self.n_bins, n), np.float32)
            self._ratios = np.empty(n, np.float64)
            self._spec = np.empty((self.n_bins, n), np.complex64)
            self._audio = np.empty(n * self.hop, np.float32)

    def spectrum(self, features: np.ndarray, notes: np.ndarray | None = None,
                 bend: np.ndarray | None = None) -> np.ndarray:
        """features (n_bins, n) [, notes (P, n)] [, bend (n,) semitones] -> complex64 (n_bins, n)
        phase-reconstructed spectrum (internal buffer)."""
        n = features.shape[1]
        self._buffers(n)
        mag = to_magnitude(features, power_scale=self.power_scale, out=self._mag)
        bent = bend is not None and bool(np.any(np.abs(bend) >= BEND_EPS))
        if bent:
            mag = warp_frames(mag, bend, out=self._warp)
        if self.noise is None:
            return self._phase(mag, notes, bend, bent)
        self.noise.prepare(mag)
        return self.noise.add(self._phase(mag, notes, bend, bent))

    def _phase(self, mag: np.ndarray, notes: np.ndarray | None, bend: np.ndarray | None, bent: bool) -> np.ndarray:
        """mag (n_bins, n) -> the phase stage's spectrum (n_bins, n); the score-informed f0s follow the bend
        frame by frame."""
        if not self.score_informed:
            return self.phase.process(mag, out=self._spec)
        ratios = None
        if bent:
            ratios = self._ratios
            ratios[:] = bend
            np.divide(ratios, 12.0, out=ratios)
            np.power(2.0, ratios, out=ratios)
        return self.phase.process(mag, out=self._spec, notes=notes, bend_ratios=ratios)

    def push(self, features: np.ndarray, notes: np.ndarray | None = None, bend: np.ndarray | None = None) -> np.ndarray:
        """features (n_bins, n) log1p power [, notes (P, n) held-note roll] [, bend (n,) semitones per frame]
        -> float32 audio: n*hop samples live, fewer while dropping."""
        if notes is not None:
            self._note_rows = notes.shape[0]
        spec = self.spectrum(features, notes, bend)
        if self._skip_frames:
            k = min(self._skip_frames, spec.shape[1])
            spec = spec[:, k:]
            self._skip_frames -= k
        return self._drop(self.istft.push(spec, out=self._audio[: spec.shape[1] * self.hop]))

    def _drop(self, audio: np.ndarray) -> np.ndarray:
        if self._skip_samples:
            k = min(self._skip_samples, audio.shape[0])
            audio = audio[k:]
            self._skip_samples -= k
        return audio

    def flush(self) -> np.ndarray:
        """Offline end: the phase's pending frames (fed silence, no notes) and the iSTFT's pending samples,
        float32 (a new array); then the stage is reset."""
        outs = []
        if self.delay_frames:
            d = self.delay_frames
            notes = np.zeros((self._note_rows, d), np.float32) if self._note_rows else None
            outs.append(self.push(np.zeros((self.n_bins, d), np.float32), notes).copy())
        outs.append(self._drop(self.istft.flush()))
        self.reset()
        return np.concatenate(outs).astype(np.float32)


class OfflineAudio:
    """Offline audio stage: log1p-power chunks -> audio of exactly ``n_samples`` samples, the
    :class:`AudioStage` with its delays dropped (``name``: rtpghi | rtisila). ``push`` returns new arrays."""

    def __init__(self, name: str, audio_cfg: Any, render_cfg: Any, n_samples: int, trim_hops: int = 0,
                 noise: NoiseTable | None = None):
        self.stage = AudioStage(audio_cfg, render_cfg, phase=name, trim_hops=trim_hops, drop_delay=True, noise=noise)
        self.remaining = n_samples

    def _emit(self, audio: np.ndarray) -> np.ndarray:
        audio = audio[: max(self.remaining, 0)].copy()
        self.remaining -= audio.shape[0]
        return audio

    def push(self, features: np.ndarray, notes: np.ndarray | None = None, bend: np.ndarray | None = None) -> np.ndarray:
        """features (n_bins, n) [, notes (P, n) held-note roll] [, bend (n,) semitones] -> float32 audio (a new array)."""
        return self._emit(self.stage.push(features, notes, bend))

    def finish(self) -> np.ndarray:
        out = np.concatenate([self._emit(self.stage.flush()), np.zeros(max(self.remaining, 0), np.float32)])
        self.remaining = 0
        return out
