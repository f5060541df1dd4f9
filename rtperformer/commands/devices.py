"""``rtperformer devices``: MIDI input ports for each API (JACK, ALSA) and audio output devices."""

from __future__ import annotations

import argparse

HELP = "List MIDI ports for each API and audio devices."


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from rtperformer.audio.output import import_sounddevice, prepare_portaudio
    from rtperformer.errors import UserError
    from rtperformer.midi.sources import APIS, jack_server_name, list_ports

    for api in APIS:  # MIDI first (rtmidi's JACK client before PortAudio's)
        label = f"MIDI ({api}{', server ' + jack_server_name() if api == 'jack' else ''}):"
        try:
            ports = list_ports(api)
        except UserError as exc:
            print(f"{label} unavailable: {exc}")
            continue
        print(label + ("" if ports else " no input ports"))
        for i, name in enumerate(ports):
            print(f"  {i}: {name}")
    prepare_portaudio("rtperformer-devices")
    try:
        sd = import_sounddevice()
    except UserError as exc:
        print(f"audio: unavailable: {exc}")
        return 0
    apis = sd.query_hostapis()
    print("audio output devices:")
    found = False
    for i, d in enumerate(sd.query_devices()):
        if d["max_output_channels"] > 0:
            found = True
            api = apis[d["hostapi"]]["name"]
            print(f"  {i}: {d['name']} ({api}, {d['max_output_channels']} out, {d['default_samplerate']:.0f} Hz)")
    if not found:
        print("  none (start a JACK server: jackd -d dummy -r 48000 -p 256)")
    return 0
