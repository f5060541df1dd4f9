"""Pitch bend and the mod wheel (issue 12 item 3): the bend row (rolls), the same live (through the
engine) and offline (rolls, render) and in the corpus (FluidSynth's own events); the model's bend input
(chunked == whole, zero-init transplant, another config refused); the per-frame warp of the audio stage;
the de-warped training targets."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from rtperformer.config import AudioConfig, ModelConfig, load_config
from rtperformer.learn.data.humanize import Performance, PNote, Vibrato
from rtperformer.learn.data.synth import BEND_RANGE_CENTS, performance_events
from rtperformer.voice.audio_stage import AudioStage, warp_features, warp_frames
from rtperformer.live.engine import Engine, Instrument
from rtperformer.midi.events import PITCH_WHEEL, score_events, seconds_to_sample, timeline
from rtperformer.midi.score import Control, Note, Score
from rtperformer.model import build_model
from rtperformer.offline.render import Part, render_part
from rtperformer.roll.notes import notes_to_rolls
from rtperformer.roll.painter import BendSpec, bend_spec, triangle
from rtperformer.roll.rolls import BEND_INPUT_SEMITONES, input_channels, n_frames_for, stack_inputs

from test_note_position import assert_steps_equal_whole, assert_transplant_keeps_output
from test_pianoroll import random_score
from test_voice import tiny as voice_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")

AC = AudioConfig(sample_rate=16000, n_fft=512, hop=128)
MC = ModelConfig(velocity=True, expression=True, bend_input=True)
TINY = {"model": {"channels": [16, 24], "onoff_channels": [16, 16], "texture_bands": [2], "norm": "layer",
                  "lookahead_frames": 0, "bend_input": True},
        "render": {"release_seconds": 0.1}}


def tiny(**over):
    return voice_tiny(TINY, **over)


def bent_score(seed, seconds=3.0):
    """random_score's notes and controllers (re-strikes, pedal, CC121 ...) plus pitch bends and CC1."""
    base = random_score(seed, seconds)
    rng = np.random.default_rng(seed)
    controls = list(base.controls)
    for ch in (0, 1):
        for t in np.sort(rng.uniform(0, seconds, 12)):
            controls.append(Control(float(t), ch, PITCH_WHEEL, int(rng.integers(-8192, 8192)), ch))
        for t in np.sort(rng.uniform(0, seconds, 4)):
            controls.append(Control(float(t), ch, 1, int(rng.integers(0, 128)), ch))
    controls.sort(key=lambda c: c.time)
    return Score(base.notes, controls, [], base.duration)


# -- the bend row ---------------------------------------------------------------------------------------


def test_bend_row_of_a_bend_and_the_mod_wheel():
    spec = BendSpec(bend_range=2.0, mod_cents=50.0, mod_hz=8.0, frame_rate=AC.sample_rate / AC.hop)
    T = n_frames_for(1.5, AC)
    f = lambda s: seconds_to_sample(s, AC.sample_rate) // AC.hop  # noqa: E731  (times on frame centres)
    notes = [Note(0.0, 1.0, 60, 100)]
    half_up = Control(f(0.2) * AC.hop / AC.sample_rate, 0, PITCH_WHEEL, 4096, 0)  # +1 semitone
    mod = Control(f(0.5) * AC.hop / AC.sample_rate, 0, 1, 127, 0)
    r = notes_to_rolls(notes, [half_up, mod], AC, T, bend=spec)
    b = r.bend[0]
    assert b.shape == (T,) and b.dtype == np.float32
    assert (b[: f(0.2)] == 0).all() and (b[f(0.2) : f(0.5)] == 1.0).all()
    t = np.arange(f(0.5), f(1.0))
    want = 1.0 + 0.5 * np.array([triangle(x * 8.0 / spec.frame_rate) for x in t])  # LFO from the note's onset
    np.testing.assert_allclose(b[f(0.5) : f(1.0)], want, atol=1e-6)
    assert b[f(0.5):f(1.0)].max() > 1.45 and b[f(0.5):f(1.0)].min() < 0.55
    # released: the note held last goes on (its bend and LFO), as its release tail sounds
    np.testing.assert_allclose(b[f(1.0) + 3], 1.0 + 0.5 * triangle((f(1.0) + 3) * 8.0 / spec.frame_rate), atol=1e-6)
    # the model's channel: bend / 2 semitones, last
    x = stack_inputs(r, MC)
    assert x.shape == (input_channels(MC), T) == (386, T)
    np.testing.assert_array_equal(x[385], b / BEND_INPUT_SEMITONES)
    # without the option, the old layout exactly
    np.testing.assert_array_equal(stack_inputs(r, ModelConfig(velocity=True, expression=True)), x[:385])


def test_bend_row_is_the_mean_over_held_notes_and_reset_clears_it():
    fr = AC.sample_rate / AC.hop
    notes = [Note(0.0, 1.0, 60, 100, channel=0), Note(0.0, 1.0, 64, 100, channel=1)]
    ctl = [Control(0.1, 0, PITCH_WHEEL, 8191, 0), Control(0.1, 1, PITCH_WHEEL, -4096, 1),
           Control(0.5, 0, 121, 0, 0)]
    r = notes_to_rolls(notes, ctl, AC, n_frames_for(1.2, AC), bend=BendSpec(frame_rate=fr))
    b = r.bend[0]
    k = lambda s: int(round(s * fr))  # noqa: E731
    np.testing.assert_allclose(b[k(0.3)], (2.0 * 8191 / 8192 - 1.0) / 2, atol=1e-6)
    np.testing.assert_allclose(b[k(0.7)], -0.5, atol=1e-6)  # CC121 reset channel 0's bend only


@pytest.mark.parametrize("seed,step,lookahead", [(0, 1, 0), (3, 5, 0), (0, 5, 2)])
def test_live_engine_equals_offline_rolls_with_bend_and_mod_wheel(seed, step, lookahead):
    """Through the real engine path (Engine routes pitch bend and CC1 to the voice's pianoroll): every
    frame the model gets, and the bend row the audio stage warps by (delayed by the model's lookahead,
    like the frames it goes with), equal the offline rolls."""
    model, cfg = tiny(model={"lookahead_frames": lookahead},
                      serve={"gate": False, "step_frames": step, "backend": "torch", "pitch_bend_range": 12.0})
    score = bent_score(seed)
    a = cfg.audio
    T = n_frames_for(score.duration + 0.3, a)
    T -= T % step
    spec = bend_spec(cfg.model, a, 12.0)
    offline = notes_to_rolls(score.notes, score.controls, a, T, bend=spec)
    want = stack_inputs(offline, cfg.model)
    assert np.count_nonzero(offline.bend) > T // 2 and np.abs(offline.bend).max() > 2.0
    eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact")
    voice = eng.voices["violin"]
    xs, bends = [], []
    step_model, push_audio = voice.model.step, voice.audio.push

    def record_step(x):
        xs.append(x.copy())
        return step_model(x)

    def record_push(y, notes=None, bend=None):
        bends.append(np.array(bend))
        return push_audio(y, notes, bend)

    voice.model.step, voice.audio.push = record_step, record_push
    events = [(e.sample_time, e.data) for e in score_events(score, a.sample_rate, channels=[0, 1])]
    eng.render_offline(events, T)
    np.testing.assert_array_equal(np.concatenate(xs, axis=1), want)
    got = np.concatenate(bends)
    np.testing.assert_array_equal(got[lookahead:], offline.bend[0][: T - lookahead])
    assert not got[:lookahead].any()


def test_offline_render_equals_live_with_bend(tmp_path):
    """render applies the same per-frame warp as the live voice: sample for sample (delay-shifted)."""
    model, cfg = tiny(render={"chunk_frames": 1}, serve={"gate": False, "step_frames": 1, "istft_trim_hops": 0,
                                                        "backend": "torch"})
    score = bent_score(1, seconds=1.0)
    notes = [n for n in score.notes if n.channel == 0]
    # bends and CC1 (the pedal and CC11 gains are not this test's subject)
    controls = [c for c in score.controls if c.channel == 0 and c.number in (PITCH_WHEEL, 1)]
    seconds = 1.3
    res = render_part(Part("violin", [(0, 0)], notes, controls), model, cfg, seconds, tmp_path / "p.wav",
                      progress_bar=False)
    offline = sf.read(str(tmp_path / "p.wav"), dtype="float32")[0]
    eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact")
    delay = eng.voices["violin"].delay_samples
    events = [(seconds_to_sample(m.time, cfg.audio.sample_rate), m.data) for m in timeline(notes, controls)]
    out = eng.render_offline(events, (res.n_samples + delay) // cfg.audio.hop + 2)
    n, w = res.n_samples, cfg.audio.n_fft
    assert np.abs(offline[w : n - w]).max() > 1e-3
    np.testing.assert_array_equal(out[delay + w : delay + n - w], offline[w : n - w])
    # the bends did something: without them the render differs
    plain = [c for c in controls if c.number not in (PITCH_WHEEL, 1)]
    render_part(Part("violin", [(0, 0)], notes, plain), model, cfg, seconds, tmp_path / "q.wav", progress_bar=False)
    assert not np.allclose(sf.read(str(tmp_path / "q.wav"), dtype="float32")[0][w : n - w], offline[w : n - w])


def test_midi_file_pitch_wheel_reaches_the_rolls(tmp_path):
    import mido

    from rtperformer.midi.score import read_midi

    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.Message("note_on", note=60, velocity=90, time=0))
    tr.append(mido.Message("pitchwheel", pitch=-8192, time=480))  # 0.5 s at 120 bpm: a full bend down
    tr.append(mido.Message("note_off", note=60, velocity=0, time=480))
    mid.save(str(tmp_path / "b.mid"))
    score = read_midi(tmp_path / "b.mid")
    assert [(c.number, c.value) for c in score.controls] == [(PITCH_WHEEL, -8192)]
    r = notes_to_rolls(score.notes, score.controls, AC, n_frames_for(1.0, AC))
    fr = AC.sample_rate / AC.hop
    assert r.bend[0, int(0.4 * fr)] == 0.0 and r.bend[0, int(0.6 * fr)] == -2.0


# -- the corpus -------------------------------------------------------------------------------------------


def vibrato_performance():
    vib = Vibrato(delay=0.2, ramp=0.2, rate=5.5, depth=25.0, phase=1.0)
    notes = [PNote(0.05, 0.9, 67, 90, vib), PNote(0.3, 0.9, 74, 80, Vibrato(0.1, 0.1, 6.0, 15.0, 0.0)),
             PNote(1.0, 1.4, 69, 70, None)]
    return Performance(notes, [(0.0, 100)], 1.4)


def test_corpus_bend_row_is_what_a_live_pianoroll_makes_of_fluidsynths_events():
    """bend_row feeds FluidSynth's own events (one channel per note) through the tracker: a live pianoroll
    fed the same events as MIDI gives the same row; double stops average their vibratos."""
    from rtperformer.learn.data.bends import bend_row
    from rtperformer.midi.events import MidiEvent, note_off, note_on, pitch_bend
    from rtperformer.roll.pianoroll import EventSchedule, Pianoroll

    perf = vibrato_performance()
    a = AudioConfig(sample_rate=48000, n_fft=1024, hop=256)
    T = n_frames_for(1.6, a)
    row = bend_row(perf, T, a.sample_rate, a.hop)
    mc = ModelConfig(velocity=True, expression=True, bend_input=True)
    lp = Pianoroll(mc, max_frames=4, bend=bend_spec(mc, a, BEND_RANGE_CENTS / 100.0))
    schedule = EventSchedule(a.hop, exact=True)
    for sample, _, typ, k, val in performance_events(perf, a.sample_rate):
        data = {1: lambda: note_off(k // 128, k % 128), 2: lambda: pitch_bend(k, val),
                3: lambda: note_on(k // 128, k % 128, val)}.get(typ)
        if data is not None:
            schedule.push(MidiEvent(sample, data()))
    live = []
    for _ in range(0, T - T % 4, 4):
        lp.take(schedule, 4)
        live.append(lp.bend.copy())
    np.testing.assert_array_equal(np.concatenate(live), row[: T - T % 4])
    cents = row * 100
    fr = a.sample_rate / a.hop
    assert np.abs(cents[: int(0.25 * fr)]).max() == 0.0  # before the first vibrato starts
    assert 10 < np.abs(cents[int(0.6 * fr) : int(0.85 * fr)]).max() < 25 * 1.01  # mean of two vibratos
    assert (cents[int(1.05 * fr) : int(1.35 * fr)] == 0).all()  # a new note: its channel's bend is reset


def test_regenerate_writes_rows_and_refuses_a_changed_performance(tmp_path):
    """A small real corpus (FluidSynth): the built rows equal the regenerated ones; a render whose stored
    notes differ from its seed's performance is an error, with no row written for it."""
    from rtperformer.learn.data.bends import bend_path
    from rtperformer.learn.data.corpus import regenerate_bends
    from rtperformer.learn.data.corpus import BuildSettings, build
    from rtperformer.errors import UserError

    st = BuildSettings(out=tmp_path / "corpus", cache_dir=tmp_path / "cache", minutes=0.6, sources=("folk",),
                       jobs=1, split_dir=tmp_path / "splits")
    (tmp_path / "splits").mkdir()
    man = build(["flute"], st, log=lambda *_: None)[0]
    pdir = st.out / "flute" / man["pieces"][0]["id"]
    built = np.load(bend_path(pdir, "expressive"))
    assert np.abs(built).max() > 0.05  # vibrato: 10-36 cents
    for p in man["pieces"]:
        for k in p["kinds"]:
            bend_path(st.out / "flute" / p["id"], k).unlink()
    regenerate_bends("flute", st.out, st.cache_dir, log=lambda *_: None)
    np.testing.assert_array_equal(np.load(bend_path(pdir, "expressive")), built)
    with np.load(pdir / "expressive_rolls.npz") as z:
        arrays = dict(z)
    arrays["notes"][0, 0] += 0.01
    np.savez_compressed(pdir / "expressive_rolls.npz", **arrays)
    bend_path(pdir, "expressive").unlink()
    with pytest.raises(UserError, match="not reproduced"):
        regenerate_bends("flute", st.out, st.cache_dir, log=lambda *_: None)
    assert not bend_path(pdir, "expressive").exists()


# -- the audio stage and the targets ----------------------------------------------------------------------


def test_warp_per_frame_chunked_equals_whole_and_moves_a_partial():
    cfg = load_config("tiny-test")
    a = cfg.audio
    rng = np.random.default_rng(0)
    feats = rng.random((a.n_bins, 40)).astype(np.float32) * 5
    bend = np.concatenate([np.zeros(10), np.linspace(-2, 2, 30)]).astype(np.float32)
    notes = np.zeros((128, 40), np.float32)
    notes[36, 5:35] = 1.0  # a low note: the score-informed phase follows the bend frame by frame
    whole = AudioStage(a, cfg.render).push(feats, notes, bend).copy()
    st = AudioStage(a, cfg.render)
    parts = [st.push(feats[:, i : i + 3], notes[:, i : i + 3], bend[i : i + 3]).copy() for i in range(0, 40, 3)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not np.array_equal(AudioStage(a, cfg.render).push(feats, notes), whole)  # the bend did something
    mag = np.zeros((a.n_bins, 2), np.float32)
    mag[40] = 1.0
    w = warp_frames(mag, np.array([12.0, 0.0]))
    assert int(np.argmax(w[:, 0])) == 80 and int(np.argmax(w[:, 1])) == 40
    # de-warping a warped frame gives the frame back (away from the interpolation's smoothing)
    y = np.log1p(a.power_scale * np.outer(np.exp(-np.arange(a.n_bins) / 30.0), np.ones(3))).astype(np.float32)
    s = np.array([0.3, -0.2, 0.0])
    back = warp_features(warp_features(y, s, a.power_scale), -s, a.power_scale)
    np.testing.assert_allclose(back[:100], y[:100], atol=0.05)


def test_bend_changes_nothing_for_a_model_without_input_or_warp():
    """model.bend_warp off and no bend input: pitch bend and CC1 do not touch the sound."""
    model, cfg = tiny(model={"bend_input": False, "bend_warp": False}, serve={"gate": False})
    ev = [(0, bytes([0x90, 69, 100]))]
    bent = ev + [(3000, bytes([0xE0, 0x00, 0x00])), (3000, bytes([0xB0, 1, 127]))]
    outs = [Engine([Instrument("violin", model, cfg)], cfg, schedule="exact").render_offline(e, 120) for e in (ev, bent)]
    assert np.abs(outs[0]).max() > 0
    np.testing.assert_array_equal(outs[0], outs[1])


# -- the model ----------------------------------------------------------------------------------------


def bend_cfg():
    cfg = load_config("tiny-test")
    return cfg.replace(model=dataclasses.replace(cfg.model, lookahead_frames=0, bend_input=True))


def test_model_chunked_equals_whole_with_bend_input():
    torch.manual_seed(0)
    cfg = bend_cfg()
    model = build_model(cfg).eval()
    score = bent_score(2)
    T = n_frames_for(score.duration, cfg.audio)
    r = notes_to_rolls(score.notes, score.controls, cfg.audio, T, bend=bend_spec(cfg.model, cfg.audio))
    x = torch.from_numpy(stack_inputs(r, cfg.model))[None]
    assert model.in_channels == x.shape[1] == input_channels(cfg.model) and x[0, -1].abs().max() > 0
    assert_steps_equal_whole(model, x)


def test_transplant_zero_init_starts_as_the_old_model():
    torch.manual_seed(0)
    old_cfg = load_config("tiny-test")
    old = build_model(old_cfg).eval()
    cfg = old_cfg.replace(model=dataclasses.replace(old_cfg.model, bend_input=True))
    new = build_model(cfg).eval()
    score = bent_score(4)
    T = n_frames_for(score.duration, cfg.audio)
    r = notes_to_rolls(score.notes, score.controls, cfg.audio, T, bend=bend_spec(cfg.model, cfg.audio))
    assert_transplant_keeps_output(old, old_cfg, new, cfg, r)


def test_render_refuses_a_bend_checkpoint_with_a_config_without_it(tmp_path):
    """A checkpoint with the bend input under a config without it (and the reverse): one line, exit 2,
    nothing written."""
    import subprocess
    import sys

    from rtperformer.model.checkpoint import save_checkpoint

    cfg = bend_cfg()
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "bend", build_model(cfg), cfg)
    mid = tmp_path / "m.mid"
    import mido

    f = mido.MidiFile(ticks_per_beat=480)
    t = mido.MidiTrack()
    f.tracks.append(t)
    t.append(mido.Message("note_on", note=69, velocity=90, time=0))
    t.append(mido.Message("note_off", note=69, velocity=0, time=240))
    f.save(str(mid))
    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    for model_dir, config in ((tmp_path / "bend", repo / "configs" / "tiny-test.yaml"),):
        res = subprocess.run([sys.executable, "-m", "rtperformer", "render", str(mid), "-o", str(tmp_path / "o.wav"),
                              "--model", str(model_dir), "--config", str(config), "--instrument", "violin"],
                             capture_output=True, text=True, cwd=repo, timeout=300)
        assert res.returncode == 2, res.stderr
        assert "does not fit" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "o.wav").exists()
