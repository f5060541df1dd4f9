"""Streaming inverse STFT: overlap-add with carried state and window-sum normalisation.

Frame t (centred on signal sample t*hop) is irfft'd, windowed by the Hann synthesis window and added at
output position t*hop; after frame t is pushed, output samples [t*hop, (t+1)*hop) are final and are
returned. Output sample i is therefore signal sample i - n_fft//2 (``delay_samples``).

Normalisation divides by the overlap-added squared window of the frames actually pushed (carried along
with the signal), floored at a tenth of its steady-state minimum: the reconstruction is exact from the
first signal sample on (frames before 0 do not exist, as in :func:`rtperformer.dsp.features.stft`), and
the warm-up samples before the signal start are not amplified.

``trim_hops`` = q > 0 (low-delay synthesis): each frame's first q hops are not synthesised (its synthesis
window is the Hann window with its first q*hop samples zeroed, the normalisation the overlap-added product
of analysis and synthesis windows), so output sample i is signal sample i - (n_fft//2 - q*hop): q hops
(5.3 ms each at 48 kHz / 256) less delay. Still exact for a consistent STFT; for estimated spectrograms each
sample averages 4 - q frames instead of 4. q is at most n_fft // (2*hop) (then the delay is 0: the frame
centred on sample t*hop completes samples t*hop .. t*hop + hop - 1).
"""

from __future__ import annotations

import numpy as np

from rtperformer.config import AudioConfig
from rtperformer.dsp.features import hann, steady_window_sum

_BLOCK_MIN = 4  # pushes of this many frames or more overlap-add hop rows for all frames at once


class StreamingISTFT:
    """Streaming overlap-add iSTFT. push(spec (n_bins, n)) -> float32 (n*hop,)."""

    def __init__(self, audio_cfg: AudioConfig, trim_hops: int = 0):
        self.cfg = audio_cfg
        self.n_fft = audio_cfg.n_fft
        self.hop = audio_cfg.hop
        self.n_bins = audio_cfg.n_bins
        q = int(trim_hops)
        if not 0 <= q <= self.n_fft // (2 * self.hop):
            raise ValueError(f"trim_hops must be 0..{self.n_fft // (2 * self.hop)} for n_fft {self.n_fft} and hop "
                             f"{self.hop}, got {trim_hops}")
        self.trim = q * self.hop  # synthesis starts this many samples into each frame
        self.delay_samples = self.n_fft // 2 - self.trim
        self._w = hann(self.n_fft)[self.trim:].copy()  # the synthesised part of the frame
        self._w2 = (self._w * self._w).astype(np.float32)
        self.span = self.n_fft - self.trim  # samples each frame contributes to
        self._r = -(-self.span // self.hop)  # hops a frame reaches (its window zero-padded to _r * hop)
        self._floor = np.float32(0.1 * steady_window_sum(self.n_fft, self.hop, self._w2).min())
        # acc[0] is the next output sample; it holds the span - hop samples carried from earlier frames,
        # then room for one push of up to _cap frames (grown when a larger push comes)
        self._cap = 0
        self._grow(1)

    def _grow(self, n: int) -> None:
        """Buffers for pushes of up to n frames (the live path sees one n: no allocation per hop)."""
        if n <= self._cap:
            return
        keep = (self._r - 1) * self.hop
        old = self._acc[:keep].copy() if self._cap else None
        oldw = self._wsum[:keep].copy() if self._cap else None
        self._cap = n
        L = self._r * self.hop
        self._acc = np.zeros(n * self.hop + L, dtype=np.float32)
        self._wsum = np.zeros(n * self.hop + L, dtype=np.float32)
        self._frames = np.empty((n, self.n_fft), dtype=np.float32)
        self._win = np.zeros((n, L), dtype=np.float32)  # windowed frames, zero past the span
        self._w2pad = np.zeros(L, dtype=np.float32)
        self._w2pad[: self.span] = self._w2
        if old is not None:
            self._acc[: old.shape[0]] = old
            self._wsum[: oldw.shape[0]] = oldw

    def reset(self) -> None:
        """Forget all pushed frames (the next push is frame 0)."""
        self._acc[:] = 0.0
        self._wsum[:] = 0.0

    def push(self, spec: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Add n frames (complex (n_bins, n)) and return the n*hop output samples they complete, float32.

        ``out``: a float32 (n*hop,) array to write them into (no allocation). Each output sample sums its
        frames in frame order, whatever n (frame by frame below ``_BLOCK_MIN`` frames, hop rows at once
        above): chunking does not change a bit.
        """
        if spec.ndim != 2 or spec.shape[0] != self.n_bins:
            raise ValueError(f"StreamingISTFT.push expects ({self.n_bins}, n) spectra, got {spec.shape}")
        n = spec.shape[1]
        hop = self.hop
        if out is None:
            out = np.empty(n * hop, dtype=np.float32)
        if n == 0:
            return out
        self._grow(n)
        frames = self._frames[:n]
        if spec.dtype == np.complex64:
            np.fft.irfft(spec.T, n=self.n_fft, axis=1, out=frames)  # (n, n_fft) float32
        else:
            frames[:] = np.fft.irfft(spec.T, n=self.n_fft, axis=1)
        t, m, r = self.trim, self.span, self._r
        acc, wsum = self._acc, self._wsum
        if n < _BLOCK_MIN:  # a live step of a frame or two: frame by frame is fewer numpy calls
            frame = self._win[0, :m]
            for j in range(n):
                np.multiply(frames[j, t:], self._w, out=frame)
                acc[:m] += frame
                wsum[:m] += self._w2
                o = out[j * hop : (j + 1) * hop]
                np.maximum(wsum[:hop], self._floor, out=o)
                np.divide(acc[:hop], o, out=o)
                acc[:m] = acc[hop : m + hop]  # shift by one hop (numpy handles the overlapping copy)
                wsum[:m] = wsum[hop : m + hop]
            return out
        win = self._win[:n]
        np.multiply(frames[:, t:], self._w, out=win[:, :m])
        end = (n + r) * hop
        rows = acc[:end].reshape(-1, hop)
        wrows = wsum[:end].reshape(-1, hop)
        w2 = self._w2pad.reshape(r, hop)
        for k in range(r - 1, -1, -1):  # k descending: each row gets its frames in increasing frame order
            rows[k : k + n] += win[:, k * hop : (k + 1) * hop]
            wrows[k : k + n] += w2[k]
        np.maximum(wsum[: n * hop], self._floor, out=out)
        np.divide(acc[: n * hop], out, out=out)
        keep = (r - 1) * hop  # samples carried to the next push (zeros past span - hop)
        acc[:keep] = acc[n * hop : n * hop + keep]
        wsum[:keep] = wsum[n * hop : n * hop + keep]
        acc[keep:end] = 0.0
        wsum[keep:end] = 0.0
        return out

    def flush(self) -> np.ndarray:
        """Return the n_fft - trim - hop samples still pending after the last frame, float32, and reset."""
        m = self.span - self.hop
        out = self._acc[:m] / np.maximum(self._wsum[:m], self._floor)
        self.reset()
        return out.astype(np.float32)
