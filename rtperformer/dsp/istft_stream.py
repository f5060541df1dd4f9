"""Streaming inverse STFT: overlap-add with carried state and window-sum normalisation.

Frame t (centred on signal sample t*hop) is irfft'd, windowed by the Hann synthesis window and added at
output position t*hop; after frame t is pushed, output samples [t*hop, (t+1)*hop) are final and are
returned. Output sample i is therefore signal sample i - n_fft//2 (``delay_samples``).

Normalisation divides by the overlap-added squared window of the frames actually pushed (carried along
with the signal), floored at a tenth of its steady-state minimum: the reconstruction is exact from the
first signal sample on (frames before 0 do not exist, as in :func:`rtperformer.dsp.features.stft`), and
the warm-up samples before the signal start are not amplified.
"""

from __future__ import annotations

import numpy as np

from rtperformer.config import AudioConfig
from rtperformer.dsp.features import hann, steady_window_sum


class StreamingISTFT:
    """Streaming overlap-add iSTFT. push(spec (n_bins, n)) -> float32 (n*hop,)."""

    def __init__(self, audio_cfg: AudioConfig):
        self.cfg = audio_cfg
        self.n_fft = audio_cfg.n_fft
        self.hop = audio_cfg.hop
        self.n_bins = audio_cfg.n_bins
        self.delay_samples = self.n_fft // 2
        self._w = hann(self.n_fft)
        self._w2 = (self._w * self._w).astype(np.float32)
        self._floor = np.float32(0.1 * steady_window_sum(self.n_fft, self.hop).min())
        # acc[0] is the next output sample; it spans one frame plus one hop of slack.
        self._acc = np.zeros(self.n_fft + self.hop, dtype=np.float32)
        self._wsum = np.zeros(self.n_fft + self.hop, dtype=np.float32)
        self._frame = np.empty(self.n_fft, dtype=np.float32)

    def reset(self) -> None:
        """Forget all pushed frames (the next push is frame 0)."""
        self._acc[:] = 0.0
        self._wsum[:] = 0.0

    def push(self, spec: np.ndarray) -> np.ndarray:
        """Add n frames (complex (n_bins, n)) and return the n*hop output samples they complete, float32."""
        if spec.ndim != 2 or spec.shape[0] != self.n_bins:
            raise ValueError(f"StreamingISTFT.push expects ({self.n_bins}, n) spectra, got {spec.shape}")
        n = spec.shape[1]
        hop, n_fft = self.hop, self.n_fft
        out = np.empty(n * hop, dtype=np.float32)
        if n == 0:
            return out
        frames = np.fft.irfft(spec.T, n=n_fft, axis=1)  # (n, n_fft) float32 for complex64 input
        acc, wsum, frame, floor = self._acc, self._wsum, self._frame, self._floor
        for j in range(n):
            np.multiply(frames[j], self._w, out=frame)
            acc[:n_fft] += frame
            wsum[:n_fft] += self._w2
            o = out[j * hop : (j + 1) * hop]
            np.maximum(wsum[:hop], floor, out=o)
            np.divide(acc[:hop], o, out=o)
            # shift by one hop (numpy handles the overlapping copy)
            acc[: n_fft] = acc[hop : n_fft + hop]
            wsum[: n_fft] = wsum[hop : n_fft + hop]
        return out

    def flush(self) -> np.ndarray:
        """Return the n_fft - hop samples still pending after the last frame, float32, and reset."""
        m = self.n_fft - self.hop
        out = self._acc[:m] / np.maximum(self._wsum[:m], self._floor)
        self.reset()
        return out.astype(np.float32)
