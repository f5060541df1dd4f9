"""Three instruments served at once over JACK: the recorded mix is the sum of each instrument alone.

``rtperformer serve`` plays three random-weight models (different weights: violin, cello, flute on MIDI
channels 1-3, stepped in voice threads as by default) while a JACK-Client probe plays one note-on per
channel and records the output. The server's ``--latency-log`` says at which device frame each note's
audio begins, so the same note-ons can be placed on the same frames of offline engines: one engine per
instrument alone, summed, must equal the recording sample for sample (up to float rounding), shifted by
the one constant that maps device frames to the recording. This checks, on real I/O, that events land
in the frames the server reports, that nothing is lost or doubled between the render thread, the ring and
the callback, and that concurrent voices mix to the sum of their parts.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from rtperformer.live.jacktools import JackProbe
from test_jack_serve import _align, _start_server, _stop_server

NAMES = ("violin", "cello", "flute")
NOTES = ((0.30, 0, 69, 100), (0.55, 1, 48, 80), (0.80, 2, 79, 110))  # (s, channel, pitch, velocity)
WINDOW_END_S = 1.5  # the comparison ends before any note-off
TINY = {"model": {"channels": [16, 24], "onoff_channels": [16, 16], "texture_bands": [2], "norm": "layer"}}


@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from rtperformer.config import from_dict
    from rtperformer.model.checkpoint import save_checkpoint
    from rtperformer.model.performancenet import build_model

    cfg = from_dict(TINY)
    root = tmp_path_factory.mktemp("three")
    dirs = {}
    for seed, name in enumerate(NAMES):
        torch.manual_seed(seed + 1)
        dirs[name] = root / name
        save_checkpoint(dirs[name], build_model(cfg).eval(), cfg, {"step": 0, "note": f"random weights, seed {seed + 1}"})
    return dirs


def _offline(dirs: dict, names, frames: dict, cfg_path, n_frames: int) -> np.ndarray:
    """Offline engine (exact schedule) with ``names`` loaded and the served config; each note-on at its
    engine frame. float32 (n_frames * hop,)."""
    from rtperformer.config import load_config
    from rtperformer.live.engine import Engine, load_instruments

    insts = load_instruments([f"{n}={dirs[n]}" for n in names])
    eng = Engine(insts, load_config(cfg_path), schedule="exact")
    hop = eng.hop
    events = [(frames[(ch, p)] * hop, bytes([0x90 | ch, p, v])) for _, ch, p, v in NOTES if NAMES[ch] in names]
    try:
        return eng.render_offline(events, n_frames)
    finally:
        eng.close()


def test_three_instruments_mix_is_the_sum_of_each_alone(jack_server, three_models, tmp_path):
    cfg_text = ("render:\n  release_seconds: 0.2\n"
                "serve:\n  channel_map: {0: violin, 1: cello, 2: flute}\n  voice_threads: 3\n  backend: onnx\n")
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(cfg_text)
    log_path = tmp_path / "latency.json"
    events = [(t, bytes([0x90 | ch, p, v])) for t, ch, p, v in NOTES]
    events += [(1.8, bytes([0x80 | ch, p, 0])) for _, ch, p, _ in NOTES]
    args = ["--virtual", "in", "--client-name", "rtpmix", "--midi-api", "jack", "--config", str(cfg),
            "--latency-log", str(log_path), *[a for n in NAMES for a in ("--model", f"{n}={three_models[n]}")]]
    proc, midi_port, audio_ports, err = _start_server(args, jack_server.env())
    probe = None
    try:
        probe = JackProbe("rtpmixprobe", 1, seconds=4.0)
        probe.client.activate()
        probe.client.connect(probe.midi_out, midi_port)
        probe.client.connect(audio_ports[0], probe.inputs[0])
        time.sleep(1.0)
        probe.play(events)
        probe.wait_frame(int(2.5 * probe.rate))
        x = probe.buf[: probe.recorded, 0].copy()
    finally:
        if probe is not None:
            probe.close()
        rc = _stop_server(proc)
    assert rc == 0, "".join(err)[-3000:]
    log = json.loads(log_path.read_text())
    rows = np.asarray(log["onsets"]).reshape(-1, len(log["fields"]))
    assert len(rows) == len(NOTES), rows
    hop = log["hop"]
    assert log["rate"] == log["model_rate"]  # no resampling here: output samples are model samples
    # where each note's onset frame is in the engine's own output (zero fills of underruns excluded)
    onset = {(int(r[3]), int(r[2])): int(r[7]) - log["delay_frames"] * hop for r in rows}
    starts = [onset[(log["instruments"].index(NAMES[ch]), p)] for _, ch, p, _ in NOTES]
    assert all(s % hop == 0 for s in starts), "a note-on did not land on a frame boundary"
    first = 8  # engine frame of the first note-on offline (the voices sleep until then)
    frames = {(ch, p): first + (s - starts[0]) // hop for (_, ch, p, _), s in zip(NOTES, starts)}
    n_frames = first + int(WINDOW_END_S * 48000) // hop
    alone = [_offline(three_models, [n], frames, cfg, n_frames) for n in NAMES]
    together = _offline(three_models, list(NAMES), frames, cfg, n_frames)
    total = alone[0] + alone[1] + alone[2]
    # offline: the three-instrument engine is the sum of the three alone (voice order, threads)
    assert np.max(np.abs(together - total)) < 1e-5
    # live: the recording is that sum, shifted by the device -> recording constant; an underrun (zero
    # frames inserted on this shared box) moves what follows it, so 50 ms chunks are each found at their
    # own lag (near the first) and must match exactly
    seg = total[(first - 4) * hop:]
    base = _align(seg, x)
    chunk = 2400
    lags, exact, sounding = {base}, 0, 0
    for k in range(0, len(seg) - chunk, chunk):
        part = seg[k:k + chunk]
        if float(np.sqrt(np.mean(part ** 2))) < 1e-4:
            continue
        sounding += 1
        lo = max(0, base + k - 24000)
        own = lo + _align(part, x[lo: base + k + 24000 + chunk])
        ok = [lag for lag in lags | {own - k} if 0 <= lag + k and lag + k + chunk <= len(x)
              and float(np.max(np.abs(x[lag + k: lag + k + chunk] - part))) < 1e-4]
        if ok:
            exact += 1
            lags.add(ok[0])
    print(f"\n[mix] recording vs the sum of each instrument alone: {exact}/{sounding} sounding 50 ms chunks "
          f"equal (|diff| < 1e-4) at {len(lags)} lag(s); server underruns {log['underruns']}")
    assert sounding >= 20
    assert exact == sounding if log["underruns"] == 0 else exact >= 0.8 * sounding
