"""MIDI messages at frames -> note intervals, pedal, expression and bend steps: :class:`NoteTracker`, shared by
the whole-clip rolls (notes.py), the pianoroll (pianoroll.py) and the corpus's bend rows, so they agree.

Event semantics: note-on with velocity 0 is a note-off; a note-on of a held pitch from the same source (track,
channel) ends the held note and starts a new one; CC64 >= 64 holds released keys until the pedal lifts (or the
key is struck again); CC123 releases all keys of the channel (the pedal still holds them); CC120 silences the
channel at once; CC121 resets expression to 1.0, pitch bend and mod wheel to 0 and lifts the pedal. Pitch
bend (+-``bend_range`` semitones) and CC1 act on their channel from their frame on.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Hashable

from rtperformer.midi.decode import (
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    CC_EXPRESSION,
    CC_MODULATION,
    CC_RESET_ALL_CONTROLLERS,
    CC_SUSTAIN,
    CONTROL,
    Message,
    NOTE_OFF,
    NOTE_ON,
    PITCH_BEND,
    decode,
)
from rtperformer.roll.rolls import NOMINAL_VELOCITY


class _Note:
    __slots__ = ("pitch", "start", "end", "vel", "seq", "channel", "key_down")

    def __init__(self, pitch: int, start: int, vel: float, seq: int, channel: int):
        self.pitch = pitch
        self.start = start
        self.end = -1  # -1 while sounding
        self.vel = vel
        self.seq = seq
        self.channel = channel
        self.key_down = True


class NoteTracker:
    """Raw MIDI messages (in frame time, in order) -> note intervals and expression changes.

    ``feed(frame, data, source)``: apply one message at ``frame`` (frames must not decrease). Notes are
    keyed by ``(source, pitch)``, the source telling apart tracks that share a channel (``(track,
    channel)`` offline; the channel live); controllers act on every source of their channel. ``closed`` holds ended
    notes, ``open`` sounding ones, ``expr_changes`` a list of (frame, value) steps; ``bend_steps[ch]``
    (semitones, +-``bend_range`` at full bend) and ``mod_steps[ch]`` (CC1/127) lists of (frame, value) steps.
    """

    def __init__(self, velocity_sensitive: bool = True, bend_range: float = 2.0):
        self.velocity_sensitive = velocity_sensitive
        self.bend_range = float(bend_range)
        self.reset()

    def reset(self) -> None:
        self.open: dict[tuple[Hashable, int], _Note] = {}
        self.closed: list[_Note] = []
        self.sustain = [False] * 16
        self.expr = [1.0] * 16
        self.seen = [False] * 16
        self.expression = 1.0
        self.expr_changes: list[tuple[int, float]] = [(0, 1.0)]
        self.bend_steps: list[list[tuple[int, float]]] = [[(0, 0.0)] for _ in range(16)]
        self.mod_steps: list[list[tuple[int, float]]] = [[(0, 0.0)] for _ in range(16)]
        self.bend_active = False  # any pitch bend or CC1 other than 0 seen (else the bend row is 0)
        self._seq = 0

    # -- notes ---------------------------------------------------------------------------------------
    def _close(self, key, note: _Note, frame: int) -> None:
        note.end = max(frame, note.start + 1)
        del self.open[key]
        self.closed.append(note)

    def _note_on(self, frame: int, source, ch: int, pitch: int, vel: int) -> None:
        key = (source, pitch)
        held = self.open.get(key)
        if held is not None:
            self._close(key, held, frame)
        v = (vel if self.velocity_sensitive else NOMINAL_VELOCITY) / 127.0
        self.open[key] = _Note(pitch, frame, v, self._seq, ch)
        self._seq += 1

    def _note_off(self, frame: int, source, ch: int, pitch: int) -> None:
        key = (source, pitch)
        note = self.open.get(key)
        if note is None or not note.key_down:
            return
        if self.sustain[ch]:
            note.key_down = False
        else:
            self._close(key, note, frame)

    def _channel_notes(self, ch: int):
        return [(k, n) for k, n in self.open.items() if n.channel == ch]

    # -- controllers ---------------------------------------------------------------------------------
    def _set_expression(self, frame: int) -> None:
        vals = [e for e, s in zip(self.expr, self.seen) if s]
        value = max(vals) if vals else 1.0
        if value != self.expression:
            self.expression = value
            if self.expr_changes and self.expr_changes[-1][0] == frame:
                self.expr_changes[-1] = (frame, value)
            else:
                self.expr_changes.append((frame, value))

    def _step(self, steps: list[tuple[int, float]], frame: int, value: float) -> None:
        if value != 0.0:
            self.bend_active = True
        if steps[-1][0] == frame:
            steps[-1] = (frame, value)
        elif steps[-1][1] != value:
            steps.append((frame, value))

    def _see(self, frame: int, ch: int) -> None:
        if not self.seen[ch]:
            self.seen[ch] = True
            self._set_expression(frame)

    def _sustain(self, frame: int, ch: int, down: bool) -> None:
        self.sustain[ch] = down
        if not down:
            for k, n in self._channel_notes(ch):
                if not n.key_down:
                    self._close(k, n, frame)

    def _control(self, frame: int, ch: int, number: int, value: int) -> None:
        if number == CC_SUSTAIN:
            self._sustain(frame, ch, value >= 64)
        elif number == CC_EXPRESSION:
            self.expr[ch] = value / 127.0
            self._set_expression(frame)
        elif number == CC_ALL_SOUND_OFF:
            for k, n in self._channel_notes(ch):
                self._close(k, n, frame)
        elif number == CC_ALL_NOTES_OFF:
            for k, n in self._channel_notes(ch):
                if n.key_down:
                    if self.sustain[ch]:
                        n.key_down = False
                    else:
                        self._close(k, n, frame)
        elif number == CC_MODULATION:
            self._step(self.mod_steps[ch], frame, value / 127.0)
        elif number == CC_RESET_ALL_CONTROLLERS:
            self.expr[ch] = 1.0
            self._set_expression(frame)
            self._step(self.bend_steps[ch], frame, 0.0)
            self._step(self.mod_steps[ch], frame, 0.0)
            self._sustain(frame, ch, False)

    def feed(self, frame: int, data: bytes, source: Hashable = None) -> None:
        """Apply one raw message; ``source`` defaults to the message's channel. Malformed messages
        (:func:`rtperformer.midi.decode.decode` returns None) and other kinds are ignored."""
        m = decode(data)
        if m is not None:
            self.apply(frame, m, source)

    def apply(self, frame: int, m: Message, source: Hashable = None) -> None:
        """Apply one decoded message (as :meth:`feed`, for a caller that has decoded it already)."""
        ch = m.channel
        source = ch if source is None else source
        if m.kind == NOTE_ON:
            self._see(frame, ch)
            self._note_on(frame, source, ch, m.a, m.b)
        elif m.kind == NOTE_OFF:
            self._note_off(frame, source, ch, m.a)
        elif m.kind == CONTROL:
            self._see(frame, ch)
            self._control(frame, ch, m.a, m.b)
        elif m.kind == PITCH_BEND:
            self._step(self.bend_steps[ch], frame, m.a / 8192.0 * self.bend_range)

    def forget_before(self, frame: int) -> None:
        """Drop closed notes and expression steps that can no longer affect frames >= ``frame``."""
        if self.closed and min(n.end for n in self.closed) <= frame:
            self.closed = [n for n in self.closed if n.end > frame]
        ch = self.expr_changes
        i = 0
        while i + 1 < len(ch) and ch[i + 1][0] <= frame:
            i += 1
        if i:
            del ch[:i]
        for steps in self.bend_steps + self.mod_steps:
            if len(steps) > 1 and steps[1][0] <= frame:
                j = bisect_right(steps, frame, key=lambda s: s[0]) - 1
                del steps[:j]
