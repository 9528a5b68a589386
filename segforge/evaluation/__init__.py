"""Segmentation metrics (Dice, IoU, HD95, surface Dice) and folder evaluation."""

from segforge.evaluation.evaluate import evaluate_case, evaluate_folders, format_table, save_summary
from segforge.evaluation.metrics import class_metrics, dice, hd95, iou, surface_dice

__all__ = [
    "class_metrics",
    "dice",
    "evaluate_case",
    "evaluate_folders",
    "format_table",
    "hd95",
    "iou",
    "save_summary",
    "surface_dice",
]
