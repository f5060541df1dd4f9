"""MIDI events stamped with the audio sample clock, and the canonical event order of a score.

A :class:`MidiEvent` is the one event type: what crosses from the MIDI thread to the render thread
(rtperformer/midi/queue.py) and what the render thread schedules (rtperformer/roll/pianoroll.py): the raw
message bytes, the audio sample at which it happened and the wall-clock time it arrived. Offline,
:func:`timeline` turns notes and controller changes (seconds) into raw messages in one fixed order, and
:func:`stamp_events` / :func:`score_events` stamp them with a sample clock; the offline rolls
(rtperformer/roll/rolls.py), offline render and the live engine all consume this stream, so they agree frame
for frame.

stdlib only: no mido, no numpy, no torch.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, NamedTuple

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
PROGRAM_CHANGE = 0xC0

CC_EXPRESSION = 11
CC_SUSTAIN = 64
CC_ALL_SOUND_OFF = 120
CC_RESET_ALL_CONTROLLERS = 121
CC_ALL_NOTES_OFF = 123

# Order of simultaneous messages: note ends first, then controller changes, then note starts.
# (A re-struck note therefore ends before it starts again; a pedal pressed at the instant a key is
# released does not catch that key.)
_ORDER_OFF, _ORDER_CC, _ORDER_ON = 0, 1, 2


class MidiEvent(NamedTuple):
    """One MIDI channel message stamped with the audio sample clock.

    ``sample_time``: the audio sample (at the engine's sample rate) at which the message arrived or is due.
    ``data``: the raw message, status byte first (e.g. ``b"\\x90\\x3c\\x64"`` note-on C4 velocity 100).
    ``wall``: ``time.perf_counter()`` when it arrived (live; 0.0 offline), for the latency statistics only.
    """

    sample_time: int
    data: bytes
    wall: float = 0.0

    @property
    def message(self):
        """The decoded message (:func:`rtperformer.midi.decode.decode`), None when malformed."""
        from rtperformer.midi.decode import decode

        return decode(self.data)

    @property
    def status(self) -> int:
        """The status nibble (0x80 note off ... 0xE0 pitch bend) of a valid channel message, else 0."""
        m = self.message
        return self.data[0] & 0xF0 if m is not None and m.channel >= 0 else 0

    @property
    def channel(self) -> int:
        """MIDI channel 0-15; -1 for system or malformed messages."""
        m = self.message
        return m.channel if m is not None else -1

    @classmethod
    def from_mido(cls, msg: Any, sample_time: int) -> "MidiEvent":
        """Stamp a ``mido.Message`` (anything with ``.bytes()``) with ``sample_time``."""
        return cls(int(sample_time), bytes(msg.bytes()))


def note_on(channel: int, pitch: int, velocity: int) -> bytes:
    return bytes((NOTE_ON | (channel & 15), pitch & 127, velocity & 127))


def note_off(channel: int, pitch: int, velocity: int = 0) -> bytes:
    return bytes((NOTE_OFF | (channel & 15), pitch & 127, velocity & 127))


PITCH_WHEEL = 128  # Control.number of a pitch bend (value -8192..8191); 0-127 are controller numbers


def pitch_bend(channel: int, value: int) -> bytes:
    """A pitch-bend message, ``value`` -8192..8191 (0: centre)."""
    v = max(-8192, min(8191, int(value))) + 8192
    return bytes((0xE0 | (channel & 15), v & 127, (v >> 7) & 127))


def control_change(channel: int, number: int, value: int) -> bytes:
    return bytes((CONTROL_CHANGE | (channel & 15), number & 127, value & 127))


class TimedMessage(NamedTuple):
    """A raw message at ``time`` seconds; ``source`` ((track, channel)) tells apart tracks that share a
    channel."""

    time: float
    source: Any
    data: bytes


def timeline(notes: Iterable[Any], controls: Iterable[Any] = ()) -> list[TimedMessage]:
    """Notes and controller changes as raw messages in the canonical order.

    ``notes``: objects with ``start``, ``end`` (seconds), ``pitch``, ``velocity`` and optionally
    ``channel`` (default 0) and ``track`` (default 0). ``controls``: objects with ``time``, ``channel``,
    ``number`` (:data:`PITCH_WHEEL`: a pitch bend), ``value`` and optionally ``track``. Sorted by time; at equal times note-offs, then
    controller changes, then note-ons (a zero-length note's note-off right after its note-on); ties beyond
    that keep the input order. The source of a message is
    ``(track, channel)`` so that two tracks sharing a channel do not end each other's notes.
    """
    items = []
    i = 0
    for n in notes:
        ch = int(getattr(n, "channel", 0))
        source = (int(getattr(n, "track", 0)), ch)
        vel = max(1, min(127, int(n.velocity)))
        items.append((float(n.start), _ORDER_ON, i, 0, source, note_on(ch, int(n.pitch), vel)))
        # A zero-length note ends right after its own start (the rolls give it one frame).
        off_key = (float(n.end), _ORDER_OFF, i, 0) if n.end > n.start else (float(n.start), _ORDER_ON, i, 1)
        items.append((*off_key, source, note_off(ch, int(n.pitch))))
        i += 1
    for c in controls:
        ch = int(c.channel)
        source = (int(getattr(c, "track", 0)), ch)
        data = (pitch_bend(ch, int(c.value)) if int(c.number) == PITCH_WHEEL
                else control_change(ch, int(c.number), int(c.value)))
        items.append((float(c.time), _ORDER_CC, i, 0, source, data))
        i += 1
    items.sort(key=lambda it: it[:4])
    return [TimedMessage(t, v, d) for t, _, _, _, v, d in items]


def seconds_to_sample(seconds: float, sample_rate: int) -> int:
    """The sample clock tick of a time in seconds (rounded half up)."""
    return int(math.floor(seconds * sample_rate + 0.5))


def stamp_events(notes: Iterable[Any], controls: Iterable[Any], sample_rate: int) -> list[MidiEvent]:
    """Notes and controls (seconds, as :func:`timeline` takes them) as :class:`MidiEvent` stamped at
    ``sample_rate``, in the canonical order."""
    return [MidiEvent(seconds_to_sample(msg.time, sample_rate), msg.data) for msg in timeline(notes, controls)]


def score_events(score: Any, sample_rate: int, channels: Iterable[int] | None = None) -> list[MidiEvent]:
    """A score's notes and controls as :class:`MidiEvent` stamped at ``sample_rate``, canonical order.

    ``channels``: keep only these MIDI channels (None: all). This is the stream a live pianoroll sees
    when the score is replayed; it yields the same rolls as the offline path.
    """
    from rtperformer.midi.decode import decode

    events = stamp_events(score.notes, score.controls, sample_rate)
    if channels is None:
        return events
    keep = set(channels)
    return [e for e in events if decode(e.data).channel in keep]
