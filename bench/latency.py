"""Latency: note-on -> first sound, end to end on a JACK dummy server, for rtperformer and FluidSynth.

Setup (all in one run, same server, same period):

- ``jackd -n <unique> -d dummy -r 48000 -p 256`` (a private server; stopped and cleaned up at the end);
- the system under test in its own process: ``rtperformer serve --virtual in --midi-api jack --quiet``
  once per render mode (streaming, window), then ``fluidsynth -a jack -m jack -r 48000`` with
  FluidR3_GM.sf2 (GM program 40, violin);
- a probe in this process (JACK-Client): a MIDI output writing each note-on at an exact sample, and audio
  inputs recording what the system plays. Only JACK-Client lives here (no python-rtmidi client, so the
  deadlock of a JACK-Client with a Python callback and a python-rtmidi JACK client in one process cannot
  happen).

Events (``--events``, default 200): single notes and 3-note chords alternating at random, each at a random
sample offset (so every phase of the 256-sample period is hit), held ``HOLD_S``, then released and followed
by CC120 (all sound off) so the output is silent again before the next event.

Onset (sample-accurate): the first sample after the event whose magnitude reaches the threshold
``max(ONSET_FRACTION x the event's own level (99th percentile of |x| while held), NOISE_FACTOR x the peak of
the PRE_S seconds before the event, ABS_FLOOR)``. Events whose pre-event segment is not quiet (peak above
``ONSET_FRACTION x`` the event's level) or that make no sound are counted as invalid, not measured. A second
onset with ``FIRST_SOUND_FRACTION`` (1 %, -40 dB) in place of ONSET_FRACTION says when the note first sounds
at all (``first_sound``): the pipeline's share, apart from how fast the sound then rises.

Reports per system: min, median, p95, p99, max, jitter (p95 - p5 and the standard deviation), xruns seen by
the probe, invalid events, and held notes with a dropout (>= 64 exact zeros in a row after the onset: the
zero fill of a server underrun). ``--server-status`` also keeps the server's last status line (its own
underrun count and RTF); by default the server runs with ``--quiet``. Writes bench/results/latency.json and latency.png (histograms).
Run: ``rtperformer bench latency [--model NAME] [--events N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, machine, save_png, write_json  # noqa: E402

from rtperformer.live.jacktools import JackProbe, PrivateJackServer  # noqa: E402

RATE = 48000
PERIOD = 256
HOLD_S = 0.15
RELEASE_S = 0.1  # render.release_seconds of the served model in this benchmark
CYCLE_S = 0.42  # one event every CYCLE_S + a random offset up to OFFSET_S
OFFSET_S = 0.03
PRE_S = 0.04
ONSET_FRACTION = 0.1
FIRST_SOUND_FRACTION = 0.01  # the secondary onset: first sound at -40 dB re the note's level
NOISE_FACTOR = 4.0
ABS_FLOOR = 1e-5
DROPOUT_RUN = 64  # exact zeros in a row inside a held note = an underrun's zero fill
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
VIOLIN_RANGE = (60, 84)


# -- events and onsets ----------------------------------------------------------------------------------

def make_events(n: int, rate: int, seed: int = 0) -> tuple[list[tuple[int, bytes]], list[tuple[int, int, str]]]:
    """``n`` note-on events (single notes and 3-note chords) at random sample offsets.

    Returns (MIDI schedule as (frame, data), [(onset frame, end frame, kind)]).
    """
    rng = np.random.default_rng(seed)
    sched, marks = [], []
    t = 0
    cycle = int(CYCLE_S * rate)
    for i in range(n):
        on = t + int(rng.integers(0, int(OFFSET_S * rate)))
        kind = "chord" if rng.random() < 0.5 else "single"
        root = int(rng.integers(VIOLIN_RANGE[0], VIOLIN_RANGE[1] - 7))
        pitches = (root, root + 4, root + 7) if kind == "chord" else (root,)
        vel = int(rng.integers(70, 120))
        off = on + int(HOLD_S * rate)
        for p in pitches:
            sched.append((on, bytes([0x90, p, vel])))
            sched.append((off, bytes([0x80, p, 0])))
        sched.append((off + int((RELEASE_S + 0.02) * rate), bytes([0xB0, 120, 0])))
        marks.append((on, off, kind))
        t += cycle
    return sched, marks


def detect_onset(x: np.ndarray, on: int, off: int, rate: int, fraction: float = None) -> tuple[int | None, str]:
    """First sample at or after ``on`` reaching the threshold (module docstring; ``fraction`` replaces
    ONSET_FRACTION, e.g. FIRST_SOUND_FRACTION); (None, why) if invalid."""
    fraction = ONSET_FRACTION if fraction is None else fraction
    pre = x[max(0, on - int(PRE_S * rate)):on]
    seg = np.abs(x[on:off])
    if not len(seg):
        return None, "no audio"
    level = float(np.percentile(seg, 99))
    noise = float(np.max(np.abs(pre))) if len(pre) else 0.0
    if level <= ABS_FLOOR:
        return None, "silent"
    if noise > ONSET_FRACTION * level:
        return None, "noisy before the event"
    thr = max(fraction * level, NOISE_FACTOR * noise, ABS_FLOOR)
    hit = np.flatnonzero(seg >= thr)
    return (on + int(hit[0]), "") if len(hit) else (None, "below threshold")


def has_dropout(held: np.ndarray, min_run: int = DROPOUT_RUN) -> bool:
    """Whether a sounding segment holds a run of >= ``min_run`` exact zeros (an underrun's zero fill)."""
    z = np.concatenate([[0], (held == 0.0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(z))
    return bool(len(edges) and np.max(edges[1::2] - edges[::2]) >= min_run)


def summarize(lat_ms: list[float]) -> dict:
    a = np.asarray(lat_ms, np.float64)
    if not len(a):
        return {"n": 0}
    return {"n": int(len(a)), "min_ms": float(a.min()), "median_ms": float(np.median(a)),
            "p95_ms": float(np.percentile(a, 95)), "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()),
            "jitter_p95_p5_ms": float(np.percentile(a, 95) - np.percentile(a, 5)), "std_ms": float(a.std())}


# -- systems under test -----------------------------------------------------------------------------------

def _reader(proc, lines: list, ready: threading.Event, prefix: str | None):
    for line in proc.stdout:
        lines.append(line)
        if prefix and line.startswith(prefix):
            ready.set()


def start_rtperformer(env: dict, mode: str, model_args: list[str], config: Path, client: str, timeout: float = 300,
                      quiet: bool = True, latency_log: Path | None = None):
    """``rtperformer serve`` subprocess; returns (proc, midi port, [audio ports], stderr lines).
    ``quiet=False`` keeps the server's status lines (its own underrun and RTF counts) in stderr;
    ``latency_log``: the server writes its note-on and callback clocks there on exit (the waterfall)."""
    cmd = [sys.executable, "-m", "rtperformer", "serve", "--virtual", "in", "--client-name", client,
           "--midi-api", "jack", *(["--quiet"] if quiet else []), "--mode", mode, "--config", str(config),
           *(["--latency-log", str(latency_log)] if latency_log else []), *model_args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, err, ready = [], [], threading.Event()
    threading.Thread(target=_reader, args=(proc, lines, ready, "ready:"), daemon=True).start()
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        while not ready.wait(0.1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rtperformer serve did not get ready: {''.join(lines)[-500:]} {''.join(err)[-1500:]}")
    except BaseException:  # also an interrupt: never leave the server running
        stop(proc)
        raise
    line = next(s for s in lines if s.startswith("ready:"))
    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
    return proc, fields["midi"], fields["audio"].split(","), err


def start_fluidsynth(env: dict, client: str, timeout: float = 60):
    """``fluidsynth -a jack -m jack -r 48000`` with FluidR3_GM; returns (proc, midi port, [audio ports], log)."""
    import jack

    exe = shutil.which("fluidsynth")
    if exe is None or not SOUNDFONT.is_file():
        raise RuntimeError("fluidsynth or FluidR3_GM.sf2 missing")
    # Its shell reads the open stdin pipe (and so keeps running) until SIGINT; no server socket (-s) that
    # could clash with another instance.
    cmd = [exe, "-a", "jack", "-m", "jack", "-r", str(RATE), "-g", "0.5", "-R", "0", "-C", "0",
           "-o", f"audio.jack.id={client}", "-o", f"midi.jack.id={client}-midi",
           "-o", "audio.jack.autoconnect=0", str(SOUNDFONT)]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    threading.Thread(target=_reader, args=(proc, lines, threading.Event(), None), daemon=True).start()
    try:
        q = jack.Client("rtpbench-query", no_start_server=True)
    except BaseException:
        stop(proc)
        raise
    try:
        deadline = time.monotonic() + timeout
        while True:
            midi = [p.name for p in q.get_ports(is_midi=True, is_input=True) if p.name.startswith(client)]
            audio = [p.name for p in q.get_ports(is_audio=True, is_output=True) if p.name.startswith(client)]
            if midi and len(audio) >= 1:
                time.sleep(1.0)  # let it finish loading the soundfont
                return proc, midi[0], sorted(audio)[:1], lines
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fluidsynth did not open its JACK ports: {''.join(lines)[-800:]}")
            time.sleep(0.2)
    except BaseException:
        stop(proc)
        raise
    finally:
        q.close()


def play_and_record(name: str, midi_port: str, audio_port: str, sched: list[tuple[int, bytes]], base: int,
                    seconds: float, settle: float) -> tuple[np.ndarray, int, np.ndarray]:
    """A probe connected to the system's ports plays ``sched`` ((frame, message)) from recording frame
    ``base`` after ``settle`` seconds and records ``seconds`` past ``base``. Returns (audio (N,), the
    probe's xruns, its cycle log (JackProbe.cycle_log))."""
    probe = JackProbe(name, 1, seconds=seconds + 2)
    try:
        probe.client.activate()
        probe.client.connect(probe.midi_out, midi_port)
        probe.client.connect(audio_port, probe.inputs[0])
        time.sleep(settle)
        probe.play_frames(sched, base)
        probe.wait_frame(base + int(seconds * RATE), timeout=seconds * 4 + 60)
        return probe.buf[: probe.recorded, 0].copy(), probe.xruns, probe.cycle_log()
    finally:
        probe.close()


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def measure(env: dict, system: str, start, n_events: int, seed: int, log=print, latency_log: Path | None = None) -> dict:
    """Start a system, play the events through the probe, detect onsets, stop it; with the server's
    ``latency_log``, split each event's latency into the waterfall's stages (bench/waterfall.py)."""
    proc, midi_port, audio_ports, errlog = start()
    sched, marks = make_events(n_events, RATE, seed)
    if system == "fluidsynth":
        sched = [(0, bytes([0xC0, 40]))] + [(f + RATE // 2, d) for f, d in sched]
        marks = [(a + RATE // 2, b + RATE // 2, k) for a, b, k in marks]
    total = max(f for f, _ in sched) / RATE + 1.0
    base = int(0.3 * RATE)
    try:
        x, xruns, cycles = play_and_record(f"rtpbench-probe-{system}", midi_port, audio_ports[0], sched, base,
                                           total, settle=0.3)
    finally:
        rc = stop(proc)
    lat, first, invalid, kinds = [], [], {}, {"single": [], "chord": []}
    dropouts = 0
    for on, off, kind in marks:
        onset, why = detect_onset(x, base + on, base + off, RATE)
        if onset is None:
            invalid[why] = invalid.get(why, 0) + 1
            continue
        dropouts += has_dropout(x[onset:base + off])
        ms = (onset - base - on) * 1e3 / RATE
        lat.append(ms)
        kinds[kind].append(ms)
        early, _ = detect_onset(x, base + on, base + off, RATE, FIRST_SOUND_FRACTION)
        if early is not None:
            first.append((early - base - on) * 1e3 / RATE)
    out = {"system": system, "events": n_events, "xruns_probe": xruns, "exit_code": rc, "invalid": invalid,
           "dropout_events": dropouts,
           **summarize(lat), "single": summarize(kinds["single"]), "chord": summarize(kinds["chord"]),
           "first_sound": summarize(first),
           "latencies_ms": [round(v, 3) for v in lat]}
    if latency_log is not None and latency_log.is_file():
        import json

        from waterfall import stages_for, summarize_stages

        rows = stages_for([(base + a, base + b, k) for a, b, k in marks], json.loads(latency_log.read_text()),
                          cycles, x, RATE, detect_onset, FIRST_SOUND_FRACTION)
        out["waterfall"] = summarize_stages(rows)
        log("   waterfall (medians, ms): " + ", ".join(f"{k} {v:.2f}" for k, v in out["waterfall"].items()
                                                      if isinstance(v, float)))
    if system != "fluidsynth":
        status = [line.strip() for line in errlog if "underruns" in line]
        if status:
            out["server_status"] = status[-1]
        if rc not in (0, -2, 130):
            out["stderr_tail"] = "".join(errlog)[-1500:]
    log(f"   {system}: " + ", ".join(f"{k} {out[k]:.2f}" for k in ("min_ms", "median_ms", "p95_ms", "p99_ms",
                                                                         "max_ms") if k in out)
        + f", n {out.get('n', 0)}, invalid {invalid}, xruns {xruns}, events with dropouts {dropouts}")
    return out


def _serve_config(tmp: Path, backend: str, step_frames: int | None = None, trim_hops: int | None = None,
                  extra: list[str] | None = None) -> Path:
    """The served config: short release; ``step_frames`` > 1 also keeps a step of lead queued."""
    p = tmp / "bench-serve.yaml"
    text = f"render:\n  release_seconds: {RELEASE_S}\nserve:\n  backend: {backend}\n"
    if step_frames:
        text += f"  step_frames: {step_frames}\n  lead_samples: {256 * (step_frames - 1)}\n"
    if trim_hops is not None:
        text += f"  istft_trim_hops: {trim_hops}\n"
    for kv in extra or []:  # --set KEY=VALUE: more serve settings (a candidate's)
        key, value = kv.split("=", 1)
        text += f"  {key}: {value}\n"
    p.write_text(text)
    return p


def _model_args(model: str | None, tmp: Path) -> list[str]:
    """``--model`` for serve: the one named, else models/violin, else a random-weight checkpoint of the first
    streaming config (latency does not depend on the weights, only on the topology and the chain)."""
    if model:
        return ["--model", f"violin={model}"], f"model {model}"
    if (REPO / "models" / "violin" / "model.safetensors").is_file():
        return ["--model", "violin"], "shipped models/violin"
    from common import default_sources, load_source

    from rtperformer.model.checkpoint import save_checkpoint

    srcs = [s for s in default_sources()]
    if not srcs:
        from rtperformer.errors import UserError

        raise UserError("no streaming model or config to serve (pass --model)")
    label, m, cfg, _ = load_source(srcs[0])
    d = tmp / "violin"
    save_checkpoint(d, m, cfg, {"step": 0, "note": f"random weights of {label} for the latency benchmark"})
    return ["--model", f"violin={d}"], f"random weights of config {label} (no models/violin yet)"


def run(model: str | None, n_events: int, modes, backend: str, fluidsynth: bool, seed: int, log=print,
        server_status: bool = False, step_frames: int | None = None, trim_hops: int | None = None,
        periods: list[int] | None = None, period_events: int = 40, extra: list[str] | None = None) -> dict:
    results = {"machine": machine(), "jack": {"rate": RATE, "period": PERIOD, "driver": "dummy"},
               "method": {"hold_s": HOLD_S, "cycle_s": CYCLE_S, "onset_fraction": ONSET_FRACTION,
                          "first_sound_fraction": FIRST_SOUND_FRACTION,
                          "noise_factor": NOISE_FACTOR, "pre_s": PRE_S}, "systems": []}
    with tempfile.TemporaryDirectory(prefix="rtpbench-") as tmpd, PrivateJackServer("rtpbench", RATE, PERIOD) as jackd:
        tmp = Path(tmpd)
        margs, results["model_desc"] = _model_args(model, tmp)
        results["model_args"] = margs
        cfg_path = _serve_config(tmp, backend, step_frames, trim_hops, extra)
        results["serve_config"] = cfg_path.read_text()
        results["serve_step_frames"] = step_frames or "config default"
        env = jackd.env()
        for i, mode in enumerate(modes):
            log(f"== rtperformer serve --mode {mode} ({' '.join(margs)}, backend {backend})")
            llog = tmp / f"latency-log-{mode}.json"
            start = lambda mode=mode, i=i, llog=llog: start_rtperformer(  # noqa: E731
                env, mode, margs, cfg_path, f"rtpsrv{i}", quiet=not server_status, latency_log=llog)
            try:
                results["systems"].append(measure(env, f"rtperformer-{mode}", start, n_events, seed, log,
                                                  latency_log=llog))
            except Exception as exc:
                results["systems"].append({"system": f"rtperformer-{mode}", "error": str(exc)[-2000:]})
                log(f"   failed: {exc}")
        if fluidsynth:
            log("== fluidsynth -a jack -m jack -r 48000 (FluidR3_GM, program 40)")
            try:
                results["systems"].append(measure(env, "fluidsynth", lambda: start_fluidsynth(env, "rtpfluid"),
                                                  n_events, seed, log))
            except Exception as exc:
                results["systems"].append({"system": "fluidsynth", "error": str(exc)[-2000:]})
                log(f"   failed: {exc}")
        results["periods"] = []
        for period in periods or []:  # the same server switched to other periods (jack_bufsize)
            log(f"== rtperformer serve --mode streaming at JACK period {period}")
            subprocess.run(["jack_bufsize", str(period)], env=env, check=True, capture_output=True, timeout=30)
            llog = tmp / f"latency-log-p{period}.json"
            start = lambda period=period, llog=llog: start_rtperformer(  # noqa: E731
                env, "streaming", margs, cfg_path, f"rtpsrvp{period}", quiet=False, latency_log=llog)
            try:
                r = measure(env, f"rtperformer@{period}", start, period_events, seed, log, latency_log=llog)
                r["period"] = period
                results["periods"].append(r)
            except Exception as exc:
                results["periods"].append({"system": f"rtperformer@{period}", "period": period,
                                           "error": str(exc)[-2000:]})
                log(f"   failed: {exc}")
            finally:
                subprocess.run(["jack_bufsize", str(PERIOD)], env=env, capture_output=True, timeout=30)
    try:
        from waterfall import oracle_rise

        model_name = margs[1].split("=", 1)[-1]
        results["oracle"] = oracle_rise(trim_hops, model=model_name, detect=detect_onset,
                                        first_fraction=FIRST_SOUND_FRACTION)
    except Exception as exc:  # the oracle needs pyfluidsynth and a trained model's config
        results["oracle"] = {"error": str(exc)[-500:]}
    from waterfall import rows_for_plot

    results["waterfall_rows"] = rows_for_plot(results)
    fs = next((s for s in results["systems"] if s["system"] == "fluidsynth" and s.get("n")), None)
    for s in results["systems"]:
        if fs and s.get("n") and s is not fs:
            s["median_vs_fluidsynth"] = s["median_ms"] / fs["median_ms"] if fs["median_ms"] > 0 else None
    results["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    return results


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s in results["systems"] if s.get("n")]
    fig, ax = plt.subplots(figsize=(8, 4))
    allv = np.concatenate([s["latencies_ms"] for s in systems]) if systems else np.zeros(1)
    bins = np.linspace(0, max(20.0, float(np.percentile(allv, 99.5)) + 2), 60)
    for s in systems:
        ax.hist(np.clip(s["latencies_ms"], bins[0], bins[-1]), bins=bins, alpha=0.55,
                label=f"{s['system']}: median {s['median_ms']:.1f}, p99 {s['p99_ms']:.1f} ms (n={s['n']})")
    ax.axvline(10, color="k", ls=":", lw=0.8, label="goal: median 10 ms")
    ax.axvline(15, color="r", ls=":", lw=0.8, label="goal: p99 15 ms")
    ax.set_xlabel("note-on -> first sound (ms), JACK dummy 48 kHz / 256")
    ax.set_ylabel("events")
    ax.legend(fontsize=7)
    ax.set_title(f"{results['machine']['cpu']}, {results['machine']['cores']} cores")
    return save_png(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model folder or name to serve as violin (default: models/violin, else random "
                                   "weights of the first streaming config)")
    p.add_argument("--events", type=int, default=200, help="note-on events per system (default 200)")
    p.add_argument("--modes", nargs="+", default=["streaming", "window"], choices=["streaming", "window"])
    p.add_argument("--backend", default="auto", help="serve.backend for the server (default auto)")
    p.add_argument("--no-fluidsynth", action="store_true")
    p.add_argument("--step-frames", type=int, help="serve.step_frames for the server (default: the config's); "
                   "the ring grows to one step plus a block")
    p.add_argument("--istft-trim-hops", type=int, help="serve.istft_trim_hops for the server (default: the "
                   "config's)")
    p.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                   help="another serve setting for the server (repeat), e.g. render_delay_ms=0")
    p.add_argument("--periods", type=int, nargs="*", default=[],
                   help="also serve at these JACK periods (the same server switched with jack_bufsize)")
    p.add_argument("--period-events", type=int, default=40, help="events per extra period (default 40)")
    p.add_argument("--server-status", action="store_true",
                   help="run the server without --quiet and keep its last status line (its underruns, RTF)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "latency.json"))


def main(args: argparse.Namespace) -> int:
    from rtperformer.errors import UserError

    if args.events < 1:
        raise UserError("--events must be >= 1")
    # SIGTERM unwinds like Ctrl-C: the servers, the probe and jackd are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(args.model, args.events, args.modes, args.backend, not args.no_fluidsynth, args.seed,
                  server_status=args.server_status, step_frames=args.step_frames,
                  trim_hops=args.istft_trim_hops, periods=args.periods, period_events=args.period_events,
                  extra=args.extra)
    out = Path(args.out)
    write_json(results, out)
    plot(results, out.with_suffix(".png"))
    from waterfall import plot as plot_waterfall, table

    wf = plot_waterfall(results, out.with_name(out.stem + "_waterfall.png"), save_png)
    print(table(results))
    print(f"wrote {out}, {out.with_suffix('.png')} and {wf}")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    raise SystemExit(main(ap.parse_args()))
