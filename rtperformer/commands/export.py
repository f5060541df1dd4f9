"""``rtperformer export``: write a model's runtime engine next to its checkpoint.

``rtperformer export --backend onnx --model violin --chunk 1`` -> models/violin/model-chunk1.onnx
``rtperformer export --backend tensorrt --model violin`` -> models/violin/model-chunkN.trt.ep (CUDA, fp16)

The chunk size defaults to ``serve.step_frames`` of the model's config (the frames per live step). The
file is written to a temp file in the same folder and renamed, so a failed export leaves nothing behind.
The server and ``select_backend`` load it instead of exporting at start-up while it is newer than
``model.safetensors``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Export a model to ONNX or TensorRT next to its checkpoint."
EXPORTERS = ("onnx", "tensorrt")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", required=True, choices=EXPORTERS, help="engine to write")
    p.add_argument("--model", required=True, metavar="NAME_OR_PATH",
                   help="model name (models/NAME) or checkpoint folder")
    p.add_argument("--chunk", type=int, metavar="N",
                   help="frames per step the engine takes (default: serve.step_frames of the model's config)")
    p.add_argument("--check", action="store_true",
                   help="after writing, compare a few chained steps with torch eager and print the error")


def model_dir_of(name_or_path: str) -> Path:
    """The checkpoint folder for a ``--model`` value: a path as given, else NAME on the model search path."""
    from rtperformer.model.checkpoint import resolve_model_dir

    p = Path(name_or_path)
    if p.is_dir():
        return p
    return resolve_model_dir(name_or_path)


def export(backend: str, model, cfg, chunk: int, model_dir: Path) -> Path:
    """Write ``backend``'s engine of ``model`` for ``chunk`` frames into ``model_dir``; returns the path."""
    from rtperformer.backends import available, engine_path
    from rtperformer.errors import UserError

    ok = available(backend)
    if not ok:
        raise UserError(f"cannot export for {backend}: {ok.reason}")
    if cfg.model.form != "streaming":
        raise UserError(f"model has the {cfg.model.form} form; only streaming models export (step() with state)")
    path = engine_path(model_dir, backend, chunk)
    if backend == "onnx":
        from rtperformer.backends.onnxrt import export_onnx

        return export_onnx(model, cfg, chunk, path)
    from rtperformer.backends.trt import export_tensorrt

    return export_tensorrt(model, cfg, chunk, path)


def check(backend: str, model, cfg, chunk: int, model_dir: Path, steps: int = 8) -> float:
    """Max relative error of the exported engine against torch eager over ``steps`` chained steps."""
    import numpy as np

    from rtperformer.backends import make_backend

    ref = make_backend("torch", model, cfg, chunk)
    eng = make_backend(backend, model, cfg, chunk, model_dir=model_dir)
    rng = np.random.default_rng(0)
    s_ref, s = ref.init_state(), eng.init_state()
    worst = 0.0
    for _ in range(steps):
        x = (rng.random((1, ref.in_channels, chunk)) < 0.1).astype(np.float32)
        y_ref, s_ref = ref.step(x, s_ref)
        y, s = eng.step(x, s)
        worst = max(worst, float(np.abs(y - y_ref).max() / max(np.abs(y_ref).max(), 1e-12)))
    return worst


def run(args: argparse.Namespace) -> int:
    from rtperformer.errors import UserError
    from rtperformer.model.checkpoint import load_model

    model, cfg, _meta = load_model(args.model)
    model.eval()
    model_dir = model_dir_of(args.model)
    if not model_dir.is_dir():
        raise UserError(f"model folder not found: {model_dir}")
    chunk = int(args.chunk if args.chunk is not None else cfg.serve.step_frames)
    if chunk < 1:
        raise UserError(f"--chunk must be >= 1, got {chunk}")
    path = export(args.backend, model, cfg, chunk, model_dir)
    print(f"wrote {path}")
    if args.check:
        print(f"max relative error vs torch eager over 8 steps: {check(args.backend, model, cfg, chunk, model_dir):.2e}")
    return 0
