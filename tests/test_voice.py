"""The one voice chain (rtperformer/voice/chain.py): live and offline give the same samples, delays add up."""

import numpy as np
import pytest
import soundfile as sf
import torch

from rtperformer.config import from_dict
from rtperformer.dsp import log_power
from rtperformer.live.engine import Engine, Instrument
from rtperformer.midi.events import seconds_to_sample, timeline
from rtperformer.midi.score import Note
from rtperformer.model.performancenet import build_model
from rtperformer.offline.render import InputStream, Part, model_frames, render_part
from rtperformer.voice.audio_stage import AudioStage, OfflineAudio
from rtperformer.voice.chain import ModelStage, chain_delay_samples, make_backend

TINY = {"model": {"channels": [16, 24], "onoff_channels": [16, 16], "texture_bands": [2], "norm": "layer"},
        "render": {"release_seconds": 0.1}}
NOTES = [Note(0.05, 0.40, 69, 100), Note(0.25, 0.60, 72, 64), Note(0.70, 0.90, 60, 127)]
SECONDS = 1.2


def tiny(base=None, **over):
    """A random-weight tiny streaming model and its config: ``base`` (default TINY) with ``over``'s sections
    updated."""
    d = {k: dict(v) for k, v in (base or TINY).items()}
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    cfg = from_dict(d)
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def live(model, cfg, n_samples):
    """The live engine (exact schedule) on NOTES: float32 (>= n_samples + delay,), and its delay."""
    eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact")
    events = [(seconds_to_sample(m.time, cfg.audio.sample_rate), m.data) for m in timeline(NOTES, [])]
    voice = eng.voices["violin"]
    hop = cfg.audio.hop
    out = eng.render_offline(events, (n_samples + voice.delay_samples) // hop + 2)
    return out, voice.delay_samples


@pytest.mark.parametrize("phase,lookahead,step,score", [
    ("rtpghi", 0, 1, 0.0), ("rtpghi", 1, 4, 0.0), ("rtisila", 2, 3, 0.0),
    # the score-informed phase on for every note (100 bins), without and with the phase's lookahead
    ("rtpghi", 0, 1, 100.0), ("rtpghi", 1, 4, 100.0)])
def test_offline_render_equals_live_engine_shifted_by_the_chain_delay(tmp_path, phase, lookahead, step, score):
    """Same events, same settings (gate off: offline has none; the offline chunk is the live step, since
    torch's float rounding depends on the step size): render's samples are the live engine's,
    delay_samples earlier, sample for sample. Compared from n_fft on, up to n_fft before the end: live
    synthesises the phase's warm-up frames (silence) where offline drops them, which changes the first
    window sum, and offline flushes its end where live goes on. With the score-informed phase the held
    notes reach the phase aligned with the frames they go with (live: delayed by the model's lookahead)."""
    look = {"phase_lookahead": lookahead} if phase == "rtpghi" else {"rtisila_lookahead": lookahead}
    model, cfg = tiny(render={"phase": phase, "chunk_frames": step, "score_phase_below_bins": score, **look},
                      serve={"gate": False, "step_frames": step, "istft_trim_hops": 0, "backend": "torch"})
    wav = tmp_path / "part.wav"
    res = render_part(Part("violin", [(0, 0)], NOTES, []), model, cfg, SECONDS, wav, progress_bar=False)
    offline = sf.read(str(wav), dtype="float32")[0]
    if score:  # the score phase is in play: without it the render differs
        _, off_cfg = tiny(render={"phase": phase, "chunk_frames": step, "score_phase_below_bins": 0.0, **look})
        plain = tmp_path / "plain.wav"
        render_part(Part("violin", [(0, 0)], NOTES, []), model, off_cfg, SECONDS, plain, progress_bar=False)
        assert np.abs(sf.read(str(plain), dtype="float32")[0] - offline).max() > 1e-3
    n = res.n_samples
    assert offline.shape == (n,)
    out, delay = live(model, cfg, n)
    d = cfg.model.lookahead_frames * cfg.audio.hop + lookahead * cfg.audio.hop + cfg.audio.n_fft // 2
    assert delay == d
    a = cfg.audio.n_fft
    assert np.abs(offline[a : n - a]).max() > 1e-3
    np.testing.assert_array_equal(out[delay + a : delay + n - a], offline[a : n - a])
    # one hop off and they no longer agree: the comparison sees the delay
    assert not np.array_equal(out[delay + a + cfg.audio.hop : delay + n - a + cfg.audio.hop], offline[a : n - a])


@pytest.mark.parametrize("trim", [1, 2])
def test_low_delay_synthesis_offline_equals_live(trim):
    """serve.istft_trim_hops is a chain setting like any other: offline with the same trim is live,
    trim hops less delayed."""
    model, cfg = tiny(render={"chunk_frames": 2},
                      serve={"gate": False, "step_frames": 2, "istft_trim_hops": trim, "backend": "torch"})
    ac = cfg.audio
    n = seconds_to_sample(SECONDS, ac.sample_rate)
    T = n // ac.hop + 1
    inputs = InputStream(NOTES, [], cfg, T, max_frames=64)
    stage = OfflineAudio(cfg.render.phase, ac, cfg.render, n, trim_hops=trim)
    offline = np.concatenate([stage.push(y) for _, y in model_frames(model, cfg, inputs)] + [stage.finish()])
    out, delay = live(model, cfg, n)
    assert delay == ac.n_fft // 2 - trim * ac.hop
    a = ac.n_fft
    np.testing.assert_array_equal(out[delay + a : delay + n - a], offline[a : n - a])


def test_live_notes_reach_the_audio_stage_with_the_model_frames_they_go_with():
    """With a model lookahead L, output frame j of a step estimates input frame j - L: the live voice hands
    the audio stage the held-note roll of those input frames (offline, render_stream pairs them the same
    way), so the score-informed phase hears each note with its own frames."""
    L, step = 2, 3
    model, cfg = tiny(model={"lookahead_frames": L}, serve={"gate": False, "step_frames": step, "backend": "torch"})
    eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact")
    voice = eng.voices["violin"]
    for s, d in sorted((seconds_to_sample(m.time, cfg.audio.sample_rate), m.data) for m in timeline(NOTES, [])):
        eng.push(s, d)
    xs, notes = [], []
    model_step, audio_push = voice.model.step, voice.audio.push

    def record_step(x):
        xs.append(x[: cfg.model.n_pitches].copy())
        return model_step(x)

    def record_push(y, held=None, bend=None):
        notes.append(held.copy())
        return audio_push(y, held, bend)

    voice.model.step, voice.audio.push = record_step, record_push
    while eng.frame < 60:
        eng.render_step()
    x, held = np.concatenate(xs, axis=1), np.concatenate(notes, axis=1)
    assert x.shape == held.shape and x[:, :-L].any()
    np.testing.assert_array_equal(held[:, L:], x[:, :-L])
    assert not held[:, :L].any()


def envelope(x, width=64):
    """Smoothed squared signal (moving average of ``width`` samples)."""
    return np.convolve(np.square(x.astype(np.float64)), np.ones(width) / width, mode="same")


def lag_of(y, x, max_lag):
    """The lag (-max_lag..max_lag samples) at which y's envelope best matches x's."""
    ex = envelope(np.concatenate([np.zeros(max_lag, np.float32), x, np.zeros(max_lag, np.float32)]))
    ey = envelope(y)[: len(x)]
    n = len(ey)
    return int(np.argmax([np.dot(ex[k : k + n], ey) for k in range(2 * max_lag, -1, -1)])) - max_lag


@pytest.mark.parametrize("phase,lookahead,trim", [("rtpghi", 0, 0), ("rtpghi", 1, 0), ("rtpghi", 0, 1),
                                                   ("rtpghi", 1, 2), ("rtisila", 0, 0), ("rtisila", 2, 1)])
def test_onsets_come_out_where_the_audio_stage_says(phase, lookahead, trim):
    """Sharp-edged tone bursts, analysed to log1p-power frames and pushed through the live audio stage,
    come out delay_samples later (phase delay + iSTFT delay): the envelopes line up at that lag; offline
    (delays dropped) at lag 0. Magnitude-only phase moves the sound by less than half a hop (RTPGHI's
    backward time difference at lookahead 0: ~hop/2 late); a delay counted wrong moves it by whole hops."""
    look = {"phase_lookahead": lookahead} if phase == "rtpghi" else {"rtisila_lookahead": lookahead}
    _, cfg = tiny(render={"phase": phase, **look})
    ac = cfg.audio
    t = np.arange(60 * ac.hop) / ac.sample_rate
    gate = np.zeros(len(t), np.float32)
    for a, b in ((2000, 5000), (7311, 8000), (9100, 12345)):  # not on the hop grid
        gate[a:b] = 1.0
    x = (0.3 * np.sin(2 * np.pi * 440.0 * t) * gate).astype(np.float32)
    feats = log_power(x, ac)
    stage = AudioStage(ac, cfg.render, trim_hops=trim)
    assert stage.delay_frames == lookahead
    assert stage.delay_samples == lookahead * ac.hop + ac.n_fft // 2 - trim * ac.hop
    out = np.concatenate([stage.push(feats[:, i : i + 3]).copy() for i in range(0, feats.shape[1], 3)])
    lag = lag_of(out, x, 8 * ac.hop)
    assert abs(lag - stage.delay_samples) < ac.hop // 2, (lag, stage.delay_samples)
    off = OfflineAudio(phase, ac, cfg.render, len(x), trim_hops=trim)
    y = np.concatenate([off.push(feats), off.finish()])
    assert abs(lag_of(y, x, 8 * ac.hop) - (lag - stage.delay_samples)) <= 2


def test_model_stage_delay_is_the_backend_lookahead_and_the_chain_sums_it():
    """Emitted frame j of the model stage estimates input frame j - delay_frames (the whole-clip forward
    aligns output t with input t); the voice's delay is model + phase + iSTFT."""
    model, cfg = tiny(model={"lookahead_frames": 2}, serve={"backend": "torch", "step_frames": 3})
    stage = ModelStage(make_backend("torch", model, cfg, 3))
    assert stage.delay_frames == 2
    x = (np.random.default_rng(0).random((model.in_channels, 30)) < 0.1).astype(np.float32)
    got = np.concatenate([stage.step(x[:, i : i + 3]) for i in range(0, 30, 3)], axis=1)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(got[:, 2:], want[:, :28], atol=1e-5)
    eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact")
    voice = eng.voices["violin"]
    assert voice.delay_samples == chain_delay_samples(2, voice.audio) == 2 * cfg.audio.hop + voice.audio.delay_samples


def test_live_audio_stage_reuses_its_buffers():
    """Per hop the live audio stage writes into the same arrays (no allocation in the render loop)."""
    _, cfg = tiny()
    stage = AudioStage(cfg.audio, cfg.render, trim_hops=1)
    f = np.ones((cfg.audio.n_bins, 4), np.float32)
    a = stage.push(f)
    b = stage.push(f)
    assert np.shares_memory(a, b)
    c = stage.push(f, None, np.full(4, 1.0, np.float32))  # a bent push too
    assert np.shares_memory(a, c)
