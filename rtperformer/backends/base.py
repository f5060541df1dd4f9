"""The one small interface every runtime implements.

A backend wraps one streaming PerformanceNet (``model.step`` / ``model.init_state``, see
rtperformer/model/performancenet.py)
for one runtime and, for the runtimes that need it, one fixed chunk size::

    backend = make_backend("onnx", model, cfg, chunk=4)
    backend.warmup()
    state = backend.init_state()
    y, state = backend.step(x, state)    # x (1, C_in, n) float32 -> y (1, n_bins, n) float32 numpy

Output frame j of the stream is input frame ``j - backend.lookahead_frames`` (the model's declared delay).
The state is explicit and opaque: each backend returns its own representation from :meth:`init_state` and
:meth:`step`; pass it back unchanged. A state returned by ``step`` stays valid after later steps (it is
never a buffer the backend overwrites), so a caller may keep one to re-render from it.

Backends never import sounddevice or mido.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

State = tuple[Any, ...]


@dataclass(frozen=True)
class Availability:
    """Whether a runtime can run here; ``reason`` says why not (or what it runs on)."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def cpu_threads() -> int:
    """Cores this process may use (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class Backend:
    """Base class: one model, one runtime.

    Subclasses set ``name`` and implement :meth:`available` (classmethod), :meth:`init_state` and
    :meth:`step`. ``chunk`` is the fixed chunk size of runtimes that compile per shape, else ``None``
    (any ``n >= 1``). ``auto`` says whether :func:`select_backend` may try it without being asked
    (runtimes that compile for tens of seconds opt out). ``device`` is ``"cpu"`` or ``"cuda"``.
    """

    name: str = "base"
    device: str = "cpu"
    auto: bool = True
    precision: str = "fp32"

    def __init__(self, model, cfg, chunk: int | None = None):
        self.cfg = cfg
        self.chunk = chunk
        self.lookahead_frames = int(getattr(model, "lookahead_frames", 0))
        self.n_bins = int(cfg.audio.n_bins)
        self.in_channels = _input_channels(cfg)
        self.first_call_s: float | None = None

    # -- availability -------------------------------------------------------------------------
    @classmethod
    def available(cls) -> Availability:
        """Whether this runtime can run on this machine (cheap: imports, device checks)."""
        return Availability(True, "")

    # -- streaming ----------------------------------------------------------------------------
    def init_state(self) -> State:
        """The zero state for batch 1 (the backend's own representation)."""
        raise NotImplementedError

    def step(self, x, state: State) -> tuple[np.ndarray, State]:
        """x (1, C_in, n) float32 (numpy or torch) and state -> (y (1, n_bins, n) float32 numpy, state)."""
        raise NotImplementedError

    def warmup(self, steps: int = 3) -> float:
        """Run a few steps on silence so first-call costs (allocation, autotuning) are paid now.

        Returns the time of the first call in seconds (also kept as ``first_call_s``).
        """
        n = self.chunk or 1
        x = np.zeros((1, self.in_channels, n), np.float32)
        state = self.init_state()
        t0 = time.perf_counter()
        _, state = self.step(x, state)
        first = time.perf_counter() - t0
        for _ in range(max(0, steps - 1)):
            _, state = self.step(x, state)
        if self.first_call_s is None:
            self.first_call_s = first
        return first

    def close(self) -> None:
        """Free runtime resources (sessions, graphs). The backend is unusable afterwards."""

    # -- helpers ------------------------------------------------------------------------------
    def _check_chunk(self, n: int) -> None:
        if self.chunk is not None and n != self.chunk:
            raise ValueError(f"backend {self.name} was built for chunks of {self.chunk} frames, got {n}")

    def __repr__(self) -> str:
        chunk = "any" if self.chunk is None else self.chunk
        return f"<{type(self).__name__} {self.name} chunk={chunk} lookahead={self.lookahead_frames}>"


def _input_channels(cfg) -> int:
    """C_in of the model's input (rtperformer.roll.rolls.input_channels)."""
    from rtperformer.roll.rolls import input_channels

    return int(input_channels(cfg.model))


def as_numpy(x) -> np.ndarray:
    """(1, C, n) torch or numpy -> contiguous float32 numpy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)
