"""PerformanceNet (Wang & Yang, AAAI 2019): ContourNet U-Net + on/off encoder + TextureNet.

Input x (B, C_in, T) in the contract's layout [roll 0:P, onoff P:2P, velocity (if), expression (if),
note-position channels (if)] (P = n_pitches; rtperformer.roll.rolls.stack_inputs). The contour branch gets
everything but onoff, the on/off encoder gets onoff.
Output (B, n_bins, T): log1p(power_scale * |S|^2) frames, output t aligned with input t.

Two forms share one topology (encoder levels with skips, on/off encoder into the deepest decoder steps,
multi-band residual TextureNet, conv head + LeakyReLU):

``paper``: as published. Centred convs, InstanceNorm, MaxPool 2 between encoder levels, stride-2
transposed convs back up. Offline only; any T >= 1 (zero-padded at the end to a multiple of the pooling
factor, at least 2 bottleneck frames, and cropped back). Unlike the public code: the TextureNet residual
is a real ``x + bands(x)``, up-convs double the length exactly (padding from
:func:`~rtperformer.model.padding.transposed_padding`) so no crop-and-pad of skips is needed, and nothing
is low-passed.

``streaming``: an a-trous U-Net. Each MaxPool 2 is replaced by doubling the dilation of the next level
(level l: dilation 2^l) and each stride-2 up-conv by a conv at the deeper level's dilation, so every layer
runs at the frame rate: a level sees the same span of frames as the paper's subsampled level, but the
output for frame t exists as soon as frame t arrives (a pooled net emits frames in blocks of 2^depth and
its output depends on the parity of t). All convs are causal; normalisation is per frame (or none). Each
causal conv keeps (k-1)*d past input frames as state, so step() takes any chunk size n >= 1 and matches
the whole-clip output exactly. Lookahead is a declared output delay: the causal net's output frame j
estimates frame j - lookahead_frames; forward(x) appends lookahead zero frames and drops the first
lookahead outputs, so offline output t is aligned with input t (and is trained that way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtperformer.config import Config
from rtperformer.errors import UserError
from rtperformer.model.layers import Conv, DecoderStep, EncoderLevel, MultiBandResBlock, Stream
from rtperformer.model.padding import pad_to_multiple

FORMS = ("paper", "streaming")


def contour_channels(model_cfg) -> int:
    """Input width of the contour branch: roll + velocity (if) + expression (if) + the note-position
    channels (n_pitches per onset and per release decay constant, if any) + bend (1, if)."""
    p = model_cfg.n_pitches
    n_pos = len(model_cfg.onset_decay_frames) + len(model_cfg.release_decay_frames)
    return (p + (p if model_cfg.velocity else 0) + (1 if model_cfg.expression else 0) + p * n_pos
            + (1 if getattr(model_cfg, "bend_input", False) else 0))


def check_model_config(cfg: Config) -> None:
    """Raise UserError for a model section this code cannot build."""
    m = cfg.model
    depth, n_onoff = len(m.channels), len(m.onoff_channels)
    problems = []
    if m.form not in FORMS:
        problems.append(f"model.form must be one of {', '.join(FORMS)}, got {m.form!r}")
    norms = ("layer", "none") if m.form == "streaming" else ("instance", "layer", "none")
    if m.norm not in norms:
        problems.append(f"model.norm must be one of {', '.join(norms)} for the {m.form} form, got {m.norm!r}"
                        + (" (InstanceNorm reads the whole clip)" if m.norm == "instance" else ""))
    if depth < 2:
        problems.append("model.channels needs at least 2 encoder levels")
    if n_onoff < 2 or n_onoff > depth:
        problems.append(f"model.onoff_channels needs 2..{depth} levels (its deepest levels but the first feed "
                        f"the deepest decoder steps), got {n_onoff}")
    elif m.form == "paper" and depth != n_onoff + 2:
        problems.append(f"paper form: the pooled on/off levels match the decoder resolutions only when "
                        f"len(model.channels) == len(model.onoff_channels) + 2, got {depth} and {n_onoff}")
    if m.decoder_channels and len(m.decoder_channels) != depth - 1:
        problems.append(f"model.decoder_channels needs {depth - 1} widths, got {len(m.decoder_channels)}")
    if m.upsample_kernels and len(m.upsample_kernels) != depth - 1:
        problems.append(f"model.upsample_kernels needs {depth - 1} kernels, got {len(m.upsample_kernels)}")
    if m.form == "paper" and any(k < 2 for k in m.upsample_kernels):
        problems.append("paper form: model.upsample_kernels must be >= 2 (stride-2 transposed convs)")
    if m.form == "paper" and m.lookahead_frames:
        problems.append("model.lookahead_frames applies to the streaming form only (the paper form sees the clip)")
    if (m.onset_decay_frames or m.release_decay_frames) and m.n_pitches != 128:
        problems.append("note-position inputs (model.onset_decay_frames, release_decay_frames) need n_pitches 128")
    if m.lookahead_frames < 0 or m.kernel_size < 1 or m.n_pitches < 1:
        problems.append("model.lookahead_frames must be >= 0, kernel_size and n_pitches >= 1")
    if any(c < 1 for c in (*m.channels, *m.onoff_channels, *m.decoder_channels, *m.upsample_kernels)):
        problems.append("model widths and kernels must be >= 1")
    width = (m.decoder_channels or m.channels[:1])[-1] if m.channels else 0
    if width and any(b < 1 or width % b for b in m.texture_bands):
        problems.append(f"model.texture_bands {list(m.texture_bands)} must divide TextureNet's width {width}")
    if problems:
        raise UserError("; ".join(problems))


class PerformanceNet(nn.Module):
    """x (B, C_in, T) -> (B, n_bins, T). See the module docstring for the two forms."""

    def __init__(self, cfg: Config):
        super().__init__()
        check_model_config(cfg)
        m = cfg.model
        self.streaming = m.form == "streaming"
        self.lookahead_frames = m.lookahead_frames if self.streaming else 0
        self.n_pitches = m.n_pitches
        self.in_channels = m.n_pitches + contour_channels(m)  # onoff + contour inputs
        self.n_bins = cfg.audio.n_bins
        causal, k, norm, slope = self.streaming, m.kernel_size, m.norm, m.leaky_slope
        depth = len(m.channels)
        self.pool_factor = 1 if self.streaming else 2 ** (depth - 1)
        dil = (lambda level: 2**level) if self.streaming else (lambda level: 1)

        widths = [contour_channels(m), *m.channels]
        self.encoder = nn.ModuleList(
            EncoderLevel(widths[i], widths[i + 1], k, dil(i), norm, slope, causal) for i in range(depth))
        onoff = [m.n_pitches, *m.onoff_channels]
        self.onoff_encoder = nn.ModuleList(
            EncoderLevel(onoff[i], onoff[i + 1], k, dil(i), norm, slope, causal) for i in range(len(onoff) - 1))

        dec = list(m.decoder_channels) or list(reversed(m.channels[:-1]))
        up_kernels = list(m.upsample_kernels) or [2] * (depth - 1)
        conds = list(reversed(m.onoff_channels[1:]))  # deepest on/off level feeds the deepest step
        steps, cin = [], m.channels[-1]
        for i in range(depth - 1):
            level = depth - 2 - i  # the encoder level this step returns to
            ccond = conds[i] if i < len(conds) else 0
            steps.append(DecoderStep(cin, dec[i], m.channels[level], ccond, up_kernels[i], k, dil(level),
                                     norm, slope, causal))
            cin = dec[i]
        self.decoder = nn.ModuleList(steps)
        self.texture = nn.ModuleList(MultiBandResBlock(cin, b, k, norm, slope, causal) for b in m.texture_bands)
        self.head = Conv(cin, self.n_bins, k, causal=causal)
        self.slope = slope
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal conv weights, zero biases (as the paper code)."""
        for mod in self.modules():
            if isinstance(mod, (nn.Conv1d, nn.ConvTranspose1d)):
                nn.init.xavier_normal_(mod.weight)
                nn.init.zeros_(mod.bias)

    # -- the network ---------------------------------------------------------------------------------

    def _net(self, x: Tensor, stream: Stream | None) -> Tensor:
        """x (B, C_in, T) -> (B, n_bins, T); paper form: T a multiple of pool_factor."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, T), got {tuple(x.shape)}")
        p = self.n_pitches
        onoff = x[:, p : 2 * p]
        contour = torch.cat([x[:, :p], x[:, 2 * p :]], dim=1) if x.shape[1] > 2 * p else x[:, :p]

        skips, h = [], contour
        for i, level in enumerate(self.encoder):
            if i and not self.streaming:
                h = F.max_pool1d(h, 2)
            h = level(h, stream)
            skips.append(h)
        conds, c = [], onoff
        for level in self.onoff_encoder:
            c = level(c, stream)
            if not self.streaming:
                c = F.max_pool1d(c, 2)
            conds.append(c)
        conds = conds[:0:-1]  # all but the first level, deepest first

        for i, step in enumerate(self.decoder):
            h = step(h, skips[-2 - i], conds[i] if i < len(conds) else None, stream)
        for block in self.texture:
            h = block(h, stream)
        return F.leaky_relu(self.head(h, stream), self.slope)

    def forward(self, x: Tensor) -> Tensor:
        """Whole clip: x (B, C_in, T) -> (B, n_bins, T), output t aligned with input t, any T >= 1."""
        t = x.shape[-1]
        if self.streaming:
            if self.lookahead_frames:
                x = F.pad(x, (0, self.lookahead_frames))
            return self._net(x, None)[..., self.lookahead_frames :]
        extra = _pad_frames(t, self.pool_factor)
        return self._net(F.pad(x, (0, extra)), None)[..., :t]

    # -- streaming -----------------------------------------------------------------------------------

    def init_state(self, batch: int = 1) -> tuple[Tensor, ...]:
        """Zero state (the whole-clip zero padding) as a flat tuple, in the order step() uses it."""
        self._require_streaming()
        p = next(self.parameters())
        probe = Stream(None)
        with torch.no_grad():
            self._net(torch.zeros(batch, self.in_channels, 1, dtype=p.dtype, device=p.device), probe)
        return tuple(torch.zeros_like(s) for s in probe.new_state)

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x (B, C_in, n), state -> (y (B, n_bins, n), new state); any n >= 1.

        Stream output frame j estimates input frame j - lookahead_frames (frames before 0 are warm-up).
        A pure function of (x, *state): nothing on the module changes.
        """
        self._require_streaming()
        stream = Stream(state)
        y = self._net(x, stream)
        return y, stream.finish()

    def _require_streaming(self) -> None:
        if not self.streaming:
            raise UserError("the paper form of PerformanceNet cannot stream; use a streaming config")


class StepModule(nn.Module):
    """forward(x, *state) -> (y, *new_state): PerformanceNet.step in the form torch.onnx.export wants."""

    def __init__(self, model: PerformanceNet):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        y, new_state = self.model.step(x, state)
        return (y, *new_state)


def _pad_frames(length: int, factor: int) -> int:
    """Frames appended in the paper form: to a multiple of the pooling factor, >= 2 bottleneck frames."""
    return pad_to_multiple(length, factor, minimum=2 * factor)  # InstanceNorm needs >= 2 frames in training


def build_model(cfg: Config) -> PerformanceNet:
    """The PerformanceNet of ``cfg.model.form``; float32, training mode."""
    return PerformanceNet(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
