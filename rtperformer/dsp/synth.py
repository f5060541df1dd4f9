"""Synthetic test signals for the phase and iSTFT tests and bench/phase.py (numpy only, deterministic).

Notes are additive harmonic tones with per-note vibrato (rate, depth, phase), a 1/h^tilt spectrum, an
attack/release envelope and slightly inharmonic upper partials, so frames contain onsets, offsets, glides
and (for chords) partials of several notes close in frequency.
"""

from __future__ import annotations

import numpy as np


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def harmonic_notes(
    sample_rate: int,
    notes: list[tuple[float, float, float]],
    duration: float,
    vibrato_cents: float = 25.0,
    vibrato_hz: float = 5.5,
    n_harmonics: int = 12,
    tilt: float = 1.0,
    attack: float = 0.03,
    release: float = 0.08,
    seed: int = 0,
    peak: float = 0.3,
) -> np.ndarray:
    """Render notes [(start_s, end_s, midi_pitch), ...] -> float32 (round(duration*sample_rate),)."""
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    y = np.zeros(n, dtype=np.float64)
    for start, end, pitch in notes:
        f0 = midi_to_hz(pitch)
        rate = vibrato_hz * (1.0 + 0.1 * rng.standard_normal())
        vphase = rng.uniform(0, 2 * np.pi)
        # vibrato fades in over 0.25 s, as played
        depth = vibrato_cents / 1200.0 * np.clip((t - start) / 0.25, 0.0, 1.0)
        inst = f0 * 2.0 ** (depth * np.sin(2 * np.pi * rate * t + vphase))
        phase = 2 * np.pi * np.cumsum(inst) / sample_rate
        env = np.clip((t - start) / attack, 0.0, 1.0) * np.clip((end - t) / release, 0.0, 1.0)
        env *= (t >= start) & (t < end)
        tone = np.zeros(n)
        for h in range(1, n_harmonics + 1):
            stretch = h * (1.0 + 2e-4 * h * h)
            if f0 * stretch * 1.02 >= sample_rate / 2:
                break
            tone += np.sin(stretch * phase + rng.uniform(0, 2 * np.pi)) / h**tilt
        y += env * tone
    m = np.max(np.abs(y))
    if m > 0:
        y *= peak / m
    return y.astype(np.float32)


def melody(sample_rate: int, duration: float = 2.0, seed: int = 0) -> np.ndarray:
    """A legato violin-like line (G4..E5 with a leap) with vibrato; (N,) float32."""
    pitches = [67, 69, 71, 74, 72, 76, 71, 67]
    step = duration / (len(pitches) + 1)
    notes = [(0.05 + i * step, 0.05 + (i + 1) * step + 0.02, p) for i, p in enumerate(pitches)]
    return harmonic_notes(sample_rate, notes, duration, seed=seed)


def chords(sample_rate: int, duration: float = 2.0, seed: int = 1) -> np.ndarray:
    """Double stops and a triad in a violin register (sixth, fifth, A-major triad) with vibrato; (N,) float32."""
    d = duration / 3
    notes = [
        (0.05, d, 64), (0.05, d, 72),            # E4 + C5 (minor sixth)
        (d, 2 * d, 69), (d, 2 * d, 76),          # A4 + E5 (fifth)
        (2 * d, duration - 0.05, 69), (2 * d, duration - 0.05, 73), (2 * d, duration - 0.05, 76),  # A4 C#5 E5
    ]
    return harmonic_notes(sample_rate, notes, duration, seed=seed)


def low_triad(sample_rate: int, duration: float = 2.0, seed: int = 2) -> np.ndarray:
    """Close-position A3 major triad (A3 C#4 E4): low partials closer than a 1024-point Hann main lobe at
    48 kHz, the hard case for magnitude-only phase reconstruction; (N,) float32."""
    notes = [(0.05, duration - 0.05, p) for p in (57, 61, 64)]
    return harmonic_notes(sample_rate, notes, duration, seed=seed)


SIGNALS = {"melody": melody, "chords": chords, "low_triad": low_triad}
