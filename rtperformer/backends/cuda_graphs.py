"""CUDA graphs: one captured ``model.step`` per chunk size, replayed with static buffers (fp32).

The whole state lives in one flat device buffer, so carrying it costs one copy in and one copy out per
step (the graph reads ``flat_in`` and writes ``flat_out``). The state handed to the caller is a clone of
``flat_out``, so it stays valid after later steps. The output frames come back through pinned memory.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from rtperformer.backends.base import Availability, Backend, State
from rtperformer.backends.torch_eager import to_tensor


class CudaGraphs(Backend):
    """``model.step`` captured in a CUDA graph for a fixed chunk size."""

    name = "cuda-graphs"
    device = "cuda"

    def __init__(self, model, cfg, chunk: int | None = None):
        super().__init__(model, cfg, chunk=int(chunk or cfg.render.chunk_frames))
        self.model = copy.deepcopy(model).to("cuda").eval()
        with torch.no_grad():
            shapes = [tuple(s.shape) for s in self.model.init_state(1)]
        self._shapes = shapes
        sizes = [int(np.prod(s)) for s in shapes]
        self._offsets = np.cumsum([0] + sizes).tolist()
        total = self._offsets[-1]
        self._x = torch.zeros(1, self.in_channels, self.chunk, device="cuda")
        self._flat_in = torch.zeros(max(total, 1), device="cuda")
        self._y_host = torch.empty(1, self.n_bins, self.chunk, pin_memory=True)
        self._graph = torch.cuda.CUDAGraph()
        self._capture()

    def _views(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        o = self._offsets
        return tuple(flat[o[i]:o[i + 1]].view(s) for i, s in enumerate(self._shapes))

    def _body(self):
        y, new = self.model.step(self._x, self._views(self._flat_in))
        flat = torch.cat([t.reshape(-1) for t in new]) if new else self._flat_in.new_zeros(1)
        return y, flat

    def _capture(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(3):  # warm up kernels and the allocator outside the graph
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad(), torch.cuda.graph(self._graph):
            self._y, self._flat_out = self._body()
        torch.cuda.synchronize()

    @classmethod
    def available(cls) -> Availability:
        if not torch.cuda.is_available():
            return Availability(False, f"no CUDA device (torch {torch.__version__})")
        return Availability(True, torch.cuda.get_device_name(0))

    def init_state(self) -> State:
        return (torch.zeros_like(self._flat_in),)

    def step(self, x, state: State) -> tuple[np.ndarray, State]:
        x = to_tensor(x, "cuda")
        self._check_chunk(x.shape[-1])
        self._x.copy_(x, non_blocking=True)
        if state[0] is not self._flat_in:
            self._flat_in.copy_(state[0], non_blocking=True)
        self._graph.replay()
        new = self._flat_out.clone()
        self._y_host.copy_(self._y, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return self._y_host.numpy().copy(), (new,)

    def close(self) -> None:
        self._graph = None
