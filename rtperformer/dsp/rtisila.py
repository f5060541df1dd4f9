"""Streaming phase reconstruction by RTISI-LA (Zhu, Beauregard & Wyse, "Real-time signal estimation from
modified short-time Fourier transform magnitude spectra", IEEE TASLP 2007).

The last ``lookahead + 1`` frames are "active". A partial reconstruction ``acc`` (the normalised
overlap-add of committed and active frames) covers them. When a frame arrives its initial phase is taken
from the partial reconstruction (``init="partial"``, as in the paper) or from an internal RTPGHI
(``init="rtpghi"``, a better start at ~0.05 ms per frame). Then ``iterations`` times, every active frame
is re-estimated from ``acc``: window, FFT, keep the phase, impose the target magnitude, inverse FFT, and
its contribution in ``acc`` is replaced (Griffin-Lim restricted to the active frames, all frames of one
iteration updated together). The oldest active frame is then committed and returned.

Output frame j is input frame j - lookahead (``delay_frames = lookahead``); warm-up frames are zero.
Cost: ``iterations`` batched rfft/irfft pairs of ``lookahead + 1`` frames per input frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rtperformer.config import AudioConfig
from rtperformer.dsp.features import hann, steady_window_sum
from rtperformer.dsp.rtpghi import RTPGHI


@njit(cache=True, nogil=True)
def _gather(acc, w, hop, out):
    """out[f, n] = acc[f*hop + n] * w[n] for the active frames, (F, N) float32."""
    F, N = out.shape
    for f in range(F):
        o = f * hop
        for n in range(N):
            out[f, n] = acc[o + n] * w[n]


@njit(cache=True, nogil=True)
def _project(X, mags, out):
    """out = mags * X / |X| (zero phase where X vanishes), complex64 (F, M)."""
    F, M = X.shape
    for f in range(F):
        for k in range(M):
            re = X[f, k].real
            im = X[f, k].imag
            r = (re * re + im * im) ** 0.5
            if r > 1e-20:
                g = mags[f, k] / r
                out[f, k] = complex(re * g, im * g)
            else:
                out[f, k] = mags[f, k]


@njit(cache=True, nogil=True)
def _scatter(frames, ws, hop, contrib, acc, first):
    """Replace the active frames' contributions in acc by frames * ws (frames (F, N) from irfft)."""
    F, N = frames.shape
    for f in range(first, F):
        o = f * hop
        for n in range(N):
            v = frames[f, n] * ws[n]
            acc[o + n] += v - contrib[f, n]
            contrib[f, n] = v


class RTISILA:
    """Streaming RTISI-LA. process(mag (n_bins, n) float) -> complex64 (n_bins, n), delay_frames = lookahead."""

    def __init__(self, audio_cfg: AudioConfig, lookahead: int = 3, iterations: int = 4, init: str = "partial"):
        if lookahead < 0 or iterations < 0:
            raise ValueError("RTISILA lookahead and iterations must be >= 0")
        if init not in ("partial", "rtpghi"):
            raise ValueError(f"RTISILA init must be 'partial' or 'rtpghi', got {init!r}")
        self.cfg = audio_cfg
        self.lookahead = int(lookahead)
        self.iterations = int(iterations)
        self.delay_frames = int(lookahead)
        self.init = init
        N, a, M = audio_cfg.n_fft, audio_cfg.hop, audio_cfg.n_bins
        self.n_fft, self.hop, self.n_bins = N, a, M
        F = self.lookahead + 1
        self._F = F
        self._w = hann(N)
        # least-squares synthesis window: w / sum_j w^2(.-j*hop) (constant for n_fft/hop >= 3)
        self._ws = (self._w / np.float32(steady_window_sum(N, a).mean())).astype(np.float32)
        self._acc = np.zeros((F - 1) * a + N + a, dtype=np.float32)  # + one hop of slack for the shift
        self._contrib = np.zeros((F, N), dtype=np.float32)
        self._mags = np.zeros((F, M), dtype=np.float32)
        self._spec = np.zeros((F, M), dtype=np.complex64)
        self._tmp = np.empty((F, N), dtype=np.float32)
        self._pghi = RTPGHI(audio_cfg, lookahead=0) if init == "rtpghi" else None

    def reset(self) -> None:
        """Start a new stream."""
        self._acc[:] = 0.0
        self._contrib[:] = 0.0
        self._mags[:] = 0.0
        self._spec[:] = 0.0
        if self._pghi is not None:
            self._pghi.reset()

    def process(self, mag: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """mag (n_bins, n) non-negative float -> complex64 (n_bins, n) (written into ``out`` when given)."""
        if mag.ndim != 2 or mag.shape[0] != self.n_bins:
            raise ValueError(f"RTISILA.process expects ({self.n_bins}, n) magnitudes, got {mag.shape}")
        mag = np.ascontiguousarray(mag, dtype=np.float32)
        n = mag.shape[1]
        if out is None:
            out = np.empty((self.n_bins, n), dtype=np.complex64)
        a, N, L = self.hop, self.n_fft, self.lookahead
        init_spec = self._pghi.process(mag) if self._pghi is not None else None
        w, ws = self._w, self._ws
        acc, contrib, mags, spec, tmp = self._acc, self._contrib, self._mags, self._spec, self._tmp
        for j in range(n):
            # slide: drop the committed frame, shift the buffer by one hop
            acc[: len(acc) - a] = acc[a:]
            acc[len(acc) - a :] = 0.0
            contrib[:-1] = contrib[1:]
            contrib[L] = 0.0
            mags[:-1] = mags[1:]
            spec[:-1] = spec[1:]
            mags[L] = mag[:, j]
            # initial estimate of the new frame (slot L)
            if init_spec is not None:
                spec[L] = init_spec[:, j]
            else:
                _gather(acc[L * a :], w, a, tmp[L:])
                _project(np.fft.rfft(tmp[L:], axis=1), mags[L:], spec[L:])
            _scatter(np.fft.irfft(spec[L:], n=N, axis=1), ws, a, contrib[L:], acc[L * a :], 0)
            # iterations over all active frames together; slot 0 is committed afterwards
            for _ in range(self.iterations):
                _gather(acc, w, a, tmp)
                _project(np.fft.rfft(tmp, axis=1), mags, spec)
                _scatter(np.fft.irfft(spec, n=N, axis=1), ws, a, contrib, acc, 0)
            out[:, j] = spec[0]
        return out
