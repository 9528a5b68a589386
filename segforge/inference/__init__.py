"""Prediction: sliding window with mirroring and fold ensembling, export onto the input's grid."""

from segforge.inference.api import Prediction, load_predictor, predict
from segforge.inference.gaussian import gaussian_importance_map
from segforge.inference.inputs import InputCase, discover_cases
from segforge.inference.model import ModelFolder, resolve_model_folder
from segforge.inference.pipeline import predict_cases
from segforge.inference.predictor import Predictor
from segforge.inference.registry import PREDICTORS, create_predictor
from segforge.inference.sliding_window import sliding_window_logits, sliding_window_predict

__all__ = [
    "InputCase",
    "ModelFolder",
    "Prediction",
    "PREDICTORS",
    "Predictor",
    "create_predictor",
    "discover_cases",
    "gaussian_importance_map",
    "load_predictor",
    "predict",
    "predict_cases",
    "resolve_model_folder",
    "sliding_window_logits",
    "sliding_window_predict",
]
