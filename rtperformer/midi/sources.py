"""MIDI sources: rtmidi ports (existing by name/pattern, or virtual) on the JACK or ALSA API, and a
MIDI-file replay for tests and the demo.

Every source does one thing with a message: stamp it with the audio sample clock and push it onto a
preallocated queue (:class:`~rtperformer.midi.queue.MidiQueue`). All other work belongs to the render thread.

JACK detection (:func:`jack_server_running`) connects to the server's socket instead of opening a
libjack client, so a missing server never prints libjack's noise and never starts a server.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from rtperformer.errors import UserError
from rtperformer.rtsched import set_realtime

APIS = ("jack", "alsa")


def jack_server_name() -> str:
    return os.environ.get("JACK_DEFAULT_SERVER") or "default"


def jack_server_running(server: str | None = None) -> bool:
    """True when a JACK server named ``server`` (default: $JACK_DEFAULT_SERVER or "default") answers."""
    server = server or jack_server_name()
    tmpdir = os.environ.get("JACK_TMPDIR", "/dev/shm")
    uid = 0 if os.environ.get("JACK_PROMISCUOUS_SERVER") else os.getuid()
    path = os.path.join(tmpdir, f"jack_{server}_{uid}_0")
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def default_api() -> str:
    """``jack`` when a JACK server is running, else ``alsa``."""
    return "jack" if jack_server_running() else "alsa"


def _rtmidi():
    import rtmidi

    return rtmidi


def _api_const(api: str) -> int:
    rtmidi = _rtmidi()
    if api == "jack":
        return rtmidi.API_UNIX_JACK
    if api == "alsa":
        return rtmidi.API_LINUX_ALSA
    raise UserError(f"unknown MIDI API '{api}' (choose jack or alsa)")


def check_midi_api(api: str) -> None:
    """Raise a one-line UserError when ``api`` cannot work here (no JACK server, no ALSA sequencer)."""
    if api not in APIS:
        raise UserError(f"unknown MIDI API '{api}' (choose jack or alsa)")
    if api == "jack" and not jack_server_running():
        raise UserError(f"no JACK server '{jack_server_name()}' is running (start jackd, or use --midi-api alsa)")
    if api == "alsa" and not os.path.exists("/dev/snd/seq"):
        raise UserError("the ALSA sequencer is not available (no /dev/snd/seq); start JACK and use --midi-api jack")


def _open_midi_in(api: str, client_name: str):
    """An rtmidi.MidiIn on ``api`` or a one-line UserError saying why not."""
    rtmidi = _rtmidi()
    check_midi_api(api)
    try:
        midi_in = rtmidi.MidiIn(_api_const(api), name=client_name)
    except (rtmidi.SystemError, RuntimeError) as exc:
        raise UserError(f"cannot open the {api} MIDI API: {exc}") from None
    midi_in.set_error_callback(lambda *args: None)  # rtmidi warnings would go to stderr
    midi_in.ignore_types(sysex=True, timing=True, active_sense=True)
    return midi_in


def list_ports(api: str) -> list[str]:
    """Names of the MIDI input ports visible on ``api`` (raises UserError when the API is unavailable)."""
    midi_in = _open_midi_in(api, "rtperformer-list")
    try:
        return list(midi_in.get_ports())
    finally:
        midi_in.delete()


def match_port(ports: list[str], pattern: str) -> int:
    """Index of the port that ``pattern`` names: exact name, else a unique case-insensitive substring,
    else a unique regular-expression match; ambiguous or no match -> UserError listing the ports."""
    if pattern in ports:
        return ports.index(pattern)
    low = pattern.lower()
    hits = [i for i, p in enumerate(ports) if low in p.lower()]
    if not hits:
        try:
            rx = re.compile(pattern, re.IGNORECASE)
            hits = [i for i, p in enumerate(ports) if rx.search(p)]
        except re.error:
            hits = []
    listing = ", ".join(ports) if ports else "none"
    if not hits:
        raise UserError(f"MIDI port '{pattern}' not found (ports: {listing})")
    if len(hits) > 1:
        raise UserError(f"MIDI port '{pattern}' is ambiguous (matches: {', '.join(ports[i] for i in hits)})")
    return hits[0]


WATCH_EVERY_S = 0.5  # how often watch() looks at the ports
NOTICE_S = 10.0  # how long "port back" stays on the status line


class RtMidiSource:
    """An rtmidi input feeding ``queue``: ``virtual`` creates a port others connect to, otherwise
    ``port`` (name or pattern) connects to an existing one.

    ``clock()`` returns the audio sample clock. The rtmidi callback runs on rtmidi's thread (on JACK,
    the JACK process thread) and only stamps and pushes.

    Losing the player: :meth:`watch` (the main loop calls it; it looks every ``WATCH_EVERY_S``) notices a
    connected port that has disappeared (keyboard unplugged, sequencer quit) or, on JACK, a virtual port
    left with no connection; it then has the queue release every note and the pedal on all channels
    (:meth:`~rtperformer.midi.queue.MidiQueue.release_all_channels`), sets :attr:`notice` for the status
    line, and reconnects when a port of the same name (or matching the same pattern) appears again.
    """

    def __init__(self, queue, clock: Callable[[], int], api: str,
                 port: str | None = None, virtual: str | None = None, client_name: str = "rtperformer",
                 armed: bool = True):
        if api not in APIS:
            raise UserError(f"unknown MIDI API '{api}' (choose jack or alsa)")
        self.queue = queue
        self.clock = clock
        self.api = api
        self.received = 0
        self.early = 0  # messages that arrived before arm() and were dropped
        self.armed = bool(armed)
        self.notice = ""  # a message for the status line ("" when all is well)
        self.losses = 0  # times the player's port went away
        self.pattern = None if virtual else port
        self.lost = False
        self._client_name = client_name
        self._next_watch = 0.0
        self._notice_until = None
        self._connected = False  # virtual port on JACK: had a connection at the last look
        self._jack_query = None
        self._in = _open_midi_in(api, client_name)
        try:
            if virtual:
                self._in.open_virtual_port(virtual)
                self.port_name = f"{client_name}:{virtual}" if api == "jack" else virtual
            else:
                if not port:
                    raise UserError("give --midi-port NAME or --virtual NAME")
                ports = list(self._in.get_ports())
                idx = match_port(ports, port)
                self._in.open_port(idx, name="in")
                self.port_name = ports[idx]
        except UserError:
            self._in.delete()
            raise
        except Exception as exc:  # rtmidi errors
            self._in.delete()
            raise UserError(f"cannot open MIDI port: {exc}") from None
        self._in.set_callback(self._on_message)

    def arm(self) -> None:
        """Start queueing messages (before this they are dropped and counted in ``early``)."""
        self.armed = True

    # -- losing and finding the port (main thread) ----------------------------------------------
    def watch(self) -> None:
        """Look at the port (at most every ``WATCH_EVERY_S``): release everything when it went away,
        reconnect when it is back. Never raises (a failed look is retried at the next call)."""
        now = time.monotonic()
        if now < self._next_watch or self._in is None:
            return
        self._next_watch = now + WATCH_EVERY_S
        if self._notice_until is not None and now > self._notice_until:
            self.notice, self._notice_until = "", None
        try:
            if self.pattern is None:
                self._watch_virtual()
            else:
                self._watch_port(now)
        except Exception:  # rtmidi/JACK hiccup: look again next time
            pass

    def _lose(self, what: str) -> None:
        self.losses += 1
        self.queue.release_all_channels()
        self.notice = f"MIDI {what}: all notes released"
        self._notice_until = None

    def _watch_port(self, now: float) -> None:
        ports = list(self._in.get_ports())
        if not self.lost:
            if self.port_name not in ports:
                self.lost = True
                self._lose(f"port '{self.port_name}' lost, waiting for it")
            return
        if self.port_name in ports:
            idx = ports.index(self.port_name)
        else:
            try:
                idx = match_port(ports, self.pattern)
            except UserError:
                return
        self._in.cancel_callback()
        self._in.close_port()
        self._in.open_port(idx, name="in")
        self._in.set_callback(self._on_message)  # closing the port dropped rtmidi's callback
        self.port_name = ports[idx]
        self.lost = False
        self.notice = f"MIDI port '{self.port_name}' back"
        self._notice_until = now + NOTICE_S

    def _watch_virtual(self) -> None:
        """JACK only: a virtual port whose last connection went away (the sequencer quit)."""
        if self.api != "jack":
            return
        if self._jack_query is None:
            import jack  # a never-activated client (no callbacks): safe next to rtmidi's

            self._jack_query = jack.Client(f"{self._client_name}-watch", no_start_server=True)
        connected = bool(self._jack_query.get_all_connections(self.port_name))
        if self._connected and not connected:
            self._lose("input disconnected")
        elif connected and not self._connected and self.losses:
            self.notice = "MIDI input connected"
            self._notice_until = time.monotonic() + NOTICE_S
        self._connected = connected

    def _on_message(self, event, data=None):  # rtmidi thread: stamp and queue, nothing else
        if not self.armed:
            self.early += 1
            return
        self.queue.push(self.clock(), event[0], time.perf_counter())
        self.received += 1

    @property
    def on_jack(self) -> bool:
        """Whether the input is a JACK client of rtmidi's (see :meth:`close`)."""
        return self.api == "jack" and self._in is not None

    def close_watch(self) -> None:
        """Close the port watch's own JACK client (never activated: safe at any time)."""
        if self._jack_query is not None:
            try:
                self._jack_query.close()
            except Exception:
                pass
            self._jack_query = None

    def close(self) -> None:
        """Close the port and rtmidi's client. On JACK this races rtmidi's process callback: RtMidi's
        ``MidiInJack::closePort`` unregisters the port while the client is active and its process thread
        may be reading that port's buffer (a segfault in ``close_port``, seen in about one full test run
        in four). ``serve`` therefore leaves a JACK input open at its normal exit and ends the process
        without running finalisers (rtmidi's destructor closes the port the same way)."""
        self.close_watch()
        if self._in is not None:
            try:
                self._in.cancel_callback()
                self._in.close_port()
            finally:
                self._in.delete()
                self._in = None


@dataclass
class TimedMessage:
    """A raw MIDI message (1-3 bytes) at ``time`` seconds from the start of the file."""

    time: float
    data: bytes


def read_midi_messages(path: str | os.PathLike) -> list[TimedMessage]:
    """All channel messages of a MIDI file (tempo map applied), in time order."""
    import mido

    try:
        mid = mido.MidiFile(str(path))
        out, t = [], 0.0
        for msg in mid:  # merged tracks, delta times in seconds
            t += msg.time
            if msg.is_meta or msg.type == "sysex":
                continue
            out.append(TimedMessage(t, bytes(msg.bytes())))
    except FileNotFoundError:
        raise UserError(f"MIDI file not found: {path}") from None
    except (OSError, ValueError, EOFError, KeyError) as exc:
        raise UserError(f"cannot read MIDI file {path}: {exc}") from None
    if not out:
        raise UserError(f"MIDI file {path} has no note or control messages")
    return out


class FileReplaySource:
    """Replays a list of :class:`TimedMessage` in real time into ``queue`` (a thread), stamping each
    with ``clock()`` when it is sent, as a live port would. ``start_delay`` seconds of lead-in."""

    def __init__(self, queue, clock: Callable[[], int], messages: list[TimedMessage],
                 start_delay: float = 0.2, speed: float = 1.0, realtime_priority: int = 0):
        self.queue = queue
        self.clock = clock
        self.messages = messages
        self.start_delay = start_delay
        self.speed = speed
        self.realtime_priority = int(realtime_priority)  # SCHED_FIFO for the replay thread when allowed
        self.port_name = "file"
        self.sent = 0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "FileReplaySource":
        self._thread = threading.Thread(target=self._run, name="rtperformer-replay", daemon=True)
        self._thread.start()
        return self

    def arm(self) -> None:
        """As a live port's :meth:`RtMidiSource.arm`: the replay starts now (``serve --midi-file``)."""
        if self._thread is None:
            self.start()

    @property
    def received(self) -> int:
        """Messages sent so far (the status line's count, as for a live port)."""
        return self.sent

    def watch(self) -> None:
        """As :meth:`RtMidiSource.watch`: a file never goes away, nothing to look at."""

    def _run(self) -> None:
        set_realtime(self.realtime_priority)
        t0 = time.perf_counter() + self.start_delay
        for m in self.messages:
            due = t0 + m.time / self.speed
            while True:
                wait = due - time.perf_counter()
                if wait <= 0 or self._stop.is_set():
                    break
                time.sleep(min(wait, 0.002))
            if self._stop.is_set():
                break
            self.queue.push(self.clock(), m.data, time.perf_counter())
            self.sent += 1
        self.done.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
