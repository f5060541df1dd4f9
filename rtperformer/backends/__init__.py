"""Runtimes for the streaming model, one module each, behind one interface (:class:`Backend`).

=============  ===========================  =======  ==========================================
name           module                       device   chunk
=============  ===========================  =======  ==========================================
torch          torch_eager.TorchEager       cpu      any (the reference)
torch-cuda     torch_eager.TorchCuda        cuda     any
torchscript    torchscript.TorchScript      cpu      fixed (traced per chunk)
compile        compiled.Compiled            cpu/cuda fixed (torch.compile; only when named)
onnx           onnxrt.OnnxRuntime           cpu      fixed (models/NAME/model-chunkN.onnx)
cuda-graphs    cuda_graphs.CudaGraphs       cuda     fixed (captured per chunk)
tensorrt       trt.TensorRT                 cuda     fixed, fp16 (models/NAME/model-chunkN.trt.ep)
=============  ===========================  =======  ==========================================

:func:`select_backend` builds the available ones, measures a short warm-up of each and returns the
fastest (or the one named). Runtimes are imported only when used.
"""

from __future__ import annotations

import importlib
import statistics
import time
from pathlib import Path

import numpy as np

from rtperformer.backends.base import Availability, Backend, State, cpu_threads
from rtperformer.errors import UserError

__all__ = [
    "Availability", "Backend", "State", "BACKENDS", "backend_class", "available", "make_backend",
    "select_backend", "engine_path", "measure_step", "cpu_threads", "require",
]

BACKENDS: dict[str, str] = {
    "torch": "torch_eager:TorchEager",
    "torch-cuda": "torch_eager:TorchCuda",
    "torchscript": "torchscript:TorchScript",
    "compile": "compiled:Compiled",
    "onnx": "onnxrt:OnnxRuntime",
    "cuda-graphs": "cuda_graphs:CudaGraphs",
    "tensorrt": "trt:TensorRT",
}

# Exported engine file per backend, next to the checkpoint: models/NAME/<pattern>.
ENGINE_FILES = {"onnx": "model-chunk{chunk}.onnx", "tensorrt": "model-chunk{chunk}.trt.ep"}


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``; unknown names -> UserError listing the known ones."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    module, cls = BACKENDS[name].split(":")
    try:
        mod = importlib.import_module(f"rtperformer.backends.{module}")
    except ImportError as exc:  # a runtime whose Python package is missing
        return _missing(name, exc)
    return getattr(mod, cls)


def _missing(name: str, exc: ImportError) -> type[Backend]:
    reason = f"cannot import {exc.name or exc}"

    class Missing(Backend):
        @classmethod
        def available(cls) -> Availability:
            return Availability(False, reason)

    Missing.name = name
    return Missing


def available(name: str) -> Availability:
    """Whether backend ``name`` can run here, with a reason when not."""
    try:
        return backend_class(name).available()
    except UserError as exc:
        return Availability(False, str(exc))


def require(name: str) -> None:
    """Raise a one-line UserError when backend ``name`` is unknown or cannot run here ("auto" always can).

    There is no silent fallback: a server that quietly swaps onnxruntime for eager torch cannot keep up on
    a small machine, and the player hears underruns instead of reading why."""
    if name == "auto":
        return
    ok = available(name)
    if not ok:
        raise UserError(f"backend '{name}' is not available here: {ok.reason} "
                        "(or choose another with --backend, e.g. torch)")


def engine_path(model_dir, name: str, chunk: int) -> Path | None:
    """Where ``rtperformer export`` writes backend ``name``'s engine for ``chunk`` (None: no file form)."""
    if model_dir is None or name not in ENGINE_FILES:
        return None
    return Path(model_dir) / ENGINE_FILES[name].format(chunk=chunk)


def _fresh_engine(model_dir, name: str, chunk: int) -> Path | None:
    """An exported engine that is newer than the checkpoint's weights, else None."""
    path = engine_path(model_dir, name, chunk)
    if path is None or not path.is_file():
        return None
    weights = Path(model_dir) / "model.safetensors"
    if weights.is_file() and weights.stat().st_mtime > path.stat().st_mtime:
        return None
    return path


def make_backend(name: str, model, cfg, chunk: int | None = None, model_dir=None, **kwargs) -> Backend:
    """Build backend ``name`` for ``model`` (not warmed up). Unavailable -> UserError with the reason.

    ``model_dir``: the checkpoint folder; an exported engine there (ONNX, TensorRT) for this chunk size
    is loaded instead of exporting/compiling now, unless it is older than ``model.safetensors``.
    """
    cls = backend_class(name)
    ok = cls.available()
    if not ok:
        raise UserError(f"backend '{name}' is not available here: {ok.reason}")
    chunk = int(chunk or cfg.render.chunk_frames)
    path = _fresh_engine(model_dir, name, chunk)
    if path is not None:
        kwargs.setdefault("path", path)
    return cls(model, cfg, chunk=chunk, **kwargs)


def measure_step(backend: Backend, chunk: int, steps: int = 20, budget_s: float = 0.5) -> float:
    """Median seconds of one ``backend.step`` on a random (1, C_in, chunk) input, carrying the state.

    Runs at most ``steps`` steps and stops early after ``budget_s`` seconds (at least 3 steps).
    """
    rng = np.random.default_rng(0)
    x = (rng.random((1, backend.in_channels, chunk)) < 0.05).astype(np.float32)
    state = backend.init_state()
    times: list[float] = []
    start = time.perf_counter()
    for i in range(steps):
        t0 = time.perf_counter()
        _, state = backend.step(x, state)
        times.append(time.perf_counter() - t0)
        if i >= 2 and time.perf_counter() - start > budget_s:
            break
    return statistics.median(times)


def _auto_candidates(model_dir, chunk: int) -> list[str]:
    names = []
    for name in BACKENDS:
        cls = backend_class(name)
        if not cls.auto or not cls.available():
            continue
        if name == "tensorrt" and _fresh_engine(model_dir, name, chunk) is None:
            continue  # compiling TensorRT takes minutes: only use an exported engine automatically
        names.append(name)
    return names


def select_backend(model, cfg, chunk: int, prefer: str | None = None, model_dir=None,
                   log=None) -> Backend:
    """The backend to serve ``model`` with chunks of ``chunk`` frames, warmed up.

    ``prefer``: a backend name to use (UserError if unknown or unavailable here); ``None`` or ``"auto"``
    builds every available runtime that is cheap to build, times a short warm-up of each
    (:func:`measure_step`) and keeps the fastest. The measurements are kept on the result as
    ``backend.selection`` ({name: seconds per step, or the reason it was left out}). ``log``: optional
    callable taking one line per candidate.
    """
    chunk = int(chunk)
    if prefer and prefer != "auto":
        backend = make_backend(prefer, model, cfg, chunk, model_dir=model_dir)
        backend.warmup()
        backend.selection = {prefer: measure_step(backend, chunk, steps=5, budget_s=0.2)}
        return backend
    selection: dict[str, float | str] = {}
    best: Backend | None = None
    best_t = float("inf")
    for name in _auto_candidates(model_dir, chunk):
        try:
            backend = make_backend(name, model, cfg, chunk, model_dir=model_dir)
            backend.warmup()
            t = measure_step(backend, chunk)
        except Exception as exc:  # a runtime that fails on this model is skipped, not fatal
            selection[name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if log:
                log(f"backend {name}: {selection[name]}")
            continue
        selection[name] = t
        if log:
            log(f"backend {name}: {t * 1e3:.3f} ms per {chunk}-frame step")
        if t < best_t:
            if best is not None:
                best.close()
            best, best_t = backend, t
        else:
            backend.close()
    if best is None:
        raise UserError(f"no backend could run this model: {selection}")
    best.selection = selection
    return best
