"""Every backend against torch eager over chained steps with carried state (tiny random streaming model).

Error measure: max |y - y_eager| / max |y_eager| over each chunk. Bounds: fp32 runtimes 1e-3; TensorRT runs
fp16 and is held to 3e-2 (an 11-bit mantissa through a dozen layers). Backends whose runtime is absent
here (CUDA, TensorRT) are skipped with the reason; the CPU ones (torch, torchscript, onnx) always run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rtperformer.backends as B
from rtperformer.config import from_dict
from rtperformer.errors import UserError

TINY = {
    "audio": {"sample_rate": 16000, "n_fft": 128, "hop": 32},
    "model": {
        "form": "streaming", "channels": [16, 24, 24], "onoff_channels": [8, 16], "texture_bands": [2, 4],
        "norm": "layer", "lookahead_frames": 2, "velocity": True, "expression": True,
    },
}
FP32_TOL = 1e-3
STEPS = 5

CPU_BACKENDS = ["torchscript", "onnx"]
GPU_BACKENDS = ["torch-cuda", "cuda-graphs", "compile", "tensorrt"]


def _build_model(cfg):
    try:
        from rtperformer.model import build_model
    except ImportError:
        from rtperformer.model.performancenet import build_model
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # random non-zero biases so every layer matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    cfg = from_dict(TINY)
    return _build_model(cfg), cfg


_BUILT: dict = {}


def _backend(name, model, cfg, chunk):
    """Backends are built once per (name, chunk) for the whole module (exports cost seconds)."""
    key = (name, chunk, id(model))
    if key not in _BUILT:
        _BUILT[key] = B.make_backend(name, model, cfg, chunk)
    return _BUILT[key]


def _inputs(in_channels: int, chunk: int, steps: int = STEPS) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    xs = (rng.random((steps, 1, in_channels, chunk)) < 0.15).astype(np.float32)
    xs[:, :, -1] = rng.random((steps, 1, chunk))  # expression: continuous
    return list(xs)


def _rel_err(y, ref) -> float:
    return float(np.abs(np.asarray(y, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-12))


def _check_against_eager(name, model, cfg, chunk, tol):
    ok = B.available(name)
    if not ok:
        pytest.skip(f"backend {name} unavailable: {ok.reason}")
    ref = B.make_backend("torch", model, cfg, chunk)
    backend = _backend(name, model, cfg, chunk)
    backend.warmup()
    assert backend.lookahead_frames == model.lookahead_frames == 2
    s_ref, s = ref.init_state(), backend.init_state()
    for x in _inputs(ref.in_channels, chunk):
        y_ref, s_ref = ref.step(x, s_ref)
        y, s = backend.step(x, s)
        assert isinstance(y, np.ndarray) and y.dtype == np.float32
        assert y.shape == (1, cfg.audio.n_bins, chunk)
        assert _rel_err(y, y_ref) <= tol, f"{name} step error {_rel_err(y, y_ref):.2e} > {tol}"


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_cpu_backend_matches_eager(tiny, name, chunk):
    assert B.available(name), B.available(name).reason  # CPU backends are never skipped
    _check_against_eager(name, *tiny, chunk, FP32_TOL)


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_gpu_backend_matches_eager(tiny, name):
    from rtperformer.backends.trt import FP16_REL_TOL

    _check_against_eager(name, *tiny, 4, FP16_REL_TOL if name == "tensorrt" else FP32_TOL)


def test_eager_stream_matches_whole_clip(tiny):
    """The reference itself: chained eager steps equal forward() shifted by the declared lookahead."""
    model, cfg = tiny
    ref = B.make_backend("torch", model, cfg)
    xs = _inputs(ref.in_channels, 3, steps=4)
    clip = np.concatenate(xs, axis=-1)
    state, ys = ref.init_state(), []
    for x in xs:
        y, state = ref.step(x, state)
        ys.append(y)
    stream = np.concatenate(ys, axis=-1)
    with torch.no_grad():
        whole = model(torch.from_numpy(clip)).numpy()
    la = ref.lookahead_frames
    assert _rel_err(stream[..., la:], whole[..., : whole.shape[-1] - la]) <= 1e-5


@pytest.mark.parametrize("name", ["torch", *CPU_BACKENDS])
def test_state_is_explicit(tiny, name):
    """A state kept from an earlier step still gives the same output after later steps."""
    model, cfg = tiny
    backend = _backend(name, model, cfg, 4)
    x0, x1, x2 = _inputs(backend.in_channels, 4, steps=3)
    _, s1 = backend.step(x0, backend.init_state())
    y_a, s2 = backend.step(x1, s1)
    backend.step(x2, s2)
    y_b, _ = backend.step(x1, s1)
    np.testing.assert_array_equal(y_a, y_b)


def test_fixed_chunk_backends_reject_other_sizes(tiny):
    model, cfg = tiny
    backend = _backend("onnx", model, cfg, 4)
    with pytest.raises(ValueError, match="chunks of 4"):
        backend.step(np.zeros((1, backend.in_channels, 3), np.float32), backend.init_state())


def test_select_backend_picks_an_available_one(tiny):
    model, cfg = tiny
    lines = []
    backend = B.select_backend(model, cfg, 2, log=lines.append)  # builds torch, torchscript, onnx
    assert B.available(backend.name)
    assert set(backend.selection) >= {"torch", "torchscript", "onnx"}
    assert backend.selection[backend.name] == min(v for v in backend.selection.values() if isinstance(v, float))
    assert len(lines) == len(backend.selection)
    y, _ = backend.step(np.zeros((1, backend.in_channels, 2), np.float32), backend.init_state())
    assert y.shape == (1, cfg.audio.n_bins, 2)


def test_select_backend_prefer(tiny):
    model, cfg = tiny
    assert B.select_backend(model, cfg, 1, prefer="torchscript").name == "torchscript"
    with pytest.raises(UserError, match="unknown backend 'nope'"):
        B.select_backend(model, cfg, 1, prefer="nope")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="not available here: no CUDA"):
            B.select_backend(model, cfg, 1, prefer="cuda-graphs")


def test_every_backend_reports_availability():
    """The CPU runtimes `make test` installs are available; the others say why not (CUDA ones: no CUDA);
    an unknown name is unavailable with the known names listed."""
    cuda = torch.cuda.is_available()
    for name in B.BACKENDS:
        ok = B.available(name)
        assert bool(ok) is ok.ok
        if name in ("torch", "torchscript", "onnx"):
            assert ok.ok, f"{name}: {ok.reason}"
        elif not ok.ok:
            assert ok.reason.strip(), f"{name} unavailable without a reason"
        if name in ("torch-cuda", "cuda-graphs", "tensorrt") and not cuda:
            assert not ok.ok and "CUDA" in ok.reason, (name, ok.reason)
    nope = B.available("nope")
    assert not nope.ok and "unknown backend 'nope'" in nope.reason and "torch" in nope.reason
