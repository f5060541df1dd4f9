"""The live server: MIDI thread -> event queue -> render thread -> SPSC ring -> audio callback.

:class:`LiveSession` wires the threads around one :class:`~rtperformer.engine.Engine`:

- MIDI (rtmidi's thread, or the file replay thread): stamp with the audio sample clock, push onto a
  preallocated :class:`~rtperformer.midi.queue.MidiQueue` (which never loses a note-off). Nothing else.
- render thread (this module): drain the queue into the engine, and whenever the output ring holds less
  than ``serve.target_fill_blocks`` blocks render one more step and write it; otherwise sleep until about
  the next callback. It runs with SCHED_FIFO ``serve.realtime_priority`` when the OS allows.
- audio callback (rtperformer/audio/output.py): copy ring -> outdata, zero-fill and count underruns, copy
  what was sent into the recording ring.
- recorder thread: drain the recording ring into ``--record OUT.wav``.

:func:`serve` is ``rtperformer serve``: it opens the MIDI port before PortAudio (the rtmidi/JACK-Client
ordering trap), prints ``ready: midi=<port> audio=<ports>`` on stdout once both are open, a status line on
stderr twice a second (unless quiet), and shuts down cleanly on SIGINT/SIGTERM (exit 0).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rtperformer.audio.recorder import WavRecorder
from rtperformer.audio.ring import AudioRing
from rtperformer.config import Config
from rtperformer.midi.queue import MidiQueue
from rtperformer.rtsched import set_realtime


def step_frames_out(engine) -> int:
    """Output frames one render step produces."""
    return int(round(engine.frames_per_step * engine.hop * engine.out_rate / engine.sample_rate))


def fill_target(cfg: Config, engine) -> int:
    """Output frames the render thread keeps queued ahead of the callback.

    ``serve.target_fill_frames`` (or ``target_fill_blocks`` blocks); a step longer than a block (window mode,
    or ``serve.step_frames`` > 1) must find its whole output's time queued, or the callback outruns it: at
    least one step plus one block.
    """
    block = int(cfg.serve.block_size)
    target = int(cfg.serve.target_fill_frames) or int(cfg.serve.target_fill_blocks) * block
    step = step_frames_out(engine)
    return max(target, step + block) if step > block else target


def ring_capacity(cfg: Config, engine) -> int:
    """Output ring size: ``serve.ring_blocks`` blocks, and never less than the fill target plus one step
    plus one block (the render thread writes a whole step whenever the fill is below the target; a ring
    too small for that would drop audio mid-stream)."""
    block = int(cfg.serve.block_size)
    return max(int(cfg.serve.ring_blocks) * block, fill_target(cfg, engine) + step_frames_out(engine) + block)


LATENCY_WINDOW = 4096  # note-ons the latency figures cover (the most recent ones)
ONSET_LOG = 65536  # note-ons kept in LiveSession.onset_log (the most recent ones)


@dataclass
class LatencyStats:
    """Note-on stamp -> the callback that sends the note's first sample, in output samples (render thread
    appends). Excludes the device's own output latency and the window's rise time. A fixed-size ring of
    the last ``LATENCY_WINDOW`` notes: memory and the status line's cost do not grow with uptime."""

    samples: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def ms(self, rate: int) -> tuple[float, float, int]:
        """(median, p95) in ms over the window and its count; (nan, nan, 0) when empty."""
        s = list(self.samples)
        if not s:
            return float("nan"), float("nan"), 0
        a = np.asarray(s, dtype=np.float64) * 1e3 / rate
        return float(np.median(a)), float(np.percentile(a, 95)), len(a)


class LiveSession:
    """One engine, one output (AudioOutput or PacedOutput), one event queue, an optional recording."""

    def __init__(self, engine, output, ring: AudioRing, events: MidiQueue, cfg: Config,
                 record_ring: AudioRing | None = None, recorder: WavRecorder | None = None,
                 backend_name: str = "", quiet: bool = False):
        self.engine = engine
        self.output = output
        self.ring = ring
        self.events = events
        self.cfg = cfg
        self.record_ring = record_ring
        self.recorder = recorder
        self.backend_name = backend_name
        self.quiet = quiet
        self.block = int(cfg.serve.block_size)
        self.target = fill_target(cfg, engine)
        if ring.capacity < self.target + step_frames_out(engine):
            raise ValueError(f"output ring of {ring.capacity} frames cannot hold the fill target {self.target} "
                             f"plus one step; size it with ring_capacity()")
        self.rate = int(output.samplerate)
        self.latency = LatencyStats()
        # (stamp, output sample, pitch, instrument) of the last ONSET_LOG note-ons
        self.onset_log: deque[tuple[int, int, int, str]] = deque(maxlen=ONSET_LOG)
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.realtime = False
        self.error: BaseException | None = None
        self.status_fields: list = []  # callables -> str, appended to the status line (MIDI, recorder)

    # -- render thread -----------------------------------------------------------------------
    def _render_loop(self) -> None:
        self.realtime = set_realtime(int(self.cfg.serve.realtime_priority))
        engine, ring, events, clock = self.engine, self.ring, self.events, self.output.clock
        period = self.block / self.rate
        delay = float(self.cfg.serve.render_delay_ms) * 1e-3
        try:
            while not self.stop_event.is_set():
                while True:
                    item = events.pop()
                    if item is None:
                        break
                    engine.push(item[0], item[1], item[2])
                if ring.fill < self.target:
                    # Just late enough: MIDI delivered in the cycle that just ran gets into this step.
                    early = clock[1] + delay - time.perf_counter()
                    if early > 0:
                        time.sleep(early)
                        continue
                    out = engine.render_step()
                    pos = ring.frames_written + ring.device_offset  # output sample of out[0]
                    ring.write(out)
                    for o in engine.onsets:
                        at = pos + o.offset
                        self.latency.samples.append(at - o.stamp)
                        self.onset_log.append((o.stamp, at, o.pitch, o.instrument))
                    continue
                wait = clock[1] + period + delay - time.perf_counter()
                time.sleep(min(max(wait, 0.0002), 0.002))
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.stop_event.set()

    def start(self) -> None:
        silence = np.zeros(self.target, np.float32)
        self.ring.write(silence)  # prefill: the first callbacks find audio
        if self.recorder is not None:
            self.recorder.start()
        self._thread = threading.Thread(target=self._render_loop, name="rtperformer-render", daemon=True)
        self._thread.start()
        self.output.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self.engine.close()
        self.output.close()

    # -- status ------------------------------------------------------------------------------
    def status_line(self) -> str:
        med, p95, n = self.latency.ms(self.rate)
        fill_ms = self.ring.fill * 1e3 / self.rate
        est = fill_ms + self.output.latency * 1e3 + self.engine.delay_frames * self.engine.hop * 1e3 / self.engine.sample_rate
        lat = f"{med:.1f}/{p95:.1f}ms(n={n})" if n else "-"
        return (f"notes {self.engine.notes_held:2d}  rtf {self.engine.rtf:.2f}  ring {fill_ms:5.1f}ms  "
                f"underruns {self.ring.underruns}  xruns {self.output.status_flags}  est.latency {est:.1f}ms  "
                f"note->out {lat}  {self.backend_name}{' rt' if self.realtime else ''}"
                + "".join("  " + f() for f in self.status_fields))

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
        while not self.stop_event.wait(0.05):
            if until is not None and until():
                break
            now = time.perf_counter()
            if not self.quiet and now - last >= status_every:
                last = now
                line = self.status_line()
                sys.stderr.write(("\r" + line + "\x1b[K") if tty else line + "\n")
                sys.stderr.flush()
        if not self.quiet and tty:
            sys.stderr.write("\n")
        if self.error is not None:
            raise self.error


def midi_status(source, events: MidiQueue, engine) -> str:
    """The status line's MIDI field: ``midi <received> [bad N] [dropped N] [coalesced N] [<port message>]``."""
    parts = [f"midi {source.received}"]
    if getattr(source, "early", 0):
        parts.append(f"early {source.early}")
    if engine.midi.invalid:
        parts.append(f"bad {engine.midi.invalid}")
    if events.dropped:
        parts.append(f"dropped {events.dropped}")
    if events.coalesced:
        parts.append(f"coalesced {events.coalesced}")
    notice = getattr(source, "notice", "")
    if notice:
        parts.append(notice)
    return " ".join(parts)


def _jack_ports_of(client_prefix: str) -> list[str]:
    """Audio output ports whose client name starts with ``client_prefix`` (a short-lived, never activated
    JACK-Client: safe after the rtmidi client exists)."""
    try:
        import jack

        c = jack.Client("rtperformer-query", no_start_server=True)
    except Exception:
        return []
    try:
        return [p.name for p in c.get_ports(is_audio=True, is_output=True)
                if p.name.split(":", 1)[0].startswith(client_prefix)]
    finally:
        c.close()


def serve(cfg: Config, instruments, midi_api: str | None, midi_port: str | None, virtual: str | None,
          audio_device: str | None, record: str | None, quiet: bool, client_name: str = "rtperformer",
          backend_name: str = "torch", duration: float | None = None) -> int:
    """Run the live server until SIGINT/SIGTERM (or ``duration`` seconds). Returns the exit code."""
    from rtperformer.audio.output import AudioOutput, JACK_HOSTAPI, find_output_device, prepare_portaudio
    from rtperformer.midi.sources import RtMidiSource, default_api

    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    sys.setswitchinterval(0.0005)  # the callback thread must get the GIL quickly
    api = midi_api or default_api()
    events = MidiQueue(int(cfg.serve.event_queue))
    block = int(cfg.serve.block_size)
    holder: dict = {}

    def clock() -> int:
        out = holder.get("output")
        return out.sample_clock() if out is not None else 0

    # MIDI first: opening rtmidi's JACK client before PortAudio's avoids the JACK ordering trap.
    if not virtual and not midi_port:
        virtual = "in"
    # Armed only once the engines are built and the audio runs: what arrives before is dropped, not
    # queued to fire all at once when the first step renders.
    source = RtMidiSource(events, clock, api, port=midi_port, virtual=virtual, client_name=client_name,
                          armed=False)
    output = None
    recorder = None
    session = None
    try:
        prepare_portaudio(f"{client_name}-out")
        dev_index, dev_info, hostapi = find_output_device(audio_device, prefer_jack=(api == "jack"))
        rate = int(round(dev_info["default_samplerate"]))
        channels = max(1, min(int(cfg.serve.channels), int(dev_info["max_output_channels"])))
        from rtperformer.engine import Engine

        engine = Engine(instruments, cfg, out_rate=rate, schedule="asap")
        ring = AudioRing(ring_capacity(cfg, engine), 1, drop_late=True)
        record_ring = None
        if record:
            record_ring = AudioRing(rate * 4, channels)
            recorder = WavRecorder(record, rate, channels, ring=record_ring,
                                   realtime_priority=1 if cfg.serve.realtime_priority > 0 else 0)
        output = AudioOutput(ring, rate, block, channels, device=dev_index, record_ring=record_ring)
        output.open()
        holder["output"] = output
        names = ",".join(f"{k}:{getattr(getattr(v, 'backend', None), 'name', 'torch')}"
                         for k, v in sorted(engine.voices.items()))
        session = LiveSession(engine, output, ring, events, cfg, record_ring, recorder,
                              backend_name=f"{'jack' if hostapi == JACK_HOSTAPI else hostapi}/{cfg.render.mode}/{names}", quiet=quiet)
        stop = session.stop_event
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        session.status_fields.append(lambda: midi_status(source, events, engine))
        session.start()
        source.arm()
        ports = _jack_ports_of(f"{client_name}-out") if hostapi == JACK_HOSTAPI else []
        audio = ",".join(ports) if ports else dev_info["name"]
        print(f"ready: midi={source.port_name} audio={audio}", flush=True)
        t_end = None if duration is None else time.perf_counter() + duration
        session.run(until=(lambda: time.perf_counter() >= t_end) if t_end else None)
    finally:
        if session is not None:
            session.stop()
        elif output is not None:
            output.close()
        source.close()
        if recorder is not None:
            recorder.close()
    if session is not None and not quiet:
        med, p95, n = session.latency.ms(session.rate)
        sys.stderr.write(f"stopped: {session.status_line()}\n")
        sys.stderr.flush()
    return 0
