"""Read a Standard MIDI File into notes and controller changes in seconds (mido; no torch).

Tempo changes are honoured (type 0/1: one tempo map for the whole file, from whichever track holds the
``set_tempo`` events; type 2: each track its own). A note-on of a pitch already held on the same track and
channel ends the held note and starts a new one (a re-strike); a note-on with velocity 0 is a note-off;
a note-off without a held note is ignored; notes still held at the end of the file end there. Sustain
(CC64) and expression (CC11) are kept as :class:`Control` changes; rtperformer/roll/rolls.py applies them.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path

from rtperformer.errors import UserError
from rtperformer.midi.events import PITCH_WHEEL

# General MIDI programs (0-based) of the instruments we have models for.
GM_PROGRAMS = {"violin": 40, "cello": 42, "flute": 73}
PROGRAM_INSTRUMENTS = {p: name for name, p in GM_PROGRAMS.items()}
INSTRUMENTS = tuple(GM_PROGRAMS)  # ("violin", "cello", "flute")
DRUM_CHANNEL = 9

# -- arranging: which of our instruments plays a part ---------------------------------------------------
# Playable ranges (MIDI pitches, inclusive) and the centre of each instrument's usual register.
RANGES = {"violin": (55, 100), "cello": (36, 81), "flute": (60, 96)}
CENTRES = {"violin": 74, "cello": 55, "flute": 79}
# GM families (0-based programs) -> the instruments that may play them. Two candidates: the part's
# register decides (see choose_instrument). Strings 40-47 and ensembles 48-51 go to violin or cello
# (40/41 violin/viola and 42/43 cello/contrabass are fixed); pipes and reeds 64-79 go to the flute.
FAMILIES: dict[int, tuple[str, ...]] = {
    **{p: ("violin", "cello") for p in range(44, 52)},
    40: ("violin",), 41: ("violin",), 42: ("cello",), 43: ("cello",),
    **{p: ("flute",) for p in range(64, 80)},
}
# Live (no register known when a program change arrives): the usual register of each program.
LIVE_DEFAULTS = {47: "cello"}  # timpani sit low; every other two-way program plays violin


def live_instrument(program: int) -> str | None:
    """The instrument a live program change selects (None: not one of our families)."""
    cands = FAMILIES.get(int(program))
    if not cands:
        return None
    return LIVE_DEFAULTS.get(int(program), cands[0]) if len(cands) > 1 else cands[0]


def in_range(pitches, instrument: str) -> int:
    """How many of ``pitches`` lie in ``instrument``'s playable range."""
    lo, hi = RANGES[instrument]
    return sum(lo <= p <= hi for p in pitches)


def choose_instrument(candidates: tuple[str, ...], pitches: list[int]) -> str:
    """The candidate that can play most of ``pitches`` in range; ties go to the one whose usual register
    (CENTRES) is nearest the part's median pitch."""
    if len(candidates) == 1 or not pitches:
        return candidates[0]
    med = sorted(pitches)[len(pitches) // 2]
    return max(candidates, key=lambda c: (in_range(pitches, c), -abs(med - CENTRES[c])))


def by_register(pitches: list[int]) -> str:
    """For a part with no string or wind program (e.g. a file without program changes): violin or cello
    by register, as :func:`choose_instrument` decides between them."""
    return choose_instrument(("violin", "cello"), pitches)


def fit_pitch(pitch: int, instrument: str) -> int:
    """``pitch`` moved by whole octaves into ``instrument``'s range (unchanged when already in it)."""
    lo, hi = RANGES[instrument]
    while pitch < lo:
        pitch += 12
    while pitch > hi:
        pitch -= 12
    return pitch


@dataclass(frozen=True)
class Note:
    """One note: ``start``/``end`` in seconds (end >= start), MIDI ``pitch`` and ``velocity`` (1-127)."""

    start: float
    end: float
    pitch: int
    velocity: int
    channel: int = 0
    program: int = 0
    track: int = 0


@dataclass(frozen=True)
class Control:
    """A controller change (``number`` 0-127, ``value`` 0-127) at ``time`` seconds, or a pitch bend
    (``number`` :data:`rtperformer.midi.events.PITCH_WHEEL`, ``value`` -8192..8191)."""

    time: float
    channel: int
    number: int
    value: int
    track: int = 0


@dataclass(frozen=True)
class ProgramChange:
    time: float
    channel: int
    program: int
    track: int = 0


@dataclass
class Score:
    """A MIDI file as notes (sorted by start), controls and program changes, times in seconds.

    ``duration``: the end of the last note or controller change (trailing meta events do not count).
    """

    notes: list[Note]
    controls: list[Control] = field(default_factory=list)
    programs: list[ProgramChange] = field(default_factory=list)
    duration: float = 0.0
    path: str = ""
    track_names: dict[int, str] = field(default_factory=dict)

    def parts(self) -> dict[tuple[int, int], int]:
        """{(track, channel): program of its first note} for every track/channel that has notes."""
        out: dict[tuple[int, int], int] = {}
        for n in self.notes:
            out.setdefault((n.track, n.channel), n.program)
        return out


def _tempo_map(events, ticks_per_beat: int):
    """Return a function tick -> seconds for a list of (tick, tempo) changes."""
    import mido

    changes = sorted(events)
    points = [(0, 0.0, 500000)]  # (tick, seconds at tick, tempo from tick on)
    for tick, tempo in changes:
        t0, s0, tempo0 = points[-1]
        s = s0 + mido.tick2second(tick - t0, ticks_per_beat, tempo0)
        if tick == t0:
            points[-1] = (t0, s0, tempo)
        else:
            points.append((tick, s, tempo))

    ticks = [p[0] for p in points]

    def to_seconds(tick: int) -> float:
        i = bisect.bisect_right(ticks, tick) - 1
        t0, s0, tempo = points[i]
        return s0 + mido.tick2second(tick - t0, ticks_per_beat, tempo)

    return to_seconds


def _load(path: str | os.PathLike):
    import mido

    p = Path(path)
    if not p.exists():
        raise UserError(f"MIDI file not found: {path}")
    if not p.is_file():
        raise UserError(f"not a MIDI file: {path}")
    if p.stat().st_size == 0:
        raise UserError(f"MIDI file is empty: {path}")
    try:
        return mido.MidiFile(str(p), clip=True)
    except Exception as exc:  # mido raises OSError, EOFError, KeyError, ValueError, IndexError ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read MIDI file {path}: {reason}") from None


def read_midi(path: str | os.PathLike) -> Score:
    """Read ``path`` into a :class:`Score`; missing, corrupt or note-less files raise UserError."""
    mid = _load(path)
    if mid.ticks_per_beat is None or mid.ticks_per_beat <= 0:
        raise UserError(f"cannot read MIDI file {path}: unsupported time division {mid.ticks_per_beat}")

    # Absolute ticks per track, and tempo maps.
    tracks = []
    for ti, track in enumerate(mid.tracks):
        tick = 0
        msgs = []
        for msg in track:
            tick += msg.time
            msgs.append((tick, msg))
        tracks.append(msgs)
    tempos_global = [(tick, m.tempo) for msgs in tracks for tick, m in msgs if m.type == "set_tempo"]
    if mid.type == 2:
        maps = [
            _tempo_map([(t, m.tempo) for t, m in msgs if m.type == "set_tempo"], mid.ticks_per_beat)
            for msgs in tracks
        ]
    else:
        shared = _tempo_map(tempos_global, mid.ticks_per_beat)
        maps = [shared] * len(tracks)

    # One merged, time-ordered stream (stable: track order, then file order) for channel state.
    merged = []
    for ti, msgs in enumerate(tracks):
        to_s = maps[ti]
        for k, (tick, msg) in enumerate(msgs):
            # program changes first among simultaneous messages, so a note at the same tick in an
            # earlier track already gets its channel's new program
            merged.append((to_s(tick), msg.type != "program_change", ti, k, msg))
    merged.sort(key=lambda it: it[:4])

    program = [0] * 16
    held: dict[tuple[int, int, int], tuple[float, int, int]] = {}  # (track, ch, pitch) -> (start, vel, prog)
    notes: list[Note] = []
    controls: list[Control] = []
    programs: list[ProgramChange] = []
    names: dict[int, str] = {}
    restruck: dict[tuple[int, int, int], float] = {}
    end_time = 0.0
    for t, _, ti, _, msg in merged:
        typ = msg.type
        if typ == "track_name" and ti not in names:
            names[ti] = msg.name
        if msg.is_meta:
            continue
        end_time = max(end_time, t)
        if typ == "program_change":
            program[msg.channel] = msg.program
            programs.append(ProgramChange(t, msg.channel, msg.program, ti))
        elif typ == "control_change":
            controls.append(Control(t, msg.channel, msg.control, msg.value, ti))
        elif typ == "pitchwheel":
            controls.append(Control(t, msg.channel, PITCH_WHEEL, msg.pitch, ti))
        elif typ in ("note_on", "note_off"):
            key = (ti, msg.channel, msg.note)
            is_on = typ == "note_on" and msg.velocity > 0
            if not is_on and restruck.get(key) == t:
                # Some writers put [new note-on, old note-off] at one tick: the note-off belongs to the
                # note the re-strike already ended, not to the one just started.
                del restruck[key]
                continue
            if key in held:  # note-off, or a re-strike of a held pitch: the held note ends here
                start, vel, prog = held.pop(key)
                notes.append(Note(start, t, msg.note, vel, msg.channel, prog, ti))
                if is_on:
                    restruck[key] = t
            if is_on:
                held[key] = (t, msg.velocity, program[msg.channel])
    for (ti, ch, pitch), (start, vel, prog) in held.items():
        notes.append(Note(start, max(start, end_time), pitch, vel, ch, prog, ti))
    if not notes:
        raise UserError(f"MIDI file has no notes: {path}")
    notes.sort(key=lambda n: (n.start, n.track, n.channel, n.pitch))
    duration = max(max(n.end for n in notes), max((c.time for c in controls), default=0.0))
    return Score(notes, controls, programs, duration, str(path), names)
