"""Synthetic datasets for the demo, the tests and the benchmarks.

``make_synthetic_dataset`` writes a complete raw dataset (nnU-Net layout) with a
``synthetic_truth.json`` saying what was generated, so later stages can be checked
against known answers.
"""

from segforge.synthetic.dataset import KINDS, default_shape, default_spacing, label_truth, make_synthetic_dataset

__all__ = ["KINDS", "default_shape", "default_spacing", "label_truth", "make_synthetic_dataset"]
