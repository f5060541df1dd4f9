"""Torch eager: ``model.step`` as it is, on the CPU (``torch``) or a CUDA GPU (``torch-cuda``).

This is the reference every other backend is checked against. Any chunk size works.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from rtperformer.backends.base import Availability, Backend, State


def to_tensor(x, device: str) -> torch.Tensor:
    """(1, C_in, n) numpy or torch -> float32 tensor on ``device``."""
    t = torch.as_tensor(x, dtype=torch.float32)
    return t.to(device, non_blocking=True) if t.device.type != device else t


class TorchEager(Backend):
    """``model.step`` in ``torch.inference_mode`` on the CPU."""

    name = "torch"
    device = "cpu"

    def __init__(self, model, cfg, chunk: int | None = None):
        super().__init__(model, cfg, chunk=None)
        self.model = self._place(model)
        self.model.eval()

    def _place(self, model):
        return model

    def init_state(self) -> State:
        with torch.inference_mode():
            return tuple(s.to(self.device) for s in self.model.init_state(1))

    def step(self, x, state: State) -> tuple[np.ndarray, State]:
        with torch.inference_mode():
            y, state = self.model.step(to_tensor(x, self.device), state)
            return y.float().cpu().numpy(), tuple(state)


class TorchCuda(TorchEager):
    """``model.step`` in ``torch.inference_mode`` on the first CUDA GPU (fp32)."""

    name = "torch-cuda"
    device = "cuda"

    @classmethod
    def available(cls) -> Availability:
        if not torch.cuda.is_available():
            return Availability(False, f"no CUDA device (torch {torch.__version__})")
        return Availability(True, torch.cuda.get_device_name(0))

    def _place(self, model):
        return copy.deepcopy(model).to("cuda")
