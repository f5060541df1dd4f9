"""Trainer: losses, a few steps on a synthetic corpus, best checkpoint, resume, optimizer round trip.

Uses the real model package (build_model / save_checkpoint / load_model) on configs/tiny-test.yaml.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rtperformer.config import load_config
from rtperformer.errors import UserError
from rtperformer.learn.losses import features_to_magnitude, make_loss, spectral_convergence
from rtperformer.learn.train import effective_config, train, validate
from rtperformer.learn.train_data import SyntheticWindows, batches, cut_windows
from rtperformer.learn.train_state import load_optimizer_tensors, optimizer_tensors

torch.set_num_threads(1)

def tiny_cfg(**train):
    """configs/tiny-test.yaml (a tiny streaming model) with a small, fast train section."""
    base = load_config("tiny-test")
    t = dict(batch_size=4, clip_frames=32, steps=6, valid_every=3, seed=0, valid_windows=8, num_threads=1,
             loss="mse")
    t.update(train)
    return base.replace(train=dataclasses.replace(base.train, **t))


def model_hooks():
    """The real model package: build_model and save_checkpoint."""
    from rtperformer.model import build_model
    from rtperformer.model.checkpoint import save_checkpoint

    return {"build": build_model, "save": save_checkpoint}


def synth_data(cfg, rank=0):
    ds = SyntheticWindows(cfg, seed=cfg.train.seed + 1000 * rank)
    return ds, ds.valid(cfg.train.valid_windows), {"synthetic": True}


# ---- losses ----

def test_losses_zero_on_target_and_positive_off_it():
    torch.manual_seed(0)
    y = torch.rand(2, 9, 5) * 3
    for name in ("mse", "l1", "l1_sc"):
        fn = make_loss(name)
        assert float(fn(y, y)[0]) == pytest.approx(0.0, abs=1e-3)
        assert float(fn(y + 0.5, y)[0]) > 0.1
    mse, parts = make_loss("mse")(y + 0.5, y)
    assert float(mse) == pytest.approx(0.25, rel=1e-5) and parts == {"mse": pytest.approx(0.25, rel=1e-5)}
    l1, _ = make_loss("l1")(y - 0.5, y)
    assert float(l1) == pytest.approx(0.5, rel=1e-5)
    with pytest.raises(ValueError):
        make_loss("nope")


def test_spectral_convergence_and_magnitude_inverse():
    mag = torch.rand(1, 7, 4) + 0.1
    feats = torch.log1p(4.0 * mag**2)
    assert torch.allclose(features_to_magnitude(feats, 4.0), mag, atol=1e-4)
    assert float(spectral_convergence(2 * mag, mag)) == pytest.approx(1.0, rel=1e-5)
    assert float(spectral_convergence(torch.zeros_like(mag), mag)) == pytest.approx(1.0, rel=1e-5)


def test_l1_sc_gradient_finite_at_silence():
    pred = torch.zeros(1, 5, 3, requires_grad=True)
    loss, parts = make_loss("l1_sc")(pred, torch.zeros(1, 5, 3))
    loss.backward()
    assert torch.isfinite(pred.grad).all() and set(parts) == {"l1", "sc"}


# ---- data helpers ----

def test_synthetic_windows_layout_and_batches():
    cfg = tiny_cfg()
    ds = SyntheticWindows(cfg)
    x, y = next(iter(ds))
    assert x.shape == (385, 32) and y.shape == (129, 32)
    assert set(x[:128].ravel().tolist()) <= {0.0, 1.0} and (x[:128].sum(0) <= 1).all()
    xb, yb = next(batches(ds, 3, 0))
    assert xb.shape == (3, 385, 32) and yb.shape == (3, 129, 32)
    mapstyle = [ds.window(ds._rng) for _ in range(5)]
    xb, _ = next(batches(mapstyle, 2, 0))
    assert xb.shape == (2, 385, 32)


def test_cut_windows_even_spread():
    pieces = [(torch.zeros(2, 100), torch.zeros(3, 100)), (torch.zeros(2, 10), torch.zeros(3, 10))]
    w = cut_windows(pieces, 32, 0)
    assert [a.shape[-1] for a, _ in w] == [32, 32, 32, 10]
    assert len(cut_windows(pieces, 32, 2)) == 2


def test_effective_config_overrides_and_errors():
    cfg = effective_config(tiny_cfg(), steps=9, loss="l1_sc", seed=3, valid_every=4, batch_size=5)
    assert (cfg.train.steps, cfg.train.loss, cfg.train.seed) == (9, "l1_sc", 3)
    assert (cfg.train.valid_every, cfg.train.batch_size) == (4, 5)
    with pytest.raises(UserError):
        effective_config(tiny_cfg(), valid_every=0)
    with pytest.raises(UserError):
        effective_config(tiny_cfg(loss="huber"))
    with pytest.raises(UserError):
        effective_config(tiny_cfg(), steps=0)


def test_optimizer_round_trip_through_safetensors():
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_tensors(opt, {"step": 7})
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=5.0)
    assert load_optimizer_tensors(opt2, tensors, meta) == {"step": 7}
    a, b = opt.state_dict(), opt2.state_dict()
    assert b["param_groups"][0]["lr"] == 1e-3
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(torch.as_tensor(a["state"][i][k]), torch.as_tensor(b["state"][i][k]))


# ---- the loop ----

@pytest.mark.parametrize("loss", ["mse", "l1_sc"])
def test_train_writes_best_checkpoint_and_resumes(tmp_path, loss):
    hooks = model_hooks()
    cfg = effective_config(tiny_cfg(), loss=loss)
    out = tmp_path / "m"
    res = train(cfg, out, data=synth_data(cfg), progress=False, **hooks)
    assert res.step == 6 and res.stopped_by == "steps" and res.best_step in (3, 6)
    for f in ("model.safetensors", "config.yaml", "meta.json", "resume/state.safetensors", "resume/meta.json"):
        assert (out / f).is_file(), f
    meta = json.loads((out / "meta.json").read_text())
    assert meta["step"] == res.best_step and meta["loss"] == loss
    assert {"mse", "l1", "sc", "loss"} <= set(meta["metrics"]["valid"]) and meta["data"] == {"synthetic": True}
    assert "wall_seconds" in meta and meta["config"]["train"]["loss"] == loss
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6]

    # starting over in the same folder without --resume is refused
    with pytest.raises(UserError):
        train(cfg, out, data=synth_data(cfg), progress=False, **hooks)
    # resume to 9 steps: continues from 6 with the saved optimizer state
    cfg9 = effective_config(cfg, steps=9)
    res2 = train(cfg9, out, resume=True, data=synth_data(cfg9), progress=False, **hooks)
    assert res2.step == 9
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6, 9]
    with pytest.raises(UserError):  # already at 9
        train(cfg9, out, resume=True, data=synth_data(cfg9), progress=False, **hooks)


def test_resume_without_state_is_a_user_error(tmp_path):
    cfg = tiny_cfg()
    with pytest.raises(UserError, match="resume"):
        train(cfg, tmp_path / "none", resume=True, data=synth_data(cfg), progress=False, **model_hooks())


def test_training_learns_and_is_seeded(tmp_path):
    cfg = tiny_cfg(steps=12, valid_every=12, batch_size=4)
    hooks = model_hooks()
    r1 = train(cfg, tmp_path / "a", data=synth_data(cfg), progress=False, **hooks)
    r2 = train(cfg, tmp_path / "b", data=synth_data(cfg), progress=False, **hooks)
    assert r1.last_valid == r2.last_valid  # same seed, same numbers
    torch.manual_seed(0)
    untrained = hooks["build"](cfg)
    before = validate(untrained, synth_data(cfg)[1], make_loss("mse"), 1.0, torch.device("cpu"))
    assert r1.last_valid["mse"] < before["mse"]


def test_minutes_budget_stops_early(tmp_path):
    cfg = tiny_cfg(steps=10_000, valid_every=10_000)
    res = train(cfg, tmp_path / "m", minutes=1e-9, data=synth_data(cfg), progress=False, **model_hooks())
    assert res.stopped_by == "minutes" and res.step == 1
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_resume_restores_exact_weights_and_rejects_other_shapes(tmp_path):
    from rtperformer.learn.train_state import RESUME_DIR, STATE_FILE, read_resume

    hooks = model_hooks()
    cfg = tiny_cfg(steps=3, valid_every=3)
    res = train(cfg, tmp_path / "m", data=synth_data(cfg), progress=False, **hooks)
    torch.manual_seed(123)
    fresh = hooks["build"](cfg)
    opt = torch.optim.Adam(fresh.parameters())
    counters = read_resume(tmp_path / "m", fresh, opt)
    assert counters["step"] == 3
    for (k, a), b in zip(res.model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a.float(), b.float()), k
    assert (tmp_path / "m" / RESUME_DIR / STATE_FILE).is_file()
    other = torch.nn.Linear(2, 2)
    with pytest.raises(UserError, match="does not fit"):
        read_resume(tmp_path / "m", other, torch.optim.Adam(other.parameters()))


def test_l1_sc_gradient_bounded_for_wild_predictions():
    target = torch.rand(2, 9, 5) * 5
    pred = (torch.rand(2, 9, 5) * 80).requires_grad_()  # far above the target, as at initialisation
    loss, parts = make_loss("l1_sc", power_scale=1000.0)(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all() and pred.grad.abs().max() < 1e3


def test_lookahead_and_threads_overrides():
    cfg = effective_config(tiny_cfg(), lookahead=0, threads=2)
    assert cfg.model.lookahead_frames == 0 and cfg.train.num_threads == 2
    assert effective_config(tiny_cfg(), lookahead=3).model.lookahead_frames == 3
    with pytest.raises(UserError, match="lookahead"):
        effective_config(tiny_cfg(), lookahead=-1)
    with pytest.raises(UserError, match="threads"):
        effective_config(tiny_cfg(), threads=-1)


def test_init_from_starts_at_the_given_weights_with_another_lookahead(tmp_path):
    """--init-from: a fine-tune to another lookahead starts exactly at the source weights (lookahead adds
    no parameters) and records its source; a checkpoint of another topology is refused."""
    from rtperformer.model import build_model
    from rtperformer.model.checkpoint import load_model, save_checkpoint

    cfg = tiny_cfg(steps=3, valid_every=3)
    train(cfg, tmp_path / "src", data=synth_data(cfg), progress=False)
    target = effective_config(cfg, lookahead=cfg.model.lookahead_frames + 1, steps=1)
    seen = {}

    def build(c):
        m = build_model(c)
        seen["model"] = m
        return m

    def save(d, model, c, meta):
        seen["meta"] = meta
        save_checkpoint(d, model, c, meta)

    start = {k: v.clone() for k, v in load_model(tmp_path / "src")[0].state_dict().items()}
    train(target, tmp_path / "ft", init_from=tmp_path / "src", data=synth_data(target), progress=False,
          build=build, save=save)
    assert seen["meta"]["init_from"] == str(tmp_path / "src")
    ft, ft_cfg, _ = load_model(tmp_path / "ft")
    assert ft_cfg.model.lookahead_frames == cfg.model.lookahead_frames + 1
    moved = [k for k, v in ft.state_dict().items() if not torch.equal(v, start[k])]
    assert moved  # one Adam step taken from the source weights, not from a fresh init
    fresh = build_model(target).state_dict()
    dist_src = sum(float((ft.state_dict()[k] - start[k]).abs().sum()) for k in start)
    dist_fresh = sum(float((ft.state_dict()[k] - fresh[k]).abs().sum()) for k in start)
    assert dist_src < dist_fresh
    other = load_config("realtime-violin")
    with pytest.raises(UserError, match="does not fit"):
        train(effective_config(other, steps=1), tmp_path / "bad", init_from=tmp_path / "src",
              data=synth_data(effective_config(other, steps=1)), progress=False)
    assert not (tmp_path / "bad").exists()
