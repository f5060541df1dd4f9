"""``make demo``: replay the bundled trio (rtperformer/assets/demo.mid) through the live engine in real time.

The same path as ``rtperformer serve``: a replay thread plays the MIDI file in real time and stamps each
message with the audio sample clock, the render thread runs the :class:`~rtperformer.live.engine.Engine`
(violin, cello and flute models from models/ when present) into the SPSC ring, and a paced stand-in for
the sound card (no audio device needed) pulls a block every 256 frames of wall-clock time and records
exactly what it pulled. After the piece it plays a few isolated notes, whose onsets are measured in the
recorded audio (in the piece itself notes rarely start from silence). Writes out/demo.wav, out/demo.png (spectrogram with the notes and measured
onsets) and out/demo_latency.png, and prints note-on -> onset latency and the real-time factor.

Without trained models it plays a small random-weight model (noise shaped by the notes), saying so.

    python -m rtperformer.live.demo [--mode streaming|window] [--midi FILE] [--out out] [--config NAME]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from rtperformer import paths
from rtperformer.atomic import atomic_write
from rtperformer.errors import UserError

ASSET = paths.PACKAGE_DIR / "assets" / "demo.mid"
PROBE_NOTES = (62, 66, 69, 74, 67, 71, 64, 76)


def _fallback_messages():
    """A short phrase when the bundled file is missing: (seconds, bytes)."""
    from rtperformer.midi.sources import TimedMessage

    msgs, t = [TimedMessage(0.0, bytes([0xC0, 40]))], 0.2
    for p in (62, 66, 69, 74, 73, 71, 69, 66):
        msgs += [TimedMessage(t, bytes([0x90, p, 96])), TimedMessage(t + 0.45, bytes([0x80, p, 0]))]
        t += 0.5
    return msgs


def _random_instrument():
    import torch

    from rtperformer.config import from_dict
    from rtperformer.live.engine import Instrument
    from rtperformer.model.performancenet import build_model

    cfg = from_dict({"model": {"channels": [32, 64, 64], "onoff_channels": [32, 32], "texture_bands": [2, 4],
                               "norm": "layer"}})
    torch.manual_seed(0)
    return Instrument("violin", build_model(cfg).eval(), cfg, None)


def _audio_onsets(x: np.ndarray, log, rate: int, frac: float = 0.1) -> list[float]:
    """Latency (ms) from each note-on stamp to the recording's onset, for note-ons that start from silence
    (the mix exactly silent in the 30 ms before, i.e. every instrument's gate closed): first sample
    reaching ``frac`` of the next 100 ms's peak."""
    out = []
    pre, win = int(0.03 * rate), int(0.1 * rate)
    for stamp, _at, _pitch, _inst in log:
        if stamp - pre < 0 or stamp + win > len(x):
            continue
        if np.any(x[stamp - pre:stamp] != 0.0):
            continue
        seg = np.abs(x[stamp:stamp + win])
        peak = seg.max()
        if peak < 1e-3:
            continue
        out.append(int(np.flatnonzero(seg >= frac * peak)[0]) * 1e3 / rate)
    return out


def _figures(wav: np.ndarray, rate: int, messages, log, lat_ms, audio_ms, out_dir: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = wav[:, 0]
    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax = axes[0]
    with np.errstate(divide="ignore"):
        ax.specgram(x + 1e-9, NFFT=1024, Fs=rate, noverlap=768, cmap="magma", vmin=-130)
    ax.set_ylim(0, 5000)
    ax.set_ylabel("Hz")
    ax.set_title(title)
    for stamp, at, pitch, inst in log:
        f = 440.0 * 2 ** ((pitch - 69) / 12)
        ax.plot([stamp / rate], [f], "c|", ms=8)
    ax2 = axes[1]
    t = np.arange(len(x)) / rate
    ax2.plot(t, x, lw=0.3)
    for stamp, *_ in log:
        ax2.axvline(stamp / rate, color="r", lw=0.4, alpha=0.5)
    ax2.set_xlabel("s (red: note-on stamps)")
    fig.tight_layout()
    png = out_dir / "demo.png"
    _save(fig, png)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, max([20.0, *lat_ms, *audio_ms]), 41)
    if lat_ms:
        ax.hist(lat_ms, bins=bins, alpha=0.6, label="note-on -> first sample pulled")
    if audio_ms:
        ax.hist(audio_ms, bins=bins, alpha=0.6, label="note-on -> onset in recording (10%)")
    ax.set_xlabel("ms")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png2 = out_dir / "demo_latency.png"
    _save(fig, png2)
    plt.close(fig)
    return [png, png2]


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110), suffix=".png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rtperformer.live.demo", description=__doc__.splitlines()[0])
    p.add_argument("--midi", default=str(ASSET), help="MIDI file to replay (default: the bundled trio)")
    p.add_argument("--out", default=str(paths.output_dir()), help="output folder (default out/)")
    p.add_argument("--mode", choices=["streaming", "window"], help="override render.mode")
    p.add_argument("--config", help="config for the render/serve settings")
    p.add_argument("--model", action="append", help="as in rtperformer serve (default: violin, cello, flute found on the model search path)")
    p.add_argument("--audio-device", metavar="NAME_OR_INDEX",
                   help="also play through this sound card ('default': JACK when a server runs, else ALSA's "
                        "default); without it a paced stand-in pulls the audio and nothing is heard")
    p.add_argument("--models-dir", metavar="DIR", help="look for model names here first (as in rtperformer serve)")
    args = p.parse_args(argv)
    try:
        return _run(args)
    except UserError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import dataclasses

    import soundfile as sf
    import torch

    from rtperformer.audio.output import PacedOutput
    from rtperformer.midi.queue import MidiQueue
    from rtperformer.config import Config, load_config
    from rtperformer.live.engine import Engine, load_instruments
    from rtperformer.midi.sources import FileReplaySource, read_midi_messages
    from rtperformer.live.session import LiveSession

    cfg = load_config(args.config) if args.config else Config()
    if args.mode:
        cfg = cfg.replace(render=dataclasses.replace(cfg.render, mode=args.mode))
    if cfg.serve.torch_threads > 0:
        torch.set_num_threads(cfg.serve.torch_threads)
    sys.setswitchinterval(0.0005)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    midi = Path(args.midi)
    if midi.is_file():
        messages = read_midi_messages(midi)
    else:
        print(f"demo: {midi} not found, playing a generated phrase", file=sys.stderr)
        messages = _fallback_messages()
    try:
        instruments = load_instruments(args.model, args.models_dir)
        note = ", ".join(f"{i.name} ({i.model_dir or 'model'})" for i in instruments)
    except UserError as exc:
        if args.model:
            raise
        print(f"demo: no trained model ({exc}); playing a random-weight model (the sound is shaped noise)",
              file=sys.stderr)
        instruments = [_random_instrument()]
        note = "random-weight violin"

    # After the piece: isolated notes on channel 0 (each from silence) to measure onsets in the audio.
    from rtperformer.midi.sources import TimedMessage

    t = messages[-1].time + cfg.render.release_seconds + 0.6
    for pitch in PROBE_NOTES:
        messages.append(TimedMessage(t, bytes([0x90, pitch, 100])))
        messages.append(TimedMessage(t + 0.25, bytes([0x80, pitch, 0])))
        t += 0.25 + cfg.render.release_seconds + 0.35
    rate = instruments[0].cfg.audio.sample_rate
    block = int(cfg.serve.block_size) or 256  # the paced stand-in device has no period of its own
    channels = int(cfg.serve.channels)
    device = None
    if args.audio_device:  # a real output, as serve opens it (JACK when a server runs, else ALSA)
        from rtperformer.audio.output import find_output_device, prepare_portaudio
        from rtperformer.midi.sources import jack_server_running

        prepare_portaudio("rtperformer-demo")
        spec = None if args.audio_device == "default" else args.audio_device
        device, dev_info, hostapi = find_output_device(spec, prefer_jack=jack_server_running())
        rate = int(round(dev_info["default_samplerate"]))
        channels = max(1, min(channels, int(dev_info["max_output_channels"])))
        block = int(cfg.serve.block_size)
        print(f"demo: playing through {dev_info['name']} ({hostapi})", flush=True)
    print(f"demo: loading engine ({cfg.render.mode} mode; {note})", flush=True)
    engine = Engine(instruments, cfg, out_rate=rate, schedule="asap")
    wav_path = out_dir / "demo.wav"
    low_rt = 1 if cfg.serve.realtime_priority > 0 else 0
    events = MidiQueue(int(cfg.serve.event_queue))

    def make_output(ring, record_ring):
        if device is None:
            rt = int(cfg.serve.realtime_priority) + 1 if cfg.serve.realtime_priority else 0
            return PacedOutput(ring, rate, block, channels, record_ring=record_ring, realtime_priority=rt)
        from rtperformer.audio.output import AudioOutput

        out = AudioOutput(ring, rate, block, channels, device=device, record_ring=record_ring)
        out.open()
        return out

    session = LiveSession.assemble(engine, cfg, events, rate, channels, make_output, record=str(wav_path),
                                   where="paced" if device is None else "device", quiet=not sys.stderr.isatty())
    ring, output, recorder = session.ring, session.output, session.recorder
    replay = FileReplaySource(events, output.sample_clock, messages, start_delay=0.3, realtime_priority=low_rt)
    backends = session.backend_name.rsplit("/", 1)[-1]
    duration = messages[-1].time + 0.3
    print(f"demo: replaying {midi.name if midi.is_file() else 'phrase'} ({duration:.1f} s) in real time", flush=True)
    t0 = time.perf_counter()
    session.start()
    replay.start()
    tail = cfg.render.release_seconds + 0.5
    try:
        session.run(until=lambda: replay.done.is_set() and time.perf_counter() - t0 > duration + tail)
    finally:
        replay.close()
        session.stop()
        recorder.close()
    wall = time.perf_counter() - t0

    wav, sr = sf.read(wav_path, dtype="float32", always_2d=True)
    med, p95, n = session.onsets.ms(rate)
    lat_ms = [s * 1e3 / rate for s in session.onsets.latency_samples()]
    onset_log = session.onsets.entries()
    audio_ms = _audio_onsets(wav[:, 0], onset_log, rate)
    figs = _figures(wav, rate, messages, onset_log, lat_ms, audio_ms, out_dir,
                    f"rtperformer demo: {note}, {cfg.render.mode} mode")
    print(f"wrote {wav_path} ({len(wav) / sr:.1f} s, peak {np.abs(wav).max():.3f}) and {', '.join(map(str, figs))}")
    print(f"note-on -> first output sample (stamp to the block the sound card pulls, {n} notes): "
          f"median {med:.1f} ms, p95 {p95:.1f} ms")
    if audio_ms:
        print(f"note-on -> onset in the recording (10% of peak, {len(audio_ms)} notes from silence): "
              f"median {np.median(audio_ms):.1f} ms, p95 {np.percentile(audio_ms, 95):.1f} ms")
    print(f"real-time factor {engine.rtf:.3f} (render time / audio time; {wall:.1f} s wall), "
          f"underruns {ring.underruns}, block {block} at {rate} Hz, lead "
          f"{session.pacer.lead} frames, backend {backends}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
