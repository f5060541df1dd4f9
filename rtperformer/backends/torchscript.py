"""TorchScript: ``model.step`` traced once per chunk size and frozen (CPU).

Tracing records one chunk size, so a backend instance takes chunks of exactly ``chunk`` frames.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from rtperformer.backends.base import Backend, State
from rtperformer.backends.torch_eager import to_tensor


class StepModule(torch.nn.Module):
    """``forward(x, *state) -> (y, *new_state)``: the flat form of ``model.step`` that tracers export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, *state):
        y, new = self.model.step(x, tuple(state))
        return (y, *new)


def example_inputs(model, in_channels: int, chunk: int, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """Inputs for tracing/export: x (1, C_in, chunk) zeros and the model's zero state."""
    x = torch.zeros(1, in_channels, chunk, device=device)
    return (x, *(s.to(device) for s in model.init_state(1)))


class TorchScript(Backend):
    """Traced and frozen ``model.step`` on the CPU; fixed chunk size."""

    name = "torchscript"
    device = "cpu"

    def __init__(self, model, cfg, chunk: int | None = None):
        super().__init__(model, cfg, chunk=int(chunk or cfg.render.chunk_frames))
        self.model = model.eval()
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still fastest here
            ex = example_inputs(model, self.in_channels, self.chunk)
            traced = torch.jit.trace(StepModule(model).eval(), ex, check_trace=False)
            self.module = torch.jit.freeze(traced)

    def warmup(self, steps: int = 8) -> float:
        """The profiling executor specialises the graph over the first few calls: run 8."""
        return super().warmup(steps)

    def init_state(self) -> State:
        with torch.no_grad():
            return tuple(self.model.init_state(1))

    def step(self, x, state: State) -> tuple[np.ndarray, State]:
        x = to_tensor(x, "cpu")
        self._check_chunk(x.shape[-1])
        with torch.no_grad():
            out = self.module(x, *state)
        return out[0].numpy(), tuple(out[1:])
