"""The MIDI thread's queue to the render thread, which never loses a release.

:class:`MidiQueue` wraps a preallocated :class:`~rtperformer.audio.ring.EventRing` (same ``push``/``pop``)
with one policy, so that a flood can delay or drop notes but never leave one stuck:

- the last ``reserve`` slots (a quarter of the queue) take only releases (note-off, note-on velocity 0,
  sustain up, all notes off, all sound off, reset all controllers; :func:`rtperformer.midi.decode.is_release`):
  a flood of note-ons and controllers fills the queue only up to the reserve and is dropped (counted in
  ``dropped``) from there;
- a release that finds even the reserve full is not lost but coalesced: its channel is marked, and the
  next :meth:`pop` that finds the queue empty returns "sustain up, all notes off" for each marked channel
  (so at worst every note of that channel ends a few milliseconds late, never stuck).

Both sides are lock-free and allocation-free on the MIDI side (single producer, single consumer).
"""

from __future__ import annotations

from rtperformer.audio.ring import EventRing
from rtperformer.midi.decode import is_release, release_all
from rtperformer.midi.events import MidiEvent


class MidiQueue:
    """SPSC queue of stamped MIDI messages (at most 3 bytes) that never loses a release (see module doc).

    ``capacity``: messages (>= 4); ``push(sample_time, message, wall)`` on the MIDI thread, ``pop()`` -> a
    :class:`~rtperformer.midi.events.MidiEvent` or ``None`` on the render thread.
    """

    def __init__(self, capacity: int = 4096):
        if capacity < 4:
            raise ValueError("the MIDI event queue needs at least 4 slots")
        self.ring = EventRing(int(capacity))
        self.capacity = self.ring.capacity
        self.reserve = max(2, self.capacity // 4)
        self.dropped = 0  # non-release messages dropped for lack of space (producer)
        self.coalesced = 0  # releases that did not fit and became a channel-wide release (producer)
        self._lost = [0] * 16  # producer: releases lost per channel
        self._served = [0] * 16  # consumer: lost releases answered per channel
        self._panic = 0  # watcher thread: requests to release every channel
        self._panic_served = 0  # consumer
        self._extra: list[MidiEvent] = []  # consumer: synthesized releases to hand out
        self._last_stamp = 0

    def __len__(self) -> int:
        return len(self.ring)

    def push(self, sample_time: int, message, wall: float = 0.0) -> bool:
        """Queue one message (1-3 ints; longer ones are ignored). False when it was dropped or coalesced."""
        size = len(message)
        if size == 0 or size > 3:
            return False
        free = self.capacity - len(self.ring)
        if free <= self.reserve:
            if not is_release(message):
                self.dropped += 1
                return False
            if free > 0 and self.ring.push(sample_time, message, wall):
                return True
            self._lost[message[0] & 0x0F] += 1
            self.coalesced += 1
            return False
        return self.ring.push(sample_time, message, wall)

    def release_all_channels(self) -> None:
        """Ask the consumer to release every note and the pedal on all 16 channels (a lost port). Safe from
        one thread other than the producer (it writes only its own counter); served like a coalesced
        release, after what is already queued."""
        self._panic += 1

    def pop(self) -> MidiEvent | None:
        """Next event; when the queue is empty, the releases owed for coalesced ones; ``None`` when there is
        nothing."""
        item = self.ring.pop()
        if item is not None:
            self._last_stamp = item[0]
            return MidiEvent._make(item)
        if not self._extra:
            panic = self._panic
            everything = panic != self._panic_served
            self._panic_served = panic
            for ch in range(16):
                lost = self._lost[ch]
                if lost != self._served[ch] or everything:
                    self._served[ch] = lost
                    self._extra.extend(MidiEvent(self._last_stamp, m) for m in release_all(ch))
            if not self._extra:
                return None
            self._extra.reverse()
        return self._extra.pop()
