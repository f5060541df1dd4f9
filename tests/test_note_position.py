"""Note-position inputs (issue 12): counters, live == offline, model chunked == whole, zero-init transplant,
the dataset's cached counters, and the l1_flux loss. Configs without them keep their old inputs."""

import dataclasses

import numpy as np
import pytest
import torch

from rtperformer.config import AudioConfig, ModelConfig, load_config
from rtperformer.learn.data.dataset import decode_inputs, _encode_inputs
from rtperformer.errors import UserError
from rtperformer.learn.losses import make_loss
from rtperformer.midi.events import score_events
from rtperformer.midi.score import Note
from rtperformer.model import build_model
from rtperformer.model.checkpoint import transplant
from rtperformer.roll.notes import notes_to_rolls
from rtperformer.roll.rolls import POS_NONE, input_channels, n_frames_for, positions_of, stack_inputs

from test_pianoroll import live_frames, random_score  # noqa: E402  (same events, same live harness)
import test_pianoroll

AC = AudioConfig(sample_rate=16000, n_fft=512, hop=128)
MC_POS = ModelConfig(velocity=True, expression=True, onset_decay_frames=(4.0, 16.0), release_decay_frames=(8.0,))


def test_counters_of_a_note_a_restrike_and_a_release():
    # pitch 60: frames 2..5 held, re-struck at 4; released at 6; pitch 62 never played
    roll = np.zeros((128, 10), np.float32)
    onoff = np.zeros((128, 10), np.float32)
    roll[60, 2:6] = 1
    onoff[60, 2] = onoff[60, 4] = 1
    onoff[60, 6] = -1
    pos = positions_of(roll, onoff)
    assert pos.dtype == np.uint8 and pos.shape == (256, 10)
    assert list(pos[60]) == [POS_NONE, POS_NONE, 0, 1, 0, 1, POS_NONE, POS_NONE, POS_NONE, POS_NONE]
    assert list(pos[128 + 60]) == [POS_NONE] * 6 + [0, 1, 2, 3]
    assert (pos[62] == POS_NONE).all() and (pos[128 + 62] == POS_NONE).all()


def test_channels_decay_and_layout():
    notes = [Note(0.1, 0.5, 60, 100)]
    T = n_frames_for(1.0, AC)
    r = notes_to_rolls(notes, [], AC, T)
    x = stack_inputs(r, MC_POS)
    assert x.shape == (input_channels(MC_POS), T) == (257 + 128 + 3 * 128, T)
    f0 = int(np.flatnonzero(r.onoff[60] > 0)[0])
    f1 = int(np.flatnonzero(r.onoff[60] < 0)[0])
    on4, on16, rel8 = x[385:513, :], x[513:641, :], x[641:769, :]
    assert on4[60, f0] == 1.0 and on4[60, f0 - 1] == 0.0 and on4[60, f1] == 0.0
    np.testing.assert_allclose(on16[60, f0 + 16], np.exp(-1.0), rtol=1e-6)
    np.testing.assert_allclose(rel8[60, f1 + 8], np.exp(-1.0), rtol=1e-6)
    assert rel8[60, f0:f1].max() == 0.0 and np.count_nonzero(x[385:, :][np.arange(384) % 128 != 60]) == 0
    # without the option, the old layout exactly
    old = ModelConfig(velocity=True, expression=True)
    np.testing.assert_array_equal(stack_inputs(r, old), x[:385])


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("chunks", [[1], [7, 1, 16]])
def test_live_equals_offline_with_positions(seed, chunks, monkeypatch):
    monkeypatch.setattr(test_pianoroll, "MC", MC_POS)
    monkeypatch.setattr(test_pianoroll, "AC", AC)
    score = random_score(seed)
    T = n_frames_for(score.duration + 0.3, AC)
    offline = stack_inputs(notes_to_rolls(score.notes, score.controls, AC, T), MC_POS)
    live = live_frames(score_events(score, AC.sample_rate), T, chunks)
    assert live.shape == offline.shape == (input_channels(MC_POS), T)
    assert np.count_nonzero(offline[385:]) > 0
    np.testing.assert_array_equal(live, offline)


def test_dataset_cache_decodes_to_the_same_inputs():
    score = random_score(1)
    T = n_frames_for(score.duration + 0.2, AC)
    r = notes_to_rolls(score.notes, score.controls, AC, T)
    enc = _encode_inputs(r)
    pos = positions_of(enc[0:128], enc[128:256].astype(np.float32) - 1.0)
    got, want = decode_inputs(enc, MC_POS, pos), stack_inputs(r, MC_POS)
    np.testing.assert_allclose(got[:385], want[:385], atol=1e-6)  # velocity: /127 vs *(1/127) in float32
    np.testing.assert_array_equal(got[385:], want[385:])
    with pytest.raises(ValueError):
        decode_inputs(enc, MC_POS)


def pos_cfg():
    cfg = load_config("tiny-test")
    return cfg.replace(model=dataclasses.replace(cfg.model, lookahead_frames=0, onset_decay_frames=(4.0,),
                                                 release_decay_frames=(8.0,)))


def test_model_chunked_equals_whole_with_positions():
    torch.manual_seed(0)
    cfg = pos_cfg()
    model = build_model(cfg).eval()
    score = random_score(2)
    T = n_frames_for(score.duration, cfg.audio)
    x = torch.from_numpy(stack_inputs(notes_to_rolls(score.notes, score.controls, cfg.audio, T), cfg.model))[None]
    assert model.in_channels == x.shape[1] == input_channels(cfg.model)
    assert_steps_equal_whole(model, x)


def assert_steps_equal_whole(model, x):
    """The streaming model stepped over x (1, C_in, T) in chunks of 1, 5 and 64 frames gives its whole-clip output."""
    with torch.no_grad():
        whole = model(x)
        for chunk in (1, 5, 64):
            state, ys = model.init_state(1), []
            for i in range(0, x.shape[-1], chunk):
                y, state = model.step(x[..., i:i + chunk], state)
                ys.append(y)
            assert (torch.cat(ys, -1) - whole).abs().max().item() <= 1e-5


def test_transplant_zero_init_keeps_the_old_output():
    torch.manual_seed(0)
    old_cfg = load_config("tiny-test")
    old = build_model(old_cfg).eval()
    cfg = pos_cfg().replace(model=dataclasses.replace(pos_cfg().model, lookahead_frames=old_cfg.model.lookahead_frames))
    new = build_model(cfg).eval()
    score = random_score(4)
    r = notes_to_rolls(score.notes, score.controls, cfg.audio, n_frames_for(score.duration, cfg.audio))
    assert_transplant_keeps_output(old, old_cfg, new, cfg, r)
    # a topology that differs elsewhere is one clear error
    wide = build_model(old_cfg.replace(model=dataclasses.replace(old_cfg.model, channels=(8, 12, 16, 24, 40))))
    with pytest.raises(UserError, match="does not fit"):
        transplant(wide.state_dict(), new)


def assert_transplant_keeps_output(old, old_cfg, new, cfg, rolls):
    """``old``'s weights transplanted into ``new`` (zero-init for the new input channels): the same output on
    ``rolls`` (each model seeing its own input layout)."""
    transplant(old.state_dict(), new)
    with torch.no_grad():
        a = old(torch.from_numpy(stack_inputs(rolls, old_cfg.model))[None])
        b = new(torch.from_numpy(stack_inputs(rolls, cfg.model))[None])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_l1_flux_charges_a_late_attack():
    target = torch.zeros(1, 4, 10)
    target[..., 3:] = 5.0
    late = torch.zeros(1, 4, 10)
    late[..., 3:] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0])
    l1 = make_loss("l1")
    flux = make_loss("l1_flux", flux_weight=1.0)
    assert flux(target, target)[0].item() == 0.0
    base, _ = l1(late, target)
    total, parts = flux(late, target)
    assert set(parts) == {"l1", "flux"}
    # L1: 4+3+2+1 over 10 frames; flux: |1-5| + 4 * |1| over 9 differences
    assert base.item() == pytest.approx(1.0)
    assert parts["flux"] == pytest.approx(8.0 / 9.0)
    assert total.item() == pytest.approx(1.0 + 8.0 / 9.0)


def test_l1_onset_weights_the_first_frames_of_notes():
    from rtperformer.learn.losses import onset_weights

    x = torch.zeros(1, 385, 10)
    x[0, 128 + 60, 3] = 1.0  # onset of pitch 60 at frame 3
    x[0, 128 + 64, 8] = -1.0  # an offset is not an onset
    w = onset_weights(x, frames=2, weight=5.0)
    assert w.shape == (1, 1, 10)
    assert w[0, 0].tolist() == [1, 1, 1, 5, 5, 1, 1, 1, 1, 1]
    loss = make_loss("l1_onset", onset_weight=5.0, onset_frames=2)
    target = torch.zeros(1, 4, 10)
    pred = torch.zeros(1, 4, 10)
    pred[..., 3] = 1.0  # error 1 on an attack frame only: 5 / (8 + 2*5)
    val, parts = loss(pred, target, x)
    assert val.item() == pytest.approx(5.0 / 18.0)
    assert parts["l1"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="needs the model input"):
        loss(pred, target)
