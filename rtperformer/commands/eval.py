"""``rtperformer eval``: score a model and the plain FluidSynth render against the expressive target.

    rtperformer eval --model NAME [--split test] [--out out/eval-NAME.json] [--png out/eval-NAME.png]
    rtperformer eval --table out/eval-A.json out/eval-B.json     (compare reports; runs nothing)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtperformer import paths

HELP = "Evaluate a model on the test split."



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model name (models/NAME) or a model directory")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--out", default=None, help="JSON report (default: out/eval-NAME.json)")
    p.add_argument("--png", default=None, help="spectrogram figure (default: next to --out, .png)")
    p.add_argument("--corpus", default=None, help="corpus folder (default: the model config's data.corpus_dir)")
    p.add_argument("--max-seconds", type=float, default=0.0, help="crop each piece to this many seconds (0 = all)")
    p.add_argument("--pieces", type=int, default=0, help="evaluate at most this many pieces (0 = all)")
    p.add_argument("--no-pitch", action="store_true", help="skip pyin pitch tracking (the slow part)")
    p.add_argument("--noise", choices=("on", "off"), default=None,
                   help="texture noise (the model's noise.json) in the model's audio (default: the config's render.noise)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-bend", action="store_true",
                   help="do not warp the model's frames by the corpus's pitch bend (vibrato)")
    p.add_argument("--table", nargs="+", metavar="JSON", help="only print a markdown table comparing eval reports")


def run(args: argparse.Namespace) -> int:
    from rtperformer.errors import UserError
    from rtperformer.learn.evaluate import bend_lookup, evaluate, load_pieces, plot_spectrograms, write_json_atomic

    if args.table:
        import json

        from rtperformer.learn.evaluate import compare_table

        reports = []
        for path in args.table:
            try:
                reports.append((Path(path).stem.removeprefix("eval-"), json.loads(Path(path).read_text())))
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read eval report {path}: {exc}") from None
        print(compare_table(reports))
        return 0
    if not args.model:
        raise UserError("--model is required (or --table to compare reports)")
    if args.max_seconds < 0 or args.pieces < 0:
        raise UserError("--max-seconds and --pieces must be >= 0")
    from rtperformer.model.checkpoint import load_model

    model, cfg, meta = load_model(args.model, device=args.device)
    model.eval()
    if args.noise is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, render=dataclasses.replace(cfg.render, noise=args.noise == "on"))
    name = Path(args.model).name
    out = Path(args.out) if args.out else paths.output_dir() / f"eval-{name}.json"
    png = Path(args.png) if args.png else out.with_suffix(".png")
    pieces, baselines = load_pieces(cfg, args.split, args.corpus)
    report, first = evaluate(model, cfg, pieces, baselines, max_seconds=args.max_seconds,
                             max_pieces=args.pieces, pitch=not args.no_pitch, device=args.device, progress=True,
                             bends=None if args.no_bend else bend_lookup(cfg, args.corpus))
    report = {"model": name, "split": args.split, "instrument": cfg.data.instrument,
              "step": (meta or {}).get("step"), **report}
    write_json_atomic(out, report)
    if first is not None:
        plot_spectrograms(first, cfg, png, title=f"{name}: {first.piece_id}")
    from rtperformer.learn.evaluate import compare_table

    print(compare_table([(name, report)]))
    print(f"wrote {out} and {png}")
    return 0
