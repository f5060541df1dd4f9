"""The live engine offline: gate, routing, controls, pitch bend, resampling, voice threads (the chain
itself, live against offline: tests/test_voice.py)."""

from types import SimpleNamespace

import numpy as np
import pytest

import torch

from rtperformer.config import from_dict  # noqa: E402
from rtperformer.live.engine import Engine, Instrument  # noqa: E402
from rtperformer.voice.audio_stage import warp_frames  # noqa: E402
from rtperformer.midi.events import seconds_to_sample, timeline  # noqa: E402
from rtperformer.model.performancenet import build_model  # noqa: E402

TINY = {"model": {"channels": [16, 24], "onoff_channels": [16, 16], "texture_bands": [2], "norm": "layer"},
        "render": {"release_seconds": 0.1}}


def tiny(seed=0, **over):
    d = {k: dict(v) for k, v in TINY.items()}
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    cfg = from_dict(d)
    torch.manual_seed(seed)
    return build_model(cfg).eval(), cfg


def notes(*specs):
    return [SimpleNamespace(start=s, end=e, pitch=p, velocity=v, channel=0, track=0) for s, e, p, v in specs]


def events_of(ns, sr, controls=()):
    return [(seconds_to_sample(m.time, sr), m.data) for m in timeline(ns, controls)]


def rms(x):
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("mode", ["streaming", "window"])
def test_note_sounds_then_gate_silences(mode):
    model, cfg = tiny(render={"mode": mode, "window_frames": 32, "crossfade_frames": 2},
                      serve={"window_step_frames": 2, "window_future_frames": 4})
    sr, hop = cfg.audio.sample_rate, cfg.audio.hop
    eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact")
    out = eng.render_offline(events_of(notes((0.2, 0.5, 69, 100)), sr), int(1.2 * sr / hop))
    before, during, after = out[: int(0.19 * sr)], out[int(0.25 * sr): int(0.5 * sr)], out[int(0.5 * sr + 0.1 * sr + 0.05 * sr):]
    assert np.all(before == 0.0)
    assert rms(during) > 1e-4
    assert np.all(after == 0.0)  # gate closed release_seconds after the note-off
    assert eng.voices["violin"].idle


def test_all_notes_off_and_all_sound_off():
    model, cfg = tiny()
    sr, hop = cfg.audio.sample_rate, cfg.audio.hop
    for cc in (123, 120):
        eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact")
        ev = events_of(notes((0.1, 5.0, 60, 100), (0.1, 5.0, 64, 100)), sr)
        ev = [e for e in ev if e[1][0] & 0xF0 == 0x90] + [(int(0.4 * sr), bytes([0xB0, cc, 0]))]
        out = eng.render_offline(ev, int(1.0 * sr / hop))
        assert rms(out[int(0.15 * sr): int(0.4 * sr)]) > 1e-4
        assert eng.notes_held == 0
        assert np.all(out[int(0.7 * sr):] == 0.0)


def test_program_change_routes_to_instrument_and_volume_scales():
    (mv, cv), (mc, cc) = tiny(0), tiny(1)
    sr = cv.audio.sample_rate
    insts = [Instrument("violin", mv, cv), Instrument("cello", mc, cc)]
    eng = Engine(insts, cv, schedule="exact")
    ev = [(0, bytes([0xC0, 42])), (int(0.05 * sr), bytes([0x90, 48, 100])), (int(0.3 * sr), bytes([0x80, 48, 0]))]
    loud = eng.render_offline(ev, 100)
    assert eng.voices["cello"].frames_run > 0 and eng.voices["violin"].frames_run == 0

    eng = Engine(insts, cv, schedule="exact")
    quiet = eng.render_offline([(0, bytes([0xC0, 42])), (0, bytes([0xB0, 7, 64]))] + ev[1:], 100)
    ratio = rms(quiet) / rms(loud)
    assert ratio == pytest.approx((64 / 127) ** 2, rel=0.05)


def test_channel_map_and_two_instruments_at_once():
    (mv, cv), (mc, _) = tiny(0), tiny(1)
    cfg = from_dict({**TINY, "serve": {"channel_map": {1: "cello"}}})
    eng = Engine([Instrument("violin", mv, cv), Instrument("cello", mc, cv)], cfg, schedule="exact")
    ev = [(0, bytes([0x90, 69, 100])), (0, bytes([0x91, 45, 100]))]
    eng.render_offline(ev, 40)
    assert eng.voices["cello"].frames_run > 0 and eng.voices["violin"].frames_run > 0
    assert eng.notes_held == 2


def test_pitch_bend_warps_magnitudes():
    n_bins = 513
    mag = np.zeros((n_bins, 1), np.float32)
    mag[100] = 1.0
    up = warp_frames(mag, np.array([12.0]))  # one octave up
    assert int(np.argmax(up[:, 0])) == 200
    down = warp_frames(mag, np.array([-12.0]))
    assert int(np.argmax(down[:, 0])) == 50


def best_warp(plain, bent, cfg, grid):
    """The bend in semitones (from ``grid``) whose frequency warp of plain's mean magnitude spectrum best
    matches bent's (correlation)."""
    from rtperformer.dsp import stft

    mp, mb = (np.abs(stft(x, cfg.audio)).mean(axis=1) for x in (plain, bent))
    k = np.arange(len(mp), dtype=np.float64)
    scores = [np.corrcoef(np.interp(k / 2 ** (st / 12), k, mp, right=0.0), mb)[0, 1] for st in grid]
    return float(grid[int(np.argmax(scores))])


def test_pitch_bend_moves_the_sound_down():
    """A full downward bend (-pitch_bend_range semitones) moves the voice's spectrum down by that much: the
    audio before it is untouched, the spectrum after it is the unbent one warped by -2 semitones."""
    model, cfg = tiny(serve={"gate": False})
    hop = cfg.audio.hop
    note = [(0, bytes([0x90, 69, 100]))]
    bend_at = 40 * hop
    outs = []
    for ev in (note, note + [(bend_at, bytes([0xE0, 0x00, 0x00]))]):  # 0 - 8192: full bend down
        eng = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact")
        outs.append(eng.render_offline(ev, 160))
    plain, bent = outs
    delay = eng.voices["violin"].delay_samples
    np.testing.assert_array_equal(bent[: bend_at + delay - cfg.audio.n_fft], plain[: bend_at + delay - cfg.audio.n_fft])
    tail = slice(bend_at + delay + cfg.audio.n_fft, len(plain))
    grid = np.arange(-4.0, 4.01, 0.25)
    assert best_warp(plain[tail], bent[tail], cfg, grid) == -cfg.serve.pitch_bend_range
    assert best_warp(plain[tail], plain[tail], cfg, grid) == 0.0


def test_resampled_output_is_the_model_rate_output_resampled():
    """out_rate 44.1 kHz: every step's model-rate audio goes through one soxr stream, none lost or doubled."""
    import soxr

    model, cfg = tiny()
    ev = [(0, bytes([0x90, 69, 100])), (20000, bytes([0x80, 69, 0]))]
    at_44k = Engine([Instrument("violin", model, cfg)], cfg, out_rate=44100, schedule="exact").render_offline(ev, 400)
    at_48k = Engine([Instrument("violin", model, cfg)], cfg, schedule="exact").render_offline(ev, 400)
    stream = soxr.ResampleStream(48000, 44100, 1, dtype="float32", quality="MQ")
    step = cfg.serve.step_frames * cfg.audio.hop
    want = np.concatenate([stream.resample_chunk(at_48k[i : i + step]) for i in range(0, len(at_48k), step)])
    assert np.abs(want).max() > 0
    np.testing.assert_array_equal(at_44k, want)


def test_voice_threads_render_the_same_mix():
    """serve.voice_threads > 1 steps the instruments concurrently: sample for sample the same output."""
    models = [tiny(i) for i in range(3)]
    ev = [(0, bytes([0x90, 69, 100])), (0, bytes([0x91, 45, 90])), (3000, bytes([0x92, 74, 110])),
          (9000, bytes([0x80, 69, 0]))]
    outs = []
    for threads in (1, 3):
        cfg = from_dict({**TINY, "serve": {"channel_map": {1: "cello", 2: "flute"}, "voice_threads": threads}})
        eng = Engine([Instrument(n, m, c) for n, (m, c) in zip(("violin", "cello", "flute"), models)], cfg,
                     schedule="exact")
        assert (eng._pool is not None) == (threads > 1)
        outs.append(eng.render_offline(ev, 60))
        assert all(v.frames_run > 0 for v in eng.voices.values())
        eng.close()
        assert eng._pool is None
    assert np.abs(outs[0]).max() > 0
    np.testing.assert_array_equal(outs[0], outs[1])
