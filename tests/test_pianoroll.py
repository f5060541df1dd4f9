"""rtperformer.roll.pianoroll: events through an EventSchedule into a Pianoroll give the offline rolls, frame for frame."""

import random

import numpy as np
import pytest

from rtperformer.config import AudioConfig, ModelConfig
from rtperformer.midi.events import MidiEvent, control_change, note_off, note_on, score_events
from rtperformer.midi.score import Control, Note, Score
from rtperformer.roll.pianoroll import EventSchedule, Pianoroll
from rtperformer.roll.notes import notes_to_rolls
from rtperformer.roll.rolls import n_frames_for, stack_inputs

AC = AudioConfig(sample_rate=16000, n_fft=512, hop=128)
MC = ModelConfig(velocity=True, expression=True)


def random_score(seed, seconds=3.0):
    rng = random.Random(seed)
    notes, controls = [], []
    for ch in (0, 1):
        t = 0.0
        while t < seconds:
            pitch = rng.choice([55, 57, 60, 60, 62, 64])  # repeated pitches: re-strikes and overlaps
            dur = rng.choice([0.0, 0.003, 0.05, 0.2, 0.6])
            notes.append(Note(t, t + dur, pitch, rng.randint(1, 127), channel=ch, track=ch))
            t += rng.choice([0.0, 0.004, 0.008, 0.1, 0.15])
        for _ in range(8):
            controls.append(Control(rng.uniform(0, seconds), ch, rng.choice([11, 11, 64, 64, 123, 120, 121]), rng.randint(0, 127), ch))
    controls.sort(key=lambda c: c.time)
    end = max(n.end for n in notes)
    return Score(notes, controls, [], end)


def live_frames(events, n_total, chunks, velocity_sensitive=True):
    lp = Pianoroll(MC, velocity_sensitive=velocity_sensitive, max_frames=max(chunks))
    sched = EventSchedule(AC.hop)
    out, i, k = [], 0, 0
    while sum(o.shape[1] for o in out) < n_total:
        n = min(chunks[k % len(chunks)], n_total - sum(o.shape[1] for o in out))
        k += 1
        # deliver events up to a little after the window, as a MIDI thread running ahead would
        horizon = (lp.frame + n + 2) * AC.hop
        while i < len(events) and events[i].sample_time < horizon:
            sched.push(events[i])
            i += 1
        out.append(lp.take(sched, n).copy())
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunks", [[1], [7, 1, 16], [64]])
def test_live_equals_offline(seed, chunks):
    score = random_score(seed)
    T = n_frames_for(score.duration + 0.3, AC)
    offline = stack_inputs(notes_to_rolls(score.notes, score.controls, AC, T), MC)
    live = live_frames(score_events(score, AC.sample_rate), T, chunks)
    assert live.shape == offline.shape
    np.testing.assert_array_equal(live, offline)


def test_live_equals_offline_velocity_insensitive():
    score = random_score(5)
    T = n_frames_for(score.duration, AC)
    offline = stack_inputs(notes_to_rolls(score.notes, score.controls, AC, T, velocity_sensitive=False), MC)
    live = live_frames(score_events(score, AC.sample_rate), T, [5], velocity_sensitive=False)
    np.testing.assert_array_equal(live, offline)


def test_raw_keyboard_events():
    lp, sched = Pianoroll(ModelConfig(), max_frames=8), EventSchedule(AC.hop)
    hop = AC.hop
    sched.push(MidiEvent(0, note_on(0, 60, 100)))
    sched.push(MidiEvent(2 * hop, note_on(0, 60, 100)))  # re-strike of a held key
    sched.push(MidiEvent(3 * hop, bytes([0x90, 60, 0])))  # note-on velocity 0 = note-off
    sched.push(MidiEvent(4 * hop, control_change(0, 64, 127)))
    sched.push(MidiEvent(4 * hop, note_on(0, 62, 90)))
    sched.push(MidiEvent(5 * hop, note_off(0, 62)))  # pedal holds it
    sched.push(MidiEvent(7 * hop, control_change(0, 64, 0)))
    x = lp.take(sched, 8)
    assert x.shape == (256, 8)
    assert x[60].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert x[128 + 60].tolist() == [1, 0, 1, -1, 0, 0, 0, 0]
    assert x[62].tolist() == [0, 0, 0, 0, 1, 1, 1, 0]
    assert x[128 + 62].tolist() == [0, 0, 0, 0, 1, 0, 0, -1]
    assert lp.frame == 8 and len(sched) == 0 and lp.sounding == 0


def test_future_events_wait_and_late_events_apply_now():
    lp, sched = Pianoroll(ModelConfig(), max_frames=4), EventSchedule(AC.hop)
    sched.push(MidiEvent(10 * AC.hop, note_on(0, 60, 100)))
    assert not lp.take(sched, 4)[60].any() and len(sched) == 1
    x = lp.take(sched, 4)  # frames 4..7: still waiting
    assert not x[60].any()
    x = lp.take(sched, 4)  # frames 8..11
    assert x[60].tolist() == [0, 0, 1, 1] and x[128 + 60].tolist() == [0, 0, 1, 0]
    sched.push(MidiEvent(0, note_on(0, 64, 100)))  # late: takes effect at frame 12
    x = lp.take(sched, 4)
    assert x[64].tolist() == [1, 1, 1, 1] and x[128 + 64, 0] == 1
    sched.push(MidiEvent(12 * AC.hop, control_change(0, 120, 0)))  # all sound off, late
    x = lp.take(sched, 4)
    assert not x[:128].any() and x[128 + 60, 0] == -1 and x[128 + 64, 0] == -1
    lp.reset()
    assert lp.frame == 0 and lp.sounding == 0
    with pytest.raises(ValueError):
        lp.next_frames(5)


def test_schedule_orders_by_stamp_and_asap_hands_out_everything_now():
    hop = AC.hop
    sched = EventSchedule(hop)
    for s in (5 * hop, 2 * hop, 5 * hop + 1, 0):  # pushed out of order: handed out in stamp order
        sched.push(MidiEvent(s, note_on(0, 60, s % 128)))
    got = [(f, e.sample_time) for f, e in sched.due(1, 6)]
    assert got == [(1, 0), (2, 2 * hop), (5, 5 * hop), (5, 5 * hop + 1)] and not sched
    asap = EventSchedule(hop, exact=False)
    asap.push(MidiEvent(10**6, b"\x90\x3c\x64", 1.5))
    asap.push(MidiEvent(0, b"\x80\x3c\x00"))
    got = list(asap.due(3, 4))  # the stamps are another clock: everything is due at once, arrival order
    assert [(f, e.sample_time, e.wall) for f, e in got] == [(3, 10**6, 1.5), (3, 0, 0.0)] and not asap


def test_buffers_are_preallocated():
    lp = Pianoroll(MC, max_frames=16)
    a = lp.next_frames(16)
    b = lp.next_frames(3)
    assert np.shares_memory(a, b)
    assert b.shape == (385, 3)
