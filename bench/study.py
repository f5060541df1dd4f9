"""The training study of issue 3: loss (mse / l1 / l1_sc) and lookahead (0 / 1 / 2 frames) on one budget.

Five violin runs from scratch, identical except for the studied setting: configs/realtime-violin.yaml,
seed 0 (same initial weights, same batches), ``--steps`` each (default 400, batch 16 x 256 frames), one
thread per run, all five at once on the same machine so they share its load.

    .venv/bin/python bench/study.py --train --eval --latency   # all of it (~35 + 15 + 10 min on 2 cores)
    .venv/bin/python bench/study.py                            # only the table, from what is on disk

- ``--train``: ``rtperformer train ... --out out/study/<run>`` for each run (``out/`` is not in git);
- ``--eval``: ``rtperformer eval --model out/study/<run> --max-seconds 30 --pieces 6`` (as the model card) ->
  bench/results/study/eval-<run>.json;
- ``--latency``: ``rtperformer bench latency --model out/study/<run> --modes streaming`` for the three
  l1_sc lookahead runs (FluidSynth in the first only) -> bench/results/study/latency-<run>.json;
- then bench/results/study/summary.json and the markdown table (pasted in models/README.md).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import num, read_json, run_in_batches, write_json  # noqa: E402

OUT = REPO / "out" / "study"
RESULTS = REPO / "bench" / "results" / "study"
CONFIG = "configs/realtime-violin.yaml"
RUNS = {  # name: (loss, lookahead frames)
    "l1sc-la2": ("l1_sc", 2),
    "mse-la2": ("mse", 2),
    "l1-la2": ("l1", 2),
    "l1sc-la1": ("l1_sc", 1),
    "l1sc-la0": ("l1_sc", 0),
}
LOOKAHEAD_RUNS = ("l1sc-la0", "l1sc-la1", "l1sc-la2")
CLI = [sys.executable, "-m", "rtperformer"]


def train_all(steps: int) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, (loss, la) in RUNS.items():
        cmd = CLI + ["train", "--config", CONFIG, "--out", str(OUT / name), "--loss", loss, "--lookahead", str(la),
                     "--threads", "1", "--steps", str(steps), "--valid-every", "100", "--no-progress"]
        log = open(OUT / f"{name}.log", "w")
        procs.append((name, subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log))
        print("started", " ".join(cmd[2:]), flush=True)
    failed = []
    for name, p, log in procs:
        if p.wait() != 0:
            failed.append(name)
        log.close()
    if failed:
        sys.exit(f"training failed for {', '.join(failed)} (see {OUT}/<run>.log)")


def eval_all(parallel: int = 2) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    run_in_batches([(n, CLI + ["eval", "--model", str(OUT / n), "--max-seconds", "30", "--pieces", "6",
                               "--out", str(RESULTS / f"eval-{n}.json")]) for n in RUNS], parallel, "eval")


def latency_all(events: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(LOOKAHEAD_RUNS):
        cmd = CLI + ["bench", "latency", "--model", str(OUT / n), "--modes", "streaming", "--events", str(events),
                     "--server-status", "--out", str(RESULTS / f"latency-{n}.json")]
        if i:
            cmd.append("--no-fluidsynth")
        if subprocess.call(cmd, cwd=REPO) != 0:
            sys.exit(f"latency failed for {n}")


def _pipeline_ms(status: str) -> float | None:
    """The server's own note-on -> first output sample median from its status line ("note->out 2.3/5.0ms")."""
    m = re.search(r"note->out ([0-9.]+)/", status)
    return float(m.group(1)) if m else None


def summary() -> dict:
    """One row per run from out/study (training, not in git) and bench/results/study (eval, latency); the
    training columns fall back to the committed summary.json when out/study is not on this machine."""
    before = {r["run"]: r for r in (read_json(RESULTS / "summary.json") or {}).get("runs", [])}
    rows = []
    for name, (loss, la) in RUNS.items():
        meta = (read_json(OUT / name / "meta.json") or {})
        if not meta and name in before:
            old = before[name]
            meta = {"step": old.get("steps"), "wall_seconds": old.get("wall_seconds"),
                    "metrics": {"valid": old.get("valid", {})}}
        ev = (read_json(RESULTS / f"eval-{name}.json") or {}).get("summary", {})
        lat = (read_json(RESULTS / f"latency-{name}.json") or {})
        served = next((s for s in lat.get("systems", []) if s.get("system", "").startswith("rtperformer")), {})
        fs = next((s for s in lat.get("systems", []) if s.get("system") == "fluidsynth"), {})
        m, t = ev.get("model", {}), ev.get("target", {})
        rows.append({
            "run": name, "loss": loss, "lookahead_frames": la, "steps": meta.get("step"),
            "wall_seconds": meta.get("wall_seconds"), "valid": meta.get("metrics", {}).get("valid", {}),
            "lsd_db": m.get("lsd_db"), "lsd_attack_db": m.get("lsd_attack_db"), "lsd_audio_db": m.get("lsd_audio_db"),
            "sc": m.get("sc"), "level_db": m.get("level_db"), "sharpness_db": m.get("sharpness_db"),
            "target_sharpness_db": t.get("sharpness_db"),
            "pitch_median_abs_cents": m.get("pitch", {}).get("median_abs_cents"),
            "pitch_within_50c": m.get("pitch", {}).get("within_50c"),
            "onset_median_abs_ms": m.get("onset", {}).get("median_abs_ms"),
            "onset_median_ms": m.get("onset", {}).get("median_ms"),
            "target_onset_median_abs_ms": t.get("onset", {}).get("median_abs_ms"),
            "latency_median_ms": served.get("median_ms"), "latency_p99_ms": served.get("p99_ms"),
            "pipeline_note_to_out_ms": _pipeline_ms(served.get("server_status", "")),
            "fluidsynth_median_ms": fs.get("median_ms"),
        })
    return {"config": CONFIG, "runs": rows}


def table(data: dict) -> str:
    f = lambda v, fmt=".2f": num(v, fmt)  # noqa: E731
    out = ["| run | loss | lookahead | steps | valid mse / l1 / sc | LSD dB (attack) | LSD audio dB | level dB | "
           "sharpness dB (target) | pitch median cents (<50c) | onset error ms: abs (signed); target abs | "
           "live onset median / p99 ms (pipeline) |",
           "|---|---|---:|---:|---|---|---:|---:|---|---|---|---|"]
    for r in data["runs"]:
        v = r["valid"]
        out.append(
            f"| {r['run']} | {r['loss']} | {r['lookahead_frames']} | {r['steps'] or '-'} | "
            f"{f(v.get('mse'), '.3f')} / {f(v.get('l1'), '.3f')} / {f(v.get('sc'), '.3f')} | "
            f"{f(r['lsd_db'])} ({f(r['lsd_attack_db'])}) | {f(r['lsd_audio_db'])} | {f(r['level_db'])} | "
            f"{f(r['sharpness_db'], '.1f')} ({f(r['target_sharpness_db'], '.1f')}) | "
            f"{f(r['pitch_median_abs_cents'], '.1f')} ({f(r['pitch_within_50c'], '.3f')}) | "
            f"{f(r['onset_median_abs_ms'], '.1f')} ({f(r['onset_median_ms'], '+.1f')}); "
            f"{f(r['target_onset_median_abs_ms'], '.1f')} | "
            f"{f(r['latency_median_ms'], '.1f')} / {f(r['latency_p99_ms'], '.1f')} "
            f"({f(r['pipeline_note_to_out_ms'], '.1f')}) |")
    fs = next((r["fluidsynth_median_ms"] for r in data["runs"] if r["fluidsynth_median_ms"]), None)
    if fs:
        out.append(f"\nFluidSynth in the same latency harness: median {fs:.1f} ms.")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--eval", action="store_true")
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--events", type=int, default=200)
    a = ap.parse_args(argv)
    if a.train:
        train_all(a.steps)
    if a.eval:
        eval_all()
    if a.latency:
        latency_all(a.events)
    data = summary()
    write_json(data, RESULTS / "summary.json")
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
