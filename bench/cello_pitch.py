"""Why low cello notes land an octave or a fifth off (issue 12, item 4): isolated notes through each stage.

For every MIDI pitch in ``--low``..``--high`` one isolated note (1.2 s, velocity 90, no vibrato) is
rendered by FluidSynth with the soundfont the cello model imitates (MuseScore General, program 42) and,
for comparison, FluidR3 (program 42). Each note is then pitch-tracked (rtperformer.learn.metrics.pitch_track,
the eval's own tracker) on the sustained part (100 ms after the onset to 100 ms before the release) as:

- ``fluidsynth``: the sampled note itself (is the sample in tune, does the tracker read it);
- ``oracle``: its true log1p-power frames (n_fft 1024) through the voice chain's audio stage (RTPGHI +
  streaming iSTFT) -- the representation and phase reconstruction without the model;
- ``model``: the shipped cello model's frames for the same pianoroll through the same audio stage;
- ``mean_oracle``: the true frames replaced, over the sustained part, by their time average (a stationary
  magnitude: what a model that predicts each bin's mean gives) through the same audio stage. With partials
  closer than the Hann window's main lobe (4 bins = 188 Hz at n_fft 1024) the true frames carry the
  partials' beating from frame to frame; a mean magnitude does not.

Each of oracle, mean_oracle and model goes through the audio stage twice: as the chain plays it now, with
the score-informed phase (RTPGHI takes the held notes; ``render.score_phase_below_bins``, 4 bins: C2..F#3
here), and as before it (``*_plain``: the setting at 0, the phase from the magnitude alone). For each also
the log-spectral distance (dB, floor -80 dB re the note's peak bin) and spectral convergence of the audio's
STFT against the note's true frames over the sustain (``*_lsd``): how close the sound is to the sample.

Per note also the sustained mean level (dB) of bins 0..8 for the target and the model (where f0 and the
low partials sit).

Also the cello corpus's note histogram (the training split's notes per pitch, from the rolls npz), when
the corpus is on this machine. Output: bench/results/cello_pitch.json and a printed table.

    .venv/bin/python bench/cello_pitch.py [--low 36 --high 64] [--corpus data/corpus]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rtperformer.learn.data.humanize import Performance, PNote  # noqa: E402
from rtperformer.learn.data.synth import FLUID_R3, Patch, Renderer, default_patch  # noqa: E402
from rtperformer.dsp.features import log_power  # noqa: E402
from rtperformer.learn.evaluate import model_frames, synthesize  # noqa: E402
from rtperformer.dsp.features import stft  # noqa: E402
from rtperformer.learn.metrics import cents_error, floor_power, lsd_frames, pitch_track, power_from_features, spectral_convergence  # noqa: E402
from rtperformer.roll.notes import notes_to_rolls  # noqa: E402
from rtperformer.roll.rolls import stack_inputs  # noqa: E402

NOTE_S, PAD_S = 1.2, 0.3
NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def name(p: int) -> str:
    return f"{NAMES[p % 12]}{p // 12 - 1}"


def summarise(audio: np.ndarray, sr: int, pitch: int) -> dict:
    """Median cents error, share within 50 c, and the most common octave/fifth class of the sustained part."""
    t = np.arange(PAD_S + 0.1, PAD_S + NOTE_S - 0.1, 0.01)
    f0 = pitch_track(audio, sr, t, 30.0, 2000.0)
    c = cents_error(f0, np.full(len(t), float(pitch)))
    ok = np.isfinite(c)
    if not ok.any():
        return {"voiced": 0.0, "median_cents": None, "within_50c": 0.0, "class": "unvoiced"}
    cv = c[ok]
    med = float(np.median(cv))
    steps = np.round(cv / 100.0)
    classes = {0: "in tune", 12: "octave up", -12: "octave down", 7: "fifth up", 19: "12th up", -5: "fourth down",
               -7: "fifth down", 24: "two octaves up"}
    common = int(np.bincount((steps + 48).astype(int).clip(0, 96)).argmax()) - 48
    return {"voiced": float(ok.mean()), "median_cents": round(med, 1),
            "within_50c": round(float(np.mean(np.abs(cv) <= 50.0)), 3),
            "class": classes.get(common, f"{common:+d} semitones")}


def closeness(audio: np.ndarray, feats: np.ndarray, cfg) -> dict:
    """LSD (dB, floor -80 dB re the peak) and SC of audio's STFT vs the true frames, over the sustain."""
    fr = cfg.audio.frame_rate
    mid = slice(int((PAD_S + 0.1) * fr), int((PAD_S + NOTE_S - 0.1) * fr))
    ref = power_from_features(feats, cfg.audio.power_scale)[:, mid]
    est = np.abs(stft(audio, cfg.audio)[:, mid]).astype(np.float64) ** 2
    return {"lsd_db": round(float(np.mean(lsd_frames(ref, est, floor_power(ref)))), 2),
            "sc": round(spectral_convergence(ref, est), 3)}


def corpus_histogram(corpus: Path) -> dict | None:
    man = corpus / "cello" / "manifest.json"
    if not man.is_file():
        return None
    pieces = json.loads(man.read_text())["pieces"]
    hist = np.zeros(128, np.int64)
    seconds = np.zeros(128)
    for p in pieces:
        f = corpus / "cello" / p["id"] / "expressive_rolls.npz"
        if p.get("split", "train") != "train" or not f.is_file():
            continue
        with np.load(f) as z:
            notes = z["notes"]
        for s, e, pitch, _v in notes:
            hist[int(pitch)] += 1
            seconds[int(pitch)] += e - s
    nz = np.flatnonzero(hist)
    return {"notes_per_pitch": {name(int(p)): int(hist[p]) for p in nz},
            "seconds_per_pitch": {name(int(p)): round(float(seconds[p]), 1) for p in nz},
            "lowest": name(int(nz[0])), "highest": name(int(nz[-1])), "notes": int(hist.sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--low", type=int, default=36)
    ap.add_argument("--high", type=int, default=64)
    ap.add_argument("--model", default="cello")
    ap.add_argument("--corpus", default=str(REPO / "data" / "corpus"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "cello_pitch.json"))
    a = ap.parse_args(argv)

    import torch

    from rtperformer.model.checkpoint import load_model

    torch.set_num_threads(1)
    model, cfg, _ = load_model(a.model)
    sr = cfg.audio.sample_rate
    patches = {"musescore": default_patch("cello"), "fluidr3": Patch(FLUID_R3, 42)}
    renderers = {k: Renderer(p, sr) for k, p in patches.items()}
    plain_cfg = dataclasses.replace(cfg, render=dataclasses.replace(cfg.render, score_phase_below_bins=0.0))
    rows = []

    def through(row, key, feats, truth, notes, n):
        """The audio stage with the score-informed phase (key) and without (key_plain)."""
        for suffix, c in (("", cfg), ("_plain", plain_cfg)):
            audio = synthesize(feats, c, n, notes=notes)[:n]
            row[key + suffix] = summarise(audio, sr, row["pitch"])
            row[key + suffix + "_lsd"] = closeness(audio, truth, c)

    for pitch in range(a.low, a.high + 1):
        perf = Performance([PNote(PAD_S, PAD_S + NOTE_S, pitch, 90)], [], PAD_S + NOTE_S)
        row = {"pitch": pitch, "name": name(pitch), "f0_hz": round(440.0 * 2 ** ((pitch - 69) / 12), 1)}
        for k, r in renderers.items():
            audio = r.render(perf, tail=0.5)
            feats = log_power(audio, cfg.audio)
            row[f"{k}_fluidsynth"] = summarise(audio, sr, pitch)
            rolls = notes_to_rolls(perf.notes, [], cfg.audio, n_frames=feats.shape[1])
            notes = rolls.roll[: cfg.model.n_pitches]
            through(row, f"{k}_oracle", feats, feats, notes, len(audio))
            if k == "musescore":
                y = model_frames(model, stack_inputs(rolls, cfg.model))
                through(row, "model", y, feats, notes, len(audio))
                # where the energy sits: the strongest bin of the sustained target and model frames
                mid = slice(int((PAD_S + 0.2) * cfg.audio.frame_rate), int((PAD_S + NOTE_S - 0.2) * cfg.audio.frame_rate))
                bin_hz = sr / cfg.audio.n_fft
                row["target_peak_hz"] = round(float(feats[:, mid].mean(1).argmax() * bin_hz), 1)
                row["model_peak_hz"] = round(float(y[:, mid].mean(1).argmax() * bin_hz), 1)
                flat = feats.copy()
                flat[:, mid] = feats[:, mid].mean(1, keepdims=True)
                through(row, "mean_oracle", flat, feats, notes, len(audio))
                to_db = lambda f: (10 * np.log10(np.expm1(f[:9, mid].astype(np.float64)).clip(1e-9).mean(1))).round(1).tolist()  # noqa: E731
                row["target_low_bins_db"] = to_db(feats)
                row["model_low_bins_db"] = to_db(y)
        rows.append(row)
        cells = [f"{row['name']:>4} {row['f0_hz']:6.1f} Hz"]
        for k in ("musescore_fluidsynth", "musescore_oracle", "mean_oracle", "model", "fluidr3_fluidsynth", "fluidr3_oracle"):
            for suffix in ("_plain", "") if k != "musescore_fluidsynth" and k != "fluidr3_fluidsynth" else ("",):
                s = row[k + suffix]
                lsd = row.get(k + suffix + "_lsd")
                cells.append(f"{k}{suffix}: {s['median_cents']} c {s['within_50c']:.2f} {s['class']}"
                             + (f" lsd {lsd['lsd_db']}" if lsd else ""))
        cells.append(f"peak target/model {row['target_peak_hz']}/{row['model_peak_hz']} Hz")
        cells.append(f"bins0-8 dB target {row['target_low_bins_db']} model {row['model_low_bins_db']}")
        print(" | ".join(cells), flush=True)
    out = {"model": a.model, "note_seconds": NOTE_S, "velocity": 90, "patches": {k: vars(p) for k, p in patches.items()},
           "score_phase_below_bins": cfg.render.score_phase_below_bins,
           "rows": rows, "corpus": corpus_histogram(Path(a.corpus))}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    if out["corpus"]:
        print("corpus:", json.dumps({k: v for k, v in out["corpus"].items() if k != "seconds_per_pitch"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
