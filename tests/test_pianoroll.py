"""rtperformer.roll.pianoroll.LivePianoroll: live frames equal the offline rolls for the same events."""

import random

import numpy as np
import pytest

from rtperformer.config import AudioConfig, ModelConfig
from rtperformer.midi.events import MidiEvent, control_change, note_off, note_on, score_events
from rtperformer.midi.score import Control, Note, Score
from rtperformer.roll.pianoroll import LivePianoroll
from rtperformer.roll.rolls import n_frames_for, notes_to_rolls, stack_inputs

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
    lp = LivePianoroll(MC, AC, velocity_sensitive=velocity_sensitive, max_frames=max(chunks))
    out, i, k = [], 0, 0
    while sum(o.shape[1] for o in out) < n_total:
        n = min(chunks[k % len(chunks)], n_total - sum(o.shape[1] for o in out))
        k += 1
        # deliver events up to a little after the window, as a MIDI thread running ahead would
        horizon = (lp.frame + n + 2) * AC.hop
        while i < len(events) and events[i].sample_time < horizon:
            lp.apply(events[i])
            i += 1
        out.append(lp.next_frames(n).copy())
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
    lp = LivePianoroll(ModelConfig(), AC, max_frames=8)
    hop = AC.hop
    lp.apply(MidiEvent(0, note_on(0, 60, 100)))
    lp.apply(MidiEvent(2 * hop, note_on(0, 60, 100)))  # re-strike of a held key
    lp.apply(MidiEvent(3 * hop, bytes([0x90, 60, 0])))  # note-on velocity 0 = note-off
    lp.apply(MidiEvent(4 * hop, control_change(0, 64, 127)))
    lp.apply(MidiEvent(4 * hop, note_on(0, 62, 90)))
    lp.apply(MidiEvent(5 * hop, note_off(0, 62)))  # pedal holds it
    lp.apply(MidiEvent(7 * hop, control_change(0, 64, 0)))
    x = lp.next_frames(8)
    assert x.shape == (256, 8)
    assert x[60].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert x[128 + 60].tolist() == [1, 0, 1, -1, 0, 0, 0, 0]
    assert x[62].tolist() == [0, 0, 0, 0, 1, 1, 1, 0]
    assert x[128 + 62].tolist() == [0, 0, 0, 0, 1, 0, 0, -1]
    assert lp.frame == 8 and lp.pending == 0 and lp.sounding == 0


def test_future_events_wait_and_late_events_apply_now():
    lp = LivePianoroll(ModelConfig(), AC, max_frames=4)
    lp.apply((10 * AC.hop, note_on(0, 60, 100)))
    assert not lp.next_frames(4)[60].any() and lp.pending == 1
    x = lp.next_frames(4)  # frames 4..7: still waiting
    assert not x[60].any()
    x = lp.next_frames(4)  # frames 8..11
    assert x[60].tolist() == [0, 0, 1, 1] and x[128 + 60].tolist() == [0, 0, 1, 0]
    lp.apply((0, note_on(0, 64, 100)))  # late: takes effect at frame 12
    x = lp.next_frames(4)
    assert x[64].tolist() == [1, 1, 1, 1] and x[128 + 64, 0] == 1
    lp.apply((12 * AC.hop, control_change(0, 120, 0)))  # all sound off, late
    x = lp.next_frames(4)
    assert not x[:128].any() and x[128 + 60, 0] == -1 and x[128 + 64, 0] == -1
    lp.reset()
    assert lp.frame == 0 and lp.sounding == 0
    with pytest.raises(ValueError):
        lp.next_frames(5)


def test_buffers_are_preallocated():
    lp = LivePianoroll(MC, AC, max_frames=16)
    a = lp.next_frames(16)
    b = lp.next_frames(3)
    assert np.shares_memory(a, b)
    assert b.shape == (385, 3)
