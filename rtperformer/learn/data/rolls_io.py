"""Timed notes -> model input rolls, saved next to each render.

The rolls follow rtperformer.roll.rolls (its frame rule, shared with the live pianoroll).

``<kind>_rolls.npz`` holds the Rolls arrays in exact integer form (see :func:`save_rolls`) plus the
events they came from: ``notes`` (N, 4) [start, end, pitch, velocity] seconds, ``cc11`` (M, 2)
[time, value], so a dataset with another rate or hop rebuilds the rolls exactly (:func:`rolls_from_events`).
"""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import numpy as np

from rtperformer.atomic import atomic_write
from rtperformer.roll.notes import notes_to_rolls  # noqa: F401
from rtperformer.roll.rolls import Rolls, input_channels, stack_inputs  # noqa: F401

_NOTE = namedtuple("_NOTE", "start end pitch velocity channel track")
_CC = namedtuple("_CC", "time channel number value track")
_AUDIO = namedtuple("_AUDIO", "sample_rate hop")


def rolls_from_events(notes: np.ndarray, cc11: np.ndarray, n_frames: int, sample_rate: int, hop: int) -> Rolls:
    """Rolls (T = n_frames) from notes (N, 4) [start, end, pitch, velocity] and cc11 (M, 2) [time, value].

    Uses :func:`rtperformer.roll.notes.notes_to_rolls` (the same frame rule as the live pianoroll), all on one
    MIDI channel.
    """
    ns = [_NOTE(float(a), float(b), int(p), int(v), 0, 0) for a, b, p, v in np.asarray(notes).reshape(-1, 4)]
    cs = [_CC(float(t), 0, 11, int(v), 0) for t, v in np.asarray(cc11).reshape(-1, 2)]
    return notes_to_rolls(ns, cs, _AUDIO(int(sample_rate), int(hop)), n_frames=int(n_frames))


def save_rolls(path: Path, rolls: Rolls, notes: np.ndarray, cc11: np.ndarray, frame_rate: float,
               sample_rate: int, hop: int) -> None:
    """Write ``path`` (.npz, compressed) atomically, in exact compact integer form.

    Arrays: ``roll`` uint8 {0,1}, ``onoff`` int8 {-1,0,1}, ``velocity_midi`` uint8 (velocity 0-127 while
    held), ``expression_cc`` uint8 (CC11 0-127), all (128|1, T); ``notes``, ``cc11``, ``frame_rate``,
    ``sample_rate``, ``hop``. :func:`load_rolls` returns the float32 :class:`Rolls`.
    """
    path = Path(path)
    atomic_write(path, lambda tmp: np.savez_compressed(
        tmp, roll=rolls.roll.astype(np.uint8), onoff=rolls.onoff.astype(np.int8),
        velocity_midi=np.round(rolls.velocity * 127.0).astype(np.uint8),
        expression_cc=np.round(rolls.expression * 127.0).astype(np.uint8),
        notes=np.asarray(notes, np.float64), cc11=np.asarray(cc11, np.float64),
        frame_rate=np.float64(frame_rate), sample_rate=np.int64(sample_rate), hop=np.int64(hop)), suffix=".npz")


def load_rolls(path: Path, sample_rate: int | None = None, hop: int | None = None,
               n_frames: int | None = None) -> Rolls:
    """float32 Rolls from ``path``; rebuilt from the stored events when sample_rate/hop/n_frames differ."""
    with np.load(path) as z:
        T = z["roll"].shape[1]
        same = ((sample_rate is None or int(sample_rate) == int(z["sample_rate"]))
                and (hop is None or int(hop) == int(z["hop"])) and (n_frames is None or n_frames == T))
        if same:
            return Rolls(roll=z["roll"].astype(np.float32), onoff=z["onoff"].astype(np.float32),
                         velocity=z["velocity_midi"].astype(np.float32) / 127.0,
                         expression=z["expression_cc"].astype(np.float32) / 127.0)
        return rolls_from_events(z["notes"], z["cc11"], n_frames if n_frames is not None else T,
                                 sample_rate if sample_rate is not None else int(z["sample_rate"]),
                                 hop if hop is not None else int(z["hop"]))
