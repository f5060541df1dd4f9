"""Real-time scheduling for the threads that must not be pre-empted (render, replay, recorder)."""

from __future__ import annotations

import os


def set_realtime(priority: int) -> bool:
    """Give the calling thread SCHED_FIFO ``priority`` (Linux, needs the privilege); False if not."""
    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except OSError:
        return False
