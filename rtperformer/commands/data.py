"""``rtperformer data build|bends|musicnet``: build the synthetic training corpus, add the pitch-bend rows
to a corpus built before they existed, or import MusicNet.

    rtperformer data build [--instrument violin|cello|flute|all] [--out data/corpus] [--minutes N]
    rtperformer data bends [--instrument ...] [--out data/corpus]   (no audio rendered; rtperformer/learn/data/bends.py)
    rtperformer data musicnet --source PATH (tree or musicnet.npz) [--instrument ...] [--out data/musicnet]
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rtperformer.errors import UserError

HELP = "Build the training corpus (rtperformer data build) or import MusicNet (data musicnet)."


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="render the music21 corpus with FluidSynth (expressive/flat/deadpan)")
    b.add_argument("--instrument", default="all", choices=["violin", "cello", "flute", "all"])
    b.add_argument("--out", default="data/corpus", help="corpus folder (default data/corpus)")
    b.add_argument("--cache", default="data/cache", help="parsed-score cache folder (default data/cache)")
    b.add_argument("--minutes", type=float, default=None,
                   help="minutes of score per instrument (default 70; less for a quick corpus)")
    b.add_argument("--sources", default="quartet,chorale,folk",
                   help="comma list of quartet, chorale, folk (default all three)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="render processes")
    b.add_argument("--config", default=None, help="config whose audio.sample_rate and audio.hop to use")
    b.add_argument("--splits", default=None, help="folder of <instrument>.yaml split files (default configs/splits)")
    b.add_argument("--write-splits", action="store_true",
                   help="add the built pieces to the split files (existing entries keep their split)")
    bd = sub.add_parser("bends", help="write each render's pitch-bend row (its vibrato) from the piece's seed, "
                        "checked against the stored notes; no audio is rendered")
    bd.add_argument("--instrument", default="all", choices=["violin", "cello", "flute", "all"])
    bd.add_argument("--out", default="data/corpus", help="corpus folder (default data/corpus)")
    bd.add_argument("--cache", default="data/cache", help="parsed-score cache folder (default data/cache)")
    m = sub.add_parser("musicnet", help="convert MusicNet solo recordings into the corpus layout")
    m.add_argument("--source", default=None, help="MusicNet tree (train_data/...) or musicnet.npz "
                   "(default: data.musicnet of --config)")
    m.add_argument("--instrument", default="all", choices=["violin", "cello", "flute", "all"])
    m.add_argument("--out", default="data/musicnet")
    m.add_argument("--ids", default=None, help="comma list of recording ids (default: the paper's solo ids)")
    m.add_argument("--config", default=None)


def _config(name):
    from rtperformer.config import Config, load_config

    return load_config(name) if name else Config()


def run(args) -> int:
    if args.action == "build":
        return _build(args)
    if args.action == "bends":
        return _bends(args)
    return _musicnet(args)


def _bends(args) -> int:
    from rtperformer.learn.data.corpus import regenerate_bends
    from rtperformer.learn.data.corpus import INSTRUMENTS

    instruments = list(INSTRUMENTS) if args.instrument == "all" else [args.instrument]
    for inst in instruments:
        regenerate_bends(inst, args.out, args.cache)
    return 0


def _build(args) -> int:
    from rtperformer.learn.data.corpus import DEFAULT_MINUTES, INSTRUMENTS, BuildSettings, build

    cfg = _config(args.config)
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    bad = set(sources) - {"quartet", "chorale", "folk"}
    if bad or not sources:
        raise UserError(f"--sources takes quartet, chorale, folk; got {args.sources!r}")
    minutes = DEFAULT_MINUTES if args.minutes is None else args.minutes
    if not minutes > 0:
        raise UserError("--minutes must be positive")
    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    st = BuildSettings(out=Path(args.out), cache_dir=Path(args.cache), sample_rate=cfg.audio.sample_rate,
                       hop=cfg.audio.hop, seed=args.seed, minutes=minutes, sources=sources, jobs=args.jobs,
                       split_dir=Path(args.splits) if args.splits else None)
    instruments = list(INSTRUMENTS) if args.instrument == "all" else [args.instrument]
    t0 = time.time()
    manifests = build(instruments, st, write_split_files=args.write_splits)
    for man in manifests:
        print(f"{man['instrument']}: {len(man['pieces'])} pieces; "
              + ", ".join(f"{k} {v:.1f} min" for k, v in man["minutes"].items())
              + "; expressive by split " + ", ".join(f"{k} {v:.1f}" for k, v in man["expressive_minutes_by_split"].items()))
    print(f"corpus in {args.out} built in {time.time() - t0:.0f} s")
    return 0


def _musicnet(args) -> int:
    from rtperformer.learn.data.musicnet import PAPER_IDS, import_musicnet

    cfg = _config(args.config)
    source = args.source or cfg.data.musicnet
    if not source:
        raise UserError("give --source (a MusicNet tree or musicnet.npz) or set data.musicnet in --config")
    instruments = list(PAPER_IDS) if args.instrument == "all" else [args.instrument]
    ids = [int(x) for x in args.ids.split(",")] if args.ids else None
    for inst in instruments:
        man = import_musicnet(source, inst, args.out, hop=cfg.audio.hop, ids=ids)
        print(f"{inst}: {len(man['pieces'])} recordings, {man['minutes']['expressive']:.1f} min -> {args.out}/{inst}")
    return 0
