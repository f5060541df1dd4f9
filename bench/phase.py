"""Phase reconstruction benchmark: spectral convergence and milliseconds per frame of each method.

    .venv/bin/python bench/phase.py [--seconds 3] [--out bench/results/phase.json] [--quick]

Signals: rtperformer.dsp.synth (melody, chords, low_triad), at the realtime config (48 kHz, n_fft 1024,
hop 256) and the paper config (44.1 kHz, n_fft 2048, hop 256). Streaming methods run the way the live
engine runs them: ``process()`` once per frame (n = 1), then StreamingISTFT.push per frame; the audio
that comes out (delays removed) is scored. SC = 20*log10(|| |STFT(y)| - M ||_F / ||M||_F).

ms/frame: for streaming methods, median and 99th percentile of the wall time of each process() call,
and CPU time (process_time) per frame over the stream, which is less disturbed by other processes on a
shared machine; for Griffin-Lim, the whole offline run divided by the frame count. The numba compile
cost is measured in a subprocess with an empty NUMBA_CACHE_DIR (cold) and in this process on the first
call (loading the cache written by earlier runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtperformer.atomic import atomic_write  # noqa: E402
from rtperformer.config import AudioConfig  # noqa: E402
from rtperformer.dsp.features import spectral_convergence_db, stft  # noqa: E402
from rtperformer.dsp.istft_stream import StreamingISTFT  # noqa: E402
from rtperformer.dsp.griffin_lim import griffin_lim  # noqa: E402
from rtperformer.dsp.rtisila import RTISILA  # noqa: E402
from rtperformer.dsp.rtpghi import RTPGHI  # noqa: E402
from rtperformer.dsp.synth import SIGNALS  # noqa: E402

CONFIGS = {
    "48k/1024/256": AudioConfig(sample_rate=48000, n_fft=1024, hop=256),
    "44.1k/2048/256": AudioConfig(sample_rate=44100, n_fft=2048, hop=256),
}
STREAMING = {
    "rtpghi_la0": lambda cfg: RTPGHI(cfg, lookahead=0),
    "rtpghi_la1": lambda cfg: RTPGHI(cfg, lookahead=1),
    "rtpghi_la0_trim1": lambda cfg: RTPGHI(cfg, lookahead=0),  # low-delay synthesis (serve.istft_trim_hops)
    "rtpghi_la0_trim2": lambda cfg: RTPGHI(cfg, lookahead=0),
    "rtisila_la3_it4": lambda cfg: RTISILA(cfg, lookahead=3, iterations=4, init="partial"),
    "rtisila_la3_it4_pghi": lambda cfg: RTISILA(cfg, lookahead=3, iterations=4, init="rtpghi"),
    "rtisila_la1_it2": lambda cfg: RTISILA(cfg, lookahead=1, iterations=2, init="partial"),
}
TRIMS = {"rtpghi_la0_trim1": 1, "rtpghi_la0_trim2": 2}  # StreamingISTFT trim_hops (default 0)
OFFLINE = {
    "gla64_random": dict(iterations=64, momentum=0.99, init="random"),
    "gla64_rtpghi": dict(iterations=64, momentum=0.99, init="rtpghi"),
}

_COLD = r"""
import time, numpy as np
t0 = time.perf_counter()
from rtperformer.config import AudioConfig
from rtperformer.dsp.rtpghi import RTPGHI
from rtperformer.dsp.rtisila import RTISILA
t1 = time.perf_counter()
cfg = AudioConfig()
m = np.ones((cfg.n_bins, 2), np.float32)
RTPGHI(cfg, 1).process(m)
t2 = time.perf_counter()
RTISILA(cfg, 3, 4).process(m)
t3 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1} {t3 - t2}")
"""


def compile_costs() -> dict:
    """Seconds: import, first RTPGHI call, first RTISILA call; cold (empty numba cache) and cached."""
    out = {}
    # "populate" fills the repo cache if the sources changed since the last run; "cached" is then a clean load
    for label, cache_dir in (("cold", tempfile.mkdtemp(prefix="numba-cold-")), ("populate", None), ("cached", None)):
        env = dict(os.environ)
        if cache_dir:
            env["NUMBA_CACHE_DIR"] = cache_dir
        r = subprocess.run([sys.executable, "-c", _COLD], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            out[label] = {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
            continue
        imp, p, i = (float(v) for v in r.stdout.split())
        if label == "populate":
            continue
        out[label] = {"import_s": round(imp, 3), "rtpghi_first_call_s": round(p, 3), "rtisila_first_call_s": round(i, 3)}
    return out


def run_streaming(make, cfg: AudioConfig, mag: np.ndarray, trim_hops: int = 0) -> dict:
    """Frame-by-frame process() + StreamingISTFT (``trim_hops``: low-delay synthesis), as live; returns SC and
    timings."""
    obj = make(cfg)
    obj.process(mag[:, :2])  # warm (numba load, FFT plans)
    obj.reset()
    ist = StreamingISTFT(cfg, trim_hops=trim_hops)
    T = mag.shape[1]
    d = obj.delay_frames
    padded = np.ascontiguousarray(np.concatenate([mag, np.zeros((mag.shape[0], d), np.float32)], axis=1))
    cols = [np.ascontiguousarray(padded[:, j : j + 1]) for j in range(padded.shape[1])]
    times = np.empty(len(cols))
    ist_times = np.empty(len(cols))
    audio = []
    c0 = time.process_time()
    for j, col in enumerate(cols):
        t0 = time.perf_counter()
        spec = obj.process(col)
        t1 = time.perf_counter()
        audio.append(ist.push(spec))
        t2 = time.perf_counter()
        times[j] = t1 - t0
        ist_times[j] = t2 - t1
    cpu = time.process_time() - c0
    audio.append(ist.flush())
    y = np.concatenate(audio)
    shift = ist.delay_samples + d * cfg.hop
    y = y[shift : shift + (T - 1) * cfg.hop]
    return {
        "sc_db": round(spectral_convergence_db(y, mag, cfg), 2),
        "ms_per_frame_median": round(float(np.median(times)) * 1e3, 4),
        "ms_per_frame_p99": round(float(np.percentile(times, 99)) * 1e3, 4),
        "ms_per_frame_mean": round(float(np.mean(times)) * 1e3, 4),
        "cpu_ms_per_frame_incl_istft": round(cpu / len(cols) * 1e3, 4),
        "istft_stream_ms_per_frame_median": round(float(np.median(ist_times)) * 1e3, 4),
        "delay_frames": d,
        "istft_delay_samples": ist.delay_samples,
    }


def run_offline(kw: dict, cfg: AudioConfig, mag: np.ndarray) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    y = griffin_lim(mag, cfg, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    T = mag.shape[1]
    return {"sc_db": round(spectral_convergence_db(y, mag, cfg), 2), "ms_per_frame_mean": round(wall / T * 1e3, 4),
            "cpu_ms_per_frame": round(cpu / T * 1e3, 4), "offline": True}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each test signal")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "phase.json"))
    ap.add_argument("--quick", action="store_true", help="1 s signals, realtime config only, no compile probe")
    args = ap.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    configs = {k: v for k, v in CONFIGS.items() if not args.quick or k.startswith("48k")}

    result = {
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cores": len(os.sched_getaffinity(0)),
                    "load_avg_1m_at_start": os.getloadavg()[0], "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())},
        "seconds": seconds,
        "compile": {} if args.quick else compile_costs(),
        "runs": [],
    }
    try:
        import numba

        result["machine"]["numba"] = numba.__version__
    except ImportError:  # pragma: no cover
        pass
    for cname, cfg in configs.items():
        for sname, fn in SIGNALS.items():
            mag = np.abs(stft(fn(cfg.sample_rate, seconds), cfg))
            for mname, make in STREAMING.items():
                r = run_streaming(make, cfg, mag, TRIMS.get(mname, 0))
                result["runs"].append({"config": cname, "signal": sname, "method": mname, **r})
                print(f"  {cname:15s} {sname:10s} {mname:22s} SC {r['sc_db']:7.2f} dB  {r['ms_per_frame_median']:.3f} ms/frame", file=sys.stderr)
            for mname, kw in OFFLINE.items():
                r = run_offline(kw, cfg, mag)
                result["runs"].append({"config": cname, "signal": sname, "method": mname, **r})
    result["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]

    out = atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1) + "\n"))
    print_table(result)
    print(f"\nwritten {out}")
    return 0


def print_table(result: dict) -> None:
    runs = result["runs"]
    methods = list(dict.fromkeys(r["method"] for r in runs))
    cols = list(dict.fromkeys((r["config"], r["signal"]) for r in runs))
    by = {(r["method"], r["config"], r["signal"]): r for r in runs}
    print(f"\nspectral convergence (dB) and ms per frame; {result['seconds']} s signals; load avg "
          f"{result['machine']['load_avg_1m_at_start']:.1f} -> {result['machine']['load_avg_1m_at_end']:.1f} "
          f"on {result['machine']['cores']} cores")
    head = "method".ljust(22) + "".join(f"{c[0] + ' ' + c[1]:>26s}" for c in cols)
    print(head)
    for m in methods:
        row = m.ljust(22)
        for c in cols:
            r = by.get((m, *c))
            if r is None:
                row += " " * 26
                continue
            ms = r.get("ms_per_frame_median", r["ms_per_frame_mean"])
            cpu = r.get("cpu_ms_per_frame_incl_istft", r.get("cpu_ms_per_frame"))
            row += f"{r['sc_db']:9.2f} dB {ms:6.3f}/{cpu:5.3f} ms"
        print(row)
    print("ms: streaming = median wall per process() call / CPU per frame incl. streaming iSTFT;"
          " offline GLA = wall / CPU of the whole run per frame")
    if result.get("compile"):
        for k, v in result["compile"].items():
            print(f"numba {k}: {v}")


if __name__ == "__main__":
    sys.exit(main())
