"""STFT features: centred Hann STFT, its inverse, log1p power features and their inverse to magnitude.

Frame t of a signal x (N,) is the rfft of ``x[t*hop - n_fft//2 : t*hop + n_fft//2] * hann`` with x
zero-padded at both ends (``center=True, pad_mode="constant"`` in torch.stft terms), so frame t is centred
on sample t*hop and there are T = N//hop + 1 frames. The Hann window is periodic (``torch.hann_window``,
``scipy.signal.get_window("hann", n_fft)``), which overlap-adds to a constant for n_fft/hop >= 3.

FFTs are numpy's pocketfft in float32/complex64; long signals are processed in blocks of frames so memory
stays bounded.
"""

from __future__ import annotations

import numpy as np

from rtperformer.config import AudioConfig

_BLOCK_FRAMES = 2048  # frames per FFT block in stft/istft (bounds temporary memory)


def hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, float32 (n_fft,)."""
    n = np.arange(n_fft, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32)


def gaussian_lambda(n_fft: int) -> float:
    """Time-frequency ratio gamma (in samples^2) of the Gaussian equivalent to a Hann window of length n_fft.

    Prusa & Holighaus: gamma = 0.25645 * n_fft^2, the lambda of exp(-pi t^2 / gamma).
    """
    return 0.25645 * float(n_fft) ** 2


def steady_window_sum(n_fft: int, hop: int, w2: np.ndarray | None = None) -> np.ndarray:
    """sum_j w(r + j*hop)^2 for r in [0, hop): the overlap-added squared window far from the ends, (hop,).
    ``w2``: another (e.g. trimmed) squared window in place of the Hann window of ``n_fft``."""
    w2 = hann(n_fft).astype(np.float64) ** 2 if w2 is None else np.asarray(w2, np.float64)
    pad = (-len(w2)) % hop
    return np.pad(w2, (0, pad)).reshape(-1, hop).sum(axis=0)


def n_frames(n_samples: int, hop: int) -> int:
    """Number of centred frames of a signal of n_samples: N//hop + 1 (the one place this is computed)."""
    return n_samples // hop + 1


def stft(audio: np.ndarray, audio_cfg: AudioConfig) -> np.ndarray:
    """Centred Hann STFT. audio (N,) float -> complex64 (n_bins, T), T = N//hop + 1."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"stft expects a 1-D signal, got shape {x.shape}")
    n_fft, hop = audio_cfg.n_fft, audio_cfg.hop
    T = n_frames(len(x), hop)
    half = n_fft // 2
    xp = np.zeros(len(x) + 2 * half + hop, dtype=np.float32)
    xp[half : half + len(x)] = x
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop][:T]
    w = hann(n_fft)
    out = np.empty((audio_cfg.n_bins, T), dtype=np.complex64)
    for t0 in range(0, T, _BLOCK_FRAMES):
        blk = frames[t0 : t0 + _BLOCK_FRAMES] * w
        out[:, t0 : t0 + len(blk)] = np.fft.rfft(blk, axis=1).T
    return out


def overlap_add(frames: np.ndarray, hop: int, out: np.ndarray) -> None:
    """Add frames (T, L) into out at offsets t*hop in place; out must hold (T-1)*hop + L samples."""
    T, L = frames.shape
    if L % hop == 0:
        r = L // hop
        view = out[: (T + r - 1) * hop].reshape(T + r - 1, hop)
        for j in range(r):
            view[j : j + T] += frames[:, j * hop : (j + 1) * hop]
    else:
        for t in range(T):
            out[t * hop : t * hop + L] += frames[t]


def istft(spec: np.ndarray, audio_cfg: AudioConfig, length: int | None = None) -> np.ndarray:
    """Inverse of :func:`stft` by weighted overlap-add with window-sum normalisation.

    spec complex (n_bins, T) -> float32 (length,), length defaulting to (T-1)*hop. Samples whose
    squared-window sum is tiny (only at the padded ends) are not amplified.
    """
    spec = np.asarray(spec)
    n_fft, hop = audio_cfg.n_fft, audio_cfg.hop
    if spec.ndim != 2 or spec.shape[0] != audio_cfg.n_bins:
        raise ValueError(f"istft expects ({audio_cfg.n_bins}, T) spectra, got shape {spec.shape}")
    T = spec.shape[1]
    half = n_fft // 2
    if length is None:
        length = max(T - 1, 0) * hop
    w = hann(n_fft)
    total = (T - 1) * hop + n_fft if T else 0
    acc = np.zeros(max(total, half + length), dtype=np.float64)
    for t0 in range(0, T, _BLOCK_FRAMES):
        blk = np.fft.irfft(spec[:, t0 : t0 + _BLOCK_FRAMES].T, n=n_fft, axis=1).astype(np.float32) * w
        overlap_add(blk, hop, acc[t0 * hop :])
    wsum = np.zeros_like(acc)
    if T:
        overlap_add(np.broadcast_to(w.astype(np.float64) ** 2, (T, n_fft)), hop, wsum)
    floor = 0.1 * steady_window_sum(n_fft, hop).min()
    y = acc[half : half + length] / np.maximum(wsum[half : half + length], floor)
    return y.astype(np.float32)


def log_power(audio: np.ndarray, audio_cfg: AudioConfig) -> np.ndarray:
    """Model features: log1p(power_scale * |STFT|^2). audio (N,) -> float32 (n_bins, T)."""
    s = stft(audio, audio_cfg)
    p = s.real.astype(np.float32) ** 2 + s.imag.astype(np.float32) ** 2
    return np.log1p(np.float32(audio_cfg.power_scale) * p).astype(np.float32)


def to_power(features: np.ndarray, power_scale: float, dtype: type = np.float32, out: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`log_power` to STFT power: max(expm1(f), 0) / power_scale, (n_bins, T) in ``dtype``.

    The one log1p inversion for numpy (the torch one, differentiable, is ``losses.features_to_magnitude``):
    float32 for audio, float64 for metrics. ``out``: an array of that dtype and shape to write into.
    """
    p = np.expm1(np.asarray(features, dtype=dtype), out=out)
    np.maximum(p, 0.0, out=p)
    np.divide(p, dtype(power_scale), out=p)
    return p


def to_magnitude(features: np.ndarray, audio_cfg: AudioConfig | None = None, power_scale: float | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """STFT magnitude from features: sqrt(:func:`to_power`), float32 (n_bins, T).

    power_scale comes from ``audio_cfg.power_scale`` (or the explicit argument); 1.0 when neither is given.
    ``out``: a float32 array of the features' shape to write into (no allocation).
    """
    scale = power_scale if power_scale is not None else (audio_cfg.power_scale if audio_cfg is not None else 1.0)
    p = to_power(features, scale, np.float32, out=out)
    return np.sqrt(p, out=p)


def spectral_convergence_db(audio: np.ndarray, mag: np.ndarray, audio_cfg: AudioConfig) -> float:
    """20*log10(|| |STFT(audio)| - mag ||_F / ||mag||_F) in dB over mag's T frames (audio zero-padded if short)."""
    T = mag.shape[1]
    y = np.asarray(audio, dtype=np.float32)
    need = (T - 1) * audio_cfg.hop
    if len(y) < need:
        y = np.concatenate([y, np.zeros(need - len(y), np.float32)])
    s = np.abs(stft(y, audio_cfg))[:, :T]
    num = np.linalg.norm((s - mag).astype(np.float64))
    den = np.linalg.norm(mag.astype(np.float64))
    return float(20.0 * np.log10(max(num, 1e-30) / max(den, 1e-30)))
