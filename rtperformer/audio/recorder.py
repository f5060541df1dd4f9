"""WAV recorder: a writer thread drains an SPSC ring (filled by the audio callback) into a file.

A take must survive whatever ends the session. The file is written under its own name from the start
(:func:`rtperformer.audio.wavfile.open_wav`: WAV, RF64 past 4 GiB) and its header is brought up to date
every ``header_every_s`` seconds of audio, so after a crash, a SIGKILL or a lost JACK server the file is
readable up to the last second written. A write that fails (disk full, file too large) stops the
recording, not the music: the error is kept in :attr:`WavRecorder.error` (one line, for the status line),
the ring is still drained so the callback never notices, and the file keeps what was written before.

:func:`check_record_path` tells at start (before any model loads) whether a path can be recorded to.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from rtperformer.audio.ring import AudioRing
from rtperformer.audio.wavfile import last_error, open_wav, update_header
from rtperformer.errors import UserError
from rtperformer.rtsched import set_realtime


def check_record_path(path: str | os.PathLike) -> Path:
    """``path`` if a recording can be written there, else a one-line UserError saying why."""
    p = Path(path)
    if p.suffix.lower() != ".wav":
        raise UserError(f"--record needs a .wav path, got {p}")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"cannot record to {p}: folder {folder} does not exist")
    if p.is_dir():
        raise UserError(f"cannot record to {p}: it is a folder")
    try:  # create a file next to it: the one test that holds for read-only mounts, /proc and root alike
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".check", dir=folder)
        os.close(fd)
        os.unlink(probe)
        if p.exists() and not os.access(p, os.W_OK):
            raise PermissionError(errno.EACCES, "permission denied")
    except OSError as exc:
        raise UserError(f"cannot record to {p}: {exc.strerror or exc}") from None
    return p


class WavRecorder:
    """Write float32 frames ``(n, channels)`` to ``path`` (FLOAT WAV, RF64 past 4 GiB).

    ``ring`` given: :meth:`start` runs a thread that drains it every ``poll_s``; without a ring call
    :meth:`write` directly. :meth:`close` drains what is left and finishes the file.
    """

    def __init__(self, path: str | os.PathLike, samplerate: int, channels: int,
                 ring: AudioRing | None = None, poll_s: float = 0.02, realtime_priority: int = 0,
                 header_every_s: float = 1.0):
        self.path = check_record_path(path)
        self.samplerate = int(samplerate)
        try:
            self._file = open_wav(self.path, samplerate, channels)
        except Exception as exc:  # soundfile.LibsndfileError, OSError
            raise UserError(f"cannot record to {self.path}: {exc}") from None
        self.ring = ring
        self.poll_s = poll_s
        # SCHED_FIFO (low) for the writer thread: a thread holding the GIL must not be preempted by
        # ordinary processes while the render and audio threads wait for it.
        self.realtime_priority = int(realtime_priority)
        self.header_every = max(1, int(header_every_s * self.samplerate))
        self.frames = 0  # frames in the file
        self.lost_frames = 0  # frames drained after a write error, not in the file
        self.error = ""  # why the recording stopped early ("" while all is well)
        self._since_header = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def write(self, frames: np.ndarray) -> None:
        if not len(frames):
            return
        if self.error:
            self.lost_frames += len(frames)
            return
        try:
            self._file.write(np.asarray(frames, dtype=np.float32))
            self.frames += len(frames)
            self._since_header += len(frames)
            if self._since_header >= self.header_every:
                self._since_header = 0
                update_header(self._file)
        except Exception as exc:  # disk full, file too large, I/O error: stop recording, keep playing
            self._fail(exc, len(frames))

    def _fail(self, exc: BaseException, n: int) -> None:
        text = f"{exc} {last_error(self._file)}".strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        if (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or "space" in text.lower():
            reason = "disk full"
        elif (isinstance(exc, OSError) and exc.errno == errno.EFBIG) or "too large" in text.lower():
            reason = "file too large"
        self.error = (f"recording stopped ({reason}) after {self.frames / self.samplerate:.1f} s; "
                      f"{self.path} holds that much, the music goes on")
        self.lost_frames += n
        sys.stderr.write(f"\nrtperformer: {self.error}\n")
        sys.stderr.flush()
        try:
            update_header(self._file)  # rewrites bytes already on disk: fits even on a full disk
        except Exception:
            pass

    @property
    def status(self) -> str:
        """The status line's recording field."""
        if self.error:
            return self.error
        over = f" overrun {self.ring.overruns}" if self.ring is not None and self.ring.overruns else ""
        return f"rec {self.frames / self.samplerate:.0f}s{over}"

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
        """Stop the thread, drain the ring and finish the file (or delete it)."""
        if self._closed:
            return self.path if keep else None
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._drain()
        try:
            self._file.close()
        except Exception as exc:
            if not self.error:
                self._fail(exc, 0)
        if keep:
            return self.path
        self.path.unlink(missing_ok=True)
        return None
