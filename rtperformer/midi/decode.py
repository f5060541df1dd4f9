"""The one MIDI decoder: raw message bytes -> a checked :class:`Message`, or ``None`` for garbage.

Every consumer of MIDI bytes (the live engine, the note tracker behind the offline and live rolls, the
event queue's release rule) goes through :func:`decode`; no other module looks at status bytes.

A message is valid when its first byte is a status byte (>= 0x80), every other byte is a data byte
(< 0x80) and its length is exactly the length its status calls for (3 for note off/on, poly pressure,
control change and pitch bend; 2 for program change and channel pressure; system common and real-time
messages their own lengths). Running status (a message starting with a data byte), truncated or
over-long messages and system exclusive are invalid: :func:`decode` returns ``None`` and
:class:`DecodeStats` counts them. A note-on with velocity 0 decodes as a note-off.

stdlib only.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

# Kinds
NOTE_OFF = "note_off"
NOTE_ON = "note_on"
POLY_PRESSURE = "poly_pressure"
CONTROL = "control"
PROGRAM = "program"
CHANNEL_PRESSURE = "channel_pressure"
PITCH_BEND = "pitch_bend"
SYSTEM = "system"  # system common / real-time: valid, carries no channel, the engine ignores it

# Controllers the engine and the rolls act on
CC_MODULATION = 1
CC_VOLUME = 7
CC_EXPRESSION = 11
CC_SUSTAIN = 64
CC_ALL_SOUND_OFF = 120
CC_RESET_ALL_CONTROLLERS = 121
CC_ALL_NOTES_OFF = 123

_CHANNEL_KINDS = {0x80: (NOTE_OFF, 3), 0x90: (NOTE_ON, 3), 0xA0: (POLY_PRESSURE, 3), 0xB0: (CONTROL, 3),
                  0xC0: (PROGRAM, 2), 0xD0: (CHANNEL_PRESSURE, 2), 0xE0: (PITCH_BEND, 3)}
# System messages by status; 0xF0 (sysex), 0xF7 (its end), 0xF4/0xF5/0xF9/0xFD (undefined) are absent.
_SYSTEM_LENGTHS = {0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1, 0xF8: 1, 0xFA: 1, 0xFB: 1, 0xFC: 1, 0xFE: 1, 0xFF: 1}


class Message(NamedTuple):
    """A decoded channel message. ``a``/``b``: the data bytes by kind — note: (pitch, velocity); control:
    (number, value); program: (program, 0); channel pressure: (value, 0); pitch bend: (bend -8192..8191,
    0). ``channel`` is 0-15 (-1 for system messages)."""

    kind: str
    channel: int
    a: int
    b: int


def expected_length(status: int) -> int:
    """Bytes a message with this status byte has; 0 for a byte that does not start a short message."""
    if status < 0x80:
        return 0
    if status < 0xF0:
        return _CHANNEL_KINDS[status & 0xF0][1]
    return _SYSTEM_LENGTHS.get(status, 0)


def decode(data: Sequence[int]) -> Message | None:
    """``data`` (bytes or ints) -> :class:`Message`, or ``None`` when it is not one valid message."""
    n = len(data)
    if n == 0:
        return None
    status = data[0]
    if not 0x80 <= status <= 0xFF or n != expected_length(status):
        return None
    for i in range(1, n):
        if not 0 <= data[i] < 0x80:
            return None
    if status >= 0xF0:
        return Message(SYSTEM, -1, status, 0)
    kind = _CHANNEL_KINDS[status & 0xF0][0]
    ch = status & 0x0F
    if kind == PITCH_BEND:
        return Message(kind, ch, ((data[2] << 7) | data[1]) - 8192, 0)
    if n == 2:
        return Message(kind, ch, data[1], 0)
    if kind == NOTE_ON and data[2] == 0:
        return Message(NOTE_OFF, ch, data[1], 0)
    return Message(kind, ch, data[1], data[2])


def is_release(data: Sequence[int]) -> bool:
    """True for the messages whose loss leaves a note or the pedal stuck: note-off (or note-on velocity 0),
    sustain up, all sound off, reset all controllers, all notes off."""
    m = decode(data)
    if m is None:
        return False
    if m.kind == NOTE_OFF:
        return True
    if m.kind == CONTROL:
        return (m.a == CC_SUSTAIN and m.b < 64) or m.a in (CC_ALL_SOUND_OFF, CC_RESET_ALL_CONTROLLERS,
                                                           CC_ALL_NOTES_OFF)
    return False


def release_all(channel: int) -> list[bytes]:
    """The messages that release every note of ``channel``: sustain up, then all notes off."""
    ch = channel & 0x0F
    return [bytes((0xB0 | ch, CC_SUSTAIN, 0)), bytes((0xB0 | ch, CC_ALL_NOTES_OFF, 0))]


class DecodeStats:
    """Counts what :func:`decode` accepted and rejected (the status line's ``bad`` field)."""

    def __init__(self):
        self.valid = 0
        self.invalid = 0

    def decode(self, data: Sequence[int]) -> Message | None:
        m = decode(data)
        if m is None:
            self.invalid += 1
        else:
            self.valid += 1
        return m
