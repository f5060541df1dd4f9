"""The texture study of issue 12 (item 2): fit each model's noise table, then measure what it changes.

    .venv/bin/python bench/noise.py --fit --low-hz 300 --corpus data/corpus    # models/<inst>/noise.json
    .venv/bin/python bench/noise.py --eval --corpus data/corpus                # the card's eval, noise off / on
    .venv/bin/python bench/noise.py --png --cost                               # held notes; cost per hop
    .venv/bin/python bench/noise.py                                            # only the table, from disk

- ``--fit`` (train split, ``--pieces`` pieces spread over it, the first ``--seconds`` of each): the model's
  frames for the target's rolls, its audio through the voice chain's offline audio stage (noise off), and
  both analysed again. Per band of the table (:data:`EDGES_HZ`) and note frame: the target's floor (median
  of the band's bins, dB), the model audio's floor, and the model's mean predicted power in the band (what
  the live stage scales the noise by), over the sustained monophonic frames (those the card's sharpness
  reads). Start: gain = median over frames of (target floor - model floor) in power, relative to that
  mean; then ``--rounds`` rounds of: render with the table, measure the floor of the audio again, move
  each band's gain by the median dB gap to the target's floor (bands whose noise would stay 30 dB under the
  model's own floor are left at -100 dB); last, one offset for all bands that brings the card's sharpness
  of the model's audio to the target's on the fit pieces. Writes models/<inst>/noise.json (the fit's
  numbers in its "fit" section).
- ``--eval``: ``rtperformer eval --model <inst> --max-seconds 30 --pieces 6`` (as the model card) with
  ``render.noise`` off and on; sharpness, LSD (model frames and audio), level, pitch, onsets.
- ``--png``: one held note per instrument (mid register, 1.5 s, velocity 90): the model, the model with the
  noise, the target note's own frames through the same audio stage ("oracle"), the target soundfont's note
  through FluidSynth (FluidR3 / MuseScore General; and FluidR3 where the target is another soundfont),
  spectrograms side by side, and the sustained frames' mean spectrum, sharpness and level of each.

The shipped tables: violin and flute (``--low-hz 300``); the cello's fit is kept only as
bench/results/noise/fit-cello.json (with the score-informed phase its noise made the audio's LSD worse;
models/README.md, "Texture").

- ``--cost``: the live audio stage (1-frame pushes, trim 2) with the noise off and on, ms per push.

Results: bench/results/noise/ (fit-<inst>.json, summary.json (the evals), held-<inst>.png and held.json,
step_cost.json); the eval reports in out/noise/.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from common import write_json  # noqa: E402

RESULTS = REPO / "bench" / "results" / "noise"
INSTRUMENTS = ("violin", "cello", "flute")
# third-octave-like bands; the lowest ones hold 3-4 bins at 48 kHz / 1024 (46.9 Hz apart)
EDGES_HZ = (0.0, 150.0, 300.0, 450.0, 600.0, 800.0, 1000.0, 1250.0, 1600.0, 2000.0, 2500.0, 3150.0, 4000.0,
            5000.0, 6300.0, 8000.0, 10000.0, 12500.0, 16000.0, 20000.0, 24000.0)
MIN_DB = -100.0
GAIN_MAX = 10.0


def band_stats(power: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """power (n_bins, T) -> (median dB (B, T), mean power (B, T)) per band."""
    db = 10.0 * np.log10(np.maximum(power, 1e-20))
    edges = list(starts) + [power.shape[0]]
    med = np.stack([np.median(db[a:b], axis=0) for a, b in zip(edges[:-1], edges[1:])])
    mean = np.stack([power[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])])
    return med, mean


def fit_pieces(inst: str, corpus: str, n_pieces: int, seconds: float):
    """(model, cfg, [(x, target power, model power)]) for ``n_pieces`` train pieces spread over the split."""
    from rtperformer.learn.data import dataset as ds
    from rtperformer.learn.evaluate import model_frames
    from rtperformer.learn.metrics import power_from_features
    from rtperformer.model.checkpoint import load_model

    model, cfg, _ = load_model(inst)
    rate = int(ds.load_manifest(corpus, inst)["sample_rate"])
    items = [p for p in ds.split_pieces(corpus, inst, "train", cfg) if "expressive" in p.get("kinds", [])]
    step = max(1, len(items) // max(1, n_pieces))
    T = int(seconds * cfg.audio.frame_rate)
    out = []
    for p in items[::step][:n_pieces]:
        pid = p["id"]
        enc, y, _ = ds.piece_cache(Path(corpus) / inst / pid, "expressive", cfg, rate)
        pos = ds.position_cache(Path(corpus) / inst / pid, "expressive", cfg, rate, enc) if ds.needs_positions(cfg) else None
        bend = ds.piece_bend(corpus, inst, pid, cfg)  # the render's vibrato (None: a corpus without bend rows)
        if bend is None:
            bend = np.zeros(np.asarray(y).shape[1], np.float32)
        x = ds.decode_inputs(np.asarray(enc), cfg.model, pos, bend)
        x, y = np.asarray(x, np.float32)[:, :T], np.asarray(y, np.float32)[:, :T]
        mf = model_frames(model, x)
        if getattr(cfg.model, "bend_warp", True):  # as the voice chain plays it: the frames bent by the vibrato
            from rtperformer.voice.audio_stage import warp_features

            mf = warp_features(mf, bend[: mf.shape[1]], cfg.audio.power_scale)
        out.append((pid, x, power_from_features(y, cfg.audio.power_scale),
                    power_from_features(mf, cfg.audio.power_scale), mf))
    return model, cfg, out


def audio_stats(feats_list, cfg, table, starts, sharp_masks):
    """Each piece's model audio through the offline stage (``table`` noise, or none): its band floors (dB,
    (B, T) per piece) and the card's sharpness (peak - median dB in 50-8000 Hz) on ``sharp_masks``' frames."""
    from rtperformer.learn import metrics
    from rtperformer.dsp import log_power
    from rtperformer.learn.evaluate import synthesize

    rc = dataclasses.replace(cfg.render, noise=table is not None)
    c = dataclasses.replace(cfg, render=rc)
    floors, sharp = [], []
    for (mf, x), (mask, floor) in zip(feats_list, sharp_masks):
        audio = synthesize(mf, c, length=(mf.shape[1] - 1) * cfg.audio.hop, notes=x[: cfg.model.n_pitches], noise=table)
        p = metrics.power_from_features(log_power(audio, cfg.audio)[:, : mf.shape[1]], cfg.audio.power_scale)
        floors.append(band_stats(p, starts)[0])
        sharp.append(metrics.sharpness_frames(p, floor, sharp_bins(cfg))[mask[: p.shape[1]]])
    return floors, float(np.mean(np.concatenate(sharp)))


def sharp_bins(cfg) -> slice:
    from rtperformer.learn import metrics

    a = cfg.audio
    f = np.arange(a.n_bins) * a.sample_rate / a.n_fft
    band = np.nonzero((f >= metrics.SHARPNESS_BAND_HZ[0]) & (f <= metrics.SHARPNESS_BAND_HZ[1]))[0]
    return slice(int(band[0]), int(band[-1]) + 1)


def fit(inst: str, corpus: str, n_pieces: int, seconds: float, rounds: int, low_hz: float = 0.0) -> dict:
    """Per-band gains from the floors of the sustained monophonic frames (those the card's sharpness
    reads), then one offset for all bands that brings the sharpness of the model's audio to the target's,
    both on the fit pieces (train split)."""
    import json

    from rtperformer.learn import metrics
    from rtperformer.atomic import atomic_write
    from rtperformer.dsp.noise import NoiseTable
    from rtperformer.model.checkpoint import resolve_model_dir

    t0 = time.time()
    model, cfg, pieces = fit_pieces(inst, corpus, n_pieces, seconds)
    a = cfg.audio
    base = NoiseTable(inst, a.sample_rate, a.n_fft, a.hop, EDGES_HZ, tuple([MIN_DB] * (len(EDGES_HZ) - 1)))
    starts = base.band_starts()
    masks, t_floor, m_mean, sharp_masks, t_sharp = [], [], [], [], []
    for pid, x, tp, mp, _mf in pieces:
        reg = metrics.note_regions(x, a.n_fft, a.hop, a.frame_rate)
        masks.append(reg.mono_sustain)
        floor = metrics.floor_power(tp)
        sharp_masks.append((reg.mono_sustain, floor))
        t_sharp.append(metrics.sharpness_frames(tp, floor, sharp_bins(cfg))[reg.mono_sustain])
        t_floor.append(band_stats(tp, starts)[0])
        m_mean.append(band_stats(mp, starts)[1])
    target_sharp = float(np.mean(np.concatenate(t_sharp)))
    feats = [(p[4], p[1]) for p in pieces]
    a_floors, model_sharp = audio_stats(feats, cfg, None, starts, sharp_masks)
    cat = lambda arrs: np.concatenate([v[:, m[: v.shape[1]]] for v, m in zip(arrs, masks)], axis=1)  # noqa: E731
    TF, AF, MM = cat(t_floor), cat(a_floors), cat(m_mean)
    mm_db = 10 * np.log10(np.maximum(MM, 1e-20))
    need = np.maximum(10 ** (TF / 10) - 10 ** (AF / 10), 0.0) / np.maximum(MM, 1e-20)
    gain = np.clip(10 * np.log10(np.maximum(np.median(need, axis=1), 1e-12)), MIN_DB, 0.0)
    low = np.asarray(EDGES_HZ[1:]) <= low_hz  # bands left without noise (see --low-hz)
    gain[low] = MIN_DB
    history = [{"round": 0, "gain_db": gain.round(2).tolist(), "gap_db": np.median(TF - AF, axis=1).round(2).tolist(),
                "sharpness_db": round(model_sharp, 2)}]
    for r in range(1, rounds + 1):
        floors, sharp = audio_stats(feats, cfg, dataclasses.replace(base, gain_db=tuple(gain)), starts, sharp_masks)
        gap = np.median(TF - cat(floors), axis=1)
        # a band whose noise sits far under the model's own floor cannot move it: leave it off
        audible = np.median(gain[:, None] + mm_db - AF, axis=1) > -30.0
        gain = np.where((audible | (gap > 0)) & ~low, np.clip(gain + gap, MIN_DB, 0.0), MIN_DB)
        history.append({"round": r, "gap_db": gap.round(2).tolist(), "gain_db": gain.round(2).tolist(),
                        "sharpness_db": round(sharp, 2)})
        print(f"{inst} round {r}: floor gap median |{np.median(np.abs(gap)):.2f}| dB, sharpness {sharp:.2f} "
              f"(target {target_sharp:.2f})", flush=True)
    # one offset for all bands: the sharpness of the model's audio to the target's (secant steps)
    on = gain > MIN_DB
    pts = []
    off = 0.0
    for _ in range(4):
        g = np.where(on, np.clip(gain + off, MIN_DB, GAIN_MAX), MIN_DB)
        floors, sharp = audio_stats(feats, cfg, dataclasses.replace(base, gain_db=tuple(g)), starts, sharp_masks)
        pts.append((off, sharp))
        print(f"{inst} offset {off:+.2f} dB: sharpness {sharp:.2f} (target {target_sharp:.2f})", flush=True)
        if abs(sharp - target_sharp) < 0.1:
            break
        if len(pts) == 1:
            off = off + (sharp - target_sharp) * 1.0  # more noise lowers the sharpness about dB for dB
        else:
            (o1, s1), (o2, s2) = pts[-2], pts[-1]
            slope = (s2 - s1) / (o2 - o1) if o2 != o1 and s2 != s1 else -1.0
            off = float(np.clip(o2 + (target_sharp - s2) / slope, -30.0, 30.0))
    off, sharp = min(pts, key=lambda p: abs(p[1] - target_sharp))
    gain = np.where(on, np.clip(gain + off, MIN_DB, GAIN_MAX), MIN_DB)
    table = dataclasses.replace(base, gain_db=tuple(float(v) for v in gain))
    floors, sharp = audio_stats(feats, cfg, table, starts, sharp_masks)
    fitinfo = {
        "method": "bench/noise.py --fit: per band, the noise power at the band's centre relative to the band's "
                  "mean predicted power that brings the band's median bin (dB) of the model's audio to the "
                  "target's (median over the sustained monophonic frames of the fit pieces), then one offset for "
                  "all bands that brings the card's sharpness of the model's audio to the target's on those pieces",
        "corpus_split": "train", "pieces": [p[0] for p in pieces], "seconds_per_piece": seconds,
        "frames": int(TF.shape[1]), "rounds": rounds, "offset_db": round(off, 2), "low_hz": low_hz,
        "sharpness_db": {"target": round(target_sharp, 2), "model": round(model_sharp, 2),
                         "model_with_noise": round(sharp, 2)},
        "target_floor_minus_model_floor_db": np.median(TF - AF, axis=1).round(2).tolist(),
        "target_floor_minus_model_with_noise_db": np.median(TF - cat(floors), axis=1).round(2).tolist(),
        "model_floor_re_band_mean_db": np.median(AF - mm_db, axis=1).round(2).tolist(),
        "history": history, "offsets": [[round(o, 2), round(s_, 2)] for o, s_ in pts],
        "seconds": round(time.time() - t0, 1),
    }
    d = resolve_model_dir(inst)
    import hashlib

    fitinfo["model_sha256"] = hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()  # the weights fitted
    data = table.to_dict(fitinfo)
    atomic_write(d / "noise.json", lambda p: Path(p).write_text(json.dumps(data, indent=1) + "\n"))
    write_json(data, RESULTS / f"fit-{inst}.json")
    print(f"{inst}: wrote {d / 'noise.json'} ({time.time() - t0:.0f} s)", flush=True)
    return data


HELD = {"violin": (69, 40), "cello": (50, 42), "flute": (81, 73)}  # pitch, GM program
HELD_S, PAD_S = 1.5, 0.2


def held_notes(instruments) -> dict:
    """One held note per instrument: spectrogram PNG (model, model + noise, the target's own frames through
    the same audio stage ("oracle"), the target soundfont, FluidR3 where it differs) and the sustained
    frames' mean spectrum, sharpness and level of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtperformer.learn import metrics
    from rtperformer.learn.data.humanize import Performance, PNote
    from rtperformer.learn.data.synth import FLUID_R3, Patch, Renderer, default_patch
    from rtperformer.dsp.features import log_power
    from rtperformer.learn.evaluate import model_frames, synthesize
    from rtperformer.model.checkpoint import load_model
    from rtperformer.roll.notes import notes_to_rolls
    from rtperformer.roll.rolls import stack_inputs
    from common import save_png

    out = {}
    for inst in instruments:
        model, cfg, _ = load_model(inst)
        a = cfg.audio
        sr = a.sample_rate
        pitch, program = HELD[inst]
        perf = Performance([PNote(PAD_S, PAD_S + HELD_S, pitch, 90)], [], PAD_S + HELD_S)
        target_patch = default_patch(inst)
        audio = {"target (" + Path(target_patch.soundfont).stem + ")": Renderer(target_patch, sr).render(perf, tail=0.3)}
        n = len(next(iter(audio.values())))
        if Path(target_patch.soundfont).name != Path(FLUID_R3).name:
            audio["FluidSynth (FluidR3)"] = Renderer(Patch(FLUID_R3, program), sr).render(perf, tail=0.3)[:n]
        feats = log_power(next(iter(audio.values())), a)
        rolls = notes_to_rolls(perf.notes, [], a, n_frames=feats.shape[1])
        y = model_frames(model, stack_inputs(rolls, cfg.model))
        on = dataclasses.replace(cfg, render=dataclasses.replace(cfg.render, noise=True))
        notes = stack_inputs(rolls, cfg.model)[: cfg.model.n_pitches]
        audio = {"model": synthesize(y, cfg, n, notes=notes),
                 "model + noise": synthesize(y, on, n, notes=notes, noise=model.noise_table),
                 "oracle (target frames, audio stage)": synthesize(feats, cfg, n, notes=notes), **audio}
        fr = a.frame_rate
        sus = slice(int((PAD_S + 0.3) * fr), int((PAD_S + HELD_S - 0.1) * fr))
        f = np.arange(a.n_bins) * sr / a.n_fft
        kmax = int(8000 * a.n_fft / sr) + 1
        powers = {k: metrics.power_from_features(log_power(v, a), a.power_scale) for k, v in audio.items()}
        peak = max(float(p[:, sus].max()) for p in powers.values())
        floor = peak * 10 ** (metrics.NOISE_FLOOR_DB / 10)
        res = {}
        fig, axes = plt.subplots(1, len(audio) + 1, figsize=(3.6 * (len(audio) + 1), 4.2),
                                 gridspec_kw={"width_ratios": [1] * len(audio) + [1.6]})
        for ax, (k, p) in zip(axes, powers.items()):
            db = 10 * np.log10(np.maximum(p[:kmax] / peak, 1e-8))
            ax.imshow(db, origin="lower", aspect="auto", vmin=-80, vmax=0, cmap="magma",
                      extent=(0, p.shape[1] / fr, 0, kmax * sr / a.n_fft))
            sharp = float(np.mean(metrics.sharpness_frames(p, floor, sharp_bins(cfg))[sus]))
            res[k] = {"sharpness_db": round(sharp, 2),
                      "level_db_re_model": round(10 * np.log10(p[:, sus].sum() / powers["model"][:, sus].sum()), 2)}
            ax.set_title(f"{k}\nsharpness {sharp:.1f} dB", fontsize=9)
            ax.set_xlabel("s")
        axes[0].set_ylabel("Hz")
        ax = axes[-1]
        for k, p in powers.items():
            m = 10 * np.log10(np.maximum(p[:kmax, sus].mean(axis=1) / peak, 1e-10))
            ax.plot(f[:kmax], m, lw=1, label=k)
        ax.set_ylim(-90, 5)
        ax.set_xlabel("Hz")
        ax.set_ylabel("dB re peak (mean of the held frames)")
        ax.legend(fontsize=8)
        fig.suptitle(f"{inst}: held note {pitch} (velocity 90, {HELD_S} s)", fontsize=10)
        fig.tight_layout()
        save_png(fig, RESULTS / f"held-{inst}.png")
        plt.close(fig)
        out[inst] = {"pitch": pitch, "systems": res}
        print(inst, res, flush=True)
    write_json(out, RESULTS / "held.json")
    return out


def step_cost(rounds: int = 5, steps: int = 2000) -> dict:
    """The live audio stage's cost per 1-frame push (violin's config, trim 2 as serve), noise off / on:
    median over ``rounds`` interleaved rounds of ``steps`` pushes each."""
    from rtperformer.voice.audio_stage import AudioStage
    from rtperformer.model.checkpoint import load_model

    model, cfg, _ = load_model("violin")
    a = cfg.audio
    rng = np.random.default_rng(0)
    feats = (rng.random((a.n_bins, 64)) * 4).astype(np.float32)
    stages = {"off": AudioStage(a, cfg.render, trim_hops=2),
              "on": AudioStage(a, cfg.render, trim_hops=2, noise=model.noise_table)}
    times = {k: [] for k in stages}
    for _ in range(rounds):
        for k, st in stages.items():
            for i in range(64):
                st.push(feats[:, i : i + 1])
            t0 = time.perf_counter()
            for i in range(steps):
                st.push(feats[:, i % 64 : i % 64 + 1])
            times[k].append((time.perf_counter() - t0) / steps * 1e3)
    out = {k: round(float(np.median(v)), 4) for k, v in times.items()}
    out["added_ms"] = round(out["on"] - out["off"], 4)
    out["hop_ms"] = round(a.hop / a.sample_rate * 1e3, 3)
    write_json({"ms_per_1_frame_push": out, "rounds": rounds, "steps": steps}, RESULTS / "step_cost.json")
    print("audio stage ms per 1-frame push:", out, flush=True)
    return out


def eval_table(instruments) -> str:
    """Markdown: the card's eval with the noise off and on, from out/noise/eval-<inst>-{off,on}.json."""
    import json

    rows = ["| instrument | noise | LSD dB (attack / sustain) | LSD audio dB | level dB | sharpness dB (target) | "
            "pitch frames <50c / notes <50c | median cents | onset ms |", "|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for inst in instruments:
        for nz in ("off", "on"):
            p = REPO / "out" / "noise" / f"eval-{inst}-{nz}.json"
            if not p.is_file():
                continue
            rep = json.loads(p.read_text())
            m, t = rep["summary"]["model"], rep["summary"]["target"]
            summary.setdefault(inst, {})[nz] = {"model": m, "target": t}
            pit = m.get("pitch", {})
            rows.append(f"| {inst} | {nz} | {m['lsd_db']:.2f} ({m['lsd_attack_db']:.2f} / {m['lsd_sustain_db']:.2f}) | "
                        f"{m['lsd_audio_db']:.2f} | {m['level_db']:+.2f} | {m['sharpness_db']:.1f} ({t['sharpness_db']:.1f}) | "
                        f"{pit.get('within_50c', float('nan')):.3f} / {pit.get('notes_within_50c', float('nan')):.3f} | "
                        f"{pit.get('median_abs_cents', float('nan')):.2f} | {m['onset']['median_abs_ms']:.1f} |")
    write_json(summary, RESULTS / "summary.json")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fit", action="store_true")
    p.add_argument("--eval", action="store_true")
    p.add_argument("--png", action="store_true")
    p.add_argument("--cost", action="store_true", help="the audio stage's cost per 1-frame push, noise off / on")
    p.add_argument("--instruments", nargs="+", default=list(INSTRUMENTS))
    p.add_argument("--corpus", default=str(REPO / "data" / "corpus"))
    p.add_argument("--pieces", type=int, default=12)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--low-hz", type=float, default=0.0,
                   help="no noise in bands below this (their upper edge at or under it)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.fit:
        for inst in args.instruments:
            fit(inst, args.corpus, args.pieces, args.seconds, args.rounds, args.low_hz)
    if args.eval:
        import subprocess

        for inst in args.instruments:
            for nz in ("off", "on"):
                subprocess.run([sys.executable, "-m", "rtperformer", "eval", "--model", inst, "--max-seconds", "30",
                                "--pieces", "6", "--corpus", args.corpus, "--noise", nz,
                                "--out", str(REPO / "out" / "noise" / f"eval-{inst}-{nz}.json")], check=True)
    if args.png:
        held_notes(args.instruments)
    if args.cost:
        step_cost()
    print(eval_table(args.instruments))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
