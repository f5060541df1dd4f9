"""GPU benchmark (run by bench/gpu.sh): the paper-size model and the streaming configs on one CUDA device.

- paper form (configs/performancenet-paper.yaml, 249.8 M params): whole 860-frame windows (5 s at 44.1 kHz /
  hop 256) through ``model(x)``: eager fp32, eager fp16 autocast, CUDA graph (fp32), torch.compile, and
  TensorRT fp16 when torch-tensorrt imports. Reports ms per window and times real time.
- streaming configs (every configs/*.yaml with ``form: streaming`` but tiny-test, or ``--config``): each
  backend among torch-cuda, cuda-graphs, compile, tensorrt at chunk sizes ``--chunks``: median ms per step,
  RTF, first-call time (build + first step).

Everything stops starting new measurements once ``--budget-s`` (default 270 s) is spent, so the whole run
stays under 5 minutes; what was skipped is listed in the JSON. ``--device cpu --quick`` runs the same code
paths on the CPU with a tiny config (a smoke test for machines without a GPU).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, default_sources, load_source, machine, param_count, write_json  # noqa: E402

PAPER = "performancenet-paper"
WINDOW = 860


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: str, reps: int, budget_s: float = 10.0) -> float:
    """Median seconds of ``fn()`` over ``reps`` calls (fewer if over ``budget_s``)."""
    ts = []
    start = time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(ts) >= 3:
            break
    return statistics.median(ts)


FAST_PAPER = ("eager-fp32", "eager-fp16-autocast", "cuda-graph-fp32")
SLOW_PAPER = ("compile", "tensorrt-fp16")  # minutes of compilation: measured last, if the budget allows


def bench_paper(src: str, device: str, window: int, deadline: float, log, which=FAST_PAPER + SLOW_PAPER,
                out: dict | None = None, save=lambda: None) -> dict:
    """Whole-window forward of the paper model under each runtime in ``which`` (added to ``out``)."""
    import torch

    label, model, cfg, _ = load_source(src)
    a = cfg.audio
    from rtperformer.backends.base import _input_channels

    x = (torch.rand(1, _input_channels(cfg), window) < 0.03).float()
    audio_s = window * a.hop / a.sample_rate
    if out is None:
        out = {"source": label, "params": param_count(model), "window_frames": window, "window_audio_s": audio_s,
               "runs": {}, "skipped": []}
    model = model.to(device).eval()
    x = x.to(device)

    def record(name, build):
        if name not in which:
            return
        if time.perf_counter() > deadline:
            out["skipped"].append(name)
            return
        try:
            t0 = time.perf_counter()
            fn = build()
            fn()
            _sync(device)
            first = time.perf_counter() - t0
            t = _time(fn, device, 10)
            out["runs"][name] = {"ms_per_window": 1e3 * t, "x_realtime": audio_s / t, "first_call_s": first}
            log(f"   {name}: {1e3 * t:.1f} ms per {window}-frame window ({audio_s / t:.0f}x real time), "
                f"first call {first:.1f} s")
        except Exception as exc:
            out["runs"][name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            log(f"   {name}: {out['runs'][name]['error']}")
        save()

    def eager():
        def fn():
            with torch.inference_mode():
                return model(x)
        return fn

    def fp16():
        def fn():
            with torch.inference_mode(), torch.autocast(device, dtype=torch.float16 if device == "cuda" else torch.bfloat16):
                return model(x)
        return fn

    def graph():
        if device != "cuda":
            raise RuntimeError("CUDA graphs need CUDA")
        g = torch.cuda.CUDAGraph()
        static_x = x.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(s):
            for _ in range(2):
                model(static_x)
        torch.cuda.current_stream().wait_stream(s)
        with torch.no_grad(), torch.cuda.graph(g):
            model(static_x)
        return g.replay

    def compiled():
        cm = torch.compile(model, mode="reduce-overhead" if device == "cuda" else None, dynamic=False)

        def fn():
            with torch.no_grad():
                return cm(x)
        return fn

    def tensorrt():
        import torch_tensorrt

        half = copy.deepcopy(model).half().eval()
        trt = torch_tensorrt.compile(half, ir="dynamo", inputs=[x.half()], min_block_size=1)

        def fn():
            with torch.no_grad():
                return trt(x.half())
        return fn

    record("eager-fp32", eager)
    record("eager-fp16-autocast", fp16)
    if device == "cuda":
        record("cuda-graph-fp32", graph)
    if device == "cuda":  # Inductor's CPU build takes minutes: not part of the CPU smoke test
        record("compile", compiled)
    if "tensorrt-fp16" in which:
        try:
            import torch_tensorrt  # noqa: F401
        except Exception as exc:
            out["runs"]["tensorrt-fp16"] = {"error": f"torch-tensorrt not importable: {exc}"}
        else:
            if device == "cuda":
                record("tensorrt-fp16", tensorrt)
    model = None  # free the weights (the closures above are done with it)
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def bench_streaming(src: str, device: str, chunks, deadline: float, log, save=lambda: None) -> dict:
    """Each GPU backend at each chunk size: ms per step, RTF, first-call time."""
    from rtperformer import backends as B

    label, model, cfg, model_dir = load_source(src)
    a = cfg.audio
    names = ["torch-cuda", "cuda-graphs", "compile", "tensorrt"] if device == "cuda" else ["torch", "torchscript", "onnx"]
    out = {"source": label, "params": param_count(model), "sample_rate": a.sample_rate, "hop": a.hop,
           "runs": [], "skipped": [], "unavailable": {}}
    for name in names:
        ok = B.available(name)
        if not ok:
            out["unavailable"][name] = ok.reason
            continue
        for chunk in chunks:
            if time.perf_counter() > deadline:
                out["skipped"].append(f"{name}/chunk{chunk}")
                continue
            row = {"backend": name, "chunk": chunk}
            try:
                t0 = time.perf_counter()
                be = B.make_backend(name, model, cfg, chunk)
                row["first_call_s"] = time.perf_counter() - t0 + be.warmup(5)
                t = B.measure_step(be, chunk, steps=50, budget_s=3.0)
                row["ms_per_step"] = 1e3 * t
                row["rtf"] = t / (chunk * a.hop / a.sample_rate)
                be.close()
                log(f"   {name:12s} chunk {chunk:2d}: {1e3 * t:.3f} ms/step, RTF {row['rtf']:.4f}, "
                    f"first call {row['first_call_s']:.1f} s")
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                log(f"   {name:12s} chunk {chunk:2d}: {row['error']}")
            out["runs"].append(row)
            save()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--config", action="append", help="streaming config/model (repeat); default: all streaming configs")
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--budget-s", type=float, default=270.0, help="stop starting measurements after this")
    ap.add_argument("--no-paper", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny config, small paper window (smoke test)")
    ap.add_argument("--out", default=str(RESULTS / "gpu.json"))
    args = ap.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here (use --device cpu --quick for a smoke test)", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    results = {"machine": machine(), "device": args.device, "budget_s": args.budget_s, "paper": None, "streaming": []}
    out_path = Path(args.out)

    def save():  # after every measurement, so a run cut short by bench/gpu.sh's timeout keeps its numbers
        results["elapsed_s"] = time.perf_counter() - t_start
        write_json(results, out_path)

    src = PAPER
    window = 64 if args.quick else WINDOW
    if not args.no_paper:
        print(f"== paper form ({PAPER}): eager, fp16, CUDA graph")
        if args.quick:  # the paper form of the tiny config, written to a temp YAML
            import tempfile

            from rtperformer.config import load_config

            cfg = load_config("tiny-test").to_dict()
            cfg["model"].update(form="paper", norm="instance", lookahead_frames=0)
            cfg["model"]["onoff_channels"] = cfg["model"]["onoff_channels"][:3]
            import yaml

            tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
            yaml.safe_dump(cfg, tmp)
            tmp.close()
            src = tmp.name
        results["paper"] = bench_paper(src, args.device, window, deadline, print, which=FAST_PAPER, save=save)
    sources = args.config or (["tiny-test"] if args.quick else default_sources())
    for s in sources:
        print(f"== streaming: {s}")
        results["streaming"].append(bench_streaming(s, args.device, args.chunks, deadline, print, save=save))
    if not args.no_paper:
        print(f"== paper form ({PAPER}): torch.compile, TensorRT (while the budget lasts)")
        bench_paper(src, args.device, window, deadline, print, which=SLOW_PAPER, out=results["paper"], save=save)
    save()
    print(f"wrote {args.out} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
