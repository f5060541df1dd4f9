"""Notes -> frames of the rolls: :class:`RollPainter` paints frame ranges of :class:`~rtperformer.roll.rolls.Rolls`
from a :class:`~rtperformer.roll.tracker.NoteTracker`, carrying the previous frame (offsets, position counters)
across calls; :class:`BendSpec` says how pitch bend and the mod wheel (a triangle LFO) make the bend row.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtperformer.roll.rolls import N_PITCHES, POS_NONE, Rolls, advance_positions
from rtperformer.roll.tracker import NoteTracker


@dataclass(frozen=True)
class BendSpec:
    """How MIDI becomes the bend row: ``bend_range`` semitones at full pitch bend; the mod wheel's vibrato
    ``mod_cents`` deep at CC1 127, ``mod_hz`` Hz; ``frame_rate`` frames per second (the LFO's clock)."""

    bend_range: float = 2.0
    mod_cents: float = 50.0
    mod_hz: float = 8.176
    frame_rate: float = 48000 / 256


def bend_spec(model_cfg: Any, audio_cfg: Any, bend_range: float = 2.0) -> BendSpec:
    """The :class:`BendSpec` of a model config (its mod-wheel vibrato) at ``audio_cfg``'s frame rate."""
    return BendSpec(float(bend_range), float(getattr(model_cfg, "mod_vibrato_cents", 50.0)),
                    float(getattr(model_cfg, "mod_vibrato_hz", 8.176)), float(audio_cfg.sample_rate) / audio_cfg.hop)


def triangle(cycles: float) -> float:
    """FluidSynth's LFO shape: 0 at 0, +1 at 1/4, -1 at 3/4 of a cycle."""
    return 4.0 * abs((cycles - 0.25) % 1.0 - 0.5) - 1.0


class RollPainter:
    """Writes frames [a, b) of the rolls from a tracker's notes; carries the previous frame across calls.

    ``paint(tracker, a, b, rolls)`` fills ``rolls`` (arrays with >= b - a columns; column 0 is frame a).
    Calls must cover consecutive ranges starting at frame 0 (that is what makes -1 offsets right at
    window seams).
    """

    def __init__(self, bend: BendSpec | None = None):
        self.bend = bend or BendSpec()
        self.last_held: list[tuple[int, int]] = []  # (channel, onset frame) of the notes held last
        self.prev = np.zeros(N_PITCHES, np.float32)  # roll column of frame a-1
        self.onset_c = np.full(N_PITCHES, POS_NONE, np.uint8)  # position counters of frame a-1
        self.release_c = np.full(N_PITCHES, POS_NONE, np.uint8)

    def reset(self) -> None:
        self.prev[:] = 0.0
        self.onset_c[:] = POS_NONE
        self.release_c[:] = POS_NONE
        self.last_held = []

    def paint(self, tracker: NoteTracker, a: int, b: int, r: Rolls) -> None:
        n = b - a
        roll, onoff, vel, expr = r.roll[:, :n], r.onoff[:, :n], r.velocity[:, :n], r.expression[:, :n]
        roll[:] = 0.0
        onoff[:] = 0.0
        vel[:] = 0.0
        notes = [x for x in tracker.closed if x.end > a and x.start < b]
        notes += [x for x in tracker.open.values() if x.start < b]
        notes.sort(key=lambda x: x.seq)  # later notes overwrite the velocity of earlier ones
        for x in notes:
            s = max(x.start, a) - a
            e = (min(x.end, b) if x.end >= 0 else b) - a
            roll[x.pitch, s:e] = 1.0
            vel[x.pitch, s:e] = x.vel
        # Offsets: first frame off after a frame on (the frame before a is carried over).
        if n:
            onoff[:, 0] = -(self.prev * (1.0 - roll[:, 0]))
            if n > 1:
                onoff[:, 1:] = -(roll[:, :-1] * (1.0 - roll[:, 1:]))
            self.prev[:] = roll[:, n - 1]
        for x in notes:
            if a <= x.start < b:
                onoff[x.pitch, x.start - a] = 1.0
        if r.position is not None:
            advance_positions(roll, onoff, self.onset_c, self.release_c, r.position[:, :n])
        # Expression: step function.
        changes = tracker.expr_changes
        value = changes[0][1]
        pos = 0
        for f, v in changes:
            if f > a:
                stop = min(f, b) - a
                expr[0, pos:stop] = value
                pos = stop
                if f >= b:
                    break
            value = v
        expr[0, pos:n] = value
        if r.bend is not None:
            self._paint_bend(tracker, notes, a, b, r.bend[0, :n])

    def _paint_bend(self, tracker: NoteTracker, notes: list, a: int, b: int, out: np.ndarray) -> None:
        """The bend row of frames [a, b) into ``out`` (b - a,) (see the module docstring)."""
        if not tracker.bend_active:  # no bend or CC1 yet: 0, only the notes held last are kept up to date
            out[:] = 0.0
            last = -1  # the last frame of [a, b) with a note held
            for x in notes:
                e = b if x.end < 0 else min(x.end, b)
                if e - 1 >= max(a, x.start):
                    last = max(last, e - 1)
            if last >= 0:
                self.last_held = [(x.channel, x.start) for x in notes
                                  if x.start <= last and (x.end < 0 or last < x.end)]
            return
        spec = self.bend
        depth = spec.mod_cents / 100.0
        per_frame = spec.mod_hz / spec.frame_rate
        bsteps, msteps = tracker.bend_steps, tracker.mod_steps

        def at(steps: list[tuple[int, float]], t: int) -> float:
            if len(steps) == 1 or steps[1][0] > t:
                return steps[0][1]
            return steps[bisect_right(steps, t, key=lambda s: s[0]) - 1][1]

        for t in range(a, b):
            held = [(x.channel, x.start) for x in notes if x.start <= t and (x.end < 0 or t < x.end)]
            if held:
                self.last_held = held
            else:
                held = self.last_held
            if not held:
                out[t - a] = 0.0
                continue
            total = 0.0
            for ch, start in held:
                v = at(bsteps[ch], t)
                m = at(msteps[ch], t)
                if m:
                    v += m * depth * triangle((t - start) * per_frame)
                total += v
            out[t - a] = total / len(held)
