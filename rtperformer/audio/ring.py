"""Single-producer single-consumer rings over preallocated numpy storage.

One thread writes, one thread reads; neither ever blocks or locks. Positions are monotonic Python
integers: the writer only advances ``_w`` after its data is in place and the reader only advances
``_r`` after it has copied out, so under the GIL (and CPython's in-order attribute stores) each side
sees a consistent prefix of the other's work. Storage is allocated once in ``__init__``; the hot
methods copy with slice assignment and never allocate buffers.

:class:`AudioRing`: float32 frames ``(capacity, channels)``; :meth:`AudioRing.read_into` zero-fills
what it cannot serve and counts an underrun (the audio callback's side). Late audio is never skipped:
what arrives after an underrun is played, late, so being slow costs a gap and some latency, never the
audio that follows (the render side decides how far ahead to stay, rtperformer/audio/pacing.py).
:class:`EventRing`: short MIDI messages stamped with a sample time (the MIDI thread's queue to the
render thread).
"""

from __future__ import annotations

import numpy as np


class AudioRing:
    """SPSC ring of float32 audio frames, shape ``(capacity, channels)``.

    Writer: :meth:`write` (render thread, or the callback for the recording ring).
    Reader: :meth:`read_into` (audio callback) or :meth:`read` (recorder thread).
    """

    def __init__(self, capacity: int, channels: int = 1):
        if capacity < 1 or channels < 1:
            raise ValueError("ring capacity and channels must be >= 1")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self._w = 0  # frames ever written (writer only)
        self._r = 0  # frames ever read (reader only)
        self.underruns = 0  # reads that found fewer frames than asked, once anything was written (reader only)
        self.underrun_frames = 0  # zero frames served in place of audio, from the first read on (reader only)
        # Frames the reader found beyond what it took, lowest since the writer last reset it: how much
        # earlier the audio could have arrived (the render side's pacing reads and resets it).
        self.min_spare = 1 << 62
        self.overruns = 0  # writes that did not fit (writer only)
        self.dropped_frames = 0  # frames not written for lack of space (writer only)

    # -- either side -------------------------------------------------------------------------
    @property
    def fill(self) -> int:
        """Frames written and not yet read."""
        return self._w - self._r

    @property
    def space(self) -> int:
        return self.capacity - (self._w - self._r)

    @property
    def device_offset(self) -> int:
        """Device frame of ring frame i is i + device_offset (the zero frames served before it)."""
        return self.underrun_frames

    @property
    def frames_written(self) -> int:
        return self._w

    @property
    def frames_read(self) -> int:
        return self._r

    # -- writer ------------------------------------------------------------------------------
    def write(self, frames: np.ndarray) -> int:
        """Append ``frames`` ((n,) mono, broadcast to all channels, or (n, channels)).

        Returns the number written; what does not fit is dropped and counted as an overrun.
        """
        n = frames.shape[0]
        free = self.capacity - (self._w - self._r)
        if n > free:
            self.overruns += 1
            self.dropped_frames += n - free
            n = free
        if n <= 0:
            return 0
        if frames.ndim == 1:
            frames = frames[:, None]
        start = self._w % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start:start + first] = frames[:first]
        if first < n:
            self._buf[:n - first] = frames[first:n]
        self._w += n  # publish after the data is in place
        return n

    # -- reader ------------------------------------------------------------------------------
    def read_into(self, out: np.ndarray) -> int:
        """Fill ``out`` (m, channels) from the ring; zero-fill the rest and count an underrun.

        Returns the frames served from the ring. This is the audio-callback path: no allocation
        beyond slice views, no locks.
        """
        m = out.shape[0]
        avail = self._w - self._r
        if avail - m < self.min_spare:
            self.min_spare = avail - m
        n = m if avail >= m else avail
        if n > 0:
            start = self._r % self.capacity
            first = n if n <= self.capacity - start else self.capacity - start
            out[:first] = self._buf[start:start + first]
            if first < n:
                out[first:n] = self._buf[:n - first]
            self._r += n
        if n < m:
            out[n:] = 0.0
            self.underrun_frames += m - n
            if self._w:  # before the first write the silence is the start, not a failure
                self.underruns += 1
        return n

    def read(self, max_frames: int | None = None) -> np.ndarray:
        """Take up to ``max_frames`` (default: all) as a new ``(n, channels)`` array (non-RT reader)."""
        avail = self._w - self._r
        n = avail if max_frames is None else min(avail, int(max_frames))
        out = np.empty((n, self.channels), dtype=np.float32)
        if n:
            self.read_into(out)
        return out


class EventRing:
    """SPSC queue of MIDI messages (at most 3 bytes) stamped with an audio sample time.

    Storage: ``stamps`` int64 (capacity,), ``data`` uint8 (capacity, 3), ``sizes`` uint8 (capacity,).
    :meth:`push` (MIDI thread) never allocates; a full queue drops the message and counts it.
    """

    def __init__(self, capacity: int = 4096):
        self.capacity = int(capacity)
        self.stamps = np.zeros(self.capacity, dtype=np.int64)
        self.data = np.zeros((self.capacity, 3), dtype=np.uint8)
        self.sizes = np.zeros(self.capacity, dtype=np.uint8)
        self.wall = np.zeros(self.capacity, dtype=np.float64)  # perf_counter at arrival (latency stats)
        self._w = 0
        self._r = 0
        self.dropped = 0

    def __len__(self) -> int:
        return self._w - self._r

    def push(self, sample_time: int, message, wall: float = 0.0) -> bool:
        """Queue one message (a sequence of 1-3 ints); longer messages (sysex) are ignored."""
        size = len(message)
        if size == 0 or size > 3:
            return False
        if self._w - self._r >= self.capacity:
            self.dropped += 1
            return False
        i = self._w % self.capacity
        self.stamps[i] = sample_time
        self.wall[i] = wall
        self.sizes[i] = size
        row = self.data[i]
        for k in range(size):
            row[k] = message[k]
        self._w += 1
        return True

    def pop(self):
        """Next ``(sample_time, bytes, wall)`` or ``None`` when empty (render thread)."""
        if self._w == self._r:
            return None
        i = self._r % self.capacity
        item = (int(self.stamps[i]), bytes(self.data[i, : self.sizes[i]]), float(self.wall[i]))
        self._r += 1
        return item
