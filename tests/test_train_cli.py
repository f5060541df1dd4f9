"""The train and eval commands end to end on the tiny config: synthetic corpus -> checkpoint -> resume -> eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rtperformer.cli import main

torch.set_num_threads(1)


def _need_model():
    pytest.importorskip("rtperformer.model.checkpoint", reason="model package not landed yet")
    from rtperformer.model import build_model  # noqa: F401


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
    _need_model()
    out = tmp_path / "tiny"
    args = ["train", "--config", "tiny-test", "--out", str(out), "--synthetic", "--no-progress", "--loss", "l1_sc",
            "--valid-every", "2", "--batch-size", "2"]
    assert main(args + ["--steps", "2"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["step"] == 2 and meta["loss"] == "l1_sc"
    assert main(args + ["--steps", "4", "--resume"]) == 0
    assert json.loads((out / "resume" / "meta.json").read_text())["step"] == 4

    # eval on a synthetic "corpus" of one piece (the metrics themselves are tested in test_eval.py)
    from rtperformer import evaluate
    from rtperformer.config import load_config
    from rtperformer.train import SyntheticWindows

    cfg = load_config("tiny-test")
    x, y = SyntheticWindows(cfg, seed=5).window(np.random.default_rng(5), T=200)
    from rtperformer.dsp import istft, stft, to_magnitude

    audio = istft(to_magnitude(y, cfg.audio).astype(np.complex64), cfg.audio, length=199 * cfg.audio.hop)
    piece = ("synthetic-0", x, y, audio)
    monkeypatch.setattr(evaluate, "load_pieces", lambda cfg, split, corpus=None: (iter([piece]), {"flat": lambda p: piece}))
    report_path = tmp_path / "eval" / "tiny.json"
    assert main(["eval", "--model", str(out), "--out", str(report_path), "--no-pitch"]) == 0
    report = json.loads(report_path.read_text())
    assert report["model"] == "tiny" and report["step"] == meta["step"] or report["step"] >= 2
    assert report["summary"]["flat"]["lsd_db"] == 0 and report["summary"]["model"]["lsd_db"] > 0
    assert report_path.with_suffix(".png").is_file()
    assert "wrote" in capsys.readouterr().out
    _ = stft
