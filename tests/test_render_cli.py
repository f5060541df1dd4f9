"""`rtperformer render` through the command line: a multi-track MIDI file to WAV (+PNG), and bad input."""

import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

import torch

from rtperformer.cli import main  # noqa: E402
from rtperformer.config import load_config  # noqa: E402
from rtperformer.midi import read_midi  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def write_trio(path, seconds_per_beat=0.25):
    """Type-1 file: conductor with a tempo change, violin (GM 40), cello (GM 42), 1.0 s."""
    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    cond = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=int(seconds_per_beat * 1e6), time=0),
                           mido.MetaMessage("set_tempo", tempo=int(seconds_per_beat * 2e6), time=192)])
    vln = mido.MidiTrack([mido.Message("program_change", channel=0, program=40, time=0),
                          mido.Message("control_change", channel=0, control=11, value=100, time=0),
                          mido.Message("note_on", channel=0, note=69, velocity=100, time=0),
                          mido.Message("note_on", channel=0, note=69, velocity=60, time=96),  # re-strike
                          mido.Message("note_off", channel=0, note=69, time=96),
                          mido.Message("note_on", channel=0, note=72, velocity=90, time=0),
                          mido.Message("note_off", channel=0, note=72, time=96)])
    vc = mido.MidiTrack([mido.Message("program_change", channel=1, program=42, time=0),
                         mido.Message("note_on", channel=1, note=48, velocity=80, time=0),
                         mido.Message("note_off", channel=1, note=48, time=240)])
    mid.tracks.extend([cond, vln, vc])
    mid.save(str(path))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from rtperformer.model.checkpoint import save_checkpoint
    from rtperformer.model.performancenet import build_model

    torch.set_num_threads(1)
    cfg = load_config("tiny-test")
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("models") / "tiny"
    save_checkpoint(d, build_model(cfg), cfg, {"step": 0, "note": "random init for tests"})
    return d


@pytest.fixture
def trio(tmp_path):
    return write_trio(tmp_path / "trio.mid")


def run_cli(capsys, *argv):
    rc = main(["render", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("phase", ["rtpghi", "rtisila", "gla"])
def test_render_multitrack_to_wav_and_png(capsys, tmp_path, trio, ckpt, phase):
    out, png = tmp_path / "out.wav", tmp_path / "spec.png"
    rc, stdout, err = run_cli(capsys, trio, "-o", out, "--model", ckpt, "--phase", phase, "--png", png)
    assert rc == 0, err
    cfg = load_config(ckpt / "config.yaml")
    score = read_midi(trio)
    assert score.duration == pytest.approx(1.0)  # 2 beats at 0.25 s, then 1 beat at 0.5 s
    audio, sr = sf.read(out, dtype="float32")
    info = sf.info(str(out))
    assert sr == cfg.audio.sample_rate and info.subtype == "FLOAT" and info.format == "WAV"
    assert audio.shape == (round((score.duration + cfg.render.release_seconds) * sr),)
    assert np.isfinite(audio).all() and 0 < np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-6
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "violin" in stdout and "cello" in stdout and f"phase {phase}" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav", "spec.png", "trio.mid"]


def test_render_instrument_flag_and_per_instrument_model(capsys, tmp_path, trio, ckpt):
    out = tmp_path / "o.wav"
    rc, stdout, err = run_cli(capsys, trio, "-o", out, "--instrument", "flute", "--model", f"flute={ckpt}")
    assert rc == 0, err
    mapped = [ln for ln in stdout.splitlines() if " -> " in ln]
    assert len(mapped) == 2 and all("-> flute (--instrument)" in ln for ln in mapped), stdout  # one per part
    assert sum(int(ln.split("): ")[1].split()[0]) for ln in mapped) == 4
    assert sf.info(str(out)).frames > 0


def assert_clean_error(rc, stdout, err, folder, before, match):
    lines = err.strip().splitlines()
    assert rc == 2
    assert len(lines) == 1, err
    assert lines[0].startswith("rtperformer render: error: ") and match in lines[0]
    assert sorted(p.name for p in folder.iterdir()) == before  # no WAV, no PNG, no temp file


@pytest.mark.parametrize(
    "case,match",
    [("missing", "not found"), ("empty", "empty"), ("corrupt", "cannot read MIDI file"), ("nonotes", "no notes")],
)
def test_bad_midi(capsys, tmp_path, ckpt, case, match):
    mid = tmp_path / "in.mid"
    if case == "empty":
        mid.write_bytes(b"")
    elif case == "corrupt":
        mid.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x00\x60MTrk\x00\x00\x10\x00\x00\x90")
    elif case == "nonotes":
        m = mido.MidiFile()
        m.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)]))
        m.save(str(mid))
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run_cli(capsys, mid, "-o", tmp_path / "o.wav", "--model", ckpt, "--png", tmp_path / "o.png")
    assert_clean_error(*res, tmp_path, before, match)


def test_unknown_instrument(capsys, tmp_path, trio, ckpt):
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run_cli(capsys, trio, "-o", tmp_path / "o.wav", "--instrument", "banjo", "--model", ckpt)
    assert_clean_error(*res, tmp_path, before, "unknown instrument 'banjo'")


def test_unknown_phase(capsys, tmp_path, trio, ckpt):
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run_cli(capsys, trio, "-o", tmp_path / "o.wav", "--phase", "magic", "--model", ckpt)
    assert_clean_error(*res, tmp_path, before, "unknown phase method 'magic'")


def test_checkpoint_that_does_not_fit_config(capsys, tmp_path, trio, ckpt):
    other = tmp_path / "other.yaml"
    text = (REPO / "configs" / "tiny-test.yaml").read_text().replace("channels: [8, 12, 16, 24, 32]", "channels: [8, 12, 16, 24, 40]")
    assert text != (REPO / "configs" / "tiny-test.yaml").read_text()
    other.write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run_cli(capsys, trio, "-o", tmp_path / "o.wav", "--model", ckpt, "--config", other, "--png", tmp_path / "o.png")
    assert_clean_error(*res, tmp_path, before, "does not fit")


def test_missing_default_model_names_train(capsys, tmp_path, trio, monkeypatch):
    import rtperformer.paths as paths

    monkeypatch.setattr(paths, "SHIPPED_MODELS", tmp_path / "no-models")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "no-data"))
    monkeypatch.delenv("RTPERFORMER_MODELS", raising=False)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run_cli(capsys, trio, "-o", tmp_path / "o.wav")
    assert_clean_error(*res, tmp_path, before, "rtperformer train --config configs/realtime-violin.yaml")


def test_failure_mid_render_leaves_nothing(capsys, tmp_path, trio, ckpt, monkeypatch):
    import rtperformer.offline.render as render
    from rtperformer.errors import UserError

    def boom(*a, **k):
        raise UserError("disk full while plotting")

    monkeypatch.setattr(render, "write_png", boom)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run_cli(capsys, trio, "-o", tmp_path / "o.wav", "--model", ckpt, "--png", tmp_path / "o.png")
    assert_clean_error(*res, tmp_path, before, "disk full")


def test_subprocess_entry_point(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file at all")
    r = subprocess.run([sys.executable, "-m", "rtperformer", "render", str(bad), "-o", str(tmp_path / "o.wav")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "rtperformer render: error:" in r.stderr
    assert not (tmp_path / "o.wav").exists()


def test_demo_midi_is_a_trio():
    s = read_midi(REPO / "rtperformer" / "assets" / "demo.mid")
    assert 18 < s.duration < 22
    assert sorted(s.parts().values()) == [40, 42, 73]
    assert any(c.number == 11 for c in s.controls)


def write_bomb(path):
    """30-odd bytes that declare a note of about 4.5e9 seconds (slowest tempo, longest delta)."""
    mid = mido.MidiFile(type=0, ticks_per_beat=1)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=0xFFFFFF, time=0),
                                      mido.Message("program_change", program=40, time=0),
                                      mido.Message("note_on", note=69, velocity=100, time=0),
                                      mido.Message("note_off", note=69, time=0x0FFFFFFF)]))
    mid.save(str(path))
    return path


def test_midi_bomb_is_refused_before_writing(tmp_path, ckpt):
    """A tiny file declaring ~140 years: one line, exit 2, nothing written, at once (on main render wrote
    until the disk was full). The subprocess timeout is the guard for main's behaviour, not a measurement."""
    bomb = write_bomb(tmp_path / "bomb.mid")
    assert bomb.stat().st_size < 64
    before = sorted(p.name for p in tmp_path.iterdir())
    r = subprocess.run([sys.executable, "-m", "rtperformer", "render", str(bomb), "-o", str(tmp_path / "o.wav"),
                        "--model", str(ckpt)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and "years" in r.stderr and "--max-minutes" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_max_minutes_override(capsys, tmp_path, trio, ckpt):
    """The cap is the flag's: the 1 s trio is refused under --max-minutes 0.01 (0.6 s) and renders under 1."""
    rc, out, err = run_cli(capsys, trio, "-o", tmp_path / "o.wav", "--model", ckpt, "--max-minutes", "0.01")
    assert rc == 2 and "--max-minutes" in err and not (tmp_path / "o.wav").exists()
    rc, out, err = run_cli(capsys, trio, "-o", tmp_path / "o.wav", "--model", ckpt, "--max-minutes", "1")
    assert rc == 0 and sf.info(tmp_path / "o.wav").frames > 0


def test_render_files_switch_to_rf64_past_4_gib(tmp_path, trio, ckpt, monkeypatch):
    """Part files and the mix are opened with their known length: a plain WAV while it fits the 32-bit
    sizes, RF64 beyond (main wrote plain WAV regardless, which breaks after about 6 hours of float audio).
    The 4 GiB limit is lowered to a few seconds here so that a 1 s render crosses it."""
    import rtperformer.audio.wavfile as wavfile
    from rtperformer.offline.render import assign_parts, render_part

    model, cfg = load_model_tiny(ckpt)
    parts, _ = assign_parts(read_midi(trio), "violin")
    render_part(parts[0], model, cfg, 1.0, tmp_path / "small.wav", progress_bar=False)
    assert sf.info(tmp_path / "small.wav").format == "WAV"
    monkeypatch.setattr(wavfile, "WAV_LIMIT", 4 * cfg.audio.sample_rate // 2)  # 0.5 s of mono float
    part = render_part(parts[0], model, cfg, 1.0, tmp_path / "big.wav", progress_bar=False)
    assert (tmp_path / "big.wav").read_bytes()[:4] == b"RF64"
    got, _ = sf.read(tmp_path / "big.wav", dtype="float32")
    assert len(got) == part.n_samples == cfg.audio.sample_rate
    rc = main(["render", str(trio), "-o", str(tmp_path / "mix.wav"), "--model", str(ckpt)])
    assert rc == 0 and (tmp_path / "mix.wav").read_bytes()[:4] == b"RF64"


def load_model_tiny(ckpt):
    from rtperformer.model.checkpoint import load_model

    model, cfg, _ = load_model(str(ckpt))
    return model.eval(), cfg
