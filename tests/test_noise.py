"""The texture noise of the voice chain (rtperformer/dsp/noise.py): its level is its table's, live is offline
with it on, and a bad noise.json is one clear error line."""

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from rtperformer.config import from_dict, load_config
from rtperformer.dsp import log_power, to_magnitude
from rtperformer.voice.audio_stage import AudioStage, OfflineAudio
from rtperformer.dsp.noise import NoiseTable, load_noise_table, noise_power_db
from rtperformer.errors import UserError
from rtperformer.model.performancenet import build_model
from rtperformer.offline.render import Part, render_part

EDGES = (0.0, 300.0, 600.0, 1000.0, 1600.0, 2500.0, 4000.0, 6300.0, 10000.0, 16000.0, 24000.0)
GAINS = (-30.0, -24.0, -18.0, -20.0, -15.0, -12.0, -10.0, -14.0, -20.0, -25.0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def table_for(cfg, gains=GAINS, instrument="violin"):
    a = cfg.audio
    return NoiseTable(instrument, a.sample_rate, a.n_fft, a.hop, EDGES, tuple(gains))


def held_note(cfg, seconds=1.6, f0=293.66):
    """A held bowed-like tone (harmonics falling 1 dB each, slow 5 Hz tremolo), 0.2 s of silence on each
    side: float32 (N,)."""
    sr = cfg.audio.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    x = sum(10 ** (-1 * (h - 1) / 20) * np.sin(2 * np.pi * f0 * h * t + h) for h in range(1, 90) if f0 * h < sr / 2)
    x = 0.05 * x * (1 + 0.2 * np.sin(2 * np.pi * 5 * t))
    gate = ((t > 0.2) & (t < seconds - 0.2)).astype(np.float64)
    return (x * gate).astype(np.float32)


@pytest.mark.parametrize("trim,lookahead,step", [(0, 0, 1), (2, 0, 4), (1, 1, 3)])
def test_noise_level_in_the_audio_matches_its_table_on_a_held_note(trim, lookahead, step):
    """The same frames through the stage with and without noise: the difference is the noise alone (the
    harmonics' phase does not change). Analysed again, its power per band over the held note is what the
    table says of the frames' predicted power (gain_db re the band's mean at its centre, interpolated in
    between), within 1 dB in every band, whatever the synthesis trim; it
    is silent where the note is (and the window reaching it) and moves with the note's frames (phase delay
    counted)."""
    cfg = from_dict({"render": {"phase_lookahead": lookahead}})
    ac = cfg.audio
    feats = log_power(held_note(cfg), ac)
    table = table_for(cfg)

    def run(noise):
        st = AudioStage(ac, cfg.render, trim_hops=trim, drop_delay=True, noise=noise)
        out = [st.push(feats[:, i : i + step]).copy() for i in range(0, feats.shape[1], step)]
        return np.concatenate(out + [st.flush()])[: (feats.shape[1] - 1) * ac.hop]

    noise_audio = run(table) - run(None)
    got = to_magnitude(log_power(noise_audio, ac), power_scale=ac.power_scale).astype(np.float64) ** 2
    pred = to_magnitude(feats, power_scale=ac.power_scale).astype(np.float64) ** 2
    want = 10 ** (noise_power_db(table, pred) / 10)
    fr = ac.frame_rate
    held = slice(int(0.3 * fr), int(1.3 * fr))
    starts = list(table.band_starts()) + [ac.n_bins]
    for b, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
        err = 10 * np.log10(got[lo:hi, held].mean() / want[lo:hi, held].mean())
        assert abs(err) < 1.0, (b, EDGES[b], err)
    # silent before the note (frames whose window does not reach it) and after it
    total = got.sum(axis=0)
    peak = total[held].mean()
    edge = 2 * ac.n_fft // ac.hop  # the note's own frames reach n_fft/2 out, synthesis and analysis n_fft/2 each
    assert total[: int(0.2 * fr) - edge].max() < 1e-6 * peak
    assert total[int(1.4 * fr) + edge :].max() < 1e-6 * peak


def test_noise_is_seeded_chunk_invariant_and_allocation_free():
    """Same seed: the same noise whatever the push size (draws are frame by frame); another seed or another
    instrument: other noise; per push the stage reuses its buffers; a reset replays the noise from its seed
    unless told to go on (a waking live voice)."""
    cfg = from_dict({})
    ac = cfg.audio
    feats = log_power(held_note(cfg, 0.6), ac)
    outs = {}
    for name, seed, inst, step in [("a1", 0, "violin", 1), ("a5", 0, "violin", 5), ("s1", 1, "violin", 1),
                                   ("c1", 0, "cello", 1)]:
        rc = dataclasses.replace(cfg.render, noise_seed=seed)
        st = AudioStage(ac, rc, noise=table_for(cfg, instrument=inst))
        outs[name] = np.concatenate([st.spectrum(feats[:, i : i + step]).copy() for i in range(0, feats.shape[1], step)],
                                    axis=1)
    np.testing.assert_array_equal(outs["a1"], outs["a5"])
    assert not np.allclose(outs["a1"], outs["s1"]) and not np.allclose(outs["a1"], outs["c1"])
    held = feats[:, 60:64]  # frames of the held note (noise there)
    st = AudioStage(ac, cfg.render, trim_hops=1, noise=table_for(cfg))
    a = st.push(held)
    b = st.push(held)
    assert np.shares_memory(a, b)
    st.reset()  # a reset starts the same noise again
    fresh = AudioStage(ac, cfg.render, trim_hops=1, noise=table_for(cfg)).push(held).copy()
    assert np.abs(fresh).max() > 1e-4
    np.testing.assert_array_equal(st.push(held), fresh)
    st.reset(reseed=False)  # a live voice waking: the same stream state, the noise goes on
    assert not np.allclose(st.push(held), fresh)


def test_live_engine_equals_offline_render_with_noise_on(tmp_path):
    """test_voice's live == offline check with the texture noise on: the same samples, delay_samples later."""
    from rtperformer.live.engine import Engine, Instrument
    from rtperformer.midi.events import seconds_to_sample, timeline
    from rtperformer.midi.score import Note

    notes = [Note(0.05, 0.40, 69, 100), Note(0.25, 0.60, 72, 64), Note(0.70, 0.90, 60, 127)]
    cfg = from_dict({"model": {"channels": [16, 24], "onoff_channels": [16, 16], "texture_bands": [2], "norm": "layer"},
                     "render": {"release_seconds": 0.1, "noise": True, "chunk_frames": 2},
                     "serve": {"gate": False, "step_frames": 2, "istft_trim_hops": 0, "backend": "torch"}})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    model.noise_table = table_for(cfg, gains=[-6.0] * (len(EDGES) - 1))
    wav = tmp_path / "part.wav"
    res = render_part(Part("violin", [(0, 0)], notes, []), model, cfg, 1.2, wav, progress_bar=False)
    offline = sf.read(str(wav), dtype="float32")[0]
    n = res.n_samples
    eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact")
    events = [(seconds_to_sample(m.time, cfg.audio.sample_rate), m.data) for m in timeline(notes, [])]
    voice = eng.voices["violin"]
    assert voice.audio.noise is not None
    out = eng.render_offline(events, (n + voice.delay_samples) // cfg.audio.hop + 2)
    d, a = voice.delay_samples, cfg.audio.n_fft
    np.testing.assert_array_equal(out[d + a : d + n - a], offline[a : n - a])
    # and the noise is there: without it the render differs
    quiet = dataclasses.replace(cfg, render=dataclasses.replace(cfg.render, noise=False))
    res2 = render_part(Part("violin", [(0, 0)], notes, []), model, quiet, 1.2, tmp_path / "q.wav", progress_bar=False)
    plain = sf.read(str(res2.path), dtype="float32")[0]
    diff = offline[a : n - a] - plain[a : n - a]
    assert np.sqrt(np.mean(diff ** 2)) > 0.05 * np.sqrt(np.mean(plain[a : n - a] ** 2))


def test_shipped_noise_tables_fit_their_models():
    """violin and flute ship a texture table that loads against their own config and was fitted to the
    weights shipped beside it (cello has none: models/README.md, "Texture")."""
    import hashlib

    from rtperformer import paths
    from rtperformer.dsp.noise import find_noise_table

    for name in ("violin", "flute"):
        d = paths.find_model(name)
        cfg = load_config(d / "config.yaml")
        assert find_noise_table(d, cfg.audio).instrument == name
        fitted = json.loads((d / "noise.json").read_text())["fit"]["model_sha256"]
        assert fitted == hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest(), (
            f"models/{name}/model.safetensors changed since its noise.json was fitted: refit it with "
            f"`.venv/bin/python bench/noise.py --fit --low-hz 300 --instruments {name}` (~2 min, 1 thread)")
    assert find_noise_table(paths.find_model("cello"), load_config(paths.find_model("cello") / "config.yaml").audio) is None


BAD = {
    "not json": "{oops",
    "wrong format": json.dumps({"format": "something-else"}),
    "other n_fft": None,  # filled in below from a good table
    "too few gains": None,
    "gain out of range": None,
}


def bad_tables(cfg):
    good = table_for(cfg).to_dict()
    out = dict(BAD)
    out["other n_fft"] = json.dumps({**good, "n_fft": cfg.audio.n_fft * 2})
    out["too few gains"] = json.dumps({**good, "gain_db": good["gain_db"][:-1]})
    out["gain out of range"] = json.dumps({**good, "gain_db": [1e9] * len(good["gain_db"])})
    return out


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_noise_file_is_one_line_and_exit_2(tmp_path, capsys, kind):
    """A model folder whose noise.json is broken or does not fit its config: `rtperformer render` stops with
    exit code 2 and one line naming the file, and writes nothing."""
    from rtperformer.cli import main
    from rtperformer.model.checkpoint import save_checkpoint
    import mido

    cfg = load_config("tiny-test")
    torch.manual_seed(0)
    d = save_checkpoint(tmp_path / "tiny", build_model(cfg), cfg, {"step": 0})
    (d / "noise.json").write_text(bad_tables(cfg)[kind])
    with pytest.raises(UserError, match="noise"):
        load_noise_table(d / "noise.json", cfg.audio)
    mid = mido.MidiFile(type=0, ticks_per_beat=96)
    mid.tracks.append(mido.MidiTrack([mido.Message("program_change", program=40, time=0),
                                      mido.Message("note_on", note=69, velocity=100, time=0),
                                      mido.Message("note_off", note=69, time=96)]))
    mid.save(str(tmp_path / "a.mid"))
    out = tmp_path / "out.wav"
    rc = main(["render", str(tmp_path / "a.mid"), "-o", str(out), "--model", str(d)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "noise.json" in err[0], err
    assert not out.exists()
