"""Whole clips: notes and controller changes (seconds) -> :class:`~rtperformer.roll.rolls.Rolls`, through the
same tracker and painter as the pianoroll (training data, evaluation, tests).
"""

from __future__ import annotations

from typing import Any, Iterable

from rtperformer.midi.events import timeline
from rtperformer.roll.painter import BendSpec, RollPainter
from rtperformer.roll.rolls import Rolls, n_frames_for, seconds_to_frame
from rtperformer.roll.tracker import NoteTracker


def tracker_from_notes(
    notes: Iterable[Any], controls: Iterable[Any], audio_cfg: Any, velocity_sensitive: bool = True,
    bend_range: float = 2.0,
) -> NoteTracker:
    """A :class:`NoteTracker` fed with every note and control (seconds) of a score, in canonical order."""
    tracker = NoteTracker(velocity_sensitive, bend_range)
    for msg in timeline(notes, controls):
        tracker.feed(seconds_to_frame(msg.time, audio_cfg), msg.data, msg.source)
    return tracker


def notes_to_rolls(
    notes: Iterable[Any],
    controls: Iterable[Any] = (),
    audio_cfg: Any = None,
    n_frames: int | None = None,
    velocity_sensitive: bool = True,
    bend: BendSpec | None = None,
) -> Rolls:
    """Rolls (each (128 or 1, T)) of notes and controller changes at ``audio_cfg``'s frame rate.

    ``notes``: objects with start, end (seconds), pitch, velocity, optional channel and track (e.g.
    :class:`rtperformer.midi.score.Note`); ``controls``: objects with time, channel, number, value.
    ``n_frames``: T; default covers the last note end or control (``n_frames_for(end, audio_cfg)``).
    """
    notes = list(notes)
    controls = list(controls)
    spec = bend or BendSpec(frame_rate=audio_cfg.sample_rate / audio_cfg.hop)
    tracker = tracker_from_notes(notes, controls, audio_cfg, velocity_sensitive, spec.bend_range)
    if n_frames is None:
        end = max([n.end for n in notes] + [c.time for c in controls] + [0.0])
        n_frames = n_frames_for(end, audio_cfg)
    rolls = Rolls.zeros(n_frames)
    RollPainter(spec).paint(tracker, 0, n_frames, rolls)
    return rolls


def score_to_rolls(
    score: Any,
    audio_cfg: Any,
    n_frames: int | None = None,
    velocity_sensitive: bool = True,
    parts: Iterable[tuple[int, int]] | None = None,
    bend: BendSpec | None = None,
) -> Rolls:
    """Rolls of a :class:`rtperformer.midi.score.Score`, optionally only the (track, channel) ``parts``.

    Controls apply to a part when they come from its channel (any track).
    """
    notes, controls = select_parts(score, parts)
    return notes_to_rolls(notes, controls, audio_cfg, n_frames, velocity_sensitive, bend)


def select_parts(score: Any, parts: Iterable[tuple[int, int]] | None):
    """(notes, controls) of ``score`` restricted to (track, channel) ``parts`` (None: everything)."""
    if parts is None:
        return list(score.notes), list(score.controls)
    keep = set(parts)
    channels = {ch for _, ch in keep}
    notes = [n for n in score.notes if (n.track, n.channel) in keep]
    controls = [c for c in score.controls if c.channel in channels]
    return notes, controls
