"""JACK connections for ``serve``: which MIDI outputs feed our input, which playback ports get our audio.

Patterns (``serve --connect-midi``, ``--connect-audio``):

- ``all``: every *physical* port of the right kind (MIDI: hardware MIDI outputs, e.g. a USB keyboard
  bridged by JACK's ALSA MIDI driver or PipeWire; audio: the physical playback ports);
- ``system``: the same as ``all`` (audio's default, what PortAudio connects by itself);
- ``none``: connect nothing;
- anything else: a regular expression, searched case-insensitively in full port names (``client:port``).

MIDI: every matching MIDI output port (other than our own) is connected to our input port. Audio: PortAudio's
own connections are replaced; our outputs are connected to the matching playback ports in order (a mono
output goes to the first two, left and right). Connections are made by a short-lived, never activated
JACK-Client with no callbacks (safe next to python-rtmidi's JACK client in the same process).
"""

from __future__ import annotations

import re

from rtperformer.errors import UserError

SPECIAL = ("all", "system", "none")


def check_pattern(pattern: str, option: str) -> None:
    """A one-line UserError for a pattern that is neither special nor a valid regular expression."""
    if pattern in SPECIAL:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise UserError(f"{option} {pattern!r} is not a valid regular expression ({exc})") from None


def _matching(client, pattern: str, is_midi: bool, is_output: bool, exclude_client: str) -> list[str]:
    """Names of the ports of one kind that ``pattern`` selects, sorted (physical ports first)."""
    if pattern == "none":
        return []
    kind = dict(is_midi=True) if is_midi else dict(is_audio=True)
    direction = dict(is_output=True) if is_output else dict(is_input=True)
    if pattern in ("all", "system"):
        ports = client.get_ports(is_physical=True, **kind, **direction)
        return [p.name for p in ports if not p.name.startswith(exclude_client + ":")]
    rx = re.compile(pattern, re.IGNORECASE)
    ports = client.get_ports(**kind, **direction)
    names = [p.name for p in ports if rx.search(p.name) and not p.name.startswith(exclude_client + ":")]
    physical = {p.name for p in client.get_ports(is_physical=True, **kind, **direction)}
    return sorted(names, key=lambda n: (n not in physical, names.index(n)))


def route(midi_in: str | None, audio_out: list[str], midi_pattern: str, audio_pattern: str,
          client_name: str = "rtperformer") -> list[tuple[str, str]]:
    """Make the connections; returns the (source, destination) pairs now connected by this call.

    ``midi_in``: our JACK MIDI input port (None: leave MIDI alone); ``audio_out``: our audio output ports
    (empty: leave audio alone). Raises UserError when no JACK server answers.
    """
    try:
        import jack

        client = jack.Client(f"{client_name}-route", no_start_server=True)
    except Exception as exc:  # JACK library missing or no server
        raise UserError(f"cannot reach the JACK server to connect ports: {exc}") from None
    made: list[tuple[str, str]] = []
    try:
        if midi_in is not None and midi_pattern != "none":
            own = midi_in.split(":", 1)[0]
            for src in _matching(client, midi_pattern, True, True, own):
                if _connect(client, src, midi_in):
                    made.append((src, midi_in))
        if audio_out:
            own = audio_out[0].split(":", 1)[0]
            targets = _matching(client, audio_pattern, False, False, own)
            for out in audio_out:  # replace PortAudio's own connections
                for dst in client.get_all_connections(out):
                    if dst.name not in targets:
                        client.disconnect(out, dst.name)
            n = max(len(audio_out), min(2, len(targets)))
            for i, dst in enumerate(targets[:n]):
                src = audio_out[i % len(audio_out)]
                if _connect(client, src, dst):
                    made.append((src, dst))
    finally:
        client.close()
    return made


def _connect(client, src: str, dst: str) -> bool:
    """Connect unless already connected; True when connected (now or before)."""
    if dst in {p.name for p in client.get_all_connections(src)}:
        return True
    try:
        client.connect(src, dst)
    except Exception:  # the port went away meanwhile
        return False
    return True
