"""``rtperformer export`` and exported engines: written next to the checkpoint atomically, loaded by
make_backend/select_backend instead of re-exporting, equal to torch eager; bench helpers that need no timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rtperformer.backends as B
from rtperformer.config import from_dict

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "name": "tiny-export",
    "audio": {"sample_rate": 16000, "n_fft": 128, "hop": 32},
    "model": {"form": "streaming", "channels": [8, 16], "onoff_channels": [8, 8], "texture_bands": [2],
              "norm": "layer", "lookahead_frames": 1},
    "serve": {"step_frames": 2},
}


def _model(cfg):
    from rtperformer.model.performancenet import build_model

    torch.manual_seed(0)
    return build_model(cfg).eval()


def test_export_onnx_function_writes_atomically_and_loads(tmp_path):
    from rtperformer.backends.onnxrt import OnnxRuntime, export_onnx

    cfg = from_dict(TINY)
    model = _model(cfg)
    path = export_onnx(model, cfg, 3, B.engine_path(tmp_path, "onnx", 3))
    assert path == tmp_path / "model-chunk3.onnx" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-chunk3.onnx"]  # no temp file left
    backend = B.make_backend("onnx", model, cfg, 3, model_dir=tmp_path)
    assert isinstance(backend, OnnxRuntime)
    ref = B.make_backend("torch", model, cfg)
    rng = np.random.default_rng(0)
    s, s_ref = backend.init_state(), ref.init_state()
    for _ in range(4):
        x = (rng.random((1, ref.in_channels, 3)) < 0.2).astype(np.float32)
        y, s = backend.step(x, s)
        y_ref, s_ref = ref.step(x, s_ref)
        assert np.abs(y - y_ref).max() <= 1e-3 * np.abs(y_ref).max()


def test_exported_graph_with_wrong_chunk_is_refused(tmp_path):
    from rtperformer.backends.onnxrt import OnnxRuntime, export_onnx

    cfg = from_dict(TINY)
    model = _model(cfg)
    path = export_onnx(model, cfg, 2, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="not \\(1, "):
        OnnxRuntime(model, cfg, chunk=4, path=path)


def test_stale_engine_is_ignored(tmp_path):
    """An engine older than model.safetensors is not loaded (the weights changed after the export)."""
    from rtperformer.backends import _fresh_engine
    from rtperformer.backends.onnxrt import export_onnx

    cfg = from_dict(TINY)
    path = export_onnx(_model(cfg), cfg, 2, B.engine_path(tmp_path, "onnx", 2))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    os.utime(path, (1, 1))
    assert _fresh_engine(tmp_path, "onnx", 2) is None
    os.utime(weights, (0, 0))
    assert _fresh_engine(tmp_path, "onnx", 2) == path


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "rtperformer", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, **kw)


def _checkpoint():
    from rtperformer.model import checkpoint

    return checkpoint


def test_export_cli_writes_engine_next_to_checkpoint(tmp_path):
    save_checkpoint = _checkpoint().save_checkpoint

    cfg = from_dict(TINY)
    d = tmp_path / "violin"
    save_checkpoint(d, _model(cfg), cfg, {"step": 0})
    r = _cli("export", "--backend", "onnx", "--model", str(d), "--check")
    assert r.returncode == 0, r.stderr
    assert (d / "model-chunk2.onnx").is_file()  # chunk defaults to serve.step_frames
    assert "max relative error" in r.stdout
    r = _cli("export", "--backend", "onnx", "--model", str(d), "--chunk", "4")
    assert r.returncode == 0, r.stderr
    assert (d / "model-chunk4.onnx").is_file()
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_export_cli_errors_are_one_line(tmp_path):
    save_checkpoint = _checkpoint().save_checkpoint
    r = _cli("export", "--backend", "onnx", "--model", str(tmp_path / "missing"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    if not torch.cuda.is_available():
        cfg = from_dict(TINY)
        d = tmp_path / "m"
        save_checkpoint(d, _model(cfg), cfg, {"step": 0})
        r = _cli("export", "--backend", "tensorrt", "--model", str(d))
        assert r.returncode == 2 and "no CUDA" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not [p for p in d.iterdir() if "trt" in p.name]


def test_bench_underrun_replay():
    """The ring replay used by bench/throughput.py: steps within budget never underrun, a stall does."""
    sys.path.insert(0, str(REPO / "bench"))
    from throughput import simulate_underruns

    hop_s = 256 / 48000
    assert simulate_underruns([0.5 * hop_s] * 100, 256, 48000, 256, 2) == 0
    assert simulate_underruns([0.5 * hop_s] * 10 + [3 * hop_s] + [0.5 * hop_s] * 10, 256, 48000, 256, 2) == 1
    assert simulate_underruns([1.5 * hop_s] * 50, 256, 48000, 256, 2) > 10


def test_latency_onset_detection():
    """bench/latency.py finds the first sample above the threshold, refuses noisy or silent events."""
    sys.path.insert(0, str(REPO / "bench"))
    from latency import detect_onset, make_events

    rate = 48000
    x = np.zeros(rate, np.float32)
    x[1000:3000] = 0.5 * np.sin(np.arange(2000) * 0.3) * np.minimum(np.arange(2000) / 200, 1)
    onset, why = detect_onset(x, 900, 3000, rate)
    assert why == "" and 1000 < onset < 1100
    first, _ = detect_onset(x, 900, 3000, rate, fraction=0.01)  # the -40 dB "first sound" onset comes sooner
    assert 1000 <= first < onset
    noisy = x.copy()
    noisy[:900] = 0.3
    assert detect_onset(noisy, 900, 3000, rate) == (None, "noisy before the event")
    assert detect_onset(np.zeros(rate, np.float32), 900, 3000, rate) == (None, "silent")
    sched, marks = make_events(200, rate, seed=1)
    assert len(marks) == 200 and {k for _, _, k in marks} == {"single", "chord"}
    assert len({on % 256 for on, _, _ in marks}) > 50  # random offsets within the JACK period
    assert all(b[0] & 0xF0 in (0x80, 0x90, 0xB0) for _, b in sched)


def test_bench_command_parses_each_benchmark():
    from rtperformer.cli import build_parser

    for argv, which in ((["bench", "phase", "--quick", "--out", "x.json"], "phase"), (["bench", "all", "--quick"], "all"),
                        (["bench", "throughput", "--chunks", "1", "4"], "throughput"),
                        (["bench", "latency", "--events", "5", "--step-frames", "2"], "latency")):
        args = build_parser(argv).parse_args(argv)
        assert args.command == "bench" and args.which == which
