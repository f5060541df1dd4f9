"""WAV recorder: a writer thread drains an SPSC ring (filled by the audio callback) into a file.

The file is written to a temporary name in the destination folder and moved into place by
:meth:`WavRecorder.close`, so an interrupted run never leaves a half-written ``OUT.wav``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from rtperformer.audio.ring import AudioRing
from rtperformer.errors import UserError
from rtperformer.rtsched import set_realtime


class WavRecorder:
    """Write float32 frames ``(n, channels)`` to ``path`` (FLOAT WAV).

    ``ring`` given: :meth:`start` runs a thread that drains it every ``poll_s``; without a ring call
    :meth:`write` directly. :meth:`close` drains what is left, then renames into place.
    """

    def __init__(self, path: str | os.PathLike, samplerate: int, channels: int,
                 ring: AudioRing | None = None, poll_s: float = 0.02, realtime_priority: int = 0):
        self.path = Path(path)
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise UserError(f"cannot record to {self.path}: folder {folder} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".wav.part", dir=folder)
        os.close(fd)
        self._tmp = Path(tmp)
        self._file = sf.SoundFile(tmp, mode="w", samplerate=int(samplerate), channels=int(channels),
                                  subtype="FLOAT", format="WAV")
        self.ring = ring
        self.poll_s = poll_s
        # SCHED_FIFO (low) for the writer thread: a thread holding the GIL must not be preempted by
        # ordinary processes while the render and audio threads wait for it.
        self.realtime_priority = int(realtime_priority)
        self.frames = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def write(self, frames: np.ndarray) -> None:
        if len(frames):
            self._file.write(np.asarray(frames, dtype=np.float32))
            self.frames += len(frames)

    def _drain(self) -> None:
        while self.ring is not None and self.ring.fill:
            self.write(self.ring.read(65536))

    def _run(self) -> None:
        set_realtime(self.realtime_priority)
        while not self._stop.wait(self.poll_s):
            self._drain()

    def start(self) -> "WavRecorder":
        if self.ring is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rtperformer-recorder", daemon=True)
            self._thread.start()
        return self

    def close(self, keep: bool = True) -> Path | None:
        """Stop the thread, drain the ring, and move the file into place (or delete it)."""
        if self._closed:
            return self.path if keep else None
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._drain()
        self._file.close()
        if keep:
            os.chmod(self._tmp, 0o644)  # mkstemp made it private
            os.replace(self._tmp, self.path)
            return self.path
        self._tmp.unlink(missing_ok=True)
        return None
