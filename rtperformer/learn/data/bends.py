"""The corpus's pitch-bend rows: what the FluidSynth renders bent, on the model's frame grid.

The renders have vibrato by per-note pitch bend (rtperformer/learn/data/humanize.py, data/synth.py). The bend
row of a render (float32 (T,), semitones per frame, ``<kind>_bend.npy`` next to its rolls) is built by
feeding the very MIDI events FluidSynth played (:func:`rtperformer.learn.data.synth.performance_events`: one
channel per note) through the live pianoroll's tracker and painter (rtperformer/roll/rolls.py), so it follows
the same rule as a live or rendered MIDI stream: per frame, the mean over held notes of their channel's
bend; with no note held, the notes held last go on.

Corpora built before bend rows existed get them with :func:`regenerate` (``rtperformer data bends``): each
piece's score line is selected again with the build's settings (manifest), performed again from its seed
(piece.json), checked against the notes and CC11 stored with the render (a mismatch is an error: the
audio would not be what the row describes), and only the row is written; no audio is rendered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from rtperformer.atomic import atomic_write
from rtperformer.learn.data.humanize import Performance, perform
from rtperformer.learn.data.synth import BEND_RANGE_CENTS, performance_events
from rtperformer.errors import UserError
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


def regenerate(instrument: str, corpus_dir: str | Path, cache_dir: str | Path = "data/cache",
               log: Callable[[str], None] = print) -> dict:
    """Write ``<kind>_bend.npy`` for every render of ``instrument``'s corpus; returns counts.

    UserError when a piece's performance cannot be reproduced (its notes or CC11 differ from the stored
    ones) or its score line is not selected again.
    """
    from rtperformer.learn.data.corpus import BuildSettings, select_lines
    from rtperformer.learn.data.dataset import load_manifest

    corpus_dir = Path(corpus_dir)
    man = load_manifest(corpus_dir, instrument)
    st = BuildSettings(out=corpus_dir, cache_dir=Path(cache_dir), sample_rate=int(man["sample_rate"]),
                       hop=int(man["hop"]), seed=int(man["seed"]), minutes=float(man["minutes_requested"]),
                       sources=tuple(man["sources"]), jobs=1)
    lines = {line.piece_id: line for line in select_lines(instrument, st)}
    done, bent = 0, 0
    bad = []
    for p in man["pieces"]:
        line = lines.get(p["id"])
        if line is None:
            bad.append(f"{p['id']}: not selected again")
            continue
        pdir = corpus_dir / instrument / p["id"]
        for kind in p["kinds"]:
            perf = perform(line, kind, int(p["seed"]))
            with np.load(pdir / f"{kind}_rolls.npz") as z:
                notes, cc11, T = z["notes"], z["cc11"], int(z["roll"].shape[1])
            if not (np.array_equal(perf.notes_array(), notes) and np.array_equal(perf.cc_array(), cc11)):
                bad.append(f"{p['id']} ({kind}): the performance differs from the stored notes")
                continue
            row = bend_row(perf, T, st.sample_rate, st.hop)
            write_bend(pdir, kind, row)
            done += 1
            bent += int(np.any(row != 0))
    if bad:
        raise UserError(f"{instrument}: {len(bad)} render(s) not reproduced, e.g. {bad[0]}")
    log(f"{instrument}: bend rows for {done} renders ({bent} with vibrato)")
    return {"renders": done, "with_bend": bent}
