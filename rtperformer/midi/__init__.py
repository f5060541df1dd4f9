"""MIDI input: files to notes (score.py) and sample-stamped events (events.py). Never imports torch."""

from rtperformer.midi.events import MidiEvent, score_events, timeline
from rtperformer.midi.score import GM_PROGRAMS, PROGRAM_INSTRUMENTS, Control, Note, ProgramChange, Score, read_midi

__all__ = [
    "GM_PROGRAMS",
    "PROGRAM_INSTRUMENTS",
    "Control",
    "MidiEvent",
    "Note",
    "ProgramChange",
    "Score",
    "read_midi",
    "score_events",
    "timeline",
]
