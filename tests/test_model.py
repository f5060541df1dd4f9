"""PerformanceNet: paper topology and size, any-length paper form, streaming == whole clip.

(ONNX export of StepModule is exercised by the backends tests.)
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

torch.set_num_threads(1)  # small tensors: threads only add contention on a shared CI box

from rtperformer.config import load_config
from rtperformer.errors import UserError
from rtperformer.model import build_model, count_parameters
from rtperformer.model.padding import causal_padding, centred_padding, pad_to_multiple, transposed_padding


def with_model(cfg, **changes):
    return cfg.replace(model=dataclasses.replace(cfg.model, **changes))


def rolls(batch: int, channels: int, frames: int, seed: int = 0) -> torch.Tensor:
    """Sparse binary roll-like input (B, C_in, T)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, channels, frames, generator=g) > 0.8).float()


def test_padding_helpers():
    assert causal_padding(3, 4) == (8, 0)
    assert centred_padding(3, 1) == (1, 1) and centred_padding(2, 1) == (1, 0)
    assert pad_to_multiple(37, 16) == 11 and pad_to_multiple(48, 16) == 0 and pad_to_multiple(1, 16, 32) == 31
    for k in (2, 3, 4, 5, 6):
        p, op = transposed_padding(k)
        for n in (1, 5):
            assert (n - 1) * 2 + k - 2 * p + op == 2 * n


def test_paper_parameter_count_on_meta_device():
    """The published model: 249,804,801 parameters, no memory allocated.

    Same count as the public code: TextureNet's per-band convs are one grouped conv each (identical weights
    and arithmetic), the up-conv kernels 6, 4, 3, 2 are kept with paddings that double the length exactly,
    and the output stride-1 ConvTranspose1d(1024, 1025, 3, padding 1) is written as a Conv1d (same count).
    """
    cfg = load_config("performancenet-paper")
    with torch.device("meta"):
        model = build_model(cfg)
    assert count_parameters(model) == 249_804_801
    assert next(model.parameters()).is_meta
    assert model.in_channels == 256 and model.n_bins == 1025


@pytest.mark.parametrize("frames", [1, 37, 861])
def test_paper_form_any_length(frames):
    cfg = with_model(load_config("tiny-test"), form="paper", norm="instance", lookahead_frames=0)
    model = build_model(cfg)
    x = rolls(2, model.in_channels, frames)
    y = model(x)  # training mode: InstanceNorm needs >= 2 bottleneck frames, padding guarantees it
    assert y.shape == (2, cfg.audio.n_bins, frames)
    assert torch.isfinite(y).all()
    with pytest.raises(UserError):
        model.init_state()


def test_paper_form_is_time_equivariant_up_to_norm():
    """Frames past the input are padding only: a clip padded with silence predicts the same length."""
    cfg = with_model(load_config("tiny-test"), form="paper", norm="none", lookahead_frames=0)
    model = build_model(cfg).eval()
    x = rolls(1, model.in_channels, 40)
    with torch.no_grad():
        assert torch.allclose(model(x), model(torch.nn.functional.pad(x, (0, 8)))[..., :40], atol=1e-5)


def test_bad_configs_raise_user_error():
    cfg = load_config("tiny-test")
    for changes in ({"norm": "instance"}, {"form": "wavenet"}, {"texture_bands": (3,)},
                    {"decoder_channels": (8, 8)}, {"onoff_channels": (8,)}):
        with pytest.raises(UserError):
            build_model(with_model(cfg, **changes))


def stream(model, x, chunk):
    state, ys = model.init_state(x.shape[0]), []
    for i in range(0, x.shape[-1], chunk):
        y, state = model.step(x[..., i : i + chunk], state)
        ys.append(y)
    return torch.cat(ys, dim=-1)


@pytest.mark.parametrize("lookahead", [0, 2])
def test_streaming_chunks_equal_whole_clip(lookahead):
    """step() in chunks of 1, 3, 7, 64 == forward() shifted by the declared delay, float32, <= 1e-5.

    Stream frame j estimates input frame j - lookahead; forward() is aligned, so
    stream[..., L:] == whole[..., :T - L]. (float32 roundoff: a few-frame matmul and a whole-clip conv sum in
    different orders; the tiny config keeps that well under 1e-5. The float64 test below checks exactness.)
    """
    torch.manual_seed(0)
    cfg = with_model(load_config("tiny-test"), lookahead_frames=lookahead)
    model = build_model(cfg).eval()
    assert model.lookahead_frames == lookahead
    T = 90
    x = rolls(2, model.in_channels, T, seed=1)
    x[:, -1] = torch.rand(2, T)  # expression: continuous
    with torch.no_grad():
        whole = model(x)
        assert whole.shape == (2, cfg.audio.n_bins, T)
        for chunk in (1, 3, 7, 64):
            out = stream(model, x, chunk)
            assert out.shape == whole.shape
            err = (out[..., lookahead:] - whole[..., : T - lookahead]).abs().max().item()
            assert err <= 1e-5, (chunk, err)


def test_streaming_exact_in_float64():
    torch.manual_seed(1)
    model = build_model(load_config("tiny-test")).eval().double()
    L, T = model.lookahead_frames, 80
    x = rolls(1, model.in_channels, T, seed=2).double()
    with torch.no_grad():
        whole = model(x)
        for chunk in (1, 5):
            assert (stream(model, x, chunk)[..., L:] - whole[..., : T - L]).abs().max() < 1e-10


def test_streaming_is_causal_and_state_is_explicit():
    """Output frame t (whole clip) ignores input frames > t + lookahead; step() leaves the module untouched."""
    model = build_model(load_config("tiny-test")).eval()
    L, T = model.lookahead_frames, 60
    x = rolls(1, model.in_channels, T)
    x2 = x.clone()
    x2[..., 30:] = 1 - x2[..., 30:]
    with torch.no_grad():
        a, b = model(x), model(x2)
        assert torch.equal(a[..., : 30 - L], b[..., : 30 - L])
        assert not torch.allclose(a[..., 30 - L], b[..., 30 - L])
        before = {k: v.clone() for k, v in model.state_dict().items()}
        state = model.init_state()
        assert isinstance(state, tuple) and all(isinstance(s, torch.Tensor) for s in state)
        _, new = model.step(x[..., :4], state)
        assert len(new) == len(state) and all(s.shape == n.shape for s, n in zip(state, new))
        assert all(s.abs().sum() == 0 for s in state)  # inputs not modified in place
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
