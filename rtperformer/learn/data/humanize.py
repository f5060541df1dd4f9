"""Expressive rendering of a score line: seeded humanisation a model can learn from the score.

``perform(line, kind, seed) -> Performance`` turns score notes (quarter lengths) into timed notes
(seconds), a CC11 expression curve and per-note vibrato. Kinds:

- ``expressive``: phrase-level dynamic arcs (CC11), swells on long notes (CC11), velocity from metric
  position and the phrase arc, onset timing jitter and phrase-final ritardandi, fermata holds, legato
  overlaps (detached repeats), and vibrato (pitch bend) starting a few hundred ms into notes that are
  still held after ~0.3 s.
- ``flat``: the same performance (same seed) with CC11 fixed at 127 (expression 1.0), so a plain MIDI
  file (no CC11) is in the training distribution at the right level.
- ``deadpan``: the score as written: metronomic time, velocity 80, no CC11, no vibrato, no overlaps.

Everything is numpy + stdlib and deterministic for a given (line, kind, seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rtperformer.learn.data.scores import Line

KINDS = ("expressive", "deadpan", "flat")
DEADPAN_VELOCITY = 80
CC_STEP_S = 0.04  # CC11 curve resolution
VIBRATO_MIN_NOTE_S = 0.3


@dataclass
class Vibrato:
    delay: float  # seconds after the onset where vibrato starts
    ramp: float  # seconds to full depth
    rate: float  # Hz
    depth: float  # cents (peak)
    phase: float  # radians


@dataclass
class PNote:
    start: float
    end: float
    pitch: int
    velocity: int
    vibrato: Vibrato | None = None


@dataclass
class Performance:
    """Timed notes (seconds), CC11 points (time, value 0-127; empty = none sent) and total length."""

    notes: list[PNote]
    cc11: list[tuple[float, int]] = field(default_factory=list)
    duration: float = 0.0

    def notes_array(self) -> np.ndarray:
        """(N, 4) float64 rows [start, end, pitch, velocity]."""
        if not self.notes:
            return np.zeros((0, 4))
        return np.array([[n.start, n.end, n.pitch, n.velocity] for n in self.notes], dtype=np.float64)

    def cc_array(self) -> np.ndarray:
        """(M, 2) float64 rows [time, value]."""
        return np.array(self.cc11, dtype=np.float64).reshape(-1, 2)


def _phrases(line: Line, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Phrase spans in quarter lengths: cut at rests >= 1/2 beat, fermatas, and every 8-24 beats."""
    notes = line.notes
    cuts = [0.0]
    prev_end = 0.0
    for i, n in enumerate(notes):
        if n.onset - prev_end >= 0.5 and n.onset > cuts[-1]:
            cuts.append(n.onset)
        prev_end = max(prev_end, n.onset + n.dur)
        if n.fermata and i + 1 < len(notes) and notes[i + 1].onset > cuts[-1]:
            cuts.append(notes[i + 1].onset)
    end = line.quarter_length
    cuts.append(end)
    spans = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        while b - a > 24:
            step = float(rng.choice([8.0, 12.0, 16.0]))
            spans.append((a, a + step))
            a += step
        if b > a:
            spans.append((a, b))
    return spans


def _time_map(line: Line, phrases, rng, expressive: bool):
    """Return f(ql array) -> seconds: tempo with phrase-final ritardandi and fermata holds."""
    spb = 60.0 / line.bpm
    if not expressive:
        return lambda q: np.asarray(q, dtype=np.float64) * spb
    spb *= float(rng.uniform(0.94, 1.06))
    grid = np.arange(0.0, line.quarter_length + 1.0, 0.125)  # piecewise-constant local tempo
    factor = np.ones_like(grid)
    for a, b in phrases:
        length = b - a
        rit = min(2.0, 0.25 * length)
        amount = float(rng.uniform(0.05, 0.2))
        sel = (grid >= b - rit) & (grid < b)
        factor[sel] += amount * ((grid[sel] - (b - rit)) / max(rit, 1e-6)) ** 2
        factor[(grid >= a) & (grid < b)] *= float(rng.uniform(0.97, 1.03))
    for n in line.notes:
        if n.fermata:
            sel = (grid >= n.onset) & (grid < n.onset + n.dur)
            factor[sel] *= float(rng.uniform(1.6, 2.2))
    seconds = np.concatenate([[0.0], np.cumsum(factor * 0.125 * spb)])
    knots = np.concatenate([grid, [grid[-1] + 0.125]])
    return lambda q: np.interp(np.asarray(q, dtype=np.float64), knots, seconds)


def _arc(u: np.ndarray, peak_at: float) -> np.ndarray:
    """0..1..0 arc over u in [0,1] with its maximum at ``peak_at``."""
    left = np.clip(u / max(peak_at, 1e-3), 0, 1)
    right = np.clip((1 - u) / max(1 - peak_at, 1e-3), 0, 1)
    return np.where(u < peak_at, np.sin(0.5 * np.pi * left), np.sin(0.5 * np.pi * right))


def perform(line: Line, kind: str, seed: int) -> Performance:
    """Render ``line`` as ``kind`` (expressive|flat|deadpan); same (line, kind, seed) -> same result.

    ``flat`` uses the same random draws as ``expressive`` (only CC11 differs).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown render kind {kind!r}")
    rng = np.random.default_rng(seed)
    expressive = kind != "deadpan"
    phrases = _phrases(line, rng)
    tmap = _time_map(line, phrases, rng, expressive)
    notes = line.notes
    onsets_q = np.array([n.onset for n in notes])
    ends_q = np.array([n.onset + n.dur for n in notes])
    on_s = tmap(onsets_q)
    end_s = tmap(ends_q)

    if not expressive:
        pn = [PNote(float(on_s[i]), float(end_s[i]), p, DEADPAN_VELOCITY)
              for i, n in enumerate(notes) for p in n.pitches]
        pn.sort(key=lambda x: (x.start, x.pitch))
        return Performance(pn, [], float(end_s.max()) if len(end_s) else 0.0)

    # ---- dynamics: piece level, phrase arcs, swells on long notes (a CC11 curve over time) ----
    base = float(rng.uniform(-12, 6))
    total_s = float(end_s.max())
    t_grid = np.arange(0.0, total_s + CC_STEP_S, CC_STEP_S)
    cc = np.full_like(t_grid, 100.0 + base)
    for a, b in phrases:
        sa, sb = float(tmap(a)), float(tmap(b))
        sel = (t_grid >= sa) & (t_grid < sb)
        if not sel.any():
            continue
        u = (t_grid[sel] - sa) / max(sb - sa, 1e-6)
        floor = float(rng.uniform(62, 92)) + base
        peak = min(127.0, floor + float(rng.uniform(18, 45)))
        cc[sel] = floor + (peak - floor) * _arc(u, float(rng.uniform(0.35, 0.75)))
    for i, n in enumerate(notes):
        d = end_s[i] - on_s[i]
        if d >= 0.8 and rng.random() < 0.6:
            sel = (t_grid >= on_s[i]) & (t_grid < end_s[i])
            u = (t_grid[sel] - on_s[i]) / d
            cc[sel] += float(rng.uniform(8, 22)) * np.sin(np.pi * u) ** 1.5
    cc = np.clip(np.round(cc), 20, 127).astype(int)
    cc_points: list[tuple[float, int]] = []
    for t, v in zip(t_grid, cc):
        if not cc_points or cc_points[-1][1] != v:
            cc_points.append((round(float(t), 5), int(v)))

    # ---- velocity from metric position and the phrase level ----
    cc_at_on = np.interp(on_s, t_grid, cc)
    bs = np.array([n.beat_strength for n in notes])
    metric = np.select([bs >= 1.0, bs >= 0.5, bs >= 0.25], [96.0, 84.0, 74.0], 66.0)
    vel = metric + 0.25 * (cc_at_on - 100.0) + rng.normal(0.0, 4.0, len(notes))
    vel = np.clip(np.round(vel), 30, 127).astype(int)

    # ---- timing: onset jitter (chord notes share it, with a small spread), articulation ----
    jitter = rng.normal(0.0, 0.008, len(notes))
    jitter[0] = abs(jitter[0])
    starts = np.maximum(on_s + jitter, 0.0)
    phrase_legato = {i: float(rng.uniform(0.6, 1.0)) for i in range(len(phrases))}
    phrase_of = np.searchsorted(np.array([b for _, b in phrases]), onsets_q, side="right")
    by_onset: dict[float, list[int]] = {}
    for i, q in enumerate(onsets_q):
        by_onset.setdefault(round(float(q), 4), []).append(i)
    vib_rate = float(rng.uniform(5.0, 6.5))
    vib_depth = float(rng.uniform(10.0, 28.0))
    pn = []
    for i, n in enumerate(notes):
        nxt = by_onset.get(round(float(ends_q[i]), 4))
        legato_p = phrase_legato.get(int(min(phrase_of[i], len(phrases) - 1)), 0.8)
        start = float(starts[i])
        if nxt:
            nxt_start = float(min(starts[j] for j in nxt))
            same = any(set(notes[j].pitches) & set(n.pitches) for j in nxt)
            if same:
                end = nxt_start - float(rng.uniform(0.02, 0.05))
            elif rng.random() < legato_p:
                end = nxt_start + float(rng.uniform(0.02, 0.06))  # legato overlap
            else:
                end = start + (nxt_start - start) * float(rng.uniform(0.7, 0.92))
        else:
            end = float(end_s[i]) + float(jitter[i]) * 0.5
        end = max(end, start + 0.04)
        spread = rng.uniform(0.0, 0.012, len(n.pitches)) if len(n.pitches) > 1 else [0.0]
        for k, p in enumerate(n.pitches):
            s = start + float(spread[k])
            vib = None
            if end - s > VIBRATO_MIN_NOTE_S:
                vib = Vibrato(delay=float(rng.uniform(0.18, 0.35)), ramp=float(rng.uniform(0.15, 0.35)),
                              rate=vib_rate * float(rng.uniform(0.93, 1.07)),
                              depth=vib_depth * float(rng.uniform(0.7, 1.3)),
                              phase=float(rng.uniform(0, 2 * math.pi)))
            pn.append(PNote(round(s, 5), round(end, 5), int(p), int(vel[i]), vib))
    pn.sort(key=lambda x: (x.start, x.pitch))
    pn = _fix_same_pitch_overlaps(pn)
    duration = max(x.end for x in pn)
    if kind == "flat":
        cc_points = [(0.0, 127)]
    return Performance(pn, cc_points, duration)


def _fix_same_pitch_overlaps(notes: list[PNote]) -> list[PNote]:
    """A pitch sounds once at a time: cut a note where the next note of the same pitch starts."""
    last: dict[int, PNote] = {}
    out = []
    for n in notes:
        prev = last.get(n.pitch)
        if prev is not None and prev.end > n.start - 0.01:
            prev.end = max(prev.start + 0.02, n.start - 0.01)
            if n.start <= prev.start:
                continue
        last[n.pitch] = n
        out.append(n)
    return out
