"""Padding arithmetic as small pure functions (no torch), one diagram each.

Notation: ``k`` kernel size, ``d`` dilation, ``x`` an input frame, ``.`` a zero pad frame, ``y`` the output
frame computed from the frames above it (marked ``^``).
"""

from __future__ import annotations


def conv_context(kernel: int, dilation: int = 1) -> int:
    """Frames a conv spans beyond the current one: ``(kernel - 1) * dilation``.

    k=3, d=2 -> 4::

        x x x x x x x
        ^   ^   ^
                y        (y sees 4 frames besides its own)
    """
    if kernel < 1 or dilation < 1:
        raise ValueError(f"kernel and dilation must be >= 1, got {kernel}, {dilation}")
    return (kernel - 1) * dilation


def causal_padding(kernel: int, dilation: int = 1) -> tuple[int, int]:
    """(left, right) zero frames for a causal conv: all context in the past, output t sees t and before.

    k=3, d=1 -> (2, 0)::

        . . x0 x1 x2
        ^ ^ ^            -> y0
          ^ ^  ^         -> y1

    In streaming, the left pad is replaced by the last ``left`` input frames of the previous chunk (the
    layer's state); initial state zeros == this zero padding, so chunked and whole-clip runs agree.
    """
    return conv_context(kernel, dilation), 0


def centred_padding(kernel: int, dilation: int = 1) -> tuple[int, int]:
    """(left, right) zero frames for a centred ("same") conv; an even context puts the extra frame left.

    k=3, d=1 -> (1, 1)::

        . x0 x1 x2 .
        ^ ^  ^           -> y0
          ^  ^  ^        -> y1
    """
    ctx = conv_context(kernel, dilation)
    return ctx - ctx // 2, ctx // 2


def pad_to_multiple(length: int, factor: int, minimum: int = 1) -> int:
    """Zero frames to append so that ``length + extra`` is a multiple of ``factor`` and >= ``minimum``.

    length 37, factor 16 -> 11::

        x x ... x (37) . . . . . . . . . . . (11)  = 48 = 3 * 16
    """
    if length < 1 or factor < 1:
        raise ValueError(f"length and factor must be >= 1, got {length}, {factor}")
    target = max(length, minimum)
    target = -(-target // factor) * factor
    return target - length


def transposed_padding(kernel: int, stride: int = 2) -> tuple[int, int]:
    """(padding, output_padding) making ConvTranspose1d(kernel, stride) map length L to exactly stride*L.

    Output length of a transposed conv is ``(L - 1) * stride + kernel - 2 * padding + output_padding``.
    stride 2: k=2 -> (0, 0); k=3 -> (1, 1); k=4 -> (1, 0); k=6 -> (2, 0)::

        k=4, L=2:   a a a a              (input 0 spread over 4 frames, centred on 2 outputs)
                        b b b b          (input 1, two frames later)
                    | y y y y |          cut 1 frame each side -> 4 = 2 * L
    """
    if kernel < stride:
        raise ValueError(f"up-conv kernel {kernel} is smaller than its stride {stride}")
    excess = kernel - stride  # frames beyond stride * L
    padding = -(-excess // 2)
    return padding, 2 * padding - excess
