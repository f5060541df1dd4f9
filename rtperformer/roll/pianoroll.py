"""The live pianoroll: sample-stamped MIDI events in, model input frames out (numpy only).

One :class:`LivePianoroll` per instrument, owned by the render thread (not thread safe: the MIDI thread
hands events over through a queue, the render thread calls :meth:`LivePianoroll.apply` and
:meth:`LivePianoroll.next_frames`). It runs the same :class:`rtperformer.roll.rolls.NoteTracker` and
:class:`rtperformer.roll.rolls.RollPainter` as the offline path, so for the same events its frames equal
``stack_inputs(notes_to_rolls(...))`` frame for frame (see rtperformer/roll/rolls.py for the semantics).

Time: frame t is centred at sample t*hop; an event at sample s belongs to frame round(s/hop) (half up).
An event for a frame already emitted (late) takes effect at the next emitted frame; an event for a
frame not yet due waits in the queue.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable

import numpy as np

from rtperformer.roll.rolls import NoteTracker, RollPainter, Rolls, input_channels, sample_to_frame, stack_inputs


class LivePianoroll:
    """Sliding pianoroll for one instrument.

    ``model_cfg``: decides the channel layout (``input_channels``); ``audio_cfg``: hop (frame clock);
    ``velocity_sensitive``: keep MIDI velocity (else a nominal velocity); ``max_frames``: the largest n
    one :meth:`next_frames` call may ask for (arrays are allocated once, here).
    """

    def __init__(self, model_cfg: Any, audio_cfg: Any, velocity_sensitive: bool = True, max_frames: int = 1024):
        self.hop = int(audio_cfg.hop)
        self.model_cfg = model_cfg
        self.channels = input_channels(model_cfg)
        self.max_frames = int(max_frames)
        self._rolls = Rolls.zeros(self.max_frames)
        self._out = np.zeros((self.channels, self.max_frames), np.float32)
        self._tracker = NoteTracker(velocity_sensitive)
        self._painter = RollPainter()
        self._pending: deque = deque()
        self._last_fed = 0
        self.frame = 0  # index of the next frame next_frames() emits

    def reset(self, frame: int = 0) -> None:
        """Forget all notes, controllers and queued events; the next frame emitted is ``frame``."""
        self._tracker.reset()
        self._painter.reset()
        self._pending.clear()
        self._last_fed = int(frame)
        self.frame = int(frame)

    def apply(self, event: Any) -> None:
        """Queue one event: a MidiEvent or any (sample_time, data bytes) pair, in sample-time order."""
        self._pending.append((int(event[0]), bytes(event[1])))

    def apply_many(self, events: Iterable[Any]) -> None:
        for e in events:
            self.apply(e)

    @property
    def pending(self) -> int:
        """Events queued for frames not emitted yet."""
        return len(self._pending)

    @property
    def sounding(self) -> int:
        """Notes sounding now (held by key or pedal)."""
        return len(self._tracker.open)

    def next_frames(self, n: int) -> np.ndarray:
        """The next ``n`` frames, (C_in, n) float32 in ``stack_inputs`` layout.

        Returns a view of an internal buffer, valid until the next call (copy it to keep it).
        """
        if not 0 < n <= self.max_frames:
            raise ValueError(f"next_frames: n must be in 1..{self.max_frames}, got {n}")
        a = self.frame
        b = a + n
        pending = self._pending
        tracker = self._tracker
        while pending and sample_to_frame(pending[0][0], self.hop) < b:
            sample, data = pending.popleft()
            f = max(sample_to_frame(sample, self.hop), a, self._last_fed)
            self._last_fed = f
            tracker.feed(f, data)
        self._painter.paint(tracker, a, b, self._rolls)
        tracker.forget_before(b)
        self.frame = b
        view = self._rolls.head(n)
        out = self._out[:, :n]
        stack_inputs(view, self.model_cfg, out=out)
        return out
