"""TensorRT through torch-tensorrt (``pip install 'rtperformer[tensorrt]'``): fp16, fixed shapes per chunk.

The model runs in half precision inside a wrapper that takes and returns fp32 (x, state) and
(y, new state), so the graph is fp16 under TensorRT's explicit typing and the interface stays fp32.
Expected error against fp32 eager: about 1e-2 relative (fp16 has an 11-bit mantissa; errors grow a
little with depth), checked in tests at max relative error 3e-2.

An engine saved by ``rtperformer export --backend tensorrt`` (models/NAME/model-chunkN.trt.ep, an
ExportedProgram) loads without recompiling; otherwise the backend compiles when built (tens of seconds).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch

from rtperformer.backends.base import Availability, Backend, State, _input_channels
from rtperformer.backends.torch_eager import to_tensor
from rtperformer.atomic import atomic_write

FP16_REL_TOL = 3e-2


class HalfStep(torch.nn.Module):
    """``forward(x, *state) -> (y, *new_state)`` fp32 in/out around an fp16 ``model.step``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, *state):
        y, new = self.model.step(x.half(), tuple(s.half() for s in state))
        return (y.float(), *(n.float() for n in new))


def _example(model, in_channels: int, chunk: int) -> list[torch.Tensor]:
    with torch.no_grad():
        state = [s.float().cuda() for s in model.init_state(1)]
    return [torch.zeros(1, in_channels, chunk, device="cuda"), *state]


def compile_trt(model, in_channels: int, chunk: int):
    """Compile ``model.step`` (fp16) for one chunk size; returns (module, example inputs)."""
    import torch_tensorrt

    half = copy.deepcopy(model).cuda().half().eval()
    ex = _example(half, in_channels, chunk)
    with torch.no_grad():
        mod = torch_tensorrt.compile(HalfStep(half).eval(), ir="dynamo", inputs=ex, min_block_size=1)
    return mod, ex


def export_tensorrt(model, cfg, chunk: int, path: str | os.PathLike) -> Path:
    """Compile and save the engine as an ExportedProgram at ``path`` (temp file, then rename)."""
    import torch_tensorrt

    path = Path(path)
    mod, ex = compile_trt(model, _input_channels(cfg), chunk)
    return atomic_write(path, lambda tmp: torch_tensorrt.save(mod, tmp, inputs=ex), suffix=".tmp.ep")


class TensorRT(Backend):
    """torch-tensorrt engine of ``model.step`` in fp16; fixed chunk size."""

    name = "tensorrt"
    device = "cuda"
    precision = "fp16"
    auto = True  # picked automatically only when an exported engine exists (see select_backend)

    def __init__(self, model, cfg, chunk: int | None = None, path=None):
        super().__init__(model, cfg, chunk=int(chunk or cfg.render.chunk_frames))
        with torch.no_grad():
            self._shapes = [tuple(s.shape) for s in model.init_state(1)]
        if path is not None and Path(path).is_file():
            import torch_tensorrt  # noqa: F401  (registers the TensorRT engine op the saved program calls)

            self.module = torch.export.load(str(path)).module()
        else:
            self.module, _ = compile_trt(model, self.in_channels, self.chunk)

    @classmethod
    def available(cls) -> Availability:
        if not torch.cuda.is_available():
            return Availability(False, f"no CUDA device (torch {torch.__version__})")
        try:
            import torch_tensorrt
        except Exception as exc:
            return Availability(False, f"torch-tensorrt not importable ({exc}); pip install 'rtperformer[tensorrt]'")
        return Availability(True, f"torch-tensorrt {torch_tensorrt.__version__}")

    def init_state(self) -> State:
        return tuple(torch.zeros(s, device="cuda") for s in self._shapes)

    def step(self, x, state: State) -> tuple[np.ndarray, State]:
        x = to_tensor(x, "cuda")
        self._check_chunk(x.shape[-1])
        with torch.no_grad():
            out = self.module(x, *state)
        return out[0].cpu().numpy(), tuple(t.clone() for t in out[1:])
