"""Three instruments at once over JACK: underruns and dropouts of ``rtperformer serve`` under dense playing.

A private JACK dummy server (48 kHz / 256), ``rtperformer serve`` with every shipped model (violin, cello,
flute), a probe (JACK-Client) that sets programs 40 / 42 / 73 on channels 1-3 and then plays, for
``--seconds``, overlapping notes and chords on all three channels at once (a new event every 60-250 ms per
channel, held 0.2-1.2 s, velocities 50-120), and records the server's output. Reports the server's own
underrun count and lead (its last status line), the probe's xruns, and the longest run of exact zeros
while notes sound (an underrun's zero fill). ``--set KEY=VALUE`` adds serve settings (e.g.
``voice_threads=3``, ``step_frames=2``); results go to bench/results/dense.json.
Run: ``python bench/dense.py --seconds 120 [--set voice_threads=3]``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, write_json  # noqa: E402
from latency import RATE, PERIOD, play_and_record, start_rtperformer, stop  # noqa: E402

from rtperformer.live.jacktools import PrivateJackServer  # noqa: E402

RANGES = {0: (64, 88), 1: (40, 64), 2: (72, 93)}  # violin, cello, flute (MIDI pitches)
PROGRAMS = {0: 40, 1: 42, 2: 73}


def dense_events(seconds: float, seed: int = 0) -> tuple[list[tuple[int, bytes]], np.ndarray]:
    """(frame, message) schedule and a (frames,) bool mask of when any note sounds."""
    rng = np.random.default_rng(seed)
    sched = [(0, bytes([0xC0 | ch, prog])) for ch, prog in PROGRAMS.items()]
    n = int(seconds * RATE)
    sounding = np.zeros(n + RATE * 2, bool)
    for ch, (lo, hi) in RANGES.items():
        t = int(0.1 * RATE)
        while t < n:
            k = 1 if rng.random() < 0.6 else 2
            hold = int(rng.uniform(0.2, 1.2) * RATE)
            for p in rng.choice(np.arange(lo, hi), size=k, replace=False):
                sched.append((t, bytes([0x90 | ch, int(p), int(rng.integers(50, 121))])))
                sched.append((min(t + hold, n), bytes([0x80 | ch, int(p), 0])))
            sounding[t:t + hold] = True
            t += int(rng.uniform(0.06, 0.25) * RATE)
    return sorted(sched, key=lambda e: e[0]), sounding


def longest_zero_run(x: np.ndarray) -> int:
    z = np.concatenate([[0], (x == 0.0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(z))
    return int(np.max(edges[1::2] - edges[::2])) if len(edges) else 0


def run(seconds: float, settings: list[str], seed: int) -> dict:
    sched, sounding = dense_events(seconds, seed)
    with tempfile.TemporaryDirectory(prefix="rtpdense-") as tmpd, PrivateJackServer("rtpdense", RATE, PERIOD) as jackd:
        cfg = Path(tmpd) / "serve.yaml"
        lines = ["serve:"] + [f"  {kv.split('=', 1)[0]}: {kv.split('=', 1)[1]}" for kv in settings]
        cfg.write_text("\n".join(lines) + "\n" if settings else "{}\n")
        proc, midi_port, audio_ports, err = start_rtperformer(jackd.env(), "streaming", [], cfg, "rtpdsrv",
                                                              quiet=False)
        base = int(0.3 * RATE)
        try:
            x, xruns, _ = play_and_record("rtpdense-probe", midi_port, audio_ports[0], sched, base, seconds + 1.5,
                                          settle=1.0)
        finally:
            rc = stop(proc)
    status = [line.strip() for line in err if "underruns" in line]
    last = status[-1] if status else ""
    under = re.search(r"underruns (\d+)", last)
    mask = sounding[: max(0, len(x) - base)]
    held = x[base: base + len(mask)][mask[: len(x) - base]]
    # zero runs inside sounding stretches (notes + 50 ms of onset slack excluded by the 64-zero rule)
    runs = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):
        a = max(a, RATE)  # the first second: the server's first notes (program changes, wake-up)
        seg = x[base + a + int(0.05 * RATE): base + b]
        if len(seg):
            runs.append(longest_zero_run(seg))
    out = {"machine": machine(), "seconds": seconds, "settings": settings, "exit_code": rc,
           "server_underruns": int(under.group(1)) if under else None, "server_status": last,
           "probe_xruns": xruns, "stretches": len(runs),
           "stretches_with_dropout": int(sum(r >= 64 for r in runs)), "longest_zero_run": max(runs or [0]),
           "events": len(sched), "held_rms": float(np.sqrt(np.mean(held ** 2))) if len(held) else 0.0}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="serve setting (repeat)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "dense.json"))
    args = ap.parse_args()
    res = run(args.seconds, args.set, args.seed)
    out = Path(args.out)
    prev = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    prev["runs"] = [r for r in prev.get("runs", []) if r.get("settings") != res["settings"]] + [res]
    write_json(prev, out)
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
