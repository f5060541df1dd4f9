"""Training objectives on log1p-power spectrogram frames.

All losses take ``pred`` and ``target`` of shape (B, n_bins, T): features ``log1p(power_scale * |S|^2)``
as the model outputs them, and return a scalar tensor plus a dict of float parts for logging.

- ``mse``: the paper's objective, mean squared error on the log1p-power features.
- ``l1``: mean absolute error on the same features. L1 estimates a median rather than a mean, so where
  the model cannot predict a detail (vibrato phase, expression) it blurs less than MSE.
- ``l1_sc``: ``l1`` plus spectral convergence on magnitudes, ``|| |S| - |S^| ||_F / || |S| ||_F`` per
  batch (the usual term of multi-resolution STFT losses; it weights the loud harmonics that MSE on log
  features under-weights). Weighted by ``sc_weight``.
- ``l1_flux``: ``l1`` plus an L1 on the frame-to-frame change of the features (spectral flux, signed, per
  bin: ``mean |diff_t(pred) - diff_t(target)|``), weighted by ``flux_weight``. Plain L1 lets a slow rise
  cost little (it is a few frames of a long note); the flux term charges the attack's missing jump in full
  (issue 12: the models' attack is slower than their target's).
- ``l1_onset``: L1 with the first ``onset_frames`` frames from every note onset (``+1`` in the input's onoff
  rows, x[:, 128:256]) weighted ``onset_weight`` times, normalised by the weights' sum. Needs the input x.

Every loss is called ``loss_fn(pred, target, x=None)``; x (B, C_in, T) is the model input (only
``l1_onset`` reads it).
"""

from __future__ import annotations

from typing import Callable

import torch

LOSSES = ("mse", "l1", "l1_sc", "l1_flux", "l1_onset")
SC_HEADROOM = 2.0  # l1_sc: predictions above max(target) + this (in log1p-power units) are clamped for SC

LossFn = Callable[..., tuple[torch.Tensor, dict[str, float]]]  # (pred, target, x=None) -> (loss, parts)


def features_to_magnitude(features: torch.Tensor, power_scale: float, eps: float = 1e-10) -> torch.Tensor:
    """Invert ``log1p(power_scale*|S|^2)`` to ``|S|`` (same shape), differentiably.

    The square root's gradient is infinite at 0, so the power is clamped to ``eps`` before it.
    """
    power = torch.expm1(features).clamp_min(0.0) / power_scale
    return torch.sqrt(power + eps)


def spectral_convergence(pred_mag: torch.Tensor, target_mag: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``||target - pred||_F / ||target||_F`` over the whole batch; inputs (B, n_bins, T) magnitudes.

    One ratio for the batch, not a mean of per-clip ratios: a clip that is nearly silent (a rest) has a
    tiny norm, and its ratio would dominate the mean and the gradient.
    """
    return (target_mag - pred_mag).norm() / (target_mag.norm() + eps)


def spectral_flux_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean |diff_t(pred) - diff_t(target)|`` over (B, n_bins, T-1); 0 for T < 2."""
    if pred.shape[-1] < 2:
        return pred.new_zeros(())
    return torch.mean(torch.abs(torch.diff(pred, dim=-1) - torch.diff(target, dim=-1)))


def onset_weights(x: torch.Tensor, frames: int, weight: float, n_pitches: int = 128) -> torch.Tensor:
    """(B, 1, T) frame weights: ``weight`` on the ``frames`` frames from each onset (onoff == +1 in any
    pitch of x (B, C_in, T), rows n_pitches:2*n_pitches), 1 elsewhere."""
    onset = (x[:, n_pitches:2 * n_pitches] > 0.5).any(dim=1, keepdim=True).float()  # (B, 1, T)
    # frame t is in an attack when an onset lies in t-frames+1 .. t: a causal running max
    near = torch.nn.functional.max_pool1d(torch.nn.functional.pad(onset, (frames - 1, 0)), frames, stride=1)
    return 1.0 + (weight - 1.0) * near


def make_loss(name: str, power_scale: float = 1.0, sc_weight: float = 1.0, flux_weight: float = 1.0,
              onset_weight: float = 4.0, onset_frames: int = 12) -> LossFn:
    """The loss function called ``name`` (one of :data:`LOSSES`); unknown names raise ValueError."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")

    def loss_fn(pred: torch.Tensor, target: torch.Tensor, x: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        if name == "l1_onset":
            if x is None:
                raise ValueError("loss l1_onset needs the model input x (its onset rows)")
            w = onset_weights(x, onset_frames, onset_weight)
            err = torch.mean(torch.abs(pred - target), dim=1, keepdim=True)  # (B, 1, T)
            loss = torch.sum(w * err) / torch.sum(w)
            return loss, {"l1_onset": float(loss.detach()), "l1": float(err.mean().detach())}
        if name == "mse":
            loss = torch.mean((pred - target) ** 2)
            return loss, {"mse": float(loss.detach())}
        l1 = torch.mean(torch.abs(pred - target))
        if name == "l1":
            return l1, {"l1": float(l1.detach())}
        if name == "l1_flux":
            flux = spectral_flux_l1(pred, target)
            return l1 + flux_weight * flux, {"l1": float(l1.detach()), "flux": float(flux.detach())}
        # Magnitudes in float32 even under autocast: expm1 of fp16 features overflows. Predictions far
        # above anything in the batch's target (an untrained net) are clamped for this term, so its
        # gradient cannot explode through expm1; L1 still pulls them down.
        t32 = target.float()
        ceiling = float(t32.max().detach()) + SC_HEADROOM
        sc = spectral_convergence(
            features_to_magnitude(pred.float().clamp(max=ceiling), power_scale),
            features_to_magnitude(t32, power_scale),
        )
        loss = l1 + sc_weight * sc
        return loss, {"l1": float(l1.detach()), "sc": float(sc.detach())}

    return loss_fn


def feature_metrics(pred: torch.Tensor, target: torch.Tensor, power_scale: float) -> dict[str, float]:
    """Loss-independent numbers for validation, so runs with different losses compare.

    Inputs (B, n_bins, T) features. Returns ``mse`` and ``l1`` on features and ``sc`` on magnitudes.
    """
    with torch.no_grad():
        pred = pred.float()
        target = target.float()
        sc = spectral_convergence(
            features_to_magnitude(pred, power_scale), features_to_magnitude(target, power_scale)
        )
        return {
            "mse": float(torch.mean((pred - target) ** 2)),
            "l1": float(torch.mean(torch.abs(pred - target))),
            "sc": float(sc),
        }
