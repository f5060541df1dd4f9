"""``rtperformer bench throughput|latency|phase|all``: run a benchmark from bench/ and write bench/results/.

- ``throughput``: real-time factor per backend x model x chunk size, 1 and 3 instruments, phase cost,
  first-call time, offline render speed (bench/throughput.py);
- ``latency``: note-on -> sound on a JACK dummy server for each render mode and FluidSynth (bench/latency.py);
- ``phase``: the phase methods' quality and cost (bench/phase.py, the DSP benchmark);
- ``all``: the three in turn (what ``make bench`` runs), then the headline tables in markdown.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from rtperformer import paths

HELP = "Run a benchmark from bench/."
# bench/ is a folder of scripts in the source checkout; an installed package has none.
BENCH_DIR = (paths.checkout_root() or Path.cwd()) / "bench"


def bench_module(name: str):
    """Import bench/<name>.py (bench/ is a folder of scripts, not a package)."""
    from rtperformer.errors import UserError

    path = BENCH_DIR / f"{name}.py"
    if not path.is_file():
        raise UserError(f"benchmark script not found: {path} (the benchmarks run from a source checkout)")
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location(f"rtperformer_bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="which", metavar="BENCH", required=True)
    for name, text in (("throughput", "real-time factor per backend, model, chunk size"),
                       ("latency", "note-on -> sound on JACK, rtperformer vs FluidSynth")):
        sp = sub.add_parser(name, help=text, description=text)
        if (BENCH_DIR / f"{name}.py").is_file():
            bench_module(name).add_arguments(sp)
    sp = sub.add_parser("phase", help="phase reconstruction quality and cost (bench/phase.py)")
    sp.add_argument("--seconds", type=float, help="length of each test signal (bench/phase.py default)")
    sp.add_argument("--out", help="JSON path (default bench/results/phase.json)")
    sp.add_argument("--quick", action="store_true", help="short signals, realtime config only")
    sp = sub.add_parser("all", help="throughput, phase and latency in turn, then the tables")
    sp.add_argument("--quick", action="store_true", help="shorter runs (chunks 1 4 16, 1 repeat, 60 events)")
    sp.add_argument("--no-latency", action="store_true", help="skip the JACK latency benchmark")


def _defaults(name: str, argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    bench_module(name).add_arguments(ap)
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    which = args.which
    if which in ("throughput", "latency"):
        return int(bench_module(which).main(args) or 0)
    if which == "phase":
        argv = (["--seconds", str(args.seconds)] if args.seconds else []) + (["--out", args.out] if args.out else [])
        return int(bench_module("phase").main(argv + (["--quick"] if args.quick else [])) or 0)
    quick = ["--chunks", "1", "4", "16", "--repeats", "1", "--seconds", "1"] if args.quick else []
    rc = bench_module("throughput").main(_defaults("throughput", quick))
    phase_args = ["--quick"] if args.quick else []
    rc |= int(bench_module("phase").main(phase_args) or 0)
    if not args.no_latency:
        rc |= int(bench_module("latency").main(_defaults("latency", ["--events", "60"] if args.quick else [])) or 0)
    print(bench_module("report").markdown())
    return rc
