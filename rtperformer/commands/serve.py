"""``rtperformer serve``: play live — MIDI in (a port or a virtual port), streaming PerformanceNet, audio out."""

from __future__ import annotations

import argparse
import dataclasses

HELP = "Play live: MIDI in, streaming PerformanceNet, audio out."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (path or name in configs/) for the render and serve settings")
    p.add_argument("--model", action="append", metavar="[INSTRUMENT=]NAME_OR_PATH",
                   help="model to play (repeat for several instruments, e.g. --model cello=models/cello); "
                        "default: every model of violin, cello, flute found on the model search path")
    p.add_argument("--models-dir", metavar="DIR",
                   help="look for model names here first (then $RTPERFORMER_MODELS, the user data folder, the shipped models)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--midi-port", metavar="NAME_OR_PATTERN", help="connect to an existing MIDI port")
    src.add_argument("--virtual", metavar="NAME", help="create a virtual MIDI port NAME (default: 'in')")
    src.add_argument("--midi-file", metavar="FILE.mid",
                     help="replay a MIDI file in real time as the input (no MIDI port needed; with --duration)")
    p.add_argument("--connect-midi", metavar="PATTERN",
                   help="JACK: connect these MIDI outputs to our input: 'all' (every hardware MIDI port), 'none', "
                        "or a regular expression on port names (default: all for a virtual port, none with --midi-port)")
    p.add_argument("--connect-audio", metavar="PATTERN", default="system",
                   help="JACK: connect our audio outputs to these playback ports: 'system' (the physical ones, "
                        "default), 'none', or a regular expression on port names")
    p.add_argument("--no-connect", action="store_true", help="JACK: make no connections (same as both patterns 'none')")
    p.add_argument("--midi-api", choices=["jack", "alsa"],
                   help="MIDI API (default: jack when a JACK server is running, else alsa)")
    p.add_argument("--audio-device", metavar="NAME_OR_INDEX", help="audio output device (see rtperformer devices)")
    p.add_argument("--record", metavar="OUT.wav", help="write exactly what is sent to the audio device")
    p.add_argument("--mode", choices=["streaming", "window"], help="override render.mode")
    p.add_argument("--backend", help="override serve.backend (torch, onnx, torchscript, auto, ...)")
    p.add_argument("--client-name", default="rtperformer", help="JACK/ALSA client name (default rtperformer)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--quiet", action="store_true", help="no status line on stderr")
    p.add_argument("--latency-log", metavar="OUT.json",
                   help="on exit, write the note-ons and callbacks with their clocks (bench/latency.py's waterfall)")


def run(args: argparse.Namespace) -> int:
    from rtperformer.config import Config, load_config
    from rtperformer.errors import UserError
    from rtperformer.live.server import serve

    cfg = load_config(args.config) if args.config else Config()
    serve_cfg, render_cfg = cfg.serve, cfg.render
    if args.backend:
        serve_cfg = dataclasses.replace(serve_cfg, backend=args.backend)
    if args.mode:
        render_cfg = dataclasses.replace(render_cfg, mode=args.mode)
    cfg = cfg.replace(serve=serve_cfg, render=render_cfg)
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be > 0")
    if args.record:  # an unwritable path fails now, before the models load
        from rtperformer.audio.recorder import check_record_path

        check_record_path(args.record)

    if cfg.render.mode == "streaming":  # a missing runtime (onnxruntime) fails before the models load
        from rtperformer.backends import require

        require(cfg.serve.backend)
    from rtperformer.live.jackroute import check_pattern

    if args.no_connect:
        args.connect_midi = args.connect_audio = "none"
    for option, value in (("--connect-midi", args.connect_midi), ("--connect-audio", args.connect_audio)):
        if value is not None:
            check_pattern(value, option)
    # The MIDI API and port are checked before the models load, so a missing server or port fails fast.
    from rtperformer.midi.sources import check_midi_api, default_api

    api = args.midi_api or default_api()
    if args.midi_file:
        from rtperformer.midi.sources import read_midi_messages

        read_midi_messages(args.midi_file)  # a missing or bad file fails before the models load
    else:
        check_midi_api(api)
    if args.midi_port:  # a missing port fails before the models load
        from rtperformer.midi.sources import list_ports, match_port

        match_port(list_ports(api), args.midi_port)
    import torch

    from rtperformer.live.engine import load_instruments

    if cfg.serve.torch_threads > 0:
        torch.set_num_threads(int(cfg.serve.torch_threads))
    instruments = load_instruments(args.model, args.models_dir)
    return serve(cfg, instruments, api, args.midi_port, args.virtual, args.audio_device, args.record,
                 args.quiet, client_name=args.client_name, duration=args.duration,
                 latency_log=args.latency_log, midi_file=args.midi_file, connect_midi=args.connect_midi,
                 connect_audio=args.connect_audio)
