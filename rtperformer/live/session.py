"""One live session's threads around an :class:`~rtperformer.live.engine.Engine` (rtperformer/live/server.py wires them
to real ports):

- MIDI (rtmidi's thread, or the file replay thread): stamp with the audio sample clock, push onto a
  preallocated :class:`~rtperformer.midi.queue.MidiQueue` (which never loses a note-off). Nothing else.
- render thread (:class:`LiveSession`): woken by each audio callback, drain the queue into the engine and
  render until the output ring holds the next device period plus a measured lead
  (rtperformer/audio/pacing.py), so a note-on reaches the next period the device pulls. SCHED_FIFO
  ``serve.realtime_priority`` when the OS allows.
- audio callback (rtperformer/audio/output.py): copy ring -> outdata, zero-fill and count underruns, copy
  what was sent into the recording ring, wake the render thread.
- recorder thread: drain the recording ring into ``--record OUT.wav``.
- the calling thread (:meth:`LiveSession.run`): the status line, the watchers (a lost MIDI port), the
  audio watchdog (:func:`audio_stalled`).

:class:`OnsetLog` keeps the last note-ons with their clocks (the status line's latency, the waterfall log).
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

from rtperformer.audio.recorder import WavRecorder
from rtperformer.audio.ring import AudioRing
from rtperformer.config import Config
from rtperformer.midi.queue import MidiQueue
from rtperformer.rtsched import set_realtime

AUDIO_TIMEOUT_S = 1.5  # no audio callback for this long while running: the device or JACK server is gone
EXIT_AUDIO_LOST = 3  # serve's exit code when the audio device or JACK server went away
RING_FRAMES = 1 << 16  # output ring: any device period (up to 8192) plus the largest lead plus a step
ONSET_LOG = 4096  # note-ons kept for the latency statistics and the waterfall log (the most recent)


class OnsetLog:
    """The most recent ``capacity`` note-ons as rendered, in a preallocated float64 (capacity, 8) array:
    stamp (device frame when the MIDI arrived), at (device frame where the note's audio begins), pitch,
    instrument index, arrival / step start / step end (perf_counter), and ``written``: where ``at`` is in
    the engine's own output (samples written to the ring before it: ``at`` minus the zero frames the
    device played in underruns). Written by the render thread only;
    statistics cost the same whatever the uptime."""

    FIELDS = ("stamp", "at", "pitch", "instrument", "t_arrival", "t_step0", "t_step1", "written")

    def __init__(self, instruments: list[str], capacity: int = ONSET_LOG):
        self.instruments = list(instruments)
        self.capacity = int(capacity)
        self._a = np.zeros((self.capacity, len(self.FIELDS)), np.float64)
        self.count = 0  # note-ons ever logged

    def add(self, stamp: int, at: int, pitch: int, instrument: str, t_arrival: float, t_step0: float,
            t_step1: float, written: int) -> None:
        idx = self.instruments.index(instrument) if instrument in self.instruments else -1
        self._a[self.count % self.capacity] = (stamp, at, pitch, idx, t_arrival, t_step0, t_step1, written)
        self.count += 1

    def array(self) -> np.ndarray:
        """(n, 8) copy of the kept note-ons, oldest first."""
        n = min(self.count, self.capacity)
        idx = np.arange(self.count - n, self.count) % self.capacity
        return self._a[idx].copy()

    def entries(self) -> list[tuple[int, int, int, str]]:
        """(stamp, at, pitch, instrument name) of the kept note-ons, oldest first."""
        return [(int(r[0]), int(r[1]), int(r[2]), self.instruments[int(r[3])] if r[3] >= 0 else "?")
                for r in self.array()]

    def latency_samples(self) -> np.ndarray:
        """at - stamp of the kept note-ons (device frames)."""
        a = self.array()
        return a[:, 1] - a[:, 0]

    def ms(self, rate: int) -> tuple[float, float, int]:
        """(median, p95) of stamp -> first output frame in ms over the kept note-ons, and their count;
        (nan, nan, 0) when empty."""
        s = self.latency_samples()
        if not len(s):
            return float("nan"), float("nan"), 0
        a = s * 1e3 / rate
        return float(np.median(a)), float(np.percentile(a, 95)), len(a)


class LiveSession:
    """One engine, one output (AudioOutput or PacedOutput), one event queue, an optional recording.

    Pacing: the render thread sleeps until the output's callback wakes it, waits ``serve.render_delay_ms``
    (at most a quarter period) so that MIDI delivered in the same device cycle is in, applies the queued
    events and renders until the ring holds the next device period plus the measured lead
    (:class:`rtperformer.audio.pacing.Pacer`).
    """

    @classmethod
    def assemble(cls, engine, cfg: Config, events: MidiQueue, rate: int, channels: int, make_output,
                 record: str | None = None, where: str = "", quiet: bool = False) -> "LiveSession":
        """The session around ``engine`` as ``serve`` and the demo wire it: the mono mix ring, the take
        (a ``rate * 4``-frame record ring and a :class:`WavRecorder` at ``record``, when given), the output
        ``make_output(ring, record_ring)`` (opened by it) and a status label ``where/mode/instrument:backend``.
        A failure after the take was created deletes it (nothing half-written)."""
        ring = AudioRing(RING_FRAMES, 1)
        record_ring = recorder = None
        if record:
            record_ring = AudioRing(rate * 4, channels)
            recorder = WavRecorder(record, rate, channels, ring=record_ring,
                                   realtime_priority=1 if cfg.serve.realtime_priority > 0 else 0)
        try:
            output = make_output(ring, record_ring)
        except BaseException:
            if recorder is not None:
                recorder.close(keep=False)
            raise
        names = ",".join(f"{k}:{getattr(getattr(v, 'backend', None), 'name', 'torch')}"
                         for k, v in sorted(engine.voices.items()))
        return cls(engine, output, ring, events, cfg, record_ring, recorder,
                   backend_name=f"{where}/{cfg.render.mode}/{names}", quiet=quiet)

    def __init__(self, engine, output, ring: AudioRing, events: MidiQueue, cfg: Config,
                 record_ring: AudioRing | None = None, recorder: WavRecorder | None = None,
                 backend_name: str = "", quiet: bool = False):
        from rtperformer.audio.pacing import Pacer

        self.engine = engine
        self.output = output
        self.ring = ring
        self.events = events
        self.cfg = cfg
        self.record_ring = record_ring
        self.recorder = recorder
        self.backend_name = backend_name
        self.quiet = quiet
        self.rate = int(output.samplerate)
        step = int(round(engine.frames_per_step * engine.hop * self.rate / engine.sample_rate))
        self.pacer = Pacer(self.rate, int(cfg.serve.lead_samples), int(cfg.serve.max_lead_samples), step=step)
        if ring.capacity < self.pacer.ceiling + step + 8192:
            raise ValueError(f"output ring of {ring.capacity} frames cannot hold the largest lead plus a step "
                             f"and a device period; use RING_FRAMES")
        self.onsets = OnsetLog(list(engine.voices))
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.realtime = False
        self.error: BaseException | None = None
        self.status_fields: list = []  # callables -> str, appended to the status line (MIDI, recorder)
        self.audio_lost = ""  # why the audio stopped (the main loop's watchdog), "" while it runs
        self.watchers: list = []  # callables run by the main loop every tick (the MIDI port watch)

    @property
    def target(self) -> int:
        """Frames the render thread keeps queued after a render: the device period plus the lead."""
        return self.pacer.target(self.output.period)

    # -- render thread -----------------------------------------------------------------------
    def _drain(self) -> None:
        engine, events = self.engine, self.events
        while True:
            item = events.pop()
            if item is None:
                return
            engine.events.push(item)

    def _render_loop(self) -> None:
        self.realtime = set_realtime(int(self.cfg.serve.realtime_priority))
        engine, ring, out, pacer, log = self.engine, self.ring, self.output, self.pacer, self.onsets
        clock, rate = out.clock, self.rate
        delay = float(self.cfg.serve.render_delay_ms) * 1e-3
        try:
            while not self.stop_event.is_set():
                if not out.wait_callback(0.05):
                    continue
                period = out.period
                wait = min(delay, 0.25 * period / rate)
                if wait > 0:
                    time.sleep(wait)
                self._drain()
                while ring.fill < pacer.target(period) and not self.stop_event.is_set():
                    t0 = time.perf_counter()
                    audio = engine.render_step()
                    fill = ring.fill
                    written = ring.frames_written  # engine output sample of audio[0]
                    pos = written + ring.device_offset  # its device frame
                    ring.write(audio)
                    t1 = time.perf_counter()
                    pacer.wrote(pacer.deadline(clock[1], period, fill, rate) - t1)
                    for o in engine.onsets:
                        log.add(o.stamp, pos + o.offset, o.pitch, o.instrument, o.wall, t0, t1,
                                written + o.offset)
                    self._drain()  # MIDI that came in meanwhile goes into the next step
                    pacer.update(t1, ring.underruns, period)  # also while behind (an overload)
                pacer.update(time.perf_counter(), ring.underruns, period)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.stop_event.set()

    def start(self) -> None:
        """Start the recorder, the render thread and the output. Nothing is prefilled: the first callback
        wakes the render thread (its silence is the start, not an underrun)."""
        if self.recorder is not None:
            self.recorder.start()
        self._thread = threading.Thread(target=self._render_loop, name="rtperformer-render", daemon=True)
        self._thread.start()
        self.output.start()

    def stop(self, close_output: bool = True) -> None:
        """Stop the render thread, then the output's callbacks (and close it unless ``close_output`` is
        False: the server closes its JACK clients last, once the take and the summary are written), then the
        engine's voice threads. A render thread still inside a step after 5 s keeps its engine (its runtimes
        are not freed under it)."""
        self.stop_event.set()
        busy = False
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            busy = self._thread.is_alive()
            self._thread = None
        if close_output:
            self.output.close()
        else:
            self.output.stop()
        if not busy:
            self.engine.close()

    # -- status ------------------------------------------------------------------------------
    def _declared_samples(self) -> int:
        """The longest voice chain's declared delay (model + phase + iSTFT), samples at the model rate."""
        return int(max(v.delay_samples for v in self.engine.voices.values()))

    def latency_ms(self) -> float:
        """The latency this server adds by its own account, ms: the wait for the next device period
        (half a period on average) + the lead (and a whole step queued at periods below a step) + the
        chain's declared delay (model and phase lookahead, the streaming iSTFT's n_fft/2 - trim) + the
        device's output latency. MIDI delivery and the model's rise after that are not included
        (bench/latency.py measures them: the waterfall)."""
        e = self.engine
        period = self.output.period
        declared = self._declared_samples() / e.sample_rate
        return ((self.pacer.target(period) - 0.5 * period) * 1e3 / self.rate + self.output.latency * 1e3
                + declared * 1e3)

    def status_line(self) -> str:
        med, p95, n = self.onsets.ms(self.rate)
        fill_ms = self.ring.fill * 1e3 / self.rate
        lat = f"{med:.1f}/{p95:.1f}ms(n={n})" if n else "-"
        return (f"notes {self.engine.notes_held:2d}  rtf {self.engine.rtf:.2f}  ring {fill_ms:5.1f}ms  "
                f"period {self.output.period}  lead {self.pacer.lead * 1e3 / self.rate:.1f}ms  "
                f"underruns {self.ring.underruns}  xruns {self.output.status_flags}  "
                f"latency {self.latency_ms():.1f}ms  note->out {lat}  {self.backend_name}"
                f"{' rt' if self.realtime else ''}" + "".join("  " + f() for f in self.status_fields)
                + ("  OVERLOAD: rendering is slower than real time, audio comes late with gaps (fewer "
                   "instruments, serve.voice_threads, or configs/serve-steady.yaml)" if self.pacer.overloaded else ""))

    def latency_log(self) -> dict:
        """Note-ons and recent callbacks with their clocks, for bench/latency.py's waterfall."""
        e = self.engine
        return {"rate": self.rate, "period": self.output.period, "lead": self.pacer.lead,
                "delay_frames": int(e.delay_frames), "hop": int(e.hop), "model_rate": int(e.sample_rate),
                "declared_samples": self._declared_samples(),
                "render_delay_ms": float(self.cfg.serve.render_delay_ms), "underruns": int(self.ring.underruns),
                "fields": list(OnsetLog.FIELDS), "instruments": self.onsets.instruments,
                "onsets": self.onsets.array().tolist(), "callbacks": self.output.recent_callbacks().tolist()}

    def run(self, until=None, status_every: float = 0.5) -> None:
        """Block until a signal, an error, or ``until()`` returns True; print the status line meanwhile.

        While it runs the calling thread is SCHED_FIFO priority 1 when allowed (it takes the GIL for the
        status line: an ordinary process must not preempt it then), and back to normal afterwards."""
        rt = set_realtime(1 if self.cfg.serve.realtime_priority > 0 else 0)
        try:
            self._run(until, status_every)
        finally:
            if rt:
                try:
                    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                except OSError:
                    pass

    def _run(self, until, status_every: float) -> None:
        last = 0.0
        tty = sys.stderr.isatty()
        started = time.perf_counter()
        while not self.stop_event.wait(0.05):
            if until is not None and until():
                break
            now = time.perf_counter()
            self.audio_lost = self.audio_lost or audio_stalled(self.output, started, now)
            if self.audio_lost:
                break
            for watch in self.watchers:
                watch()
            if not self.quiet and now - last >= status_every:
                last = now
                line = self.status_line()
                sys.stderr.write(("\r" + line + "\x1b[K") if tty else line + "\n")
                sys.stderr.flush()
        if not self.quiet and tty:
            sys.stderr.write("\n")
        if self.error is not None:
            raise self.error


def audio_stalled(output, started: float, now: float, timeout: float = AUDIO_TIMEOUT_S) -> str:
    """Why the audio has stopped, or "" while callbacks keep coming: none for ``timeout`` seconds after
    the last one (or, before the first, 5 x ``timeout`` after the start). The JACK server dying or
    restarting, or a device unplugged, stops the callbacks without an error anywhere else."""
    last = float(output.clock[1])
    if output.callbacks == 0:
        if now - started > 5 * timeout:
            return f"no audio callback in the {now - started:.1f} s since start"
        return ""
    stream = getattr(output, "stream", None)
    if stream is not None and not getattr(stream, "active", True):
        return "the audio stream stopped"
    if now - last > timeout:
        return f"no audio callback for {now - last:.1f} s"
    return ""
