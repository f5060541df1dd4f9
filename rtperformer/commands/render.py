"""``rtperformer render SCORE.mid -o OUT.wav``: render a MIDI file offline with PerformanceNet models.

Each part (track/channel) is arranged for one instrument, like an arranger would (render.assign_parts):
--map for its track or program, else --instrument, else its GM family (strings 40-47 and ensembles 48-51
to violin or cello by the part's register, pipes and reeds 64-79 to flute; a file with no string or wind
program maps every part by register); GM channel 10 is skipped unless mapped by track. Notes outside the
instrument's range are moved by octaves into it. The mapping is printed, one line per part. Each part is
rendered by its own model instance and the parts are mixed (unit gain each, then one gain that keeps the
peak at or below -1 dBFS). --model NAME|PATH renders every
part with that model; --model INSTRUMENT=NAME|PATH (repeatable) picks a model per instrument; otherwise
each instrument uses its default model (models/<instrument>/). --config replaces the checkpoint's config
(the model section must fit the weights; render settings come from it); --phase overrides render.phase.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from rtperformer.errors import UserError

HELP = "Render a MIDI file to a WAV with a PerformanceNet model."
PHASES = ("rtpghi", "rtisila", "gla")
MAX_MINUTES = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("score", metavar="SCORE.mid", help="Standard MIDI file to render")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="WAV to write (float32, the model's sample rate)")
    parser.add_argument("--instrument", metavar="violin|cello|flute",
                        help="render every part as this instrument (default: from each track's GM program 40/42/73)")
    parser.add_argument("--map", action="append", default=[], metavar="PROGRAM_OR_TRACK=INSTRUMENT",
                        help="who plays what: a GM program (48=cello), a track number (track3=flute) or a track "
                             "name ('Viola=cello') to violin|cello|flute|none (repeatable; overrides the GM families)")
    parser.add_argument("--model", action="append", default=[], metavar="[INSTRUMENT=]NAME|PATH",
                        help="model name in models/ or a checkpoint folder; INSTRUMENT=... for one instrument (repeatable)")
    parser.add_argument("--models-dir", metavar="DIR",
                        help="look for model names here first (then $RTPERFORMER_MODELS, the user data folder, the shipped models)")
    parser.add_argument("--config", metavar="YAML", help="config to use instead of the checkpoint's (must fit its weights)")
    parser.add_argument("--phase", metavar="rtpghi|rtisila|gla", help="phase reconstruction (default: the config's render.phase)")
    parser.add_argument("--png", metavar="SPEC.png", help="also write the input roll and output spectrogram as a PNG")
    parser.add_argument("--max-minutes", type=float, default=MAX_MINUTES, metavar="N",
                        help=f"refuse a score longer than N minutes (default {MAX_MINUTES:g}: a corrupt or hostile "
                             "file can declare years and would fill the disk)")


def _model_specs(values: list[str], instruments) -> tuple[str | None, dict[str, str]]:
    """--model values -> (model for every part or None, {instrument: model})."""
    common, per = None, {}
    for v in values:
        name, sep, rest = v.partition("=")
        if sep and name in instruments:
            if not rest:
                raise UserError(f"--model {v}: missing model name after '='")
            per[name] = rest
        elif sep and "/" not in name and not Path(v).exists():
            raise UserError(f"--model {v}: unknown instrument '{name}' (choose one of: {', '.join(instruments)})")
        else:
            if common is not None:
                raise UserError("--model without INSTRUMENT= given twice; use --model INSTRUMENT=NAME for each instrument")
            common = v
    return common, per


def _checkpoint_module():
    from rtperformer.model import checkpoint

    return checkpoint


def _load(spec: str, instrument: str, is_default: bool, cfg_override, models_dir=None):
    from rtperformer import paths

    ckpt = _checkpoint_module()
    if is_default and paths.find_model(spec, models_dir) is None:
        raise UserError(
            f"no trained {instrument} model '{spec}' (looked in {paths.describe_model_search(models_dir)}); "
            f"train one with `rtperformer train --config configs/realtime-{instrument}.yaml` or pass --model NAME|PATH"
        )
    model, cfg, _meta = ckpt.load_model(spec, cfg_override=cfg_override, models_dir=models_dir)
    model.eval()
    return model, cfg


def _length(seconds: float) -> str:
    if seconds >= 86400 * 365:
        return f"{seconds / (86400 * 365):.3g} years"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} hours"
    return f"{seconds / 60:.3g} minutes"


def _db(x: float) -> str:
    return f"{20 * math.log10(x):+.1f} dB" if x > 0 else "-inf dB"


def run(args: argparse.Namespace) -> int:
    from rtperformer.config import load_config
    from rtperformer.midi.score import read_midi
    from rtperformer.offline.render import INSTRUMENTS, assign_parts, render_score

    if args.instrument is not None and args.instrument not in INSTRUMENTS:
        raise UserError(f"unknown instrument '{args.instrument}' (choose one of: {', '.join(INSTRUMENTS)})")
    if args.phase is not None and args.phase not in PHASES:
        raise UserError(f"unknown phase method '{args.phase}' (choose one of: {', '.join(PHASES)})")
    common, per = _model_specs(args.model, INSTRUMENTS)
    out = Path(args.output)
    if not out.parent.is_dir():
        raise UserError(f"output folder does not exist: {out.parent}")
    if args.png and not Path(args.png).parent.is_dir():
        raise UserError(f"output folder does not exist: {Path(args.png).parent}")
    cfg_override = load_config(args.config) if args.config else None

    if not args.max_minutes > 0 or not math.isfinite(args.max_minutes):
        raise UserError(f"--max-minutes must be a positive number, got {args.max_minutes}")
    score = read_midi(args.score)
    if score.duration > args.max_minutes * 60:
        raise UserError(f"{args.score} lasts {_length(score.duration)}, longer than --max-minutes {args.max_minutes:g}; "
                        "nothing written (pass a larger --max-minutes to render it)")
    parts, skipped = assign_parts(score, args.instrument, args.map)

    from rtperformer.model.checkpoint import DEFAULT_MODELS

    loaded: dict[str, tuple] = {}
    models = {}
    for part in parts:
        spec = per.get(part.instrument) or common
        is_default = spec is None
        if is_default:
            spec = DEFAULT_MODELS[part.instrument]
        if spec not in loaded:
            loaded[spec] = _load(spec, part.instrument, is_default, cfg_override, args.models_dir)
        model, cfg = loaded[spec]
        render_cfg = (cfg_override or cfg).render
        if args.phase:
            render_cfg = dataclasses.replace(render_cfg, phase=args.phase)
        models[part.instrument] = (model, cfg.replace(render=render_cfg))
        moved = f", {part.transposed} moved by octaves into range" if part.transposed else ""
        print(f"{part.label} -> {part.instrument} ({part.reason}): {len(part.notes)} note{'s' if len(part.notes) != 1 else ''}{moved}; model {spec} "
              f"({cfg.model.form}, {cfg.audio.sample_rate} Hz, phase {render_cfg.phase})")
    for s in skipped:
        print(f"skipped {s}")

    summary = render_score(score, parts, models, out, args.png)
    mix = "+".join(summary.instruments)
    print(f"wrote {out}: {summary.seconds:.2f} s, {summary.sample_rate} Hz float32, {mix} "
          f"(parts at unit gain, gain {_db(summary.gain)}, peak {_db(summary.peak)} FS)")
    if args.png:
        print(f"wrote {args.png}")
    return 0
