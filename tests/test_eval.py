"""Evaluation metrics on a tiny synthetic piece: known answers (target vs itself, +6 dB, a 440 Hz tone)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rtperformer.config import from_dict
from rtperformer.dsp import log_power
from rtperformer.learn.evaluate import evaluate, plot_spectrograms, write_json_atomic
from rtperformer.learn.metrics import (
    Pool,
    cents_error,
    detect_onsets,
    floor_power,
    lsd_frames,
    note_regions,
    onset_errors,
    pitch_track,
    power_from_features,
    sharpness_frames,
    spectral_convergence,
)

CFG = from_dict({"name": "evaltiny", "audio": {"sample_rate": 16000, "n_fft": 512, "hop": 128},
                 "model": {"channels": [8], "onoff_channels": [8], "texture_bands": [2]}})
A = CFG.audio
NOTES = [(0.0, 0.5, 69), (0.5, 1.0, 72), (1.0, 1.5, 76)]  # (start s, end s, midi)
DUR = 1.7


def rolls(notes, T):
    fr = A.frame_rate
    x = np.zeros((256, T), np.float32)
    for s0, s1, p in notes:
        a, b = int(round(s0 * fr)), max(int(round(s0 * fr)) + 1, int(round(s1 * fr)))
        x[p, a:b] = 1
        x[128 + p, a] = 1
        if b < T:
            x[128 + p, b] = -1
    return x


def tone(notes, dur=DUR, sr=A.sample_rate):
    t = np.arange(int(dur * sr)) / sr
    out = np.zeros_like(t)
    for s0, s1, p in notes:
        f = 440.0 * 2 ** ((p - 69) / 12)
        m = (t >= s0) & (t < s1)
        env = np.minimum(1.0, (t[m] - s0) / 0.01) * np.minimum(1.0, (s1 - t[m]) / 0.01)
        for h in (1, 2, 3):
            out[m] += 0.2 / h * env * np.sin(2 * np.pi * h * f * (t[m] - s0))
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def piece():
    audio = tone(NOTES)
    y = log_power(audio, A)
    x = rolls(NOTES, y.shape[1])
    return "p0", x, y, audio


class FrameModel:
    """Stands in for a model: returns fixed frames (optionally scaled in power) whatever the input."""

    def __init__(self, y, gain_db=0.0):
        self.y = np.log1p(np.expm1(y.astype(np.float64)) * 10 ** (gain_db / 10)).astype(np.float32)

    def __call__(self, x):
        return torch.from_numpy(self.y[:, : x.shape[-1]])[None]


def same_audio(audio):
    return lambda feats, cfg, length=None, notes=None: audio[:length]


def test_note_regions(piece):
    _, x, _, _ = piece
    r = note_regions(x, A.n_fft, A.hop, A.frame_rate)
    assert list(r.onsets) == [0, 62, 125]
    post = int(round(0.06 * A.frame_rate))
    assert r.attack[125 - 2 : 125 + post].all() and not r.attack[125 + post]
    assert (r.sustain & r.attack).sum() == 0 and r.notes.sum() == (r.sustain | r.attack).sum()
    assert r.score_midi[100] == 72 and np.isnan(r.score_midi[-1])
    assert len(set(r.note_ids[r.note_ids >= 0])) == 3


def test_metric_primitives():
    rng = np.random.default_rng(0)
    p = rng.random((20, 7)) + 0.1
    f = floor_power(p)
    assert np.allclose(lsd_frames(p, p, f), 0)
    assert np.allclose(lsd_frames(p, 4 * p, f), 10 * np.log10(4))
    assert spectral_convergence(p, p) == 0 and spectral_convergence(p, 4 * p) == pytest.approx(1.0)
    peaky = np.full((64, 3), 1e-6)
    peaky[10] = 1.0
    assert sharpness_frames(peaky, 1e-12, slice(0, 64)).min() == pytest.approx(60.0)
    assert sharpness_frames(rng.random((64, 3)) + 0.5, 1e-12, slice(0, 64)).max() < 5
    e = onset_errors(np.array([10, 50]), np.array([11, 40, 200]), 100.0)
    assert e[0] == pytest.approx(-10.0) and e[1] == pytest.approx(100.0) and np.isnan(e[2])
    assert cents_error(np.array([440.0, 880.0]), np.array([69.0, 69.0])) == pytest.approx([0.0, 1200.0])
    pool = Pool()
    pool.add("cents", np.array([0.0, 60.0, np.nan]))
    pool.add("note_cents", np.array([1.0]))
    s = pool.summary()["pitch"]
    assert s["voiced"] == pytest.approx(2 / 3, abs=1e-3) and s["within_50c"] == 0.5 and s["notes_within_50c"] == 1.0


def test_sine_pitch_is_within_a_few_cents():
    sr = 16000
    a = (0.3 * np.sin(2 * np.pi * 440.0 * np.arange(sr) / sr)).astype(np.float32)
    times = np.arange(20, 100) * 0.01
    f0 = pitch_track(a, sr, times, 200.0, 1000.0)
    c = cents_error(f0, np.full(len(f0), 69.0))
    assert np.isfinite(c).mean() > 0.95
    assert np.nanmedian(np.abs(c)) < 3.0


def test_onsets_of_a_tone_sequence(piece):
    _, x, y, _ = piece
    det = detect_onsets(power_from_features(y, 1.0), A.frame_rate)
    e = onset_errors(det, np.array([0, 62, 125]), A.frame_rate)
    assert np.isfinite(e).all() and np.abs(e).max() <= 25.0


def test_target_against_itself_is_perfect_and_gain_shows_in_level(piece, tmp_path):
    pid, x, y, audio = piece
    # the flat baseline: the target's own render 6 dB down (half the amplitude), a different system
    half = (pid, x, log_power(0.5 * audio, A), 0.5 * audio)
    flat = {"flat": lambda p: half if p == pid else None}
    report, first = evaluate(FrameModel(y), CFG, [piece], flat, synth=same_audio(audio))
    m, t, b = report["summary"]["model"], report["summary"]["target"], report["summary"]["flat"]
    assert m["lsd_db"] == 0 and m["lsd_attack_db"] == 0 and m["lsd_sustain_db"] == 0 and m["sc"] == 0
    assert m["level_db"] == 0 and m["sharpness_db"] == t["sharpness_db"]
    assert set(m) >= {"lsd_all_db", "lsd_audio_db", "sc_audio", "sharpness_frames_db", "pitch", "onset"}
    assert b["level_db"] == pytest.approx(-6.02, abs=0.01) and b["sc"] == pytest.approx(0.5, abs=1e-3)
    assert 0 < b["lsd_sustain_db"] <= 6.03 and 0 < b["lsd_db"] <= 6.03
    # this pure tone's median bin sits at the noise floor (fixed by the target's peak): only the peak moves
    assert b["sharpness_db"] == pytest.approx(t["sharpness_db"] - 6.02, abs=0.05)
    assert m["lsd_audio_db"] == 0 and m["sc_audio"] == 0 and b["aligned"] is True
    assert m["pitch"]["within_50c"] == 1.0 and m["pitch"]["median_abs_cents"] < 5
    assert m["pitch"]["notes"] == 3 and m["pitch"]["notes_within_50c"] == 1.0
    assert m["onset"]["matched"] == 1.0 and report["settings"]["noise_floor_db"] == -80.0

    louder, _ = evaluate(FrameModel(y, gain_db=6.0), CFG, [piece], pitch=False, synth=same_audio(audio))
    lm = louder["summary"]["model"]
    assert lm["level_db"] == pytest.approx(6.0, abs=0.01)
    assert 0 < lm["lsd_db"] <= 6.0 + 1e-6 and lm["sc"] == pytest.approx(10 ** 0.3 - 1, rel=1e-3)

    out = tmp_path / "r" / "eval.json"
    write_json_atomic(out, report)
    assert json.loads(out.read_text())["summary"]["model"]["lsd_db"] == 0
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]
    plot_spectrograms(first, CFG, tmp_path / "r" / "eval.png")
    assert (tmp_path / "r" / "eval.png").stat().st_size > 1000


def test_deadpan_with_other_timing_uses_its_own_rolls(piece):
    pid, x, y, audio = piece
    late = [(s0 + 0.05, s1 + 0.05, p) for s0, s1, p in NOTES]
    da = tone(late)
    dy = log_power(da, A)
    dead = (pid, rolls(late, dy.shape[1]), dy, da)
    report, _ = evaluate(None, CFG, [piece], {"deadpan": lambda p: dead}, synth=same_audio(audio))
    d = report["summary"]["deadpan"]
    assert d["aligned"] is False and d["lsd_db"] > 1.0
    assert d["pitch"]["within_50c"] == 1.0 and d["onset"]["matched"] == 1.0
    assert abs(d["level_db"]) < 0.5


def test_compare_table_and_cli(piece, tmp_path, capsys):
    from rtperformer.cli import main
    from rtperformer.learn.evaluate import compare_table

    pid, x, y, audio = piece
    rep, _ = evaluate(FrameModel(y, gain_db=3.0), CFG, [piece], {"flat": lambda p: piece}, pitch=False,
                      synth=same_audio(audio))
    table = compare_table([("a", rep), ("b", rep)])
    lines = table.splitlines()
    assert lines[0].startswith("| system | LSD dB") and [ln.split("|")[1].strip() for ln in lines[2:]] == [
        "a", "b", "target", "flat (FluidSynth)"]
    write_json_atomic(tmp_path / "eval-a.json", rep)
    assert main(["eval", "--table", str(tmp_path / "eval-a.json")]) == 0
    assert "| a |" in capsys.readouterr().out
    assert main(["eval", "--table", str(tmp_path / "missing.json")]) == 2
    assert main(["eval"]) == 2


def test_synthesize_makes_audio_close_to_the_target(piece):
    """Frames -> RTPGHI -> iSTFT reproduces a harmonic tone's spectrum well (delay handled)."""
    from rtperformer.learn.evaluate import synthesize

    _, x, y, audio = piece
    out = synthesize(y, CFG, length=len(audio))
    assert out.shape == audio.shape
    ref = power_from_features(y, 1.0)
    est = power_from_features(log_power(out, A), 1.0)
    assert spectral_convergence(ref, est) < 0.2
    r = note_regions(x, A.n_fft, A.hop, A.frame_rate)
    assert np.mean(lsd_frames(ref, est, floor_power(ref))[r.sustain]) < 4.0
