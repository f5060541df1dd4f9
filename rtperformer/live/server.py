"""The live server: MIDI thread -> event queue -> render thread -> SPSC ring -> audio callback.

The threads of one session are :class:`rtperformer.live.session.LiveSession` (the render loop, pacing, status
line); this module opens the real ports around it.

:func:`serve` is ``rtperformer serve``: it opens the MIDI port before PortAudio (the rtmidi/JACK-Client
ordering trap), prints ``ready: midi=<port> audio=<ports>`` on stdout once both are open, a status line on
stderr twice a second (unless quiet), and shuts down cleanly on SIGINT/SIGTERM/SIGHUP (exit 0).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from rtperformer.config import Config
from rtperformer.midi.queue import MidiQueue
from rtperformer.live.session import EXIT_AUDIO_LOST, LiveSession


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
          backend_name: str = "torch", duration: float | None = None, latency_log: str | None = None,
          midi_file: str | None = None, connect_midi: str | None = None, connect_audio: str = "system") -> int:
    """Run the live server until SIGINT/SIGTERM (or ``duration`` seconds). Returns the exit code.

    ``midi_file``: replay this MIDI file in real time as the input instead of a port. ``connect_midi`` /
    ``connect_audio``: JACK connection patterns (rtperformer/live/jackroute.py); ``connect_midi`` None = ``all``
    (every hardware MIDI output) for a virtual port, ``none`` with ``midi_port``."""
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
    if midi_file:
        from rtperformer.midi.sources import FileReplaySource, read_midi_messages

        source = FileReplaySource(events, clock, read_midi_messages(midi_file), start_delay=0.3)
        source.port_name = f"file:{Path(midi_file).name}"
    else:
        source = RtMidiSource(events, clock, api, port=midi_port, virtual=virtual, client_name=client_name,
                              armed=False)
    recorder = None
    session = None
    ran = False
    try:
        prepare_portaudio(f"{client_name}-out")
        dev_index, dev_info, hostapi = find_output_device(audio_device, prefer_jack=(api == "jack"))
        rate = int(round(dev_info["default_samplerate"]))
        channels = max(1, min(int(cfg.serve.channels), int(dev_info["max_output_channels"])))
        from rtperformer.live.engine import Engine

        engine = Engine(instruments, cfg, out_rate=rate, schedule="asap")

        def make_output(ring, record_ring):
            out = AudioOutput(ring, rate, block, channels, device=dev_index, record_ring=record_ring)
            holder["output"] = out
            out.open()
            return out

        session = LiveSession.assemble(engine, cfg, events, rate, channels, make_output, record=record,
                                       where="jack" if hostapi == JACK_HOSTAPI else hostapi, quiet=quiet)
        recorder = session.recorder
        stop = session.stop_event
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a closed terminal ends cleanly too
            signal.signal(sig, lambda *_: stop.set())
        session.status_fields.append(lambda: midi_status(source, events, engine))
        if hasattr(source, "watch"):  # a port (not a file replay): a lost port is released and re-found
            session.watchers.append(source.watch)
        session.status_fields.append(lambda: f"step p99 {engine.step_ms():.2f}ms")
        session.status_fields.append(engine.ignored_status)
        if recorder is not None:
            session.status_fields.append(lambda: recorder.status)
        session.start()
        source.arm()
        ports = _jack_ports_of(f"{client_name}-out") if hostapi == JACK_HOSTAPI else []
        if ports or (api == "jack" and not midi_file):
            from rtperformer.live.jackroute import route

            own_midi = None if midi_file or api != "jack" else f"{client_name}:{virtual or 'in'}"
            pattern = connect_midi or ("all" if virtual else "none")
            for a, b in route(own_midi, ports, pattern, connect_audio, client_name):
                sys.stderr.write(f"connected: {a} -> {b}\n")  # stdout's first line stays "ready:"
            sys.stderr.flush()
        audio = ",".join(ports) if ports else dev_info["name"]
        print(f"ready: midi={source.port_name} audio={audio}", flush=True)
        t_end = None if duration is None else time.perf_counter() + duration
        session.run(until=(lambda: time.perf_counter() >= t_end) if t_end else None)
        ran = True
    finally:
        lost = session is not None and session.audio_lost
        if recorder is not None and lost:
            recorder.close()  # the take first: closing a dead server's clients may block
        if lost:
            _close_bounded([session.stop, source.close])
        elif session is not None:
            session.stop(close_output=False)  # callbacks stopped; the clients are closed below, last
        if recorder is not None:
            recorder.close()
        if not ran and not lost:  # leaving with an error: nothing to report
            _close_clients(source, holder.get("output"))
    try:
        _report(session, recorder, latency_log, quiet, hostapi)
    finally:
        if lost:
            sys.stdout.flush()
            sys.stderr.flush()
            # The recording is closed. PortAudio's exit handler (Pa_Terminate) blocks forever on a stream
            # whose JACK server died, so leave without running it.
            os._exit(EXIT_AUDIO_LOST)
        # JACK clients last: whatever a library's teardown does, the take, the latency log and the
        # summary line are already written. A JACK MIDI input is not closed: rtmidi's close races its own
        # process callback (RtMidiSource.close); the process ends without finalisers and the JACK server
        # drops its clients, as for any client that exits.
        jack_midi = bool(getattr(source, "on_jack", False))
        _close_clients(source, holder.get("output"), keep_midi=jack_midi)
        if jack_midi:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return 0


def _report(session, recorder, latency_log, quiet: bool, hostapi) -> None:
    """After a run: the latency log (``--latency-log``), the ``stopped:`` summary, the recording's length
    and, when the audio was lost, why."""
    if session is not None and latency_log:
        import json

        from rtperformer.atomic import atomic_write

        data = session.latency_log()
        atomic_write(latency_log, lambda p: Path(p).write_text(json.dumps(data)))
    if session is not None and not quiet:
        sys.stderr.write(f"stopped: {session.status_line()}\n")
        sys.stderr.flush()
    if recorder is not None:
        sys.stderr.write(f"recorded {recorder.path}: {recorder.frames / recorder.samplerate:.1f} s"
                         f"{' (' + recorder.error + ')' if recorder.error else ''}\n")
        sys.stderr.flush()
    if session is not None and session.audio_lost:
        from rtperformer.audio.output import JACK_HOSTAPI

        where = "the JACK server stopped or restarted" if hostapi == JACK_HOSTAPI else "the audio device stopped"
        sys.stderr.write(f"rtperformer serve: audio lost: {where} ({session.audio_lost}); exiting\n")
        sys.stderr.flush()


def _close_clients(source, output, keep_midi: bool = False) -> None:
    """Close the MIDI input's clients (rtmidi, the port watch; with ``keep_midi`` only the watch), then the
    audio stream's."""
    try:
        if keep_midi:
            source.close_watch()
        else:
            source.close()
    finally:
        if output is not None:
            output.close()


def _close_bounded(closers, timeout: float = 3.0) -> None:
    """Run ``closers`` in a daemon thread and wait at most ``timeout`` s: closing the clients of a JACK
    server that died can block in libjack, and the exit must not hang on it."""
    def run():
        for c in closers:
            try:
                c()
            except Exception:
                pass

    t = threading.Thread(target=run, name="rtperformer-close", daemon=True)
    t.start()
    t.join(timeout)
