"""Equal-power crossfades for audio seams between blocks whose phases are unrelated (block Griffin-Lim)."""

from __future__ import annotations

import numpy as np


def equal_power_fade(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-power fade curves of n samples: (fade_out, fade_in), float32 (n,) each, out^2 + in^2 = 1."""
    if n < 0:
        raise ValueError(f"fade length must be >= 0, got {n}")
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    fade_in = np.sin(0.5 * np.pi * t).astype(np.float32)
    fade_out = np.cos(0.5 * np.pi * t).astype(np.float32)
    return fade_out, fade_in


def crossfade(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Mix the end of one chunk into the start of the next: tail*fade_out + head*fade_in.

    tail, head (n,) or (..., n) float arrays of the same shape (fade along the last axis) -> float32.
    """
    tail = np.asarray(tail, dtype=np.float32)
    head = np.asarray(head, dtype=np.float32)
    if tail.shape != head.shape:
        raise ValueError(f"crossfade needs equal shapes, got {tail.shape} and {head.shape}")
    fade_out, fade_in = equal_power_fade(tail.shape[-1])
    return (tail * fade_out + head * fade_in).astype(np.float32)
