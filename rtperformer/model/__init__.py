"""PerformanceNet in torch: paper (offline) and streaming (causal, explicit state) forms, and checkpoints."""

from rtperformer.model.checkpoint import DEFAULT_MODELS, load_model, save_checkpoint
from rtperformer.model.performancenet import PerformanceNet, StepModule, build_model, count_parameters

__all__ = ["DEFAULT_MODELS", "PerformanceNet", "StepModule", "build_model", "count_parameters", "load_model",
           "save_checkpoint"]
