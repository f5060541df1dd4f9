"""rtperformer.roll.rolls: frame quantisation, on/off, velocity, sustain, expression and stack_inputs."""

import subprocess
import sys

import numpy as np
import pytest

from rtperformer.config import AudioConfig, ModelConfig
from rtperformer.midi.score import Control, Note
from rtperformer.roll.notes import notes_to_rolls
from rtperformer.roll.rolls import NOMINAL_VELOCITY, Rolls, input_channels, n_frames_for, seconds_to_frame, stack_inputs

# 100 frames per second: frame t is at t/100 s.
AC = AudioConfig(sample_rate=25600, n_fft=1024, hop=256)


def on_frames(rolls, pitch):
    return np.flatnonzero(rolls.roll[pitch]).tolist()


def test_frame_quantisation():
    assert AC.frame_rate == 100
    assert seconds_to_frame(0.0, AC) == 0
    assert seconds_to_frame(0.104, AC) == 10
    assert seconds_to_frame(0.105, AC) == 11  # half up
    assert n_frames_for(1.0, AC) == 101


def test_note_frames_onoff_and_velocity():
    r = notes_to_rolls([Note(0.0, 0.05, 60, 127), Note(0.1, 0.1, 64, 64)], [], AC, n_frames=20)
    assert r.roll.shape == (128, 20) and r.expression.shape == (1, 20)
    assert all(a.dtype == np.float32 for a in (r.roll, r.onoff, r.velocity, r.expression))
    assert on_frames(r, 60) == [0, 1, 2, 3, 4]
    assert r.onoff[60, 0] == 1 and r.onoff[60, 5] == -1 and np.count_nonzero(r.onoff[60]) == 2
    assert on_frames(r, 64) == [10]  # zero-length note: one frame
    assert r.onoff[64, 10] == 1 and r.onoff[64, 11] == -1
    assert r.velocity[60, 0] == 1.0 and r.velocity[64, 10] == pytest.approx(64 / 127)
    assert np.all(r.velocity[:, 12:] == 0) and np.all(r.expression == 1.0)


def test_restrike_marks_new_onset_without_gap():
    r = notes_to_rolls([Note(0.0, 0.1, 60, 100), Note(0.1, 0.2, 60, 50)], [], AC, n_frames=25)
    assert on_frames(r, 60) == list(range(20))
    assert np.flatnonzero(r.onoff[60]).tolist() == [0, 10, 20]
    assert r.onoff[60, 10] == 1 and r.onoff[60, 20] == -1
    assert r.velocity[60, 9] == pytest.approx(100 / 127) and r.velocity[60, 10] == pytest.approx(50 / 127)


def test_velocity_insensitive():
    r = notes_to_rolls([Note(0.0, 0.1, 60, 10)], [], AC, n_frames=12, velocity_sensitive=False)
    assert r.velocity[60, 0] == pytest.approx(NOMINAL_VELOCITY / 127)


def test_sustain_pedal_holds_and_restrike_ends_sustained_note():
    notes = [Note(0.0, 0.1, 60, 100), Note(0.2, 0.25, 60, 90), Note(0.3, 0.35, 62, 80)]
    controls = [Control(0.05, 0, 64, 127), Control(0.4, 0, 64, 0)]
    r = notes_to_rolls(notes, controls, AC, n_frames=50)
    assert on_frames(r, 60) == list(range(40))  # held by pedal, re-struck at 20, released with the pedal
    assert np.flatnonzero(r.onoff[60] == 1).tolist() == [0, 20] and r.onoff[60, 40] == -1
    assert on_frames(r, 62) == list(range(30, 40))
    # The pedal on another channel does not hold channel 1.
    r2 = notes_to_rolls([Note(0.0, 0.1, 60, 100, channel=1)], controls, AC, n_frames=50)
    assert on_frames(r2, 60) == list(range(10))


def test_expression_and_all_notes_off():
    notes = [Note(0.0, 1.0, 60, 100), Note(0.0, 1.0, 67, 100)]
    controls = [Control(0.0, 0, 11, 127), Control(0.2, 0, 11, 0), Control(0.3, 0, 123, 0), Control(0.35, 0, 11, 127)]
    r = notes_to_rolls(notes, controls, AC, n_frames=40)
    assert np.all(r.expression[0, :20] == 1.0) and np.all(r.expression[0, 20:35] == 0.0)
    assert np.all(r.expression[0, 35:] == 1.0)
    assert on_frames(r, 60) == list(range(30)) and r.onoff[67, 30] == -1


def test_all_sound_off_ignores_pedal():
    controls = [Control(0.0, 0, 64, 127), Control(0.1, 0, 120, 0)]
    r = notes_to_rolls([Note(0.0, 0.05, 60, 100)], controls, AC, n_frames=20)
    assert on_frames(r, 60) == list(range(10))


def test_two_tracks_on_one_channel_do_not_end_each_other():
    notes = [Note(0.0, 0.3, 60, 100, track=1), Note(0.1, 0.2, 60, 50, track=2)]
    r = notes_to_rolls(notes, [], AC, n_frames=40)
    assert on_frames(r, 60) == list(range(30))
    assert np.flatnonzero(r.onoff[60] == 1).tolist() == [0, 10]
    # velocity: the most recently started note while it lasts, then the older one again
    assert r.velocity[60, 15] == pytest.approx(50 / 127) and r.velocity[60, 25] == pytest.approx(100 / 127)


@pytest.mark.parametrize("velocity,expression,channels", [(False, False, 256), (True, False, 384), (True, True, 385), (False, True, 257)])
def test_stack_inputs_layout(velocity, expression, channels):
    mc = ModelConfig(velocity=velocity, expression=expression)
    r = notes_to_rolls([Note(0.0, 0.1, 60, 100)], [Control(0.0, 0, 11, 64)], AC, n_frames=15)
    x = stack_inputs(r, mc)
    assert input_channels(mc) == channels and x.shape == (channels, 15) and x.dtype == np.float32
    assert np.array_equal(x[:128], r.roll) and np.array_equal(x[128:256], r.onoff)
    if velocity:
        assert np.array_equal(x[256:384], r.velocity)
    if expression:
        assert np.array_equal(x[-1:], r.expression)


def test_rolls_save_load(tmp_path):
    r = notes_to_rolls([Note(0.0, 0.1, 60, 100)], [], AC)
    r.save(tmp_path / "r.npz")
    q = Rolls.load(tmp_path / "r.npz")
    assert all(np.array_equal(getattr(r, k), getattr(q, k)) for k in ("roll", "onoff", "velocity", "expression"))


def test_midi_package_never_imports_torch():
    code = "import sys, rtperformer.midi, rtperformer.roll.rolls, rtperformer.roll.pianoroll; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
