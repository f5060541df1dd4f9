"""Markdown tables from bench/results/*.json (printed by ``rtperformer bench all``; pasted in bench/README.md).

    .venv/bin/python bench/report.py [--results bench/results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, num, read_json  # noqa: E402


def machine_line(m: dict) -> str:
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    load = f", load avg {m.get('load_avg_1m_at_start', 0):.1f} -> {m.get('load_avg_1m_at_end', 0):.1f}"
    return (f"{m.get('cpu')} ({m.get('cores')} cores{gpu}), torch {m.get('torch')}, onnxruntime "
            f"{m.get('onnxruntime', '-')}, {m.get('date_utc')} UTC{load}")


def throughput_tables(data: dict) -> str:
    out = [f"Machine: {machine_line(data['machine'])}", ""]
    for m in data["models"]:
        if not m["runs"]:
            off = m.get("offline", {})
            out += [f"**{m['source']}** offline render (demo trio, times real time for the piece / per part), "
                    "by render.chunk_frames: " + ", ".join(
                        f"{k}: {v['x_realtime_piece']:.1f} / {v['x_realtime_per_part']:.1f}"
                        for k, v in off.get("by_chunk", {}).items()), ""]
            continue
        out += [f"**{m['source']}** ({m['params']:,} params, {m['sample_rate']} Hz, n_fft {m['n_fft']}, hop "
                f"{m['hop']}, lookahead {m['lookahead_frames']} frames)", "",
                "RTF = compute time / audio time, wall clock (CPU time of the process in brackets).", "",
                "| backend | chunk | model RTF | engine RTF, 1 instr. | engine RTF, 3 instr. | "
                "per instr., 3 instr. | p99 step, 3 instr. (ms) | underruns 1 instr. / 3 instr. / steps (replay; ring ms) | "
                "3 instr. in 3 voice threads: RTF / underruns | first call (s) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in m["runs"]:
            if "error" in r:
                out.append(f"| {r['backend']} | {r['chunk']} | error: {r['error'][:80]} |||||||")
                continue
            e1, e3 = r.get("engine_1", {}), r.get("engine_3", {})
            per = e3.get("rtf") / 3 if e3.get("rtf") is not None else None
            per_cpu = e3.get("cpu_rtf") / 3 if e3.get("cpu_rtf") is not None else None
            w = lambda d: f"{num(d.get('rtf'))} ({num(d.get('cpu_rtf'))})"  # noqa: E731
            vt = lambda d: f"{num(d.get('rtf'))} / {d.get('simulated_underruns')}" if d else "-"  # noqa: E731
            out.append(f"| {r['backend']} | {r['chunk']} | {w(r['model'])} | {w(e1)} | {w(e3)} | "
                       f"{num(per)} ({num(per_cpu)}) | {num(e3.get('step_ms_p99'), '.2f')} | "
                       f"{e1.get('simulated_underruns', '-')} / {e3.get('simulated_underruns', '-')} / {e3.get('steps', '-')} "
                       f"({num(e3.get('ring_ms'), '.1f')}) | "
                       f"{vt(r.get('engine_3_threads'))} | "
                       f"{num(r['build_s'] + r['first_call_s'], '.2f')} |")
        ph = m.get("phase", {})
        out += ["", "Phase stage per frame (ms): " + ", ".join(
            f"{k.replace('_ms_per_frame', '')} {v:.3f}" for k, v in ph.items() if k.endswith("_ms_per_frame"))
            + f" (hop {ph.get('hop_ms', 0):.2f} ms)"]
        off = m.get("offline", {})
        if "x_realtime_piece" in off:
            out.append(f"Offline render (demo trio, {off['parts']} parts, {off['piece_s']:.1f} s): "
                       f"{off['x_realtime_piece']:.1f}x real time for the piece, "
                       f"{off['x_realtime_per_part']:.1f}x per instrument part")
            for k, v in off.get("by_chunk", {}).items():
                out.append(f"- render.chunk_frames {k}: {v['x_realtime_piece']:.1f}x / {v['x_realtime_per_part']:.1f}x")
        elif off:
            out.append(f"Offline render: {off.get('error')}")
        out.append("")
    return "\n".join(out)


def latency_table(data: dict) -> str:
    j = data.get("jack", {})
    out = [f"Machine: {machine_line(data['machine'])}; JACK dummy {j.get('rate')} Hz / {j.get('period')} frames; "
           f"served: {data.get('model_desc', ' '.join(data.get('model_args', [])))}, serve.step_frames "
           f"{data.get('serve_step_frames', 'config default')}", "",
           "| system | n | min | median | p95 | p99 | max | jitter p95-p5 | std | first sound (-40 dB) median / p99 "
           "| xruns (probe) | notes with dropouts | invalid | median / FluidSynth |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for s in data["systems"]:
        if not s.get("n"):
            out.append(f"| {s['system']} | 0 | {s.get('error', 'no valid event')[:100]} |||||||||||")
            continue
        out.append(f"| {s['system']} | {s['n']} | {s['min_ms']:.2f} | {s['median_ms']:.2f} | {s['p95_ms']:.2f} | "
                   f"{s['p99_ms']:.2f} | {s['max_ms']:.2f} | {s['jitter_p95_p5_ms']:.2f} | {s['std_ms']:.2f} | "
                   f"{num(s.get('first_sound', {}).get('median_ms'), '.2f')} / "
                   f"{num(s.get('first_sound', {}).get('p99_ms'), '.2f')} | "
                   f"{s['xruns_probe']} | {s.get('dropout_events', '-')} | {s['invalid'] or '-'} | "
                   f"{num(s.get('median_vs_fluidsynth'), '.2f')} |")
    status = [f"- {s['system']}: `{s['server_status']}`" for s in data["systems"] if s.get("server_status")]
    if status:
        out += ["", "Server's own last status line:", *status]
    return "\n".join(out) + "\n"


def markdown(results: Path = RESULTS) -> str:
    parts = []
    for name in ("throughput.json", "offline.json"):
        tp = read_json(results / name)
        if tp:
            parts += [f"### Throughput, {name}", "", throughput_tables(tp)]
    for path in sorted(results.glob("latency*.json")):
        lat = read_json(path)
        if lat:
            parts += [f"### Latency (ms), {path.name}", "", latency_table(lat)]
    return "\n".join(parts) if parts else "(no results in bench/results yet)"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    print(markdown(Path(ap.parse_args().results)))
