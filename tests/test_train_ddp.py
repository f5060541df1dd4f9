"""DDP: two processes under torchrun (gloo, CPU) train a tiny model on a synthetic corpus for a few steps.

Checks: both ranks finish, only rank 0 writes the checkpoint, parameters are identical across ranks.
This file is also the worker script (run by torchrun with ``worker OUT_DIR``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _worker(work: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from rtperformer.config import load_config
    from rtperformer.learn.train import dist_env, finish_distributed, train
    from rtperformer.learn.train_data import SyntheticWindows

    torch.set_num_threads(1)
    rank = dist_env()[0]
    import dataclasses

    base = load_config("tiny-test")
    cfg = base.replace(name="ddp-tiny", train=dataclasses.replace(
        base.train, batch_size=2, clip_frames=32, steps=4, valid_every=2, valid_windows=4, num_threads=1))
    from rtperformer.model import build_model
    from rtperformer.model.checkpoint import save_checkpoint

    def save(d, model, cfg, meta):
        with open(work / "saves.log", "a") as f:
            f.write(f"{rank} {Path(d).name}\n")
        save_checkpoint(d, model, cfg, meta)

    ds = SyntheticWindows(cfg, seed=1000 * rank)
    res = train(cfg, work / "model", data=(ds, ds.valid(4), {"synthetic": True}), build=build_model, save=save,
                progress=False)
    # every rank dumps what it holds, so the test can compare them
    import torch.distributed as dist

    params = {k: v.detach().contiguous() for k, v in res.model.state_dict().items()}
    save_file(params, str(work / f"params{rank}.safetensors"))

    assert dist.is_initialized() and dist.get_world_size() == 2
    finish_distributed()
    (work / f"done{rank}").write_text(json.dumps({"step": res.step, "valid": res.last_valid}))


def test_torchrun_two_processes(tmp_path):
    assert TORCHRUN.exists(), f"torchrun not next to {sys.executable} (it comes with torch)"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", __file__, "worker", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    done = [json.loads((tmp_path / f"done{r}").read_text()) for r in (0, 1)]
    assert done[0]["step"] == done[1]["step"] == 4
    assert done[0]["valid"] == done[1]["valid"]  # all-reduced validation: the same numbers on both ranks
    saves = (tmp_path / "saves.log").read_text().split("\n")
    assert saves and all(s.startswith("0 ") for s in saves if s)
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "model" / "resume" / "state.safetensors").is_file()
    from safetensors.torch import load_file

    p0, p1 = load_file(str(tmp_path / "params0.safetensors")), load_file(str(tmp_path / "params1.safetensors"))
    assert p0.keys() == p1.keys() and all(p0[k].equal(p1[k]) for k in p0)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "worker":
    _worker(Path(sys.argv[2]))
