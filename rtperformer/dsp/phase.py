"""The phase-method factory: rtpghi and rtisila (streaming, dsp/rtpghi.py, dsp/rtisila.py) and gla
(offline Griffin-Lim, dsp/griffin_lim.py) by name, and a warm-up of their compiled kernels."""

from __future__ import annotations

import numpy as np

from rtperformer.config import AudioConfig, RenderConfig
from rtperformer.errors import UserError
from rtperformer.dsp.griffin_lim import OfflineGriffinLim
from rtperformer.dsp.rtisila import RTISILA
from rtperformer.dsp.rtpghi import RTPGHI

PHASE_METHODS = ("rtpghi", "rtisila", "gla")


def make_phase(name: str, audio_cfg: AudioConfig, render_cfg: RenderConfig | None = None):
    """Phase reconstructor by name: "rtpghi" | "rtisila" (streaming, ``.streaming = True``) | "gla" (offline).

    Streaming objects have ``.process(mag (n_bins, n)) -> complex64 (n_bins, n)``, ``.delay_frames``,
    ``.reset()``; RTPGHI also takes the held notes (``score_informed``). Settings come from render_cfg
    (phase_lookahead, score_phase_below_bins, rtisila_lookahead, rtisila_iterations, gla_iterations,
    gla_momentum).
    """
    rc = render_cfg if render_cfg is not None else RenderConfig()
    if name == "rtpghi":
        obj = RTPGHI(audio_cfg, lookahead=rc.phase_lookahead, score_below_bins=rc.score_phase_below_bins)
    elif name == "rtisila":
        obj = RTISILA(audio_cfg, lookahead=rc.rtisila_lookahead, iterations=rc.rtisila_iterations)
    elif name == "gla":
        return OfflineGriffinLim(audio_cfg, rc.gla_iterations, rc.gla_momentum)
    else:
        raise UserError(f"unknown phase method '{name}' (choose one of: {', '.join(PHASE_METHODS)})")
    obj.streaming = True
    return obj


def warmup(audio_cfg: AudioConfig) -> float:
    """Load (or compile, on a fresh install) the numba kernels and FFT plans before audio starts.

    The first numba call in a process costs ~1-3 s even with the on-disk cache (numba initialises its
    target); a fresh cache compiles for ~5-15 s. Call this once at engine start. Returns the seconds spent.
    """
    import time

    t0 = time.perf_counter()
    m = np.ones((audio_cfg.n_bins, 2), np.float32)
    RTPGHI(audio_cfg, lookahead=1).process(m)
    RTISILA(audio_cfg, lookahead=1, iterations=1).process(m)
    from rtperformer.dsp.istft_stream import StreamingISTFT

    StreamingISTFT(audio_cfg).push(RTPGHI(audio_cfg, lookahead=0).process(m))
    return time.perf_counter() - t0
