"""The end of an offline render: the parts' WAVs mixed into one, and the preview PNG.

Mixing (:func:`mix_to_wav`): parts are summed at unit gain (the models' trained levels are kept), then
one gain for the whole file: ``min(1, PEAK_CEILING / peak)`` with the ceiling at -1 dBFS, never boosting.
Parts are :class:`rtperformer.offline.render.PartResult` (path, sample_rate, n_samples, peak, preview).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rtperformer.audio.wavfile import open_wav

PEAK_CEILING = 10 ** (-1.0 / 20.0)  # -1 dBFS
PNG_MAX_COLUMNS = 2000
_IO_BLOCK = 1 << 16


class PreviewCollector:
    """Keeps every ``stride``-th frame of the input roll and output features for the PNG (bounded)."""

    def __init__(self, n_frames: int, max_columns: int = PNG_MAX_COLUMNS):
        self.stride = max(1, math.ceil(n_frames / max_columns))
        self.rolls: list[np.ndarray] = []
        self.feats: list[np.ndarray] = []
        self._frame = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        n = x.shape[1]
        first = (-self._frame) % self.stride
        idx = np.arange(first, n, self.stride)
        if idx.size:
            self.rolls.append(x[:128, idx].astype(np.float16))
            self.feats.append(y[:, idx].astype(np.float16))
        self._frame += n


def mix_to_wav(parts: list[Any], out_path: Path) -> tuple[float, float]:
    """Sum the parts' WAVs block-wise and write ``out_path`` (float32) with one peak-safe gain.

    Returns (gain, peak after gain). gain = min(1, PEAK_CEILING / peak of the sum).
    """
    import soundfile as sf

    rate = parts[0].sample_rate
    n = max(p.n_samples for p in parts)

    def blocks():
        files = [sf.SoundFile(str(p.path)) for p in parts]
        try:
            for s in range(0, n, _IO_BLOCK):
                m = min(_IO_BLOCK, n - s)
                acc = np.zeros(m, np.float32)
                for f in files:
                    b = f.read(m, dtype="float32")
                    acc[: b.shape[0]] += b
                yield acc
        finally:
            for f in files:
                f.close()

    peak = max((float(np.max(np.abs(b))) for b in blocks()), default=0.0) if len(parts) > 1 else parts[0].peak
    gain = min(1.0, PEAK_CEILING / peak) if peak > 0 else 1.0
    with open_wav(out_path, rate, 1, frames=n) as f:  # RF64 past 4 GiB
        for b in blocks():
            f.write(b * np.float32(gain))
    return gain, peak * gain


def write_png(results: list[Any], cfgs: dict[str, Any], png_path: Path) -> None:
    """Input roll and output spectrogram (log1p-power features) of each part, one row each (Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = [r for r in results if r.preview is not None and r.preview.rolls]
    fig, axes = plt.subplots(2 * len(rows), 1, figsize=(12, 4.5 * len(rows)), squeeze=False)
    for i, r in enumerate(rows):
        ac = cfgs[r.instrument].audio
        p = r.preview
        roll = np.concatenate(p.rolls, axis=1).astype(np.float32)
        feats = np.concatenate(p.feats, axis=1).astype(np.float32)
        seconds = roll.shape[1] * p.stride / ac.frame_rate
        pitches = np.flatnonzero(roll.any(axis=1))
        lo, hi = (int(pitches.min()) - 2, int(pitches.max()) + 3) if pitches.size else (0, 128)
        ax = axes[2 * i, 0]
        ax.imshow(roll[max(lo, 0) : min(hi, 128)], aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
                  extent=(0, seconds, max(lo, 0), min(hi, 128)))
        ax.set_title(f"{r.instrument}: input roll")
        ax.set_ylabel("MIDI pitch")
        ax = axes[2 * i + 1, 0]
        ax.imshow(feats, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                  extent=(0, seconds, 0, ac.sample_rate / 2000.0))
        ax.set_title(f"{r.instrument}: output log1p(power_scale*|S|^2)")
        ax.set_ylabel("kHz")
        ax.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(str(png_path), dpi=80, format="png")
    plt.close(fig)
