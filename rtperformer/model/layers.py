"""Building blocks shared by the paper and the streaming PerformanceNet.

Every block takes ``(x, stream)``: ``stream`` is ``None`` for a whole clip, or a :class:`Stream` for one
:meth:`PerformanceNet.step` call. Only :class:`Conv` touches the stream: it owns the causal choice and, when
streaming, swaps its zero left padding for the last input frames of the previous chunk. No block delays
its output (output frame t is computed at input frame t), so parallel branches (skips, the on/off
encoder) are aligned without extra buffers; the net's one delay is its declared lookahead
(``PerformanceNet.lookahead_frames``: read by the backends, summed by the voice chain, rtperformer/voice/chain.py).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtperformer.model.padding import causal_padding, centred_padding, conv_context, transposed_padding


class Stream:
    """Threads a flat state tuple through one step() call.

    Causal convs with context > 0 call :meth:`extend` in a fixed order; the i-th call reads ``state[i]``
    (B, C_in_i, context_i) and records the new one. ``state=None`` records zero states (used to build
    :meth:`PerformanceNet.init_state` with shapes always in call order). Nothing on a module is mutated,
    so step() stays a pure function of (x, *state) for tracing and ONNX export.
    """

    def __init__(self, state: Sequence[Tensor] | None):
        self.state = state
        self.new_state: list[Tensor] = []

    def extend(self, x: Tensor, context: int) -> Tensor:
        """x (B, C, n) -> (B, C, context + n): the previous frames prepended; stores the last ``context``."""
        if self.state is None:
            past = x.new_zeros(x.shape[0], x.shape[1], context)
        else:
            past = self.state[len(self.new_state)]
        full = torch.cat([past, x], dim=-1)
        self.new_state.append(full[..., full.shape[-1] - context :])
        return full

    def finish(self) -> tuple[Tensor, ...]:
        if self.state is not None and len(self.new_state) != len(self.state):
            raise ValueError(f"step() got {len(self.state)} state tensors, the model has {len(self.new_state)}")
        return tuple(self.new_state)


class Conv(nn.Conv1d):
    """Conv1d owning the causal choice. (B, C_in, T) -> (B, C_out, T), stride 1.

    ``causal=True``: output t sees input t - context .. t (context = (k-1)*d); whole clips are left-padded
    with zeros, streamed chunks with the layer's state (the same frames, so both agree exactly).
    ``causal=False``: centred zero padding (paper form; cannot stream).
    """

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, groups: int = 1, causal: bool = True):
        super().__init__(cin, cout, kernel, dilation=dilation, groups=groups)
        self.causal = causal
        self.pad = causal_padding(kernel, dilation) if causal else centred_padding(kernel, dilation)
        self.context = conv_context(kernel, dilation) if causal else 0  # past frames held as state

    def forward(self, x: Tensor, stream: Stream | None = None) -> Tensor:
        if stream is None or not self.causal:
            return F.conv1d(F.pad(x, self.pad), self.weight, self.bias, 1, 0, self.dilation, self.groups)
        if self.context:
            x = stream.extend(x, self.context)
        return self._taps_matmul(x)

    def _taps_matmul(self, full: Tensor) -> Tensor:
        """full (B, C_in, context + n) -> (B, C_out, n) as one (batched, grouped) matmul over stacked taps.

        Same arithmetic as the dilated conv, but a few-frame dilated or grouped conv1d takes slow generic
        paths on CPU (milliseconds); a matmul does not. Tap j of output t is input frame t + j*d of ``full``.
        """
        (k,), (d,), g, cout = self.kernel_size, self.dilation, self.groups, self.out_channels
        b, cin, n = full.shape[0], full.shape[1], full.shape[2] - self.context
        taps = torch.stack([full[..., j * d : j * d + n] for j in range(k)], dim=2)  # (B, C_in, k, n)
        if g == 1:  # frames as rows: (B, n, C_in*k) @ W^T, the fast layout for few frames
            y = F.linear(taps.reshape(b, cin * k, n).transpose(1, 2), self.weight.reshape(cout, cin * k), self.bias)
            return y.transpose(1, 2)
        taps = taps.reshape(b, g, (cin // g) * k, n).transpose(2, 3)  # (B, g, n, C_in/g*k)
        w = self.weight.reshape(g, cout // g, (cin // g) * k).transpose(1, 2)  # (g, C_in/g*k, C_out/g)
        y = torch.matmul(taps, w).transpose(2, 3).reshape(b, cout, n)
        return y + self.bias[:, None]


class Norm(nn.Module):
    """(B, C, T) -> (B, C, T).

    ``instance``: each channel over the whole clip, no affine (paper; reads the future, offline only).
    ``layer``: each frame over each of ``groups`` equal channel groups, affine per channel (causal).
    ``none``: identity.
    """

    def __init__(self, kind: str, channels: int, groups: int = 1, eps: float = 1e-5):
        super().__init__()
        self.kind, self.groups, self.eps = kind, groups, eps
        if kind == "layer":
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
        elif kind not in ("instance", "none"):
            raise ValueError(f"unknown norm {kind!r}")

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "instance":
            return F.instance_norm(x, eps=self.eps)
        if self.kind == "layer":
            if x.shape[-1] == 1:  # one frame (a live step): normalise over (C, 1), no transposes in the graph
                return self._one_frame(x)
            frames = x.transpose(1, 2)  # (B, T, C)
            if self.groups == 1:
                return F.layer_norm(frames, frames.shape[-1:], self.weight, self.bias, self.eps).transpose(1, 2)
            b, t, c = frames.shape
            y = F.layer_norm(frames.reshape(b, t, self.groups, c // self.groups), (c // self.groups,), eps=self.eps)
            return torch.addcmul(self.bias, y.reshape(b, t, c), self.weight).transpose(1, 2)
        return x

    def _one_frame(self, x: Tensor) -> Tensor:
        """``layer`` norm of a (B, C, 1) input: the same numbers as the (B, T, C) path, in fewer ONNX nodes
        (a 1-frame step graph had two Transposes per norm, a third of its non-constant nodes)."""
        b, c, _ = x.shape
        w, bias = self.weight[:, None], self.bias[:, None]
        if self.groups == 1:
            return F.layer_norm(x, (c, 1), w, bias, self.eps)
        y = F.layer_norm(x.reshape(b, self.groups, c // self.groups, 1), (c // self.groups, 1), eps=self.eps)
        return torch.addcmul(bias, y.reshape(b, c, 1), w)


class ConvNormAct(nn.Module):
    """Conv -> Norm -> LeakyReLU. (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, norm: str, slope: float, causal: bool):
        super().__init__()
        self.conv = Conv(cin, cout, kernel, dilation, causal=causal)
        self.norm = Norm(norm, cout)
        self.slope = slope

    def forward(self, x: Tensor, stream: Stream | None = None) -> Tensor:
        return F.leaky_relu(self.norm(self.conv(x, stream)), self.slope)


class EncoderLevel(nn.Module):
    """Two ConvNormAct at one dilation. (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, norm: str, slope: float, causal: bool):
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, kernel, dilation, norm, slope, causal)
        self.conv2 = ConvNormAct(cout, cout, kernel, dilation, norm, slope, causal)

    def forward(self, x: Tensor, stream: Stream | None = None) -> Tensor:
        return self.conv2(self.conv1(x, stream), stream)


class Upsample(nn.Module):
    """Paper up-conv: ConvTranspose1d stride 2 -> Norm -> LeakyReLU. (B, C_in, T) -> (B, C_out, 2T) exactly."""

    def __init__(self, cin: int, cout: int, kernel: int, norm: str, slope: float):
        super().__init__()
        padding, output_padding = transposed_padding(kernel, 2)
        self.conv = nn.ConvTranspose1d(cin, cout, kernel, stride=2, padding=padding, output_padding=output_padding)
        self.norm = Norm(norm, cout)
        self.slope = slope

    def forward(self, x: Tensor, stream: Stream | None = None) -> Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), self.slope)


class DecoderStep(nn.Module):
    """One U-Net decoder step: up-conv, concat skip, conv; concat on/off features (if any), conv.

    x (B, C_deep, T_deep), skip (B, C_skip, T), cond (B, C_cond, T) or None -> (B, C_out, T).
    Paper: T_deep = T/2 and ``up`` is a stride-2 transposed conv. Streaming: T_deep = T and ``up`` is a
    causal conv at the deeper level's dilation (2 * ``dilation``).
    """

    def __init__(self, cin: int, cout: int, cskip: int, ccond: int, up_kernel: int, kernel: int, dilation: int,
                 norm: str, slope: float, causal: bool):
        super().__init__()
        if causal:
            self.up = ConvNormAct(cin, cout, up_kernel, 2 * dilation, norm, slope, causal)
        else:
            self.up = Upsample(cin, cout, up_kernel, norm, slope)
        self.conv1 = ConvNormAct(cout + cskip, cout, kernel, dilation, norm, slope, causal)
        self.conv2 = ConvNormAct(cout + ccond, cout, kernel, dilation, norm, slope, causal)

    def forward(self, x: Tensor, skip: Tensor, cond: Tensor | None, stream: Stream | None = None) -> Tensor:
        x = self.conv1(torch.cat([self.up(x, stream), skip], dim=1), stream)
        if cond is not None:
            x = torch.cat([x, cond], dim=1)
        return self.conv2(x, stream)


class MultiBandResBlock(nn.Module):
    """TextureNet block: x + bands(x). (B, C, T) -> (B, C, T).

    The C channels are split into ``bands`` equal groups; each group goes through its own
    conv3 -> norm -> LeakyReLU -> conv3 -> norm. The per-band convs are one grouped conv (groups = bands:
    the same weights and arithmetic as separate convs, one call instead of ``bands``); the norm is per band
    (InstanceNorm is per channel anyway; the per-frame layer norm uses one group per band).
    """

    def __init__(self, channels: int, bands: int, kernel: int, norm: str, slope: float, causal: bool):
        super().__init__()
        if channels % bands:
            raise ValueError(f"{channels} channels do not split into {bands} bands")
        self.conv1 = Conv(channels, channels, kernel, groups=bands, causal=causal)
        self.norm1 = Norm(norm, channels, groups=bands)
        self.conv2 = Conv(channels, channels, kernel, groups=bands, causal=causal)
        self.norm2 = Norm(norm, channels, groups=bands)
        self.slope = slope

    def forward(self, x: Tensor, stream: Stream | None = None) -> Tensor:
        h = F.leaky_relu(self.norm1(self.conv1(x, stream)), self.slope)
        return x + self.norm2(self.conv2(h, stream))
