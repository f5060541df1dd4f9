"""The sounddevice output stream: the audio callback copies from an SPSC ring into ``outdata``.

The callback does nothing else: ``ring.read_into(outdata)`` (zero-fill + underrun count when short),
an optional copy of exactly those frames into a second ring for the WAV recorder, a few stores into
preallocated arrays (the clock: frames played, ``perf_counter`` at the callback and its block size, which
the MIDI thread reads to stamp messages with the audio sample clock; a log of recent callbacks for the
latency waterfall), and one byte written to a non-blocking pipe that wakes the render thread
(:meth:`AudioOutput.wait_callback`): the render side is paced by the device, not by a timer. No buffer
allocation, no locks, no logging.

Block size: ``blocksize=0`` (the default, ``serve.block_size: 0``) takes the host's own period (on JACK
the server's period), so each callback is one device period; a fixed PortAudio block on a different JACK
period would run several callbacks back to back or buffer on its own (measured: blocksize 256 on a
JACK period of 1024 runs four callbacks back to back every 21.3 ms).

sounddevice initialises PortAudio when it is imported, so :func:`prepare_portaudio` (JACK client name,
``JACK_DEFAULT_SERVER``, no server autostart) must run before the first import; nothing in this module
imports sounddevice at the top.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import sys
import time

import numpy as np

from rtperformer.audio.ring import AudioRing
from rtperformer.errors import UserError
from rtperformer.rtsched import set_realtime

JACK_HOSTAPI = "JACK Audio Connection Kit"
_client_name_buf = None  # PortAudio keeps the pointer: keep the buffer alive for the process


def prepare_portaudio(client_name: str | None = None) -> None:
    """Set PortAudio's JACK client name and forbid JACK server autostart; call before importing sounddevice."""
    global _client_name_buf
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    if "sounddevice" in sys.modules or not client_name:
        return
    path = ctypes.util.find_library("portaudio")
    if not path:
        return
    try:
        lib = ctypes.CDLL(path)
        fn = lib.PaJack_SetClientName
    except (OSError, AttributeError):
        return
    _client_name_buf = ctypes.create_string_buffer(client_name.encode())
    fn(_client_name_buf)


def import_sounddevice():
    """Import sounddevice or raise a one-line :class:`UserError`."""
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        raise UserError(f"cannot load PortAudio for audio output ({exc})") from None
    return sd


def hostapi_names(sd) -> list[str]:
    return [h["name"] for h in sd.query_hostapis()]


def find_output_device(spec: str | int | None, prefer_jack: bool = True) -> tuple[int, dict, str]:
    """Resolve ``--audio-device`` (index, exact name or case-insensitive substring) to an output device.

    Default: the JACK host API's default output when ``prefer_jack`` and JACK is listed, else the
    PortAudio default. Returns (index, device info, host API name); no match -> UserError.
    """
    sd = import_sounddevice()
    devices = sd.query_devices()
    apis = sd.query_hostapis()
    outputs = [i for i, d in enumerate(devices) if d["max_output_channels"] > 0]
    if not outputs:
        raise UserError("no audio output device found (is the JACK server running?)")
    idx = None
    if spec is None or spec == "":
        if prefer_jack:
            for api in apis:
                if api["name"] == JACK_HOSTAPI and api["default_output_device"] >= 0:
                    idx = api["default_output_device"]
        if idx is None:
            default = sd.default.device[1]
            idx = default if default is not None and default >= 0 else outputs[0]
    else:
        s = str(spec)
        if s.isdigit() and int(s) in outputs:
            idx = int(s)
        else:
            label = lambda i: f"{devices[i]['name']} ({apis[devices[i]['hostapi']]['name']})"  # noqa: E731
            exact = [i for i in outputs if devices[i]["name"] == s]
            sub = [i for i in outputs if s.lower() in label(i).lower()]
            jack_first = sorted(exact or sub, key=lambda i: apis[devices[i]["hostapi"]]["name"] != JACK_HOSTAPI)
            if not jack_first:
                names = ", ".join(label(i) for i in outputs)
                raise UserError(f"audio device '{s}' not found (outputs: {names})")
            idx = jack_first[0]
    info = devices[idx]
    return idx, info, apis[info["hostapi"]]["name"]


class AudioOutput:
    """An output stream fed from ``ring`` (mono or ``channels`` wide) at the device's rate.

    ``blocksize``: frames per callback, 0 = the host's period. ``record_ring`` (optional, ``channels``
    wide): receives every frame written to the device. ``clock``: float64 (3,) = [device frames played
    before the last callback, perf_counter() at it, its frame count]. ``callback_log``: float64
    (CALLBACK_LOG, 2) ring of (device frame at the callback's first sample, perf_counter at its start),
    entry ``i % CALLBACK_LOG`` for callback ``i``.
    """

    CALLBACK_LOG = 1 << 14

    def __init__(self, ring: AudioRing, samplerate: int, blocksize: int = 0, channels: int = 2,
                 device: int | None = None, record_ring: AudioRing | None = None):
        self.ring = ring
        self.record_ring = record_ring
        self.samplerate = int(samplerate)
        self.blocksize = int(blocksize)
        self.channels = int(channels)
        self.device = device
        self.clock = np.zeros(3, dtype=np.float64)
        self.callback_log = np.zeros((self.CALLBACK_LOG, 2), dtype=np.float64)
        self.callbacks = 0
        self.status_flags = 0  # callbacks where PortAudio reported an xrun (under/overflow)
        self.stream = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    def _callback(self, outdata, frames, time_info, status):  # audio thread
        t = time.perf_counter()
        self.ring.read_into(outdata)
        rec = self.record_ring
        if rec is not None:
            rec.write(outdata)
        if status:
            self.status_flags += 1
        clock = self.clock
        clock[0] += clock[2]  # this block's first device frame (the last block's frames are played)
        i = self.callbacks % self.CALLBACK_LOG
        self.callback_log[i, 0] = clock[0]  # scalar stores: no view object per callback
        self.callback_log[i, 1] = t
        clock[1] = t
        clock[2] = frames
        self.callbacks += 1
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:  # the render thread has 64 KiB of wake-ups unread: it knows already
            pass

    @property
    def period(self) -> int:
        """Frames of the last callback (the device period once running; ``blocksize`` before)."""
        return int(self.clock[2]) or self.blocksize

    def wait_callback(self, timeout: float) -> bool:
        """Block (releasing the GIL) until a callback ran since the last call, or ``timeout`` seconds pass.
        Returns whether one ran. One waiter only (the render thread)."""
        try:
            if os.read(self._wake_r, 4096):
                return True
        except BlockingIOError:
            pass
        ready, _, _ = select.select([self._wake_r], [], [], timeout)
        if not ready:
            return False
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        return True

    def sample_clock(self) -> int:
        """The audio sample clock now (any thread): the device frame being played, estimated as the
        frames played before the last callback plus the time since it (at most one period)."""
        clock = self.clock
        frames, t, period = clock[0], clock[1], clock[2]
        if t == 0.0:
            return int(frames)
        ahead = (time.perf_counter() - t) * self.samplerate
        if ahead > period:
            ahead = period
        return int(frames + ahead)

    def recent_callbacks(self) -> np.ndarray:
        """(n, 2) float64: the logged callbacks in order, oldest first (device frame, perf_counter)."""
        n = min(self.callbacks, self.CALLBACK_LOG)
        idx = (np.arange(self.callbacks - n, self.callbacks)) % self.CALLBACK_LOG
        return self.callback_log[idx].copy()

    def open(self) -> None:
        sd = import_sounddevice()
        try:
            self.stream = sd.OutputStream(
                samplerate=self.samplerate, blocksize=self.blocksize, channels=self.channels,
                dtype="float32", device=self.device, callback=self._callback, latency="low")
        except sd.PortAudioError as exc:
            raise UserError(f"cannot open audio output: {exc}") from None

    def start(self) -> None:
        if self.stream is None:
            self.open()
        self.stream.start()

    @property
    def latency(self) -> float:
        """Output latency the device reports, seconds."""
        return float(self.stream.latency) if self.stream is not None else 0.0

    def stop(self) -> None:
        """Stop the callbacks (the stream and its JACK client stay open until :meth:`close`)."""
        if self.stream is not None and not self.stream.stopped:
            self.stream.stop()

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stop()
            finally:
                self.stream.close()
                self.stream = None
        self._close_pipe()

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1


class PacedOutput(AudioOutput):
    """A stand-in sound card: a thread calls the same callback every ``blocksize`` frames, paced by the
    wall clock (``time.perf_counter``), with a preallocated ``outdata``. For the demo and for machines
    without an audio device; ``speed`` > 1 runs faster than real time."""

    def __init__(self, ring: AudioRing, samplerate: int, blocksize: int, channels: int = 2,
                 record_ring: AudioRing | None = None, speed: float = 1.0, realtime_priority: int = 0):
        if blocksize < 1:
            raise ValueError("a paced output needs a block size >= 1")
        super().__init__(ring, samplerate, blocksize, channels, None, record_ring)
        self.speed = float(speed)
        self.realtime_priority = int(realtime_priority)  # SCHED_FIFO for the pacing thread, when allowed
        self._outdata = np.zeros((self.blocksize, self.channels), dtype=np.float32)
        self._thread = None
        self._stop = False

    def open(self) -> None:
        pass

    def start(self) -> None:
        import threading

        self._stop = False
        self._thread = threading.Thread(target=self._run, name="rtperformer-paced-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        set_realtime(self.realtime_priority)
        period = self.blocksize / self.samplerate / self.speed
        t_next = time.perf_counter()
        while not self._stop:
            self._callback(self._outdata, self.blocksize, None, None)
            t_next += period
            wait = t_next - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.5:  # fell far behind (debugger, suspend): resync instead of bursting
                t_next = time.perf_counter()

    @property
    def latency(self) -> float:
        return self.blocksize / self.samplerate

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close_pipe()
