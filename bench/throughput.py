"""Throughput: real-time factor per backend x model x chunk size, for 1 and 3 instruments at once.

For each model source (shipped model or streaming config), each CPU/GPU backend available here and each
chunk size (frames per step; the server's ``serve.step_frames``):

- ``model``: median time of one ``backend.step`` / audio time of the chunk (RTF of the model alone);
- ``engine_1`` / ``engine_3``: the engine's per-hop cost with 1 or 3 instruments playing at once
  (rtperformer.live.engine: pianoroll + model step + magnitude + RTPGHI + streaming iSTFT + mix per voice):
  median over repeated runs of (render time / audio time); plus the p99 and max of single steps and the
  underruns a server ring would have had with these step times (a replay of the measured times against a
  real-time consumer; the ring holds the next period plus ``serve.lead_samples``, or one step of audio plus a block
  for chunks longer than that: ``ring_ms``, which adds to the latency);
- ``engine_3_threads`` (ONNX): the 3 instruments stepped concurrently (``serve.voice_threads`` 3);
- ``first_call_s``: building the backend (export / trace) and the first step.

Every RTF is given twice: ``rtf`` from wall time, ``cpu_rtf`` from this process's CPU time
(``time.process_time``, all its threads), which a shared, loaded machine disturbs much less.

Also per model: the phase stage's cost per frame (RTPGHI, RTISI-LA, streaming iSTFT) and the offline render
speed (rtperformer.offline.render on the shipped demo trio, eager torch, times real time).

Run: ``rtperformer bench throughput [--config NAME_OR_MODEL ...] [--backend NAME ...] [--chunks 1 2 4 8 16]``.
Writes bench/results/throughput.json and throughput.png. Numbers depend on the machine and its load
(recorded in the JSON); nothing here is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, default_sources, load_source, machine, param_count, save_png, write_json  # noqa: E402

from rtperformer.midi.score import INSTRUMENTS  # noqa: E402

CHUNKS = (1, 2, 4, 8, 16)
CHORDS = {"violin": (67, 71, 74), "cello": (48, 55), "flute": (79,)}


def _percentile(xs, q) -> float:
    return float(np.percentile(np.asarray(xs, np.float64), q)) if len(xs) else float("nan")


# -- model step alone ----------------------------------------------------------------------------------

def bench_step(backend, chunk: int, hop: int, rate: int, steps: int, repeats: int) -> dict:
    """RTF of ``backend.step`` alone: median over ``repeats`` runs of ``steps`` chained steps."""
    rng = np.random.default_rng(0)
    x = (rng.random((1, backend.in_channels, chunk)) < 0.03).astype(np.float32)
    audio_s = chunk * hop / rate
    runs, cpu_runs, singles = [], [], []
    state = backend.init_state()
    for _ in range(repeats):
        t_run, c_run = time.perf_counter(), time.process_time()
        for _ in range(steps):
            t0 = time.perf_counter()
            _, state = backend.step(x, state)
            singles.append(time.perf_counter() - t0)
        runs.append((time.perf_counter() - t_run) / (steps * audio_s))
        cpu_runs.append((time.process_time() - c_run) / (steps * audio_s))
    return {"rtf": statistics.median(runs), "cpu_rtf": statistics.median(cpu_runs),
            "step_ms_median": 1e3 * statistics.median(singles), "step_ms_p99": 1e3 * _percentile(singles, 99)}


# -- the engine's per-hop cost ---------------------------------------------------------------------------

def simulate_underruns(step_s: list[float], step_samples: int, rate: int, block: int, target_blocks: int) -> int:
    """Underruns a server ring would have had: the render thread renders whenever the ring holds less than
    ``target_blocks`` blocks (so a step starts with at most target-1 blocks queued), the callback consumes
    in real time; each measured step time drains the ring while it renders."""
    target = target_blocks * block
    fill = float(target)
    underruns = 0
    for d in step_s:
        if fill >= target:  # wait for the callback to take a block
            fill = float(target - block) + (fill - target) % block
        fill -= d * rate
        if fill < 0:
            underruns += 1
            fill = 0.0
        fill += step_samples
    return underruns


def ring_blocks_for(chunk: int, hop: int, block: int, lead_samples: int) -> int:
    """Blocks a server keeps queued to run ``chunk``-frame steps: the next period plus
    ``serve.lead_samples`` (rtperformer/audio/pacing.py), or one step of audio plus one block when a step is
    longer than that. The extra blocks are extra output latency, reported as ``ring_ms``."""
    return max(1 + -(-lead_samples // block), -(-chunk * hop // block) + 1)


def _engine_events(cfg, n_inst: int, n_frames: int) -> list[tuple[int, bytes]]:
    """Held chords on channels 0..n_inst-1, re-struck every 48 frames (so onsets keep coming)."""
    hop = cfg.audio.hop
    events = []
    for ch in range(n_inst):
        chord = CHORDS[INSTRUMENTS[ch]]
        for f0 in range(0, n_frames, 48):
            for p in chord:
                events.append((f0 * hop, bytes([0x90 | ch, p, 90])))
                events.append(((f0 + 46) * hop, bytes([0x80 | ch, p, 0])))
    return events


def bench_engine(model, cfg, backend: str, chunk: int, n_inst: int, seconds: float, repeats: int,
                 model_dir=None, voice_threads: int = 1) -> dict:
    """RTF of rtperformer.live.engine.Engine.render_step with ``n_inst`` instruments sounding at once, stepped
    one after another (``voice_threads`` 1) or concurrently (``serve.voice_threads``)."""
    from rtperformer.live.engine import Engine, Instrument

    serve = dataclasses.replace(cfg.serve, backend=backend, step_frames=chunk, voice_threads=voice_threads,
                                channel_map={i: INSTRUMENTS[i] for i in range(3)})
    render = dataclasses.replace(cfg.render, mode="streaming")
    ecfg = cfg.replace(serve=serve, render=render)
    insts = [Instrument(INSTRUMENTS[i], model, cfg, model_dir) for i in range(n_inst)]
    t0 = time.perf_counter()
    engine = Engine(insts, ecfg, schedule="exact")
    build_s = time.perf_counter() - t0
    hop, rate = cfg.audio.hop, cfg.audio.sample_rate
    steps = max(4, int(seconds * rate / (hop * chunk)))
    runs, cpu_runs, singles = [], [], []
    audio_s = steps * chunk * hop / rate
    for r in range(repeats + 1):  # run 0 is a warm-up (first onsets, wakes)
        start = engine.frame
        for s, d in _engine_events(cfg, n_inst, steps * chunk):
            engine.push(start * hop + s, d)
        times = []
        c0 = time.process_time()
        for _ in range(steps):
            t = time.perf_counter()
            engine.render_step()
            times.append(time.perf_counter() - t)
        if r:
            runs.append(sum(times) / audio_s)
            cpu_runs.append((time.process_time() - c0) / audio_s)
            singles.extend(times)
    step_samples = chunk * hop
    block = int(cfg.serve.block_size) or 256  # 0 = the device's period: JACK's 256 here
    target_blocks = ring_blocks_for(chunk, hop, block, int(cfg.serve.lead_samples))
    under = simulate_underruns(singles, step_samples, rate, block, target_blocks)
    names = sorted({v.backend.name for v in engine.voices.values()})
    engine.close()
    return {"voice_threads": voice_threads, "rtf": statistics.median(runs), "cpu_rtf": statistics.median(cpu_runs), "rtf_runs": runs,
            "step_ms_median": 1e3 * statistics.median(singles),
            "step_ms_p99": 1e3 * _percentile(singles, 99), "step_ms_max": 1e3 * max(singles),
            "steps": len(singles), "simulated_underruns": under, "ring_ms": 1e3 * target_blocks * block / rate,
            "build_s": build_s, "backends": names}


# -- phase and offline -----------------------------------------------------------------------------------

def bench_phase(cfg, frames: int = 400) -> dict:
    """Milliseconds per frame of each streaming phase method and of the streaming iSTFT (one frame per call,
    as the server runs with step_frames 1), after a warm-up (numba compilation excluded)."""
    from rtperformer.dsp import StreamingISTFT, make_phase

    rng = np.random.default_rng(0)
    mag = (rng.random((cfg.audio.n_bins, frames)) ** 4).astype(np.float32)
    out = {}
    for name in ("rtpghi", "rtisila"):
        try:
            ph = make_phase(name, cfg.audio, cfg.render)
        except Exception as exc:
            out[name] = f"failed: {exc}"
            continue
        for j in range(8):
            ph.process(mag[:, j:j + 1])
        ph.reset()
        t0 = time.perf_counter()
        for j in range(frames):
            ph.process(mag[:, j:j + 1])
        out[f"{name}_ms_per_frame"] = 1e3 * (time.perf_counter() - t0) / frames
    ist = StreamingISTFT(cfg.audio)
    spec = (mag * np.exp(1j * rng.random(mag.shape) * 6.28)).astype(np.complex64)
    for j in range(8):
        ist.push(spec[:, j:j + 1])
    t0 = time.perf_counter()
    for j in range(frames):
        ist.push(spec[:, j:j + 1])
    out["istft_ms_per_frame"] = 1e3 * (time.perf_counter() - t0) / frames
    out["hop_ms"] = 1e3 * cfg.audio.hop / cfg.audio.sample_rate
    return out


def bench_offline(model, cfg, repeats: int = 1, chunks=(None, 512)) -> dict:
    """Offline render speed: rtperformer.offline.render on the demo trio (violin, cello, flute parts, all with this
    model), streaming mode, RTPGHI, at the config's ``render.chunk_frames`` and at each other chunk size in
    ``chunks`` (``by_chunk``). Returns times real time for the piece and per instrument-part."""
    out = None
    by_chunk = {}
    for ch in chunks:
        c = cfg if ch is None else cfg.replace(render=dataclasses.replace(cfg.render, chunk_frames=int(ch)))
        r = _offline_once(model, c, repeats)
        by_chunk[str(c.render.chunk_frames)] = {k: r[k] for k in ("wall_s", "x_realtime_piece", "x_realtime_per_part")}
        if out is None:
            out = r
    out["by_chunk"] = by_chunk
    return out


def _offline_once(model, cfg, repeats: int) -> dict:
    from rtperformer.midi.score import read_midi
    from rtperformer.offline.render import assign_parts, render_score

    demo = Path(__file__).resolve().parent.parent / "rtperformer" / "assets" / "demo.mid"
    score = read_midi(str(demo))
    parts, _ = assign_parts(score)
    ocfg = cfg.replace(render=dataclasses.replace(cfg.render, mode="streaming", phase="rtpghi"))
    models = {p.instrument: (model, ocfg) for p in parts}
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            summary = render_score(score, parts, models, Path(tmp) / "demo.wav", progress_bar=False)
            walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    return {"piece_s": summary.seconds, "parts": len(parts), "wall_s": wall,
            "x_realtime_piece": summary.seconds / wall, "x_realtime_per_part": summary.seconds * len(parts) / wall,
            "chunk_frames": cfg.render.chunk_frames}


# -- driver ------------------------------------------------------------------------------------------------

def run(sources: list[str], backends: list[str] | None, chunks, instruments, seconds: float, repeats: int,
        offline: bool = True, log=print, offline_only: bool = False) -> dict:
    import torch

    from rtperformer import backends as B

    torch.set_num_threads(1)  # as the server's render thread (serve.torch_threads)
    names = backends or [n for n in B.BACKENDS if B.backend_class(n).auto and B.available(n)]
    results = {"machine": machine(), "chunks": list(chunks), "instruments": list(instruments),
               "backends": {n: B.available(n).reason or "ok" for n in B.BACKENDS}, "models": []}
    for src in sources:
        label, model, cfg, model_dir = load_source(src)
        if cfg.model.form != "streaming":
            log(f"skip {label}: {cfg.model.form} form does not stream")
            continue
        a = cfg.audio
        entry = {"source": label, "params": param_count(model), "sample_rate": a.sample_rate, "n_fft": a.n_fft,
                 "hop": a.hop, "lookahead_frames": int(model.lookahead_frames), "runs": []}
        log(f"== {label}: {entry['params']:,} params, {a.sample_rate} Hz, n_fft {a.n_fft}, hop {a.hop}")
        if not offline_only:
            entry["phase"] = bench_phase(cfg)
            log(f"   phase: {entry['phase']}")
        for name in names:
            if not B.available(name) or offline_only:
                continue
            for chunk in chunks:
                row = {"backend": name, "chunk": chunk}
                try:
                    t0 = time.perf_counter()
                    be = B.make_backend(name, model, cfg, chunk)
                    row["build_s"] = time.perf_counter() - t0
                    row["first_call_s"] = be.warmup()
                    be.warmup(10)
                    steps = max(8, int(seconds * a.sample_rate / (a.hop * chunk)))
                    row["model"] = bench_step(be, chunk, a.hop, a.sample_rate, steps, repeats)
                    be.close()
                    with tempfile.TemporaryDirectory() as tmp:
                        mdir = model_dir
                        if name in B.ENGINE_FILES and name == "onnx":  # export once, share with 3 voices
                            from rtperformer.backends.onnxrt import export_onnx

                            export_onnx(model, cfg, chunk, B.engine_path(tmp, name, chunk))
                            mdir = tmp
                        for n_inst in instruments:
                            row[f"engine_{n_inst}"] = bench_engine(model, cfg, name, chunk, n_inst, seconds,
                                                                   repeats, model_dir=mdir)
                        if 3 in instruments and name == "onnx":  # ONNX Runtime releases the GIL
                            row["engine_3_threads"] = bench_engine(model, cfg, name, chunk, 3, seconds, repeats,
                                                                   model_dir=mdir, voice_threads=3)
                except Exception as exc:  # one failing runtime must not lose the others' numbers
                    row["error"] = f"{type(exc).__name__}: {exc}"
                entry["runs"].append(row)
                log("   " + _row_line(row, instruments))
        if offline:
            try:
                entry["offline"] = bench_offline(model, cfg)
                log(f"   offline: {entry['offline']['x_realtime_piece']:.1f}x real time (piece), "
                    f"{entry['offline']['x_realtime_per_part']:.1f}x per part; by chunk: {entry['offline']['by_chunk']}")
            except Exception as exc:
                entry["offline"] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"   offline failed: {exc}")
        results["models"].append(entry)
    results["machine"]["load_avg_1m_at_end"] = __import__("os").getloadavg()[0]
    return results


def _row_line(row: dict, instruments) -> str:
    if "error" in row:
        return f"{row['backend']:12s} chunk {row['chunk']:2d}: error {row['error']}"
    parts = [f"{row['backend']:12s} chunk {row['chunk']:2d}: model rtf {row['model']['rtf']:.3f}"]
    for n in instruments:
        e = row.get(f"engine_{n}")
        if e:
            parts.append(f"engine x{n} rtf {e['rtf']:.3f} cpu {e['cpu_rtf']:.3f} (p99 step {e['step_ms_p99']:.2f} ms, "
                         f"underruns {e['simulated_underruns']})")
    e = row.get("engine_3_threads")
    if e:
        parts.append(f"x3 in 3 voice threads rtf {e['rtf']:.3f} (underruns {e['simulated_underruns']})")
    parts.append(f"first call {row['build_s'] + row['first_call_s']:.2f} s")
    return ", ".join(parts)


def plot(results: dict, path: Path) -> Path:
    """One panel per model: engine RTF vs chunk size, one line per backend and instrument count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(5.5 * max(1, len(models)), 4), squeeze=False)
    for ax, m in zip(axes[0], models):
        by = {}
        for row in m["runs"]:
            for n in results["instruments"]:
                e = row.get(f"engine_{n}")
                if e:
                    by.setdefault((row["backend"], n), []).append((row["chunk"], e["rtf"]))
        for (b, n), pts in sorted(by.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ls="-" if n == 1 else "--",
                    label=f"{b} x{n}")
        ax.axhline(0.15, color="k", lw=0.8, ls=":", label="goal 0.15 / instrument")
        ax.axhline(1.0, color="r", lw=0.8, ls=":", label="real time")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("chunk (frames per step)")
        ax.set_ylabel("real-time factor (engine per-hop cost)")
        ax.set_title(f"{m['source']} ({m['params'] / 1e6:.2f} M params)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{results['machine']['cpu']}, {results['machine']['cores']} cores")
    return save_png(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", metavar="NAME_OR_MODEL",
                   help="model folder or config to measure (repeat); default: shipped models + streaming configs")
    p.add_argument("--backend", action="append", help="backend to measure (repeat); default: all available")
    p.add_argument("--chunks", type=int, nargs="+", default=list(CHUNKS))
    p.add_argument("--instruments", type=int, nargs="+", default=[1, 3], choices=[1, 2, 3])
    p.add_argument("--seconds", type=float, default=1.5, help="audio seconds per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (the median is reported)")
    p.add_argument("--no-offline", action="store_true", help="skip the offline render measurement")
    p.add_argument("--offline-only", action="store_true", help="only the offline render measurement")
    p.add_argument("--out", default=str(RESULTS / "throughput.json"))


def main(args: argparse.Namespace) -> int:
    from rtperformer.errors import UserError

    sources = args.config or default_sources()
    if not sources:
        raise UserError("nothing to measure: no streaming model in models/ or config in configs/ (use --config)")
    results = run(sources, args.backend, args.chunks, args.instruments, args.seconds, args.repeats,
                  offline=not args.no_offline, offline_only=args.offline_only)
    out = Path(args.out)
    write_json(results, out)
    if args.offline_only:
        print(f"wrote {out}")
        return 0
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    raise SystemExit(main(ap.parse_args()))
