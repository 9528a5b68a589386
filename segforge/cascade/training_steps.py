"""Registers the cascade segmenter with the training registry (``segforge.training.registry``).

The registry imports this module lazily when ``segforge_train`` needs the
``"cascade_segmenter"`` step (the locator step is registered there already).
"""

from __future__ import annotations

from pathlib import Path

from segforge.planning.plans import Plans
from segforge.training.options import TrainingOptions
from segforge.training.registry import register_step

__all__ = ["train_cascade_segmenter"]


@register_step("cascade_segmenter")
def train_cascade_segmenter(plans: Plans, configuration: str, fold, device, options: TrainingOptions,
                            resume: bool) -> Path:
    from segforge.cascade.cascade_segmenter import CascadeSegmentationTrainer

    return CascadeSegmentationTrainer(plans, configuration, fold, device=device, options=options).run(resume=resume)
