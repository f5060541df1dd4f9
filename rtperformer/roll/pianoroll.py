"""Stamped MIDI events in, model input frames out (numpy only): the one path from events to roll frames,
live and offline.

- :class:`EventSchedule` is the render thread's one queue of events: :class:`~rtperformer.midi.events.MidiEvent`
  stamped in samples (the model's rate), handed out by frame. Frame t is centred at sample t*hop; an event at
  sample s belongs to frame round(s/hop) (half up, :func:`~rtperformer.roll.rolls.sample_to_frame`). An
  event for a frame already rendered (late) takes effect at the next frame rendered; an event for a frame
  not yet due waits.
- :class:`Pianoroll` paints the frames of one instrument from the events fed to it at their frames. It
  runs the same :class:`~rtperformer.roll.tracker.NoteTracker` and :class:`~rtperformer.roll.painter.RollPainter`
  as the whole-clip rolls, so for the same events its frames equal ``stack_inputs(notes_to_rolls(...))``
  frame for frame (see rtperformer/roll/rolls.py for the semantics).

Both are owned by one thread (the render thread live; the MIDI thread hands events over through
:class:`~rtperformer.midi.queue.MidiQueue`). The live engine decodes each event once and routes it to the
pianoroll of its channel's instrument; offline render and the tests take one part's events straight from
a schedule (:meth:`Pianoroll.take`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Any, Iterator

import numpy as np

from rtperformer.midi.decode import Message, decode
from rtperformer.midi.events import MidiEvent
from rtperformer.roll.painter import BendSpec, RollPainter
from rtperformer.roll.rolls import Rolls, input_channels, sample_to_frame, stack_inputs
from rtperformer.roll.tracker import NoteTracker


class EventSchedule:
    """Events waiting for their frame: :meth:`push` a :class:`MidiEvent`, :meth:`due` hands them out.

    ``hop``: samples per frame. ``exact`` (offline, tests): an event is due at its own frame,
    round(sample_time / hop); events are kept in stamp order (one pushed out of order is inserted after
    those stamped at or before it). ``exact=False`` (live, "asap"): every queued event is due at the next
    frame rendered, in arrival order; its stamp (the input clock) is kept for the latency statistics only.
    """

    def __init__(self, hop: int, exact: bool = True):
        self.hop = int(hop)
        self.exact = bool(exact)
        self._events: deque[MidiEvent] = deque()

    def __len__(self) -> int:
        return len(self._events)

    def clear(self) -> None:
        self._events.clear()

    def push(self, event: MidiEvent) -> None:
        q = self._events
        if self.exact and q and event.sample_time < q[-1].sample_time:
            q.insert(bisect_right(q, event.sample_time, key=lambda e: e.sample_time), event)
        else:
            q.append(event)

    def due(self, start: int, end: int) -> Iterator[tuple[int, MidiEvent]]:
        """Pop every event due before frame ``end``: ``(frame, event)`` in order, frame ``max(its frame,
        start)`` (never decreasing)."""
        q, hop = self._events, self.hop
        if not self.exact:
            while q:
                yield start, q.popleft()
            return
        while q and sample_to_frame(q[0].sample_time, hop) < end:
            e = q.popleft()
            yield max(sample_to_frame(e.sample_time, hop), start), e


class Pianoroll:
    """The sliding pianoroll of one instrument: :meth:`feed` decoded messages at their frames, then
    :meth:`next_frames`.

    ``model_cfg``: decides the channel layout (``input_channels``); ``velocity_sensitive``: keep MIDI
    velocity (else a nominal velocity); ``max_frames``: the largest n one :meth:`next_frames` call may ask
    for (arrays are allocated once, here); ``bend``: how pitch bend and CC1 make the bend row
    (:func:`rtperformer.roll.painter.bend_spec`; default: +-2 semitones, FluidSynth's CC1 vibrato at 48 kHz /
    256). :attr:`bend` is the bend row (n,) semitones of the last :meth:`next_frames` (a view).
    """

    def __init__(self, model_cfg: Any, velocity_sensitive: bool = True, max_frames: int = 1024,
                 bend: BendSpec | None = None):
        self.model_cfg = model_cfg
        self.channels = input_channels(model_cfg)
        self.max_frames = int(max_frames)
        self._rolls = Rolls.zeros(self.max_frames)
        self._out = np.zeros((self.channels, self.max_frames), np.float32)
        spec = bend or BendSpec()
        self._tracker = NoteTracker(velocity_sensitive, spec.bend_range)
        self._painter = RollPainter(spec)
        self.bend = self._rolls.bend[0, :0]
        self.frame = 0  # index of the next frame next_frames() emits

    def reset(self, frame: int = 0) -> None:
        """Forget all notes and controllers; the next frame emitted is ``frame``."""
        self._tracker.reset()
        self._painter.reset()
        self.frame = int(frame)

    def feed(self, frame: int, message: Message) -> None:
        """Apply one decoded message at ``frame`` (frames must not decrease; one before :attr:`frame` takes
        effect at :attr:`frame`)."""
        self._tracker.apply(max(int(frame), self.frame), message)

    def take(self, schedule: EventSchedule, n: int) -> np.ndarray:
        """Feed this pianoroll's events due before frame ``frame + n`` from ``schedule`` (decoded; garbage is
        skipped), then :meth:`next_frames` ``(n)``: one instrument's whole path from events to frames."""
        a = self.frame
        for frame, e in schedule.due(a, a + n):
            m = decode(e.data)
            if m is not None:
                self._tracker.apply(max(frame, a), m)
        return self.next_frames(n)

    @property
    def sounding(self) -> int:
        """Notes sounding now (held by key or pedal)."""
        return len(self._tracker.open)

    def next_frames(self, n: int) -> np.ndarray:
        """The next ``n`` frames, (C_in, n) float32 in ``stack_inputs`` layout, from the messages fed so far
        (feed those of frames before ``frame + n`` first).

        Returns a view of an internal buffer, valid until the next call (copy it to keep it).
        """
        if not 0 < n <= self.max_frames:
            raise ValueError(f"next_frames: n must be in 1..{self.max_frames}, got {n}")
        a = self.frame
        b = a + n
        self._painter.paint(self._tracker, a, b, self._rolls)
        self._tracker.forget_before(b)
        self.frame = b
        out = self._out[:, :n]
        view = self._rolls.head(n)
        self.bend = view.bend[0]
        stack_inputs(view, self.model_cfg, out=out)
        return out
