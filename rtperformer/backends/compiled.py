"""torch.compile: ``model.step`` compiled by Inductor for one chunk size (CPU or CUDA).

On CUDA it uses ``mode="reduce-overhead"`` (Inductor kernels inside CUDA graphs). Compiling takes tens of
seconds, so :func:`select_backend` only tries it when it is named (``auto = False``).

CUDA only: on the CPU Inductor builds C++ kernels with g++, which took 4 minutes for a tiny model on the
2-core machine this was written on; TorchScript (``torchscript``) is the compiled CPU backend instead.
``Compiled(..., device="cpu")`` still works when built directly (for experiments).
"""

from __future__ import annotations

import copy
import importlib

import numpy as np
import torch

from rtperformer.backends.base import Availability, Backend, State
from rtperformer.backends.torch_eager import to_tensor
from rtperformer.backends.torchscript import StepModule


class Compiled(Backend):
    """``torch.compile(StepModule(model), dynamic=False)``; fixed chunk size; fp32."""

    name = "compile"
    device = "cpu"
    auto = False

    def __init__(self, model, cfg, chunk: int | None = None, device: str | None = None):
        super().__init__(model, cfg, chunk=int(chunk or cfg.render.chunk_frames))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.name = "compile-cuda" if self.device == "cuda" else "compile"
        self.model = (copy.deepcopy(model).to("cuda") if self.device == "cuda" else model).eval()
        mode = "reduce-overhead" if self.device == "cuda" else None
        self.fn = torch.compile(StepModule(self.model), mode=mode, dynamic=False, fullgraph=False)

    @classmethod
    def available(cls) -> Availability:
        if not torch.cuda.is_available():
            return Availability(False, "no CUDA device; on the CPU torch.compile builds for minutes, "
                                       "use torchscript or onnx")
        try:
            importlib.import_module("torch._inductor")
        except Exception as exc:  # pragma: no cover - broken installs
            return Availability(False, f"torch.compile unavailable: {exc}")
        return Availability(True, "inductor, reduce-overhead")

    def init_state(self) -> State:
        with torch.no_grad():
            return tuple(s.to(self.device) for s in self.model.init_state(1))

    def step(self, x, state: State) -> tuple[np.ndarray, State]:
        x = to_tensor(x, self.device)
        self._check_chunk(x.shape[-1])
        with torch.no_grad():
            out = self.fn(x, *state)
            # reduce-overhead reuses its output buffers on the next replay: keep our own copies.
            y = out[0].float().cpu().numpy()
            new = tuple(t.clone() for t in out[1:]) if self.device == "cuda" else tuple(out[1:])
        return y, new
