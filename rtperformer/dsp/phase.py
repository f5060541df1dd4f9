"""Offline Griffin-Lim (fast Griffin-Lim with momentum) and the phase-method factory.

Fast Griffin-Lim: Perraudin, Balazs & Soendergaard, "A fast Griffin-Lim algorithm" (WASPAA 2013):
    c_n = P_C1(P_C2(t_{n-1})),   t_n = c_n + alpha * (c_n - c_{n-1})
with P_C2 imposing the target magnitude and P_C1 = stft(istft(.)) the projection on consistent spectra.
"""

from __future__ import annotations

import numpy as np

from rtperformer.config import AudioConfig, RenderConfig
from rtperformer.errors import UserError
from rtperformer.dsp.features import hann, istft, overlap_add, steady_window_sum
from rtperformer.dsp.rtisila import RTISILA, _project
from rtperformer.dsp.rtpghi import RTPGHI

PHASE_METHODS = ("rtpghi", "rtisila", "gla")


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


def make_phase(name: str, audio_cfg: AudioConfig, render_cfg: RenderConfig | None = None):
    """Phase reconstructor by name: "rtpghi" | "rtisila" (streaming, ``.streaming = True``) | "gla" (offline).

    Streaming objects have ``.process(mag (n_bins, n)) -> complex64 (n_bins, n)``, ``.delay_frames``,
    ``.reset()``. Settings come from render_cfg (phase_lookahead, rtisila_lookahead, rtisila_iterations,
    gla_iterations, gla_momentum).
    """
    rc = render_cfg if render_cfg is not None else RenderConfig()
    if name == "rtpghi":
        obj = RTPGHI(audio_cfg, lookahead=rc.phase_lookahead)
    elif name == "rtisila":
        obj = RTISILA(audio_cfg, lookahead=rc.rtisila_lookahead, iterations=rc.rtisila_iterations)
    elif name == "gla":
        return OfflineGriffinLim(audio_cfg, rc.gla_iterations, rc.gla_momentum)
    else:
        raise UserError(f"unknown phase method '{name}' (choose one of: {', '.join(PHASE_METHODS)})")
    obj.streaming = True
    return obj


def warmup(audio_cfg: AudioConfig) -> float:
    """Load (or compile, on a fresh install) the numba kernels and FFT plans before audio starts.

    The first numba call in a process costs ~1-3 s even with the on-disk cache (numba initialises its
    target); a fresh cache compiles for ~5-15 s. Call this once at engine start. Returns the seconds spent.
    """
    import time

    t0 = time.perf_counter()
    m = np.ones((audio_cfg.n_bins, 2), np.float32)
    RTPGHI(audio_cfg, lookahead=1).process(m)
    RTISILA(audio_cfg, lookahead=1, iterations=1).process(m)
    from rtperformer.dsp.istft_stream import StreamingISTFT

    StreamingISTFT(audio_cfg).push(RTPGHI(audio_cfg, lookahead=0).process(m))
    return time.perf_counter() - t0
