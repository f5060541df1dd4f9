"""Checkpoints: safetensors round trip, fp16 storage, config mismatch and missing models are UserErrors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rtperformer.config import load_config
from rtperformer.errors import UserError
from rtperformer.model import build_model, load_model, save_checkpoint
from rtperformer.model.checkpoint import WEIGHTS


def test_round_trip(tmp_path):
    cfg = load_config("tiny-test")
    model = build_model(cfg).eval()
    d = save_checkpoint(tmp_path / "m", model, cfg, {"step": 7, "metrics": {"valid_loss": 0.5}})
    assert sorted(p.name for p in d.iterdir()) == ["config.yaml", "meta.json", "model.safetensors"]
    loaded, cfg2, meta = load_model(d)
    assert cfg2 == cfg
    assert meta["step"] == 7 and meta["param_count"] == sum(p.numel() for p in model.parameters())
    assert not loaded.training
    x = torch.rand(1, model.in_channels, 20)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert b"\x80" not in (d / WEIGHTS).read_bytes()[:8]  # not a pickle


def test_fp16_storage(tmp_path):
    cfg = load_config("tiny-test")
    model = build_model(cfg).eval()
    d32 = save_checkpoint(tmp_path / "f32", model, cfg, {})
    d16 = save_checkpoint(tmp_path / "f16", model, cfg, {}, fp16=True)
    assert (d16 / WEIGHTS).stat().st_size < 0.6 * (d32 / WEIGHTS).stat().st_size
    assert json.loads((d16 / "meta.json").read_text())["dtype"] == "float16"
    loaded, _, _ = load_model(d16)
    assert next(loaded.parameters()).dtype == torch.float32
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), k


def test_mismatched_config_raises(tmp_path):
    cfg = load_config("tiny-test")
    d = save_checkpoint(tmp_path / "m", build_model(cfg), cfg, {})
    other = cfg.replace(model=dataclasses.replace(cfg.model, channels=(8, 12, 16, 24, 40)))
    with pytest.raises(UserError, match="does not fit config"):
        load_model(d, cfg_override=other)
    # an override that fits (other render settings) is accepted
    ok = cfg.replace(render=dataclasses.replace(cfg.render, chunk_frames=8))
    _, cfg3, _ = load_model(d, cfg_override=ok)
    assert cfg3.render.chunk_frames == 8


def test_missing_model_names_train(tmp_path):
    with pytest.raises(UserError, match="rtperformer train"):
        load_model("no-such-model-xyz")
    with pytest.raises(UserError):
        load_model(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / WEIGHTS).write_bytes(b"not safetensors")
    (tmp_path / "bad" / "config.yaml").write_text("name: x\n")
    with pytest.raises(UserError):
        load_model(tmp_path / "bad")
