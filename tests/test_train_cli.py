"""The train and eval commands end to end on the tiny config: synthetic corpus -> checkpoint -> resume -> eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rtperformer.cli import main

torch.set_num_threads(1)


def test_train_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["train", "--config", "tiny-test", "--out", str(tmp_path / "m"), "--minutes", "0"]) == 2
    assert "--minutes" in capsys.readouterr().err
    assert main(["train", "--config", "tiny-test", "--out", str(tmp_path / "m"), "--resume", "--synthetic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resume" in err
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2


def test_missing_corpus_is_a_user_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{corpus_dir: {tmp_path / 'nocorpus'}}}\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "m"), "--steps", "1"]) == 2
    assert "rtperformer data build" in capsys.readouterr().err


def test_train_resume_then_eval(tmp_path, monkeypatch, capsys):
    out = tmp_path / "tiny"
    args = ["train", "--config", "tiny-test", "--out", str(out), "--synthetic", "--no-progress", "--loss", "l1_sc",
            "--valid-every", "2", "--batch-size", "2"]
    assert main(args + ["--steps", "2"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["step"] == 2 and meta["loss"] == "l1_sc"
    assert main(args + ["--steps", "4", "--resume"]) == 0
    assert json.loads((out / "resume" / "meta.json").read_text())["step"] == 4

    # eval on a synthetic "corpus" of one piece (the metrics themselves are tested in test_eval.py)
    from rtperformer.learn import evaluate
    from rtperformer.config import load_config
    from rtperformer.learn.train_data import SyntheticWindows

    cfg = load_config("tiny-test")
    x, y = SyntheticWindows(cfg, seed=5).window(np.random.default_rng(5), T=200)
    from rtperformer.dsp import istft, to_magnitude

    audio = istft(to_magnitude(y, cfg.audio).astype(np.complex64), cfg.audio, length=199 * cfg.audio.hop)
    piece = ("synthetic-0", x, y, audio)
    # the "flat" baseline: the target 6 dB down (half the amplitude): level -6.02 dB, SC 0.5, LSD up to 6.02
    half = ("synthetic-0", x, np.log1p(0.25 * np.expm1(y)).astype(np.float32), 0.5 * audio)
    monkeypatch.setattr(evaluate, "load_pieces", lambda cfg, split, corpus=None: (iter([piece]), {"flat": lambda p: half}))
    monkeypatch.setattr(evaluate, "bend_lookup", lambda cfg, corpus=None: lambda pid: None)  # it has no bend rows
    report_path = tmp_path / "eval" / "tiny.json"
    assert main(["eval", "--model", str(out), "--out", str(report_path), "--no-pitch"]) == 0
    report = json.loads(report_path.read_text())
    assert report["model"] == "tiny" and report["step"] == json.loads((out / "meta.json").read_text())["step"] == 4
    flat, model = report["summary"]["flat"], report["summary"]["model"]
    assert flat["level_db"] == pytest.approx(-6.02, abs=0.01) and flat["sc"] == pytest.approx(0.5, abs=1e-3)
    assert 0 < flat["lsd_db"] <= 6.03 and model["lsd_db"] > 0
    assert report_path.with_suffix(".png").is_file()
    assert "wrote" in capsys.readouterr().out
