"""The attack study of issue 12: does the model rise as fast as its target with note-position inputs or a
spectral-flux loss?

Violin runs fine-tuned from the shipped model (``--init-from models/violin``: the study measures what a
change buys from today's weights), identical but for the studied setting: seed 0, ``--lr`` 3e-4,
``--steps`` each, batch 16 x 256 frames, one thread per run, two at once:

- ``base``: loss l1, today's inputs (the control: what the same extra training alone buys);
- ``pos``: loss l1, + note-position inputs (onset decays tau 3 and 12 frames, release decay 8 frames; the
  new input weights start at zero, so step 0 is the shipped model);
- ``flux``: loss l1_flux (L1 + L1 on frame-to-frame change, weight 1), today's inputs;
- ``posflux``: both;
- ``onset``: loss l1_onset (L1 with the first 12 frames of every note weighted 4x), today's inputs;
- ``posonset``: l1_onset + the note-position inputs;
- ``onset-hi-polish2`` / ``-polish1``: onset-hi continued 14 min at lr 2e-4 / 1e-4 (to win back the
  pitch median the lr-1e-3 runs lost);
- ``base-hi`` and ``onset-hi``: the same as ``base`` and ``onset`` with lr 1e-3 (the card's stage 2) and
  a time budget (30 and 24 minutes, ~1,700 and ~1,300 steps: onset-hi started later, after a posonset-hi
  run was stopped for it: the position inputs had bought nothing and cost step time).
- ``shipped``: models/violin untouched.

    .venv/bin/python bench/study_attack.py --train --attack --eval   # all of it
    .venv/bin/python bench/study_attack.py                           # only the table, from what is on disk

- ``--attack``: 21 isolated notes (G3..G6, velocity 90, 0.5 s, note-ons at varying offsets inside a hop)
  played by FluidSynth (FluidR3 violin, the model's target soundfont) and by each model through the offline
  voice chain (``rtperformer.learn.evaluate.synthesize``); per note the first sound (-40 dB re the note's level)
  and the 10 % point after the note-on (bench/latency.py's ``detect_onset``), and the "oracle" (the
  FluidSynth note's true frames through the same audio stage). Also the frame-domain attack: level (dB re the
  held level) of the model's and the target's frames at frames -3..+10 around the onset frame, and a
  corpus check of alignment: the target frames' level around score onsets after silence in the test split.
  PNG: the first 100 ms of one note for every system.
- ``--eval``: ``rtperformer eval --model <run> --max-seconds 30 --pieces 6`` (as the model card).

Results: bench/results/study_attack/ (summary.json, attack.json, eval-<run>.json, attack.png, step_cost.json;
eval PNGs kept for shipped and onset-hi only; the onset-hi candidate as violin-onset-hi/, fp16; shipped since as models/violin).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from common import num, onnx_step_cost, read_json, run_in_batches, write_json  # noqa: E402

OUT = REPO / "out" / "study_attack"
RESULTS = REPO / "bench" / "results" / "study_attack"
CONFIG = "configs/realtime-violin.yaml"
POSITION = {"onset_decay_frames": [3.0, 12.0], "release_decay_frames": [8.0]}
RUNS = {  # name: (loss, note-position inputs)
    "base": ("l1", False),
    "pos": ("l1", True),
    "flux": ("l1_flux", False),
    "posflux": ("l1_flux", True),
    "onset": ("l1_onset", False),
    "posonset": ("l1_onset", True),
    "base-hi": ("l1", False),  # lr 1e-3 and a time budget: the stage-2 recipe
    "onset-hi": ("l1_onset", False),
    "onset-hi-polish2": ("l1_onset", False),  # onset-hi + 14 min at lr 2e-4
    "onset-hi-polish1": ("l1_onset", False),  # onset-hi + 14 min at lr 1e-4
}
HI_LR = 1e-3
HI_MINUTES = {"base-hi": 30.0, "onset-hi": 24.0}
CLI = [sys.executable, "-m", "rtperformer"]
PITCHES = [int(p) for p in np.round(np.linspace(55, 91, 21))]
NOTE_S, LEAD_S, VELOCITY = 0.5, 0.2, 90
CURVE = (-3, 11)  # frames around the onset frame for the frame-domain attack curve


def model_dir(name: str) -> Path:
    return REPO / "models" / "violin" if name == "shipped" else OUT / name


def run_config(name: str) -> str:
    """The config file of a run: the violin config, or a copy with the note-position inputs."""
    import yaml

    if not RUNS[name][1]:
        return CONFIG
    data = yaml.safe_load((REPO / CONFIG).read_text())
    data["name"] = "realtime-violin-pos"
    data["model"].update(POSITION)
    path = OUT / "pos.yaml"  # the same file for every run with the inputs
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def train_all(steps: int, lr: float, minutes: float, parallel: int = 2) -> None:
    todo = [n for n in RUNS if not (OUT / n / "model.safetensors").is_file()]
    for i in range(0, len(todo), parallel):
        procs = []
        for name in todo[i:i + parallel]:
            if "polish" in name:  # a continuation of onset-hi at a lower learning rate
                cmd = ["nice", "-n", "10"] + CLI + [
                    "train", "--config", CONFIG, "--init-from", str(OUT / "onset-hi"), "--loss", "l1_onset",
                    "--lr", "2e-4" if name.endswith("2") else "1e-4", "--lookahead", "0", "--threads", "1",
                    "--steps", "20000", "--valid-every", "100", "--minutes", "14", "--no-progress", "--out", str(OUT / name)]
                log = open(OUT / f"{name}.log", "w")
                procs.append((name, subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log))
                continue
            hi = name.endswith("-hi")
            cmd = ["nice", "-n", "10"] + CLI + [
                "train", "--config", run_config(name), "--init-from", "models/violin", "--loss", RUNS[name][0],
                "--lr", str(HI_LR if hi else lr), "--lookahead", "0", "--threads", "1",
                "--steps", str(20000 if hi else steps), "--valid-every", "100",
                "--minutes", str(HI_MINUTES[name] if hi else minutes), "--no-progress", "--out", str(OUT / name)]
            log = open(OUT / f"{name}.log", "w")
            procs.append((name, subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log))
        for name, p, log in procs:
            if p.wait() != 0:
                sys.exit(f"training failed for {name} (see {OUT}/{name}.log)")
            log.close()


def eval_all(names: list[str], parallel: int = 2) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    run_in_batches([(n, ["nice", "-n", "10"] + CLI + ["eval", "--model", str(model_dir(n)), "--max-seconds", "30",
                                                      "--pieces", "6", "--out", str(RESULTS / f"eval-{n}.json")])
                    for n in names], parallel, "eval")


# -- the attack on isolated notes ---------------------------------------------------------------------


def frame_level_db(features: np.ndarray, power_scale: float) -> np.ndarray:
    """(T,) total power per frame in dB from log1p-power features (n_bins, T)."""
    p = np.maximum(np.expm1(features.astype(np.float64)), 0.0).sum(0) / power_scale
    return 10.0 * np.log10(p + 1e-12)


def curve(levels: np.ndarray, f: int) -> np.ndarray:
    """Levels at frames f+CURVE[0] .. f+CURVE[1]-1 in dB re the held level (median of f+20 .. f+60)."""
    held = np.median(levels[f + 20:f + 60])
    return levels[f + CURVE[0]:f + CURVE[1]] - held


def measure_isolated(instrument: str, pitches: list[int], models: dict, example_pitch: int | None = None):
    """Isolated notes (``pitches``, velocity VELOCITY, NOTE_S long, note-ons at varying places inside a hop)
    from FluidSynth (the instrument's target soundfont), its true frames through the offline chain
    ("oracle") and each of ``models`` ({name: (model, cfg)}) through the same chain (with the held notes for
    the score-informed phase). Returns (per-system lists {"first_ms", "onset10_ms", "curve_db"}, the
    example note's {"pitch", "on", "audio"} or {})."""
    from latency import FIRST_SOUND_FRACTION, detect_onset
    from rtperformer.dsp.features import log_power
    from rtperformer.learn.data.humanize import Performance, PNote
    from rtperformer.learn.data.synth import Renderer, default_patch
    from rtperformer.learn.evaluate import model_frames, synthesize
    from rtperformer.roll.notes import notes_to_rolls
    from rtperformer.roll.rolls import seconds_to_frame, stack_inputs

    cfg = next(iter(models.values()))[1]
    a = cfg.audio
    sr = a.sample_rate
    ren = Renderer(default_patch(instrument), sr)
    systems = ["fluidsynth", "oracle", *models]
    per = {s: {"first_ms": [], "onset10_ms": [], "curve_db": []} for s in systems}
    example = {}
    for i, p in enumerate(pitches):
        start = LEAD_S + (i * 37) / sr  # note-ons at varying places inside a hop
        perf = Performance([PNote(start, start + NOTE_S, p, VELOCITY)], [], start + NOTE_S)
        fs = ren.render(perf, tail=0.3)
        on, off = int(round(start * sr)), int(round((start + NOTE_S) * sr))
        feats = log_power(fs, a)
        f0 = seconds_to_frame(start, a)
        audio = {"fluidsynth": fs, "oracle": synthesize(feats, cfg, len(fs))}
        frames = {"fluidsynth": feats, "oracle": feats}
        for n, (model, mcfg) in models.items():
            rolls = notes_to_rolls(perf.notes, [], a, n_frames=feats.shape[1])
            x = stack_inputs(rolls, mcfg.model)
            y = model_frames(model, x)
            frames[n] = y
            audio[n] = synthesize(y, mcfg, len(fs), notes=x[: mcfg.model.n_pitches])
        for s in systems:
            first, _ = detect_onset(audio[s], on, off, sr, FIRST_SOUND_FRACTION)
            ten, _ = detect_onset(audio[s], on, off, sr)
            per[s]["first_ms"].append(None if first is None else (first - on) * 1e3 / sr)
            per[s]["onset10_ms"].append(None if ten is None else (ten - on) * 1e3 / sr)
            per[s]["curve_db"].append(curve(frame_level_db(frames[s], a.power_scale), f0).tolist())
        if p == example_pitch:
            example = {"pitch": p, "on": on, "audio": audio}
    return per, example


def summarize_isolated(per: dict) -> dict:
    """Per system: median first sound and 10 % point (ms after the note-on), their median per-note difference
    to FluidSynth's, and the number of notes measured."""
    out = {}
    for s in per:
        f = np.array([v for v in per[s]["first_ms"] if v is not None])
        t = np.array([v for v in per[s]["onset10_ms"] if v is not None])
        d40 = [m - r for m, r in zip(per[s]["first_ms"], per["fluidsynth"]["first_ms"]) if None not in (m, r)]
        d10 = [m - r for m, r in zip(per[s]["onset10_ms"], per["fluidsynth"]["onset10_ms"]) if None not in (m, r)]
        out[s] = {
            "first_median_ms": float(np.median(f)) if len(f) else None,
            "onset10_median_ms": float(np.median(t)) if len(t) else None,
            "first_minus_target_median_ms": float(np.median(d40)) if d40 else None,
            "onset10_minus_target_median_ms": float(np.median(d10)) if d10 else None,
            "notes": int(len(t)),
        }
    return out


def isolated_notes(names: list[str]) -> dict:
    import torch

    from rtperformer.model.checkpoint import load_model

    torch.set_num_threads(1)
    models = {n: load_model(model_dir(n))[:2] for n in names if (model_dir(n) / "model.safetensors").is_file()}
    sr = next(iter(models.values()))[1].audio.sample_rate
    per, example = measure_isolated("violin", PITCHES, models, example_pitch=69)
    out = {"pitches": PITCHES, "velocity": VELOCITY, "note_s": NOTE_S, "curve_frames": list(range(*CURVE)),
           "per_note": per, "summary": summarize_isolated(per)}
    for s, v in out["summary"].items():
        v["curve_db"] = np.mean(np.array(per[s]["curve_db"]), 0).round(2).tolist()
    if example:
        plot_example(example, sr, RESULTS / "attack.png")
    return out


def plot_example(ex: dict, sr: int, path: Path) -> None:
    """The first 100 ms (from 10 ms before the note-on) of one note for every system: fine spectrograms of
    the audio (n_fft 256, hop 32) and the amplitude envelopes in dB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import stft

    names = list(ex["audio"])
    on = ex["on"]
    a0, a1 = on - int(0.010 * sr), on + int(0.100 * sr)
    cols = 5
    rows = -(-len(names) // cols)
    fig = plt.figure(figsize=(3.2 * cols, 2.8 * rows + 3.2))
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1] * rows + [1.2])
    env_ax = fig.add_subplot(grid[rows, :])
    for j, n in enumerate(names):
        x = ex["audio"][n][a0:a1]
        f, t, z = stft(x, sr, nperseg=256, noverlap=224)
        db = 20 * np.log10(np.abs(z) + 1e-7)
        ax = fig.add_subplot(grid[j // cols, j % cols])
        ax.pcolormesh(t * 1e3 - 10, f / 1e3, db, vmin=db.max() - 80, vmax=db.max(), shading="auto")
        ax.set_ylim(0, 8)
        ax.axvline(0, color="w", lw=0.8)
        label = {"fluidsynth": "FluidSynth (target)", "oracle": "oracle (target frames)"}.get(n, f"model: {n}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("ms after note-on", fontsize=8)
        if j % cols == 0:
            ax.set_ylabel("kHz")
        env = np.sqrt(np.convolve(ex["audio"][n][a0:a1] ** 2, np.ones(48) / 48, mode="same"))
        ref = np.percentile(np.abs(ex["audio"][n][on:on + int(0.4 * sr)]), 99)
        style = {"fluidsynth": dict(color="k", lw=2), "oracle": dict(color="0.5", lw=2, ls="--")}.get(n, dict(lw=1))
        env_ax.plot((np.arange(len(env)) - (on - a0)) * 1e3 / sr, 20 * np.log10(env / ref + 1e-9), label=label, **style)
    env_ax.axhline(-40, color="k", ls=":", lw=0.7)
    env_ax.axhline(-20, color="k", ls=":", lw=0.7)
    env_ax.set_ylim(-70, 5)
    env_ax.set_xlim(-10, 100)
    env_ax.set_xlabel("ms after note-on")
    env_ax.set_ylabel("envelope dB re note level (1 ms RMS)")
    env_ax.legend(fontsize=8, ncol=3, loc="lower right")
    fig.suptitle(f"violin MIDI {ex['pitch']}, velocity {VELOCITY}: the first 100 ms")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def corpus_alignment(names: list[str], max_pieces: int = 6, max_seconds: float = 30.0) -> dict:
    """Target frames around score onsets after >= 20 frames of silence (test split, the first
    ``max_seconds`` of ``max_pieces`` pieces, as the eval): mean level in dB re the note's held level at
    frames -3..+10 of the roll's onset frame (where centred frames put energy), and the same for each
    model's frames of those pieces (its own inputs: CC11 arcs, legato, humanised velocity)."""
    import torch

    from rtperformer.config import load_config
    from rtperformer.learn.data.dataset import piece_arrays
    from rtperformer.learn.evaluate import model_frames
    from rtperformer.model.checkpoint import load_model

    torch.set_num_threads(1)
    cfg = load_config(REPO / CONFIG)
    models = {n: load_model(model_dir(n))[:2] for n in names if (model_dir(n) / "model.safetensors").is_file()}
    curves: dict[str, list] = {"target": [], **{n: [] for n in models}}
    pieces = {n: piece_arrays(mc.data.corpus_dir, "violin", "test", mc) for n, (_, mc) in models.items()}
    T_max = int(max_seconds * cfg.audio.frame_rate)
    for k, (_pid, x, y, _audio) in enumerate(piece_arrays(cfg.data.corpus_dir, "violin", "test", cfg)):
        if k >= max_pieces:
            break
        x, y = x[:, :T_max], y[:, :T_max]
        ys = {}
        for n, (model, _mc) in models.items():
            xn = next(pieces[n])[1][:, :T_max]  # the same piece in the model's own input layout
            ys[n] = frame_level_db(model_frames(model, xn), cfg.audio.power_scale)
        count = (x[0:128] > 0.5).sum(0)
        lev = frame_level_db(y, cfg.audio.power_scale)
        for f in np.unique(np.nonzero(x[128:256] > 0.5)[1]):
            if f >= 20 and f + 60 < len(count) and count[f - 20:f].sum() == 0 and (count[f:f + 60] > 0).all():
                curves["target"].append(curve(lev, int(f)))
                for n in models:
                    curves[n].append(curve(ys[n], int(f)))
    return {"onsets": len(curves["target"]), "curve_frames": list(range(*CURVE)),
            "curve_db": {n: (np.mean(c, 0).round(2).tolist() if c else None) for n, c in curves.items()}}


# -- step cost ----------------------------------------------------------------------------------------


def step_cost(steps: int = 1500, rounds: int = 5) -> dict:
    """CPU time of one 1-frame ONNX Runtime step (the live path), today's inputs vs + note-position inputs,
    interleaved in rounds on the same machine (process CPU time: a shared machine disturbs it less), and
    each model's parameter count."""
    from rtperformer.config import load_config
    from rtperformer.model import build_model
    from rtperformer.model.performancenet import count_parameters

    models, extra = {}, {}
    for name, path in (("today", REPO / CONFIG), ("position", Path(run_config("pos")))):
        cfg = load_config(path)
        model = build_model(cfg).eval()
        models[name] = (model, cfg)
        extra[name] = count_parameters(model)
    out = onnx_step_cost(models, steps, rounds)
    for name, v in out.items():
        v["params"] = extra[name]
    return out


# -- summary ------------------------------------------------------------------------------------------


def summary() -> dict:
    att = read_json(RESULTS / "attack.json") or {}
    rows = []
    for name in ["shipped", *RUNS]:
        meta = read_json(model_dir(name) / "meta.json") or {}
        ev = (read_json(RESULTS / f"eval-{name}.json") or {}).get("summary", {})
        m = ev.get("model", {})
        s = att.get("summary", {}).get(name, {})
        rows.append({
            "run": name, "loss": RUNS.get(name, ("l1",))[0], "position_inputs": RUNS.get(name, ("", False))[1],
            "steps": meta.get("step") if name != "shipped" else 0, "valid": meta.get("metrics", {}).get("valid", {}),
            "first_ms": s.get("first_median_ms"), "onset10_ms": s.get("onset10_median_ms"),
            "first_vs_target_ms": s.get("first_minus_target_median_ms"),
            "onset10_vs_target_ms": s.get("onset10_minus_target_median_ms"),
            "lsd_db": m.get("lsd_db"), "lsd_attack_db": m.get("lsd_attack_db"), "lsd_audio_db": m.get("lsd_audio_db"),
            "level_db": m.get("level_db"), "pitch_median_abs_cents": m.get("pitch", {}).get("median_abs_cents"),
            "pitch_within_50c": m.get("pitch", {}).get("within_50c"),
            "onset_median_ms": m.get("onset", {}).get("median_ms"),
        })
    # attack gap: mean over the onset frame and the next 3 of (model level - target level), dB re held level
    frames = att.get("curve_frames", list(range(*CURVE)))
    sel = [frames.index(k) for k in range(0, 4)] if frames else []
    ca = (att.get("corpus_alignment") or {}).get("curve_db") or {}
    for r in rows:
        iso = (att.get("summary", {}).get(r["run"]) or {}).get("curve_db")
        ref = (att.get("summary", {}).get("fluidsynth") or {}).get("curve_db")
        r["gap_isolated_db"] = float(np.mean([iso[i] - ref[i] for i in sel])) if iso and ref else None
        mc, tc = ca.get(r["run"]), ca.get("target")
        r["gap_corpus_db"] = float(np.mean([mc[i] - tc[i] for i in sel])) if mc and tc else None
    t = att.get("summary", {})
    return {"config": CONFIG, "runs": rows, "step_cost": read_json(RESULTS / "step_cost.json"),
            "fluidsynth": t.get("fluidsynth"), "oracle": t.get("oracle"), "corpus_alignment": att.get("corpus_alignment")}


def table(data: dict) -> str:
    f = lambda v, fmt=".2f": num(v, fmt)  # noqa: E731
    out = ["| run | loss | position inputs | steps | valid mse / l1 | first sound ms (vs target) | 10 % ms (vs target) | "
           "attack gap dB: isolated / corpus | LSD dB (attack) | LSD audio dB | level dB | pitch median cents (<50c) | onset signed ms |",
           "|---|---|---|---:|---|---|---|---|---|---:|---:|---|---:|"]
    for r in data["runs"]:
        v = r["valid"]
        out.append(
            f"| {r['run']} | {r['loss']} | {'yes' if r['position_inputs'] else 'no'} | {r['steps'] or 0} | "
            f"{f(v.get('mse'), '.3f')} / {f(v.get('l1'), '.3f')} | {f(r['first_ms'], '.1f')} ({f(r['first_vs_target_ms'], '+.1f')}) | "
            f"{f(r['onset10_ms'], '.1f')} ({f(r['onset10_vs_target_ms'], '+.1f')}) | "
            f"{f(r['gap_isolated_db'], '+.1f')} / {f(r['gap_corpus_db'], '+.1f')} | {f(r['lsd_db'])} ({f(r['lsd_attack_db'])}) | "
            f"{f(r['lsd_audio_db'])} | {f(r['level_db'])} | {f(r['pitch_median_abs_cents'], '.1f')} "
            f"({f(r['pitch_within_50c'], '.3f')}) | {f(r['onset_median_ms'], '+.1f')} |")
    for k in ("fluidsynth", "oracle"):
        s = data.get(k) or {}
        if s:
            out.append(f"| {k} | - | - | - | - | {f(s.get('first_median_ms'), '.1f')} | {f(s.get('onset10_median_ms'), '.1f')} "
                       "| - | - | - | - | - | - |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--attack", action="store_true")
    ap.add_argument("--eval", action="store_true")
    ap.add_argument("--step-cost", action="store_true", help="1-frame ONNX step CPU time, with and without the inputs")
    ap.add_argument("--runs", default="shipped," + ",".join(RUNS), help="comma list for --attack and --eval")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--minutes", type=float, default=35.0)
    a = ap.parse_args(argv)
    names = [n for n in a.runs.split(",") if n]
    if a.train:
        train_all(a.steps, a.lr, a.minutes)
    if a.attack:
        res = isolated_notes(names)
        res["corpus_alignment"] = corpus_alignment(names)
        write_json(res, RESULTS / "attack.json")
    if a.eval:
        eval_all(names)
    if a.step_cost:
        write_json(step_cost(), RESULTS / "step_cost.json")
    data = summary()
    write_json(data, RESULTS / "summary.json")
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
