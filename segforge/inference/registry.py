"""Which predictor applies a model folder: a registry keyed by the configuration's kind.

* ``"plain"``: :class:`~segforge.inference.predictor.Predictor` (sliding window over the image);
* ``"cascade"``: :class:`~segforge.inference.cascade_predictor.CascadePredictor` (locate ->
  crop -> segment -> paste), for a segmentation configuration with ``cascade`` settings.

The kind comes from the plans (never from a name stored in the folder), so a model folder
from elsewhere can only select a predictor segforge registered.
"""

from __future__ import annotations

from typing import Callable

from segforge.errors import InputError
from segforge.inference.cascade_predictor import CascadePredictor
from segforge.inference.model import ModelFolder
from segforge.inference.predictor import Predictor
from segforge.planning.plans import Configuration
from segforge.registry import look_up

__all__ = ["PREDICTORS", "register_predictor", "predictor_kind", "look_up_predictor", "create_predictor"]

PREDICTORS: dict[str, type[Predictor]] = {"plain": Predictor, "cascade": CascadePredictor}


def register_predictor(name: str) -> Callable[[type[Predictor]], type[Predictor]]:
    """Class decorator adding a :class:`Predictor` subclass to :data:`PREDICTORS` under ``name``."""

    def add(cls: type[Predictor]) -> type[Predictor]:
        if name in PREDICTORS:
            raise ValueError(f"predictor name {name!r} is registered twice")
        PREDICTORS[name] = cls
        return cls

    return add


def predictor_kind(configuration: Configuration) -> str:
    """``"cascade"`` for a segmentation configuration with cascade settings, ``"plain"`` for
    another segmentation configuration; a locator has no predictor of its own."""
    if configuration.kind != "segmentation":
        raise InputError(f"configuration {configuration.name!r} is a {configuration.kind} configuration; "
                         "predict with the segmentation configuration that uses it")
    return "cascade" if configuration.cascade is not None else "plain"


def look_up_predictor(name: str) -> type[Predictor]:
    return look_up(name, PREDICTORS, "predictor")


def create_predictor(model_folder, **kwargs) -> Predictor:
    """The registered predictor for the model folder's configuration, built with ``kwargs``."""
    model = model_folder if isinstance(model_folder, ModelFolder) else ModelFolder.open(model_folder)
    return look_up_predictor(predictor_kind(model.configuration))(model, **kwargs)
