"""Expression under the player's hand (issue 12 items 3 and 5): vibrato, pitch bend, velocity and the
attack of a model against FluidSynth, plus the card's eval.

Systems: ``fluidsynth`` (the soundfont the model imitates: FluidR3 violin/flute, MuseScore General cello)
and each model named ``name=DIR`` on the command line, rendered through the real offline chain
(``rtperformer.offline.render.render_part``: the bend row, the model's bend input and the per-frame warp
exactly as ``render`` and ``serve`` do).

- ``--expression`` (one long tone, 2.2 s, velocity 90, the instrument's middle note):
  - vibrato spread with CC1 127 (the mod wheel fully up): standard deviation of the pitch (cents; the
    eval's pyin + YIN tracker) over 0.6 .. 2.0 s;
  - vibrato spread with the corpus's vibrato as pitch bend (rate 5.5 Hz, 25 cents, from 0.3 s, ramp 0.2 s:
    humanize's Vibrato, sent as FluidSynth's bend events through MIDI);
  - static bend: a +1 semitone bend (4096) held: the median pitch shift (cents; 100 = right);
  - velocity: level (dB, RMS over 0.3 .. 0.9 s of a 1 s note) and spectral centroid (Hz, same span) at
    velocities 20, 50, 80, 110, 127; ``monotonic`` when both rise with velocity.
- ``--attack``: bench/study_attack.py's measures for any instrument: 21 isolated notes (velocity 90,
  0.5 s, note-ons at varied places inside a hop), first sound (-40 dB) and 10 % point after the note-on,
  medians and the median difference to FluidSynth; the frame-domain attack gap (frames 0-3, dB re held).
- ``--eval``: ``rtperformer eval --model DIR --max-seconds 30 --pieces 6`` (the model card's eval).
- ``--step-cost``: one 1-frame ONNX Runtime step (the live path) of each model's config, CPU time,
  interleaved rounds.

    .venv/bin/python bench/study_bend.py --instrument violin --expression --attack --eval \\
        shipped=models/violin warp=out/bend/violin-warp drawn=out/bend/violin-drawn

Results: bench/results/study_bend/<instrument>-<measure>.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from common import onnx_step_cost, write_json  # noqa: E402

RESULTS = REPO / "bench" / "results" / "study_bend"
TONE = {"violin": 69, "cello": 50, "flute": 76}
RANGE = {"violin": (55, 91), "cello": (36, 72), "flute": (60, 91)}
VELOCITIES = (20, 50, 80, 110, 127)
SR_NOTE = 2.2


def load(models: dict[str, str]):
    import torch

    from rtperformer.model.checkpoint import load_model

    torch.set_num_threads(1)
    out = {}
    for name, d in models.items():
        model, cfg, _ = load_model(d)
        out[name] = (model.eval(), cfg)
    return out


def render_model(model, cfg, notes, controls, seconds: float) -> np.ndarray:
    """The offline chain (render_part) -> float32 audio at the model's rate."""
    import soundfile as sf

    from rtperformer.offline.render import Part, render_part

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.wav"
        render_part(Part(cfg.data.instrument, [(0, 0)], notes, controls), model, cfg, seconds, path, progress_bar=False)
        return sf.read(str(path), dtype="float32")[0]


def fluid(instrument: str, sr: int, notes, controls, seconds: float) -> np.ndarray:
    """FluidSynth playing MIDI notes and controls (pitch bend via PITCH_WHEEL, CC1, CC11) on channel 0."""
    from rtperformer.learn.data.synth import Renderer, default_patch
    from rtperformer.midi.events import PITCH_WHEEL

    r = Renderer(default_patch(instrument), sr)
    r._reset()
    fs = r._fs
    ev = []
    for n in notes:
        ev.append((int(round(n.start * sr)), 2, "on", n.pitch, n.velocity))
        ev.append((int(round(n.end * sr)), 0, "off", n.pitch, 0))
    for c in controls:
        ev.append((int(round(c.time * sr)), 1, "bend" if c.number == PITCH_WHEEL else "cc", c.number, c.value))
    ev.sort()
    total = int(round(seconds * sr))
    pos, chunks = 0, []
    for s, _, kind, a, v in ev:
        s = min(s, total)
        if s > pos:
            chunks.append(r._render(s - pos))
            pos = s
        if kind == "on":
            fs.noteon(0, a, v)
        elif kind == "off":
            fs.noteoff(0, a)
        elif kind == "bend":
            fs.pitch_bend(0, v)
        else:
            fs.cc(0, a, v)
    chunks.append(r._render(total - pos))
    out = np.concatenate(chunks)
    r.close()
    return out


def cents_track(audio: np.ndarray, sr: int, pitch: int, t0: float, t1: float) -> np.ndarray:
    from rtperformer.learn.metrics import cents_error, pitch_track

    times = np.arange(t0, t1, 0.005)
    f = 440.0 * 2 ** ((pitch - 69) / 12)
    f0 = pitch_track(audio, sr, times, f * 2 ** (-4 / 12), f * 2 ** (4 / 12))
    c = cents_error(f0, np.full(len(times), float(pitch)))
    return c[np.isfinite(c)]


def level_centroid(audio: np.ndarray, sr: int, t0: float, t1: float) -> tuple[float, float]:
    x = audio[int(t0 * sr):int(t1 * sr)].astype(np.float64)
    rms = np.sqrt(np.mean(x * x)) + 1e-12
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / sr)
    return 20 * np.log10(rms), float((spec * freqs).sum() / (spec.sum() + 1e-20))


def expression(instrument: str, models: dict) -> dict:
    from rtperformer.learn.data.humanize import Performance, PNote, Vibrato
    from rtperformer.learn.data.synth import performance_events
    from rtperformer.midi.events import PITCH_WHEEL
    from rtperformer.midi.score import Control, Note

    sr = 48000
    p = TONE[instrument]
    tone = [Note(0.05, 0.05 + SR_NOTE, p, 90)]
    seconds = SR_NOTE + 0.4
    cc1 = [Control(0.0, 0, 1, 127)]
    vib = Vibrato(delay=0.3, ramp=0.2, rate=5.5, depth=25.0, phase=0.0)
    perf = Performance([PNote(0.05, 0.05 + SR_NOTE, p, 90, vib)], [], 0.05 + SR_NOTE)
    bends = [Control(s / sr, 0, PITCH_WHEEL, v) for s, _, typ, _, v in performance_events(perf, sr) if typ == 2]
    static = [Control(0.0, 0, PITCH_WHEEL, 4096)]  # +1 semitone at the default range of 2
    cases = {"plain": [], "cc1": cc1, "bend_vibrato": bends, "bend_static": static}
    systems = {"fluidsynth": None, **models}
    out: dict = {"instrument": instrument, "pitch": p, "velocities": list(VELOCITIES), "systems": {}}
    for name, mc in systems.items():
        res: dict = {}
        for case, controls in cases.items():
            audio = fluid(instrument, sr, tone, controls, seconds) if mc is None else render_model(*mc, tone, controls, seconds)
            c = cents_track(audio, sr, p + (1 if case == "bend_static" else 0) * 0, 0.65, 2.05)
            res[case] = {"spread_cents": float(np.std(c)) if len(c) > 20 else None,
                         "median_cents": float(np.median(c)) if len(c) > 20 else None, "frames": int(len(c))}
        lv, ce = [], []
        for v in VELOCITIES:
            note = [Note(0.05, 1.05, p, v)]
            audio = fluid(instrument, sr, note, [], 1.3) if mc is None else render_model(*mc, note, [], 1.3)
            a, b = level_centroid(audio, sr, 0.35, 0.95)
            lv.append(round(a, 2))
            ce.append(round(b, 1))
        res["velocity"] = {"level_db": lv, "centroid_hz": ce,
                           "level_monotonic": bool(np.all(np.diff(lv) > 0)),
                           "centroid_monotonic": bool(np.all(np.diff(ce) > 0)),
                           "range_20_127_db": round(lv[-1] - lv[0], 2)}
        out["systems"][name] = res
        print(f"{instrument} {name}: " + ", ".join(f"{k} {v['spread_cents'] and round(v['spread_cents'], 1)}c/"
                                                    f"{v['median_cents'] and round(v['median_cents'], 1)}"
                                                    for k, v in res.items() if k != "velocity")
              + f"; velocity dB {lv} centroid {ce}", flush=True)
    return out


def attack(instrument: str, models: dict) -> dict:
    """21 isolated notes over the instrument's range (bench/study_attack.py's measure): first sound, 10 % point
    and the attack gap (dB, frames 0-3 from the onset frame, model minus FluidSynth)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from study_attack import CURVE, measure_isolated, summarize_isolated

    lo, hi = RANGE[instrument]
    pitches = [int(p) for p in np.round(np.linspace(lo, hi, 21))]
    per, _ = measure_isolated(instrument, pitches, models)
    out = {"instrument": instrument, "pitches": pitches, "summary": summarize_isolated(per)}
    k0 = -CURVE[0]
    cf = np.mean(np.array(per["fluidsynth"]["curve_db"]), 0)
    for s, v in out["summary"].items():
        cv = np.mean(np.array(per[s]["curve_db"]), 0)
        v["attack_gap_db"] = float(np.mean(cv[k0:k0 + 4] - cf[k0:k0 + 4]))
        print(f"{instrument} attack {s}: {v}", flush=True)
    return out


def step_cost(models: dict, steps: int = 1000, rounds: int = 5) -> dict:
    """1-frame ONNX step CPU time of each model (bench/common.py's onnx_step_cost)."""
    return onnx_step_cost(models, steps, rounds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instrument", required=True, choices=sorted(TONE))
    ap.add_argument("--expression", action="store_true")
    ap.add_argument("--attack", action="store_true")
    ap.add_argument("--eval", action="store_true")
    ap.add_argument("--step-cost", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("models", nargs="+", metavar="NAME=DIR")
    args = ap.parse_args(argv)
    named = dict(m.split("=", 1) for m in args.models)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = f"-{args.tag}" if args.tag else ""
    models = load(named)
    if args.expression:
        write_json(expression(args.instrument, models), RESULTS / f"{args.instrument}-expression{tag}.json")
    if args.attack:
        write_json(attack(args.instrument, models), RESULTS / f"{args.instrument}-attack{tag}.json")
    if args.step_cost:
        write_json(step_cost(models), RESULTS / f"{args.instrument}-step-cost{tag}.json")
    if args.eval:
        for name, d in named.items():
            out = RESULTS / f"eval-{args.instrument}-{name}{tag}.json"
            subprocess.run([sys.executable, "-m", "rtperformer", "eval", "--model", d, "--max-seconds", "30",
                            "--pieces", "6", "--out", str(out), "--png", str(out.with_suffix(".png"))],
                           cwd=REPO, check=True, stdout=subprocess.DEVNULL)
            print(f"eval {name}: {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
