"""A private JACK server and a sample-accurate MIDI/audio probe, for the tests and bench/latency.py.

:class:`PrivateJackServer` runs ``jackd -n NAME -d dummy -r RATE -p PERIOD`` for the length of a ``with``
block, points this process (and the subprocesses it starts) at it with ``JACK_DEFAULT_SERVER``, and on exit
stops it and removes its /dev/shm leftovers (the shared registry only when no other jackd runs).

:class:`JackProbe` is a JACK-Client with one MIDI output and ``n_in`` audio inputs: it writes a schedule of
MIDI events at exact frames and records its inputs from :meth:`JackProbe.play` on. Its process callback is
Python: keep it out of a process that also opens a python-rtmidi JACK client (the two clients of one
process can deadlock), which is why the server under test always runs in its own process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np

from rtperformer.errors import UserError

_ENV_KEYS = ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")


class JackUnavailable(UserError):
    """jackd is missing or did not start."""


def _other_jackd_running(own_pid: int) -> bool:
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == own_pid:
            continue
        try:
            if (d / "comm").read_text().strip() == "jackd":
                return True
        except OSError:
            continue
    return False


def _cleanup_shm(name: str, own_pid: int) -> None:
    shm = Path("/dev/shm")
    for p in list(shm.glob(f"jack*_{name}_*")) + list(shm.glob(f"jack_sem.*_{name}_*")):
        p.unlink(missing_ok=True)
    if not _other_jackd_running(own_pid):
        for p in list(shm.glob("jack-shm-registry")) + list(shm.glob("jack-[0-9]*")):
            try:
                p.unlink()
            except OSError:
                pass


class PrivateJackServer:
    """``jackd -n <prefix><unique> -d dummy -r rate -p period`` for the duration of a ``with`` block."""

    def __init__(self, prefix: str = "rtp", rate: int = 48000, period: int = 256, log: Path | None = None,
                 start_timeout: float = 20.0):
        self.name = f"{prefix}{os.getpid()}{uuid.uuid4().hex[:6]}"
        self.rate, self.period = rate, period
        self.log = Path(log) if log else Path(f"/tmp/jackd-{self.name}.log")
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self._saved: dict[str, str | None] = {}

    def env(self) -> dict[str, str]:
        """This process's environment pointed at the private server (for subprocesses)."""
        return dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")

    def __enter__(self) -> "PrivateJackServer":
        from rtperformer.midi.sources import jack_server_running

        jackd = shutil.which("jackd")
        if jackd is None:
            raise JackUnavailable("jackd is not installed (apt-get install jackd2)")
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                [jackd, "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
                stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ, JACK_NO_START_SERVER="1"))
        deadline = time.monotonic() + self.start_timeout
        while not jack_server_running(self.name):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-400:]
                self.__exit__(None, None, None)
                raise JackUnavailable(f"jackd did not start: {tail}")
            time.sleep(0.05)
        self._saved = {k: os.environ.get(k) for k in _ENV_KEYS}
        os.environ.update(JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")
        return self

    def __exit__(self, *exc) -> None:
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved = {}
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _cleanup_shm(self.name, self.proc.pid)


class JackProbe:
    """A JACK client with one MIDI output and ``n_in`` audio inputs: plays a schedule of MIDI events at
    exact frames and records its inputs into ``buf`` (frames, n_in), frame 0 being the :meth:`play` call."""

    CYCLES = 1 << 16

    def __init__(self, name: str, n_in: int, seconds: float, physical_midi: bool = False):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.rate = self.client.samplerate
        # physical_midi: the MIDI output is flagged physical, as a hardware keyboard's port is
        self.midi_out = self.client.midi_outports.register("midi_out", is_physical=physical_midi,
                                                           is_terminal=physical_midi)
        self.inputs = [self.client.inports.register(f"in_{i}") for i in range(n_in)]
        self.buf = np.zeros((int(seconds * self.rate), n_in), np.float32)
        self.frame = 0
        self.origin = 1 << 62  # nothing recorded before play()
        self.schedule: list[tuple[int, bytes]] = []
        self._next = 0
        self.xruns = 0
        # (recording frame at the cycle's start, perf_counter in the callback) of the last CYCLES cycles:
        # maps another process's CLOCK_MONOTONIC stamps to recording frames (bench/latency.py's waterfall)
        self.cycles = np.zeros((self.CYCLES, 2), np.float64)
        self.n_cycles = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)

    def _xrun(self, delay):
        self.xruns += 1

    def _process(self, frames):
        t0 = self.frame
        row = self.cycles[self.n_cycles % self.CYCLES]
        row[0] = t0 - self.origin
        row[1] = time.perf_counter()
        self.n_cycles += 1
        out = self.midi_out
        out.clear_buffer()
        sched = self.schedule
        while self._next < len(sched) and sched[self._next][0] < t0 + frames:
            at, data = sched[self._next]
            out.write_midi_event(max(0, at - t0), data)
            self._next += 1
        r0 = t0 - self.origin
        end = min(r0 + frames, len(self.buf))
        if r0 >= 0 and end > r0:
            for i, port in enumerate(self.inputs):
                self.buf[r0:end, i] = port.get_array()[: end - r0]
        self.frame = t0 + frames

    def cycle_log(self) -> np.ndarray:
        """(n, 2) float64, oldest first: recording frame at each cycle's start (negative before
        :meth:`play`) and the perf_counter (CLOCK_MONOTONIC, shared by all processes) of its callback."""
        n = min(self.n_cycles, self.CYCLES)
        idx = np.arange(self.n_cycles - n, self.n_cycles) % self.CYCLES
        return self.cycles[idx].copy()

    def play_frames(self, events: list[tuple[int, bytes]], lead: int) -> list[tuple[int, bytes]]:
        """Start recording now (buffer frame 0) and schedule (frames after ``lead`` frames, data); returns
        the events' frames in the recording."""
        origin = self.frame
        sched = sorted(((origin + lead + f, bytes(d)) for f, d in events), key=lambda e: e[0])
        self.origin = origin  # the process callback records from here on
        self.schedule = sched
        self._next = 0
        return [(at - origin, d) for at, d in sched]

    def play(self, events: list[tuple[float, bytes]], lead: float = 0.3) -> list[tuple[int, bytes]]:
        """:meth:`play_frames` with times in seconds."""
        return self.play_frames([(int(round(t * self.rate)), d) for t, d in events], int(lead * self.rate))

    @property
    def recorded(self) -> int:
        """Frames recorded since :meth:`play`."""
        return max(0, min(self.frame - self.origin, len(self.buf)))

    def wait_frame(self, frame: int, timeout: float = 60.0) -> None:
        """Wait until ``frame`` frames are recorded."""
        deadline = time.monotonic() + timeout
        while self.recorded < frame:
            if time.monotonic() > deadline:
                raise TimeoutError(f"JACK probe stuck at {self.recorded} < {frame} recorded frames")
            time.sleep(0.02)

    def close(self) -> None:
        try:
            self.client.deactivate()
        finally:
            self.client.close()
