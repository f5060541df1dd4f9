"""Offline Griffin-Lim: fast Griffin-Lim with momentum over a whole magnitude spectrogram, and in
crossfaded blocks for long renders (``render.phase: gla``; offline only).

Fast Griffin-Lim: Perraudin, Balazs & Soendergaard, "A fast Griffin-Lim algorithm" (WASPAA 2013):
    c_n = P_C1(P_C2(t_{n-1})),   t_n = c_n + alpha * (c_n - c_{n-1})
with P_C2 imposing the target magnitude and P_C1 = stft(istft(.)) the projection on consistent spectra.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rtperformer.config import AudioConfig
from rtperformer.dsp.crossfade import crossfade
from rtperformer.dsp.features import hann, istft, overlap_add, steady_window_sum, to_magnitude
from rtperformer.dsp.rtisila import _project
from rtperformer.dsp.rtpghi import RTPGHI
from rtperformer.errors import UserError

GLA_BLOCK_FRAMES = 1024
GLA_OVERLAP_FRAMES = 32


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.abs(x), 1e-12)


def griffin_lim(
    mag: np.ndarray,
    audio_cfg: AudioConfig,
    iterations: int = 64,
    momentum: float = 0.99,
    init: str = "rtpghi",
    length: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Fast Griffin-Lim. mag (n_bins, T) float -> float32 audio ((T-1)*hop,) or (length,).

    init: "rtpghi" (phase from RTPGHI with one frame lookahead, recommended), "random" or "zeros".
    momentum 0 gives the classic Griffin-Lim; iterations 0 returns the initial estimate.
    """
    mag = np.asarray(mag, dtype=np.float32)
    T = mag.shape[1]
    if length is None:
        length = max(T - 1, 0) * audio_cfg.hop
    if init == "rtpghi":
        r = RTPGHI(audio_cfg, lookahead=1)
        pad = np.concatenate([mag, np.zeros((mag.shape[0], 1), np.float32)], axis=1)
        c = r.process(pad)[:, 1:]
    elif init == "random":
        rng = np.random.default_rng(seed)
        c = (mag * np.exp(2j * np.pi * rng.random(mag.shape))).astype(np.complex64)
    elif init == "zeros":
        c = mag.astype(np.complex64)
    else:
        raise ValueError(f"griffin_lim init must be rtpghi|random|zeros, got {init!r}")
    ops = _Projector(audio_cfg, T)
    t = np.ascontiguousarray(c.T)  # (T, n_bins): frames contiguous for the FFTs
    magT = np.ascontiguousarray(mag.T)
    c_prev = t.copy()
    est = np.empty_like(t)
    alpha = np.float32(momentum)
    for _ in range(iterations):
        _project(t, magT, est)  # P_C2
        proj = ops.stft(ops.istft(est))  # P_C1
        # t = proj + alpha * (proj - c_prev); c_prev = proj
        np.subtract(proj, c_prev, out=t)
        t *= alpha
        t += proj
        c_prev = proj
    _project(t, magT, est)
    return istft(est.T, audio_cfg, length=length)


class _Projector:
    """stft/istft for a fixed frame count T with the window sums precomputed (the Griffin-Lim inner loop)."""

    def __init__(self, audio_cfg: AudioConfig, T: int):
        self.cfg = audio_cfg
        self.T = T
        N, a = audio_cfg.n_fft, audio_cfg.hop
        self.half = N // 2
        self.w = hann(N)
        total = (T - 1) * a + N
        wsum = np.zeros(total, np.float32)
        overlap_add(np.broadcast_to(self.w**2, (T, N)), a, wsum)
        self.inv_wsum = (1.0 / np.maximum(wsum, 0.1 * steady_window_sum(N, a).min())).astype(np.float32)
        self.buf = np.zeros(total + a, np.float32)
        self.frames = np.lib.stride_tricks.sliding_window_view(self.buf, N)[::a][:T]

    def istft(self, spec: np.ndarray) -> np.ndarray:
        """spec (T, n_bins) -> consistent signal estimate in padded coordinates (the centred frames' buffer), float32."""
        self.buf[:] = 0.0
        fr = np.fft.irfft(spec, n=self.cfg.n_fft, axis=1)
        fr *= self.w
        overlap_add(fr, self.cfg.hop, self.buf)
        n = (self.T - 1) * self.cfg.hop
        # keep only the signal span [half, half + n): frames see zero padding outside it, as stft() does
        self.buf[: len(self.inv_wsum)] *= self.inv_wsum
        self.buf[: self.half] = 0.0
        self.buf[self.half + n :] = 0.0
        return self.buf

    def stft(self, _buf: np.ndarray) -> np.ndarray:
        """Frames of the buffer filled by istft() -> (T, n_bins) complex64."""
        return np.fft.rfft(self.frames * self.w, axis=1)


class OfflineGriffinLim:
    """Griffin-Lim behind the factory: not streaming; call ``reconstruct(mag (n_bins, T)) -> audio``."""

    streaming = False
    delay_frames = 0

    def __init__(self, audio_cfg: AudioConfig, iterations: int, momentum: float):
        self.cfg = audio_cfg
        self.iterations = iterations
        self.momentum = momentum

    def reset(self) -> None:
        pass

    def reconstruct(self, mag: np.ndarray, length: int | None = None) -> np.ndarray:
        """mag (n_bins, T) -> float32 audio ((T-1)*hop,) or (length,)."""
        return griffin_lim(mag, self.cfg, self.iterations, self.momentum, length=length)

    def process(self, mag: np.ndarray) -> np.ndarray:  # pragma: no cover - guard
        raise UserError("phase method 'gla' is offline only; use render.phase rtpghi or rtisila for streaming")


class BlockGriffinLim:
    """Log1p-power chunks -> audio of ``n_samples``: Griffin-Lim over blocks of ``block`` frames that overlap
    by ``overlap`` frames; the overlapping audio is crossfaded with equal power."""

    def __init__(self, audio_cfg: Any, render_cfg: Any, n_samples: int, block: int = GLA_BLOCK_FRAMES, overlap: int = GLA_OVERLAP_FRAMES):
        self.gla = OfflineGriffinLim(audio_cfg, render_cfg.gla_iterations, render_cfg.gla_momentum)
        self.audio_cfg = audio_cfg
        self.hop = audio_cfg.hop
        self.block = max(block, 2 * overlap + 2)
        self.overlap = overlap
        self.n_samples = n_samples
        self._mags: list[np.ndarray] = []
        self._buffered = 0
        self._start = 0  # first frame in the buffer
        self._tail = None  # audio of the previous block over the overlap
        self._written = 0

    def push(self, features: np.ndarray, notes: np.ndarray | None = None) -> np.ndarray:
        """features (n_bins, n) -> the audio of the blocks completed so far; ``notes`` (the held-note roll
        the streaming stages take) is not used: Griffin-Lim finds its phase by iterating."""
        mag = to_magnitude(features, self.audio_cfg)
        self._mags.append(mag)
        self._buffered += mag.shape[1]
        outs = []
        while self._buffered >= self.block + 1:  # keep one frame so the final block is never empty
            outs.append(self._run(self.block, final=False))
        return np.concatenate(outs) if outs else np.zeros(0, np.float32)

    def _run(self, n: int, final: bool) -> np.ndarray:
        buf = np.concatenate(self._mags, axis=1)
        mag = buf[:, :n]
        s0 = self._start * self.hop
        length = (self.n_samples - s0) if final else n * self.hop
        audio = self.gla.reconstruct(mag, length=max(length, 0)) if length > 0 else np.zeros(0, np.float32)
        if self._tail is not None:
            c = min(self._tail.shape[0], audio.shape[0])
            audio = audio.copy()
            audio[:c] = crossfade(self._tail[:c], audio[:c])
        if final:
            out = audio
            self._mags = []
            self._buffered = 0
        else:
            keep = self.overlap * self.hop
            out = audio[: audio.shape[0] - keep]
            self._tail = audio[audio.shape[0] - keep :].copy()
            step = n - self.overlap
            rest = buf[:, step:]
            self._mags = [rest]
            self._buffered = rest.shape[1]
            self._start += step
        self._written += out.shape[0]
        return out.astype(np.float32)

    def finish(self) -> np.ndarray:
        out = self._run(self._buffered, final=True) if self._buffered else np.zeros(0, np.float32)
        missing = self.n_samples - self._written
        if missing > 0:
            out = np.concatenate([out, np.zeros(missing, np.float32)])
        elif missing < 0:
            out = out[: out.shape[0] + missing]
        return out
