"""The two-stage cascade: whether to use it, and its ``locator`` and ``cascade_fullres``.

Chosen when the target is small relative to the image (the median bounding box of all
foreground labels together is under ``1/8`` of the image volume) AND the image is much
larger than one ``3d_fullres`` patch (median whole-image voxels at the target spacing over
``4x`` the patch voxels): then a sliding window spends most of its time on background,
and the segmenter's training patches rarely see the target.

* ``locator``: the whole image (no crop to non-zero) at a spacing coarse enough for the
  largest image to fit one patch of edges multiples of 16 (the largest edge in
  ``LOCATOR_EDGES``, at most 96, whose network fits the budget; and at least
  ``LOCATOR_MIN_DOWNSAMPLING`` x the finest ``3d_fullres`` spacing: the locator only has
  to find the centre, the crop margin absorbs its error), regressing a Gaussian heatmap
  at the target's centroid. When that grid leaves the median target under
  ``LOCATOR_TARGET_VOXELS`` voxels across, half the first-stage features buy a finer one
  (a 3-voxel target among look-alikes is a dot like any other).
* ``cascade_fullres``: the segmenter at the ``3d_fullres`` spacing on a crop around the
  located centroid; crop = 95th percentile of the foreground extent plus
  ``LOCATOR_MARGIN_VOXELS`` locator voxels on each side for the locator's error, rounded
  up to the divisibility rule; patch = crop, or smaller when memory requires.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from segforge.errors import InputError
from segforge.networks.memory import training_memory_bytes
from segforge.planning.batch_size_rule import choose_batch_size
from segforge.planning.dataset_stats import (
    max_extent_mm,
    median_shape_at_spacing,
    shapes_at_spacing,
    summary,
    total_voxels_at_spacing,
)
from segforge.planning.patch_size_rule import base_features_for_budget, fit_patch_to_memory
from segforge.planning.plans import CascadeSettings, Configuration, LocatorSettings
from segforge.planning.spacing_rule import resampling_settings
from segforge.planning.topology_rule import describe_topology, fit_topology

__all__ = [
    "CASCADE_BBOX_FRACTION",
    "CASCADE_IMAGE_PATCHES",
    "LOCATOR_EDGES",
    "LOCATOR_MARGIN_VOXELS",
    "LOCATOR_MIN_DOWNSAMPLING",
    "LOCATOR_TARGET_VOXELS",
    "decide_cascade",
    "plan_locator",
    "plan_cascade_fullres",
]

CASCADE_BBOX_FRACTION = 1 / 8
CASCADE_IMAGE_PATCHES = 4.0
LOCATOR_EDGES = (96, 80, 64, 48, 32, 16)
LOCATOR_MIN_DOWNSAMPLING = 2.0  # locator spacing >= this x the finest 3d_fullres spacing
LOCATOR_MARGIN_VOXELS = 2
LOCATOR_TARGET_VOXELS = 4  # the median target should span this many locator voxels (else it looks like noise)
LOCATOR_MIN_FEATURES = 4
LOCATOR_SIGMA_START = 3.0  # voxels; see LocatorSettings.why["sigma_start"]
_FIT_BATCH = 2


def decide_cascade(fingerprint: dict, fullres: Configuration) -> tuple[bool, str]:
    """``(chosen, why)`` from the foreground size and the image size vs. the fullres patch."""
    fraction = summary(fingerprint).get("median_union_bbox_fraction")
    if fraction is None:
        return False, "no foreground statistics (median_union_bbox_fraction missing) -> no cascade"
    image_voxels = float(np.median(np.prod(shapes_at_spacing(fingerprint, fullres.spacing, cropped=False), axis=1)))
    patches = image_voxels / math.prod(fullres.patch_size)
    small = fraction < CASCADE_BBOX_FRACTION
    large = patches > CASCADE_IMAGE_PATCHES
    verdict = "cascade" if small and large else "no cascade"
    why = (
        f"median foreground bbox {fraction:.3f} of the image ({'<' if small else '>='} 1/8) and median image "
        f"{patches:.1f} 3d_fullres patches ({'>' if large else '<='} {CASCADE_IMAGE_PATCHES:g}) -> {verdict}"
    )
    return small and large, why


def plan_locator(
    fingerprint: dict, fullres: Configuration, budget_bytes: int, in_channels: int
) -> Configuration:
    """The heatmap locator: whole image, coarse spacing, one patch covers the largest image."""
    extent = max_extent_mm(fingerprint, cropped=False)  # every image fits the canvas = one patch
    fine = np.maximum(np.asarray(fullres.spacing, dtype=float), LOCATOR_MIN_DOWNSAMPLING * min(fullres.spacing))
    base, _ = base_features_for_budget(budget_bytes)
    target_mm = summary(fingerprint).get("median_union_extent_mm")
    coarsest = float(min(target_mm)) / LOCATOR_TARGET_VOXELS if target_mm else math.inf

    def candidate(edge: int, features: int):
        spacing = np.maximum(fine, extent.max() / edge)
        shape = np.maximum(np.ceil(extent / spacing - 1e-6), 1).astype(int)
        patch, topology = fit_topology(list(spacing), list(shape), base_features=features, deep_supervision=False)
        sample = training_memory_bytes(topology, patch, 1, in_channels, 1)  # one heatmap channel
        return spacing, shape, patch, topology, sample, _FIT_BATCH * sample <= budget_bytes

    for edge in LOCATOR_EDGES:  # the largest edge whose network fits the budget
        spacing, shape, patch, topology, sample, fits = candidate(edge, base)
        if fits:
            break
    resolution_why = f"the median target ({min(target_mm):.1f} mm) spans {min(target_mm) / spacing.max():.1f} voxels" \
        if target_mm else "no foreground size known"
    if spacing.max() > coarsest and base // 2 >= LOCATOR_MIN_FEATURES:
        # too coarse to tell the target from look-alikes: half the features buy a finer grid,
        # the first that reaches the target size, else the finest that fits
        finer = None
        for finer_edge in reversed(LOCATOR_EDGES):  # small edges (coarse grids) first
            option = candidate(finer_edge, base // 2)
            if option[-1] and option[0].max() < spacing.max() - 1e-9:
                finer = (finer_edge, option)
                if option[0].max() <= coarsest:
                    break
        if finer is not None:
            edge, (spacing, shape, patch, topology, sample, _) = finer
            resolution_why = (f"at {base} features the grid would leave the median target under "
                              f"{LOCATOR_TARGET_VOXELS} voxels; with {base // 2} features a patch edge of {edge} "
                              f"fits -> the target ({min(target_mm):.1f} mm) spans "
                              f"{min(target_mm) / spacing.max():.1f} voxels")
    spacing_list = [math.ceil(float(s) * 1e4 - 1e-6) / 1e4 for s in spacing]  # rounded up: the image still fits
    median_shape = median_shape_at_spacing(fingerprint, spacing_list, cropped=False)
    dataset_voxels = total_voxels_at_spacing(fingerprint, spacing_list, cropped=False)
    batch, batch_why = choose_batch_size(sample, budget_bytes, patch, dataset_voxels, 3)
    sigma_start = LOCATOR_SIGMA_START
    settings = LocatorSettings(
        target="union",
        sigma_start=sigma_start,
        sigma_min=1.5,
        sigma_shrink_factor=0.7,
        shrink_patience=3,
        loss="kl",
        symmetric=False,
    )
    settings.why = {
        "target": "one heatmap at the centroid of all foreground labels together (the crop must hold them all)",
        "sigma_start": (f"{LOCATOR_SIGMA_START:g} voxels, about the target's radius: with the KL loss a narrow "
                        "target cannot collapse to the all-zero map, and a wide start (1/4 of the image) taught "
                        "a centred blob instead of the target (docs/cascade.md, measured)"),
        "sigma_min": "1.5 voxels: sharp enough for sub-voxel soft-argmax, still learnable",
        "sigma_shrink_factor": "0.7 per curriculum step (3 -> 2.1 -> 1.5 voxels)",
        "shrink_loss_threshold": "shrink when the val loss falls under half its value at the current sigma's start",
        "shrink_patience": "... or after 3 epochs without improvement",
        "loss": ("kl: KL(target || spatial softmax), a divergence between normalised heatmaps; it makes the voxels "
                 "compete, so look-alikes are pushed down where the target is pushed up (relative MSE learned "
                 "10x slower on look-alike data, docs/cascade.md)"),
        "symmetric": "no left/right mirroring: anatomy is not symmetric in general",
    }
    why = {
        "name": "first stage of the cascade",
        "kind": "heatmap regression of the target's centroid",
        "spacing": (
            f"largest image extent {[round(float(e), 1) for e in extent]} mm over a patch edge of {edge} "
            f"-> {spacing_list} mm (never finer than 3d_fullres {fullres.spacing}, nor than "
            f"{LOCATOR_MIN_DOWNSAMPLING:g}x its finest axis); {resolution_why}"
        ),
        "patch_size": f"the largest whole image {[int(v) for v in shape]} voxels rounded up to the divisibility rule -> {patch}; "
        f"largest edge of {list(LOCATOR_EDGES)} whose network fits the budget",
        "batch_size": batch_why,
        "network": describe_topology(topology, spacing_list) + "; no deep supervision for heatmap regression",
        "normalization": "same as 3d_fullres",
        "resampling": "to the coarse locator spacing, see resampling.why",
        "median_shape": "median whole image shape at the locator spacing",
        "crop_to_nonzero": "False: the locator must see the whole image",
        "data_identifier": "locator",
        "locator": "heatmap curriculum, see locator.why",
        "input_slices": "1: a 3D network",
    }
    return Configuration(
        name="locator",
        kind="locator",
        spacing=spacing_list,
        patch_size=[int(p) for p in patch],
        batch_size=batch,
        network=topology,
        normalization=copy.deepcopy(fullres.normalization),
        resampling=resampling_settings(fullres.spacing, spacing_list),
        median_shape=median_shape,
        crop_to_nonzero=False,
        data_identifier="locator",
        locator=settings,
        why=why,
    )


def plan_cascade_fullres(
    fingerprint: dict,
    fullres: Configuration,
    locator: Configuration,
    budget_bytes: int,
    in_channels: int,
    num_classes: int,
    network_options: dict | None = None,
) -> Configuration:
    """The full-resolution segmenter of the cascade, on crops around the centroid (its network:
    ``network_options``, the topology fields of the chosen network family)."""
    spacing = np.asarray(fullres.spacing, dtype=float)
    if summary(fingerprint).get("p95_union_extent_mm") is None:
        raise InputError("the cascade needs foreground to size its crop, but no training case has any label")
    p95 = np.asarray(summary(fingerprint)["p95_union_extent_mm"], dtype=float)
    margin = LOCATOR_MARGIN_VOXELS * np.asarray(locator.spacing, dtype=float) / spacing  # fullres voxels per side
    raw_crop = [int(v) for v in np.ceil(p95 / spacing + 2 * margin)]
    crop, _ = fit_topology(fullres.spacing, raw_crop)
    fit = fit_patch_to_memory(fullres.spacing, crop, budget_bytes, in_channels, num_classes, _FIT_BATCH,
                              network_options=network_options)
    median_shape = median_shape_at_spacing(fingerprint, fullres.spacing, cropped=False)
    n_cases = max(1, len(fingerprint.get("cases") or []))
    batch, batch_why = choose_batch_size(fit.sample_bytes, budget_bytes, fit.patch_size, n_cases * math.prod(crop), 3)
    error_mm = round(float(np.mean(locator.spacing)), 3)
    cascade = CascadeSettings(locator_configuration="locator", crop_size=[int(c) for c in crop],
                              expected_locator_error_mm=error_mm)
    cascade.why = {
        "locator_configuration": "the crop is centred on this configuration's predicted centroid",
        "crop_size": (
            f"p95 foreground extent {[round(float(v), 1) for v in p95]} mm = "
            f"{[round(float(v), 1) for v in p95 / spacing]} voxels + {LOCATOR_MARGIN_VOXELS} locator voxels "
            f"({[round(float(m), 1) for m in margin]} voxels) each side -> {raw_crop}, rounded up to the "
            f"divisibility rule -> {crop}"
        ),
        "expected_locator_error_mm": "one locator voxel (mean locator spacing) until the locator's measured error replaces it",
    }
    patch_why = fit.patch_why.replace("median shape", "crop size")
    why = {
        "name": "second stage of the cascade",
        "kind": "segmentation of the crop around the located centroid",
        "spacing": f"same as 3d_fullres: {fullres.why.get('spacing', fullres.spacing)}",
        "patch_size": patch_why,
        "batch_size": batch_why + " (dataset = one crop per case)",
        "network": fit.network_why,
        "normalization": "same as 3d_fullres",
        "resampling": "same as 3d_fullres",
        "median_shape": "median whole image shape at the 3d_fullres spacing",
        "crop_to_nonzero": "False: crops are placed by the locator on the whole image",
        "data_identifier": "cascade_fullres",
        "cascade": "crop around the located centroid, see cascade.why",
        "input_slices": "1: a 3D network",
    }
    return Configuration(
        name="cascade_fullres",
        kind="segmentation",
        spacing=list(fullres.spacing),
        patch_size=list(fit.patch_size),
        batch_size=batch,
        network=fit.topology,
        normalization=copy.deepcopy(fullres.normalization),
        resampling=copy.deepcopy(fullres.resampling),
        median_shape=median_shape,
        crop_to_nonzero=False,
        data_identifier="cascade_fullres",
        cascade=cascade,
        why=why,
    )
