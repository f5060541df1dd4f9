"""rtperformer.offline.render: instrument assignment, chunked model inference, phase stages, mixing."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf

import torch

from rtperformer.config import load_config  # noqa: E402
from rtperformer.dsp.griffin_lim import BlockGriffinLim  # noqa: E402
from rtperformer.offline.mixdown import PEAK_CEILING, mix_to_wav  # noqa: E402
from rtperformer.errors import UserError  # noqa: E402
from rtperformer.midi.score import Control, Note, Score  # noqa: E402
from rtperformer.voice.audio_stage import OfflineAudio  # noqa: E402
from rtperformer.offline.render import (  # noqa: E402
    InputStream,
    PartResult,
    assign_parts,
    model_frames,
    render_score,
)
from rtperformer.roll.notes import notes_to_rolls  # noqa: E402
from rtperformer.roll.rolls import n_frames_for, stack_inputs  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    from rtperformer.model.performancenet import build_model

    torch.set_num_threads(1)
    cfg = load_config("tiny-test")
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def _score():
    notes = [
        Note(0.0, 0.4, 69, 100, channel=0, program=40, track=1),
        Note(0.3, 0.7, 72, 70, channel=0, program=40, track=1),
        Note(0.1, 0.8, 48, 90, channel=1, program=42, track=2),
        Note(0.2, 0.5, 36, 90, channel=9, program=0, track=3),  # drums: never rendered
        Note(0.0, 0.2, 60, 90, channel=3, program=0, track=4),  # piano: skipped unless --instrument
    ]
    return Score(notes, [Control(0.2, 0, 11, 50, 1)], [], 0.8, "test.mid", {1: "Violin"})


def test_assign_parts_by_program_and_by_flag():
    parts, skipped = assign_parts(_score())
    assert [(p.instrument, p.sources, len(p.notes)) for p in parts] == [("violin", [(1, 0)], 2), ("cello", [(2, 1)], 1)]
    assert len(skipped) == 2 and any("drums" in s for s in skipped) and any("program 0" in s for s in skipped)
    assert [c.number for c in parts[0].controls] == [11] and parts[1].controls == []
    parts, skipped = assign_parts(_score(), "flute")  # every pitched part, each its own flute
    assert [(p.instrument, p.sources, len(p.notes)) for p in parts] == [
        ("flute", [(1, 0)], 2), ("flute", [(2, 1)], 1), ("flute", [(4, 3)], 1)]
    assert parts[1].notes[0].pitch == 60 and parts[1].transposed == 1  # cello's C3 up an octave for the flute
    with pytest.raises(UserError, match="unknown instrument"):
        assign_parts(_score(), "oboe")
    drums = Score([Note(0, 1, 38, 90, channel=9, program=0)], [], [], 1.0, "d.mid")
    with pytest.raises(UserError, match="--instrument"):
        assign_parts(drums)


def _inputs(cfg, score, T):
    return InputStream(score.notes, score.controls, cfg, T, max_frames=256)


@pytest.mark.parametrize("chunk,T", [(1, 24), (5, None), (16, None)])
def test_streaming_chunks_equal_whole_clip_forward(tiny, chunk, T):
    model, cfg = tiny
    cfg = cfg.replace(render=dataclasses.replace(cfg.render, chunk_frames=chunk))
    score = _score()
    T = T or n_frames_for(score.duration, cfg.audio)
    x = stack_inputs(notes_to_rolls(score.notes, score.controls, cfg.audio, T), cfg.model)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)[None])[0].numpy()
    got = list(model_frames(model, cfg, _inputs(cfg, score, T)))
    xs = np.concatenate([a for a, _ in got], axis=1)
    ys = np.concatenate([b for _, b in got], axis=1)
    np.testing.assert_array_equal(xs, x)
    assert ys.shape == want.shape
    np.testing.assert_allclose(ys, want, rtol=1e-4, atol=1e-4)


def test_window_mode_covers_every_frame(tiny):
    model, cfg = tiny
    score = _score()
    T = n_frames_for(score.duration, cfg.audio)
    x = stack_inputs(notes_to_rolls(score.notes, score.controls, cfg.audio, T), cfg.model)
    # one window as long as the clip: exactly the whole-clip forward
    big = cfg.replace(render=dataclasses.replace(cfg.render, mode="window", window_frames=T + 5))
    with torch.inference_mode():
        want = model(torch.from_numpy(x)[None])[0].numpy()
    ys = np.concatenate([b for _, b in model_frames(model, big, _inputs(big, score, T))], axis=1)
    np.testing.assert_allclose(ys, want, rtol=1e-4, atol=1e-4)
    # overlapping windows: every input frame once, in order, finite outputs
    small = cfg.replace(render=dataclasses.replace(cfg.render, mode="window", window_frames=32, crossfade_frames=8))
    got = list(model_frames(model, small, _inputs(small, score, T)))
    np.testing.assert_array_equal(np.concatenate([a for a, _ in got], axis=1), x)
    ys = np.concatenate([b for _, b in got], axis=1)
    assert ys.shape == (cfg.audio.n_bins, T) and np.isfinite(ys).all()


def _burst(cfg, n, start):
    t = np.arange(n) / cfg.audio.sample_rate
    audio = np.zeros(n, np.float32)
    audio[start:] = 0.5 * np.sin(2 * np.pi * 440 * t[start:])
    return audio


@pytest.mark.parametrize("phase", ["rtpghi", "rtisila", "gla"])
def test_phase_stages_are_aligned_and_exact_length(tiny, phase):
    from rtperformer.dsp import log_power

    _, cfg = tiny
    ac = cfg.audio
    n = 8000
    start = 3000
    feats = log_power(_burst(cfg, n, start), ac)
    if phase == "gla":
        stage = BlockGriffinLim(ac, cfg.render, n, block=40, overlap=6)  # several blocks
    else:
        stage = OfflineAudio(phase, ac, cfg.render, n)
    outs = [stage.push(feats[:, i : i + 7]) for i in range(0, feats.shape[1], 7)]
    outs.append(stage.finish())
    audio = np.concatenate(outs)
    assert audio.shape == (n,) and audio.dtype == np.float32 and np.isfinite(audio).all()
    # silence before the burst (up to half a window of smearing), sound after it
    quiet = np.abs(audio[: start - ac.n_fft]).max()
    loud = np.abs(audio[start + ac.n_fft : n - ac.n_fft]).mean()
    assert quiet < 0.02 and loud > 0.15


def test_mix_gain_is_peak_safe(tmp_path):
    sr = 8000
    a = np.full(1000, 0.7, np.float32)
    b = np.full(800, 0.6, np.float32)
    for name, x in (("a", a), ("b", b)):
        sf.write(tmp_path / f"{name}.wav", x, sr, subtype="FLOAT")
    parts = [PartResult("violin", tmp_path / "a.wav", sr, 1000, 0.7, None),
             PartResult("cello", tmp_path / "b.wav", sr, 800, 0.6, None)]
    gain, peak = mix_to_wav(parts, tmp_path / "mix.wav")
    y, _ = sf.read(tmp_path / "mix.wav", dtype="float32")
    assert y.shape == (1000,)
    assert gain == pytest.approx(PEAK_CEILING / 1.3) and peak == pytest.approx(PEAK_CEILING)
    assert y[0] == pytest.approx(PEAK_CEILING, rel=1e-5) and y[-1] == pytest.approx(0.7 * gain, rel=1e-5)
    # quiet audio is never boosted
    gain, _ = mix_to_wav(parts[1:], tmp_path / "quiet.wav")
    assert gain == 1.0


def test_render_score_two_instruments_and_resampling(tiny, tmp_path):
    model, cfg = tiny
    score = _score()
    parts, _ = assign_parts(score)
    hi = cfg.replace(audio=dataclasses.replace(cfg.audio, sample_rate=22050))
    from rtperformer.model.performancenet import build_model

    model_hi = build_model(hi).eval()
    out = tmp_path / "o.wav"
    s = render_score(score, parts, {"violin": (model, cfg), "cello": (model_hi, hi)}, out, tmp_path / "o.png", progress_bar=False)
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 22050 == s.sample_rate
    assert audio.shape == (round((0.8 + cfg.render.release_seconds) * 22050),)
    assert np.abs(audio).max() <= PEAK_CEILING + 1e-6 and np.abs(audio).max() > 0
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "o.wav"]  # no temp files left


def test_parts_render_concurrently_to_the_same_mix(tiny, tmp_path, monkeypatch):
    """Parts render one per core (threads); the mix equals the one-after-another render to the sample."""
    import os

    model, cfg = tiny
    score = _score()
    parts, _ = assign_parts(score)
    mixes = []
    for cores in ({0}, {0, 1, 2}):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, c=cores: c, raising=False)
        out = tmp_path / f"mix{len(cores)}.wav"
        render_score(score, parts, {"violin": (model, cfg), "cello": (model, cfg)}, out, progress_bar=False)
        mixes.append(sf.read(out, dtype="float32")[0])
    assert np.abs(mixes[0]).max() > 0
    np.testing.assert_array_equal(mixes[0], mixes[1])


def test_render_score_missing_output_folder(tiny, tmp_path):
    model, cfg = tiny
    parts, _ = assign_parts(_score())
    with pytest.raises(UserError, match="output folder"):
        render_score(_score(), parts, {"violin": (model, cfg), "cello": (model, cfg)}, tmp_path / "nope" / "o.wav")


def test_paper_form_renders_in_crossfaded_windows(tmp_path):
    from rtperformer.config import from_dict
    from rtperformer.model.performancenet import build_model

    d = load_config("tiny-test").to_dict()
    d["model"].update(form="paper", norm="instance", lookahead_frames=0)
    d["render"].update(mode="streaming", window_frames=48, crossfade_frames=8)  # the paper form cannot step
    cfg = from_dict(d)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    score = _score()
    T = n_frames_for(score.duration, cfg.audio)
    got = list(model_frames(model, cfg, _inputs(cfg, score, T)))
    assert sum(y.shape[1] for _, y in got) == T and len(got) >= 2
    parts, _ = assign_parts(score, "violin")
    s = render_score(score, parts, {"violin": (model, cfg)}, tmp_path / "p.wav", progress_bar=False)
    assert sf.info(str(tmp_path / "p.wav")).frames == s.n_samples == round((score.duration + cfg.render.release_seconds) * cfg.audio.sample_rate)


@pytest.mark.parametrize("phase,lookahead", [("rtpghi", 0), ("rtpghi", 1), ("rtisila", 0)])
def test_streaming_phase_equals_offline_istft_of_the_same_phase(tiny, phase, lookahead):
    from rtperformer.dsp import istft, log_power, make_phase, to_magnitude

    _, cfg = tiny
    ac = cfg.audio
    rc = dataclasses.replace(cfg.render, phase_lookahead=lookahead)
    n = 5000
    feats = log_power(_burst(cfg, n, 1200), ac)
    mag = to_magnitude(feats, ac)
    ref_phase = make_phase(phase, ac, rc)
    d = ref_phase.delay_frames
    spec = ref_phase.process(np.concatenate([mag, np.zeros((mag.shape[0], d), np.float32)], axis=1))[:, d:]
    want = istft(spec, ac, length=n)
    stage = OfflineAudio(phase, ac, rc, n)
    got = np.concatenate([stage.push(feats[:, i : i + 9]) for i in range(0, feats.shape[1], 9)] + [stage.finish()])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5)
