"""The corpus's pitch-bend rows: what the FluidSynth renders bent, on the model's frame grid.

The renders have vibrato by per-note pitch bend (rtperformer/learn/data/humanize.py, data/synth.py). The bend
row of a render (float32 (T,), semitones per frame, ``<kind>_bend.npy`` next to its rolls) is built by
feeding the very MIDI events FluidSynth played (:func:`rtperformer.learn.data.synth.performance_events`: one
channel per note) through the pianoroll's tracker and painter (rtperformer/roll/tracker.py, painter.py), so
it follows the same rule as a live or rendered MIDI stream: per frame, the mean over held notes of their
channel's bend; with no note held, the notes held last go on.

Corpora built before bend rows existed get them with :func:`rtperformer.learn.data.corpus.regenerate_bends`
(``rtperformer data bends``): each piece's score line is selected again with the build's settings
(manifest), performed again from its seed (piece.json), checked against the notes and CC11 stored with the
render (a mismatch is an error: the audio would not be what the row describes), and only the row is
written; no audio is rendered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtperformer.atomic import atomic_write
from rtperformer.learn.data.humanize import Performance
from rtperformer.learn.data.synth import BEND_RANGE_CENTS, performance_events
from rtperformer.midi.events import note_off, note_on, pitch_bend
from rtperformer.roll.painter import BendSpec, RollPainter
from rtperformer.roll.rolls import Rolls, sample_to_frame
from rtperformer.roll.tracker import NoteTracker

BEND_SUFFIX = "_bend.npy"


def bend_path(piece_dir: Path, kind: str) -> Path:
    return Path(piece_dir) / f"{kind}{BEND_SUFFIX}"


def bend_row(perf: Performance, n_frames: int, sample_rate: int, hop: int) -> np.ndarray:
    """(n_frames,) float32 semitones: the bend row of ``perf`` as FluidSynth plays it."""
    tracker = NoteTracker(True, BEND_RANGE_CENTS / 100.0)
    for sample, _, typ, a, val in performance_events(perf, sample_rate):
        frame = sample_to_frame(sample, hop)
        if typ == 1:
            tracker.feed(frame, note_off(a // 128, a % 128))
        elif typ == 2:
            tracker.feed(frame, pitch_bend(a, val))
        elif typ == 3:
            tracker.feed(frame, note_on(a // 128, a % 128, val))
    rolls = Rolls.zeros(int(n_frames))
    RollPainter(BendSpec(bend_range=BEND_RANGE_CENTS / 100.0, frame_rate=sample_rate / hop)).paint(
        tracker, 0, int(n_frames), rolls)
    return rolls.bend[0].copy()


def write_bend(piece_dir: Path, kind: str, row: np.ndarray) -> None:
    atomic_write(bend_path(piece_dir, kind), lambda tmp: np.save(tmp, np.asarray(row, np.float32)), suffix=".npy")


def load_bend(piece_dir: Path, kind: str) -> np.ndarray | None:
    """The stored bend row (T,) float32 semitones, or None when the corpus has none."""
    p = bend_path(piece_dir, kind)
    return np.load(p) if p.is_file() else None
