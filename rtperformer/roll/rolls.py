"""Model inputs: pianorolls at the model's frame rate (numpy only).

Frames are centred STFT frames: frame t is at sample t*hop. A time becomes a frame in two steps, both
rounded half up: seconds -> the sample clock (``round(s*sample_rate)``), then sample -> frame
(``round(sample/hop)``). This equals ``round(s*frame_rate)`` except exactly at ties, and it
is what the live pianoroll does with sample-stamped events, so offline and live rolls agree exactly.

A note from s0 to s1 is on in frames ``f0 <= t < max(f1, f0+1)``. The arrays (:class:`Rolls`):

- ``roll`` (128, T) {0,1}: a pitch is on while any note of it is held (by key or by sustain pedal).
- ``onoff`` (128, T) {-1,0,+1}: +1 at every note's first frame (a re-strike of a held pitch included; notes
  sounding at frame 0 start there), -1 at the first frame where the pitch is off again.
- ``velocity`` (128, T): velocity/127 of the most recently started note holding the pitch, else 0.
- ``expression`` (1, T): CC11/127 (1.0 before any CC11). With several channels in one roll, the largest
  current CC11 among the channels that have sent anything.
- ``position`` (256, T) uint8, note-position counters (:func:`advance_positions`): rows 0:128 frames since
  the onset of the note holding the pitch (0 at its onset frame; 255 when not held, saturating at 254),
  rows 128:256 frames since the pitch was released (0 at its -1 frame; 255 while held, before any release,
  and saturating). The model sees them through decay tables (``model.onset_decay_frames``,
  ``model.release_decay_frames``: channel value ``exp(-counter / tau)``, 0 at 255) when its config asks.
- ``bend`` (1, T) float32, semitones: the pitch bend of the frame, the mean over the notes held in it of
  their channel's pitch bend plus the mod-wheel vibrato of the note (:class:`BendSpec`: a triangle LFO
  started at the note's onset, depth ``mod_cents`` * CC1/127, FluidSynth's default CC1 modulator). With
  no note held, the notes held last go on (their bend and LFO: what their release tail plays). The model
  sees it as one channel, semitones / :data:`BEND_INPUT_SEMITONES` (``model.bend_input``); the audio stage
  warps the model's frames by it (``model.bend_warp``).

Event semantics (:class:`NoteTracker`, shared by the offline and live paths): note-on with velocity 0 is a
note-off; a note-on of a held pitch from the same source (track, channel) ends the held note and starts a new one; CC64 >= 64
holds released keys until the pedal lifts (or the key is struck again); CC123 releases all keys of the
channel (the pedal still holds them); CC120 silences the channel at once; CC121 resets expression to
1.0, pitch bend and mod wheel to 0 and lifts the pedal. Pitch bend (+-``bend_range`` semitones) and CC1
act on their channel from their frame on.
"""

from __future__ import annotations

from dataclasses import dataclass
from bisect import bisect_right
from typing import Any, Hashable, Iterable

import numpy as np

from rtperformer.midi.decode import (
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    CC_EXPRESSION,
    CC_MODULATION,
    CC_RESET_ALL_CONTROLLERS,
    CC_SUSTAIN,
    CONTROL,
    NOTE_OFF,
    NOTE_ON,
    Message,
    PITCH_BEND,
    decode,
)
from rtperformer.midi.events import seconds_to_sample, timeline

N_PITCHES = 128
POS_NONE = 255  # position counter: not held (onset rows) / held or never released (release rows)
# Velocity written into the velocity roll when the render config is not velocity sensitive.
NOMINAL_VELOCITY = 100
# The model's bend channel is the bend in semitones / this (a fixed scale, whatever serve.pitch_bend_range is).
BEND_INPUT_SEMITONES = 2.0


@dataclass(frozen=True)
class BendSpec:
    """How MIDI becomes the bend row: ``bend_range`` semitones at full pitch bend; the mod wheel's vibrato
    ``mod_cents`` deep at CC1 127, ``mod_hz`` Hz; ``frame_rate`` frames per second (the LFO's clock)."""

    bend_range: float = 2.0
    mod_cents: float = 50.0
    mod_hz: float = 8.176
    frame_rate: float = 48000 / 256


def bend_spec(model_cfg: Any, audio_cfg: Any, bend_range: float = 2.0) -> BendSpec:
    """The :class:`BendSpec` of a model config (its mod-wheel vibrato) at ``audio_cfg``'s frame rate."""
    return BendSpec(float(bend_range), float(getattr(model_cfg, "mod_vibrato_cents", 50.0)),
                    float(getattr(model_cfg, "mod_vibrato_hz", 8.176)), float(audio_cfg.sample_rate) / audio_cfg.hop)


def triangle(cycles: float) -> float:
    """FluidSynth's LFO shape: 0 at 0, +1 at 1/4, -1 at 3/4 of a cycle."""
    return 4.0 * abs((cycles - 0.25) % 1.0 - 0.5) - 1.0


@dataclass
class Rolls:
    """Model input rolls, float32: roll, onoff, velocity (128, T); expression (1, T); uint8 ``position``
    counters (256, T) or None (not painted: :func:`stack_inputs` derives them from roll and onoff); ``bend``
    (1, T) semitones or None (none: 0)."""

    roll: np.ndarray
    onoff: np.ndarray
    velocity: np.ndarray
    expression: np.ndarray
    position: np.ndarray | None = None
    bend: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.roll.shape[1])

    @classmethod
    def zeros(cls, n_frames: int) -> "Rolls":
        return cls(
            np.zeros((N_PITCHES, n_frames), np.float32),
            np.zeros((N_PITCHES, n_frames), np.float32),
            np.zeros((N_PITCHES, n_frames), np.float32),
            np.ones((1, n_frames), np.float32),
            np.full((2 * N_PITCHES, n_frames), POS_NONE, np.uint8),
            np.zeros((1, n_frames), np.float32),
        )

    def head(self, n: int) -> "Rolls":
        """Views of the first ``n`` frames of every array."""
        pos = None if self.position is None else self.position[:, :n]
        bend = None if self.bend is None else self.bend[:, :n]
        return Rolls(self.roll[:, :n], self.onoff[:, :n], self.velocity[:, :n], self.expression[:, :n], pos, bend)

    def save(self, path) -> None:
        """Write the four arrays to an .npz file."""
        np.savez_compressed(path, roll=self.roll, onoff=self.onoff, velocity=self.velocity, expression=self.expression)

    @classmethod
    def load(cls, path) -> "Rolls":
        with np.load(path) as z:
            return cls(*(z[k].astype(np.float32) for k in ("roll", "onoff", "velocity", "expression")))


def position_taus(model_cfg: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(onset decay constants, release decay constants) in frames; () each for configs without them."""
    return (tuple(getattr(model_cfg, "onset_decay_frames", ()) or ()),
            tuple(getattr(model_cfg, "release_decay_frames", ()) or ()))


def input_channels(model_cfg: Any) -> int:
    """256 + 128 (velocity roll, if model_cfg.velocity) + 1 (expression, if model_cfg.expression)
    + 128 per onset and per release decay constant + 1 (bend, if model_cfg.bend_input)."""
    on, off = position_taus(model_cfg)
    return (2 * N_PITCHES + (N_PITCHES if model_cfg.velocity else 0) + (1 if model_cfg.expression else 0)
            + N_PITCHES * (len(on) + len(off)) + (1 if getattr(model_cfg, "bend_input", False) else 0))


def decay_table(tau: float) -> np.ndarray:
    """(256,) float32 lookup: ``exp(-c / tau)`` for counter c < 255, 0 at :data:`POS_NONE`."""
    t = np.exp(-np.arange(256, dtype=np.float64) / float(tau)).astype(np.float32)
    t[POS_NONE] = 0.0
    return t


def advance_positions(roll: np.ndarray, onoff: np.ndarray, onset_c: np.ndarray, release_c: np.ndarray,
                      out: np.ndarray) -> None:
    """Note-position counters of frames ``roll``/``onoff`` (128, n) into ``out`` (256, n) uint8.

    ``onset_c``/``release_c`` (128,) uint8: the counters of the frame before the first column; updated to
    the last column's (carry them to the next call). Onset row: 0 at a +1 frame, +1 per held frame
    (saturating at 254), 255 when not held. Release row: 0 at a -1 frame, +1 per frame off (saturating at
    254), 255 while held and until the first release.
    """
    o = onset_c.astype(np.int16)
    r = release_c.astype(np.int16)
    for t in range(roll.shape[1]):
        held = roll[:, t] > 0.5
        on = onoff[:, t]
        o = np.where(held, np.where(on > 0.5, 0, np.minimum(o + 1, POS_NONE - 1)), POS_NONE)
        r = np.where(held, POS_NONE, np.where(on < -0.5, 0, np.where(r == POS_NONE, POS_NONE, np.minimum(r + 1, POS_NONE - 1))))
        out[:N_PITCHES, t] = o
        out[N_PITCHES:, t] = r
    onset_c[:] = o
    release_c[:] = r


def positions_of(roll: np.ndarray, onoff: np.ndarray) -> np.ndarray:
    """(256, T) uint8 counters of a whole clip that starts at frame 0 (nothing held before it)."""
    out = np.empty((2 * N_PITCHES, roll.shape[1]), np.uint8)
    advance_positions(roll, onoff, np.full(N_PITCHES, POS_NONE, np.uint8), np.full(N_PITCHES, POS_NONE, np.uint8), out)
    return out


def position_channels(position: np.ndarray, model_cfg: Any) -> list[np.ndarray]:
    """The decayed channels (128, T) float32 of ``model_cfg``: one per onset tau, then one per release tau."""
    on, off = position_taus(model_cfg)
    return ([decay_table(t)[position[:N_PITCHES]] for t in on]
            + [decay_table(t)[position[N_PITCHES:]] for t in off])


def stack_inputs(rolls: Rolls, model_cfg: Any, out: np.ndarray | None = None) -> np.ndarray:
    """(C_in, T) float32: [roll 0:128, onoff 128:256, velocity (if), expression (if), onset decays
    (128 each, if), release decays (128 each, if), bend / BEND_INPUT_SEMITONES (1, if)]. Without painted
    ``rolls.position`` the counters are derived from roll and onoff as a clip starting at frame 0; without
    ``rolls.bend`` the bend is 0."""
    parts = [rolls.roll, rolls.onoff]
    if model_cfg.velocity:
        parts.append(rolls.velocity)
    if model_cfg.expression:
        parts.append(rolls.expression)
    if any(position_taus(model_cfg)):
        pos = rolls.position if rolls.position is not None else positions_of(rolls.roll, rolls.onoff)
        parts.extend(position_channels(pos, model_cfg))
    if getattr(model_cfg, "bend_input", False):
        T = rolls.roll.shape[1]
        parts.append(np.zeros((1, T), np.float32) if rolls.bend is None
                     else rolls.bend * np.float32(1.0 / BEND_INPUT_SEMITONES))
    if out is None:
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)
    np.concatenate(parts, axis=0, out=out)
    return out


def sample_to_frame(sample: int, hop: int) -> int:
    """Centred frame nearest to ``sample`` (half up)."""
    return (int(sample) + hop // 2) // hop


def seconds_to_frame(seconds: float, audio_cfg: Any) -> int:
    """Frame of a time in seconds: via the sample clock, each step rounded half up."""
    return sample_to_frame(seconds_to_sample(seconds, audio_cfg.sample_rate), audio_cfg.hop)


def n_frames_for(seconds: float, audio_cfg: Any) -> int:
    """Frames of a centred STFT of ``seconds`` of audio (:func:`rtperformer.dsp.features.n_frames` of
    N = round(seconds*sr) samples)."""
    from rtperformer.dsp.features import n_frames

    return n_frames(seconds_to_sample(seconds, audio_cfg.sample_rate), audio_cfg.hop)


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


class RollPainter:
    """Writes frames [a, b) of the rolls from a tracker's notes; carries the previous frame across calls.

    ``paint(tracker, a, b, rolls)`` fills ``rolls`` (arrays with >= b - a columns; column 0 is frame a).
    Calls must cover consecutive ranges starting at frame 0 (that is what makes -1 offsets right at
    window seams).
    """

    def __init__(self, bend: BendSpec | None = None):
        self.bend = bend or BendSpec()
        self.last_held: list[tuple[int, int]] = []  # (channel, onset frame) of the notes held last
        self.prev = np.zeros(N_PITCHES, np.float32)  # roll column of frame a-1
        self.onset_c = np.full(N_PITCHES, POS_NONE, np.uint8)  # position counters of frame a-1
        self.release_c = np.full(N_PITCHES, POS_NONE, np.uint8)

    def reset(self) -> None:
        self.prev[:] = 0.0
        self.onset_c[:] = POS_NONE
        self.release_c[:] = POS_NONE
        self.last_held = []

    def paint(self, tracker: NoteTracker, a: int, b: int, r: Rolls) -> None:
        n = b - a
        roll, onoff, vel, expr = r.roll[:, :n], r.onoff[:, :n], r.velocity[:, :n], r.expression[:, :n]
        roll[:] = 0.0
        onoff[:] = 0.0
        vel[:] = 0.0
        notes = [x for x in tracker.closed if x.end > a and x.start < b]
        notes += [x for x in tracker.open.values() if x.start < b]
        notes.sort(key=lambda x: x.seq)  # later notes overwrite the velocity of earlier ones
        for x in notes:
            s = max(x.start, a) - a
            e = (min(x.end, b) if x.end >= 0 else b) - a
            roll[x.pitch, s:e] = 1.0
            vel[x.pitch, s:e] = x.vel
        # Offsets: first frame off after a frame on (the frame before a is carried over).
        if n:
            onoff[:, 0] = -(self.prev * (1.0 - roll[:, 0]))
            if n > 1:
                onoff[:, 1:] = -(roll[:, :-1] * (1.0 - roll[:, 1:]))
            self.prev[:] = roll[:, n - 1]
        for x in notes:
            if a <= x.start < b:
                onoff[x.pitch, x.start - a] = 1.0
        if r.position is not None:
            advance_positions(roll, onoff, self.onset_c, self.release_c, r.position[:, :n])
        # Expression: step function.
        changes = tracker.expr_changes
        value = changes[0][1]
        pos = 0
        for f, v in changes:
            if f > a:
                stop = min(f, b) - a
                expr[0, pos:stop] = value
                pos = stop
                if f >= b:
                    break
            value = v
        expr[0, pos:n] = value
        if r.bend is not None:
            self._paint_bend(tracker, notes, a, b, r.bend[0, :n])

    def _paint_bend(self, tracker: NoteTracker, notes: list, a: int, b: int, out: np.ndarray) -> None:
        """The bend row of frames [a, b) into ``out`` (b - a,) (see the module docstring)."""
        if not tracker.bend_active:  # no bend or CC1 yet: 0, only the notes held last are kept up to date
            out[:] = 0.0
            last = -1  # the last frame of [a, b) with a note held
            for x in notes:
                e = b if x.end < 0 else min(x.end, b)
                if e - 1 >= max(a, x.start):
                    last = max(last, e - 1)
            if last >= 0:
                self.last_held = [(x.channel, x.start) for x in notes
                                  if x.start <= last and (x.end < 0 or last < x.end)]
            return
        spec = self.bend
        depth = spec.mod_cents / 100.0
        per_frame = spec.mod_hz / spec.frame_rate
        bsteps, msteps = tracker.bend_steps, tracker.mod_steps

        def at(steps: list[tuple[int, float]], t: int) -> float:
            if len(steps) == 1 or steps[1][0] > t:
                return steps[0][1]
            return steps[bisect_right(steps, t, key=lambda s: s[0]) - 1][1]

        for t in range(a, b):
            held = [(x.channel, x.start) for x in notes if x.start <= t and (x.end < 0 or t < x.end)]
            if held:
                self.last_held = held
            else:
                held = self.last_held
            if not held:
                out[t - a] = 0.0
                continue
            total = 0.0
            for ch, start in held:
                v = at(bsteps[ch], t)
                m = at(msteps[ch], t)
                if m:
                    v += m * depth * triangle((t - start) * per_frame)
                total += v
            out[t - a] = total / len(held)


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
