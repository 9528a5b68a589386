"""``plan_experiment``: fingerprint dict -> :class:`Plans` (pure: no I/O).

The rules live in their own modules (``spacing_rule``, ``topology_rule``,
``patch_size_rule``, ``batch_size_rule``, ``normalization_rule``, ``cascade_rule``); this
module composes them into the ``2d``, ``2.5d`` (``slice_stack_rule``), ``3d_fullres`` and, when
chosen, ``locator`` + ``cascade_fullres`` configurations, applies the user's :class:`PlanOverrides`, and picks
the default configuration. Every field carries its reason in a ``why`` mapping.
See docs/planning.md.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from segforge.errors import InputError
from segforge.io.labels import parse_label_scheme, select_labels
from segforge.networks.memory import training_memory_bytes
from segforge.networks.topology import NETWORK_FAMILIES, network_family_options
from segforge.planning.batch_size_rule import choose_batch_size
from segforge.planning.cascade_rule import decide_cascade, plan_cascade_fullres, plan_locator
from segforge.planning.dataset_stats import (
    median_shape_at_spacing,
    num_channels,
    num_classes,
    summary,
    total_voxels_at_spacing,
)
from segforge.planning.normalization_rule import channel_normalizations
from segforge.planning.overrides import USER_OVERRIDE, PlanOverrides
from segforge.planning.patch_size_rule import (
    ACTIVATION_FRACTION,
    base_features_for_budget,
    fit_patch_to_memory,
    memory_budget_bytes,
)
from segforge.planning.plans import Configuration, Plans
from segforge.planning.slice_stack_rule import adjacent_slices
from segforge.planning.spacing_rule import anisotropy, resampling_settings, target_spacing
from segforge.planning.topology_rule import describe_topology, fit_topology

__all__ = ["plan_experiment", "FIT_BATCH_3D", "FIT_BATCH_2D", "FEW_SLICES"]

FIT_BATCH_3D = 2  # the patch must fit this many samples
FIT_BATCH_2D = 12
FEW_SLICES = 16  # fewer slices than the smallest 3D patch edge -> the data are essentially 2D


def plan_experiment(
    fingerprint: dict, gpu_memory_gb: float = 10.0, overrides: PlanOverrides | None = None
) -> Plans:
    """Plans for the dataset described by ``fingerprint`` (see docs/architecture.md)."""
    overrides = overrides or PlanOverrides()
    budget = memory_budget_bytes(gpu_memory_gb)
    scheme, dropped, labels_why = _label_choice(fingerprint, overrides)
    in_channels, classes = num_channels(fingerprint), scheme.num_outputs

    if overrides.spacing is not None:
        spacing, spacing_why = list(overrides.spacing), USER_OVERRIDE
    else:
        spacing, spacing_why = target_spacing(fingerprint)
    normalization = channel_normalizations(fingerprint)
    median_spacing = summary(fingerprint)["median_spacing"]
    network, network_why = _network_choice(overrides)

    fullres = _segmentation_configuration(
        "3d_fullres", fingerprint, spacing, spacing_why, normalization, median_spacing, budget, in_channels, classes,
        overrides, network,
    )
    flat = _segmentation_configuration(
        "2d", fingerprint, spacing, spacing_why, normalization, median_spacing, budget, in_channels, classes,
        overrides, network,
    )
    configurations = {"2d": flat, "2.5d": _stacked_slices(flat), "3d_fullres": fullres}

    cascade, cascade_why = decide_cascade(fingerprint, fullres)
    if not cascade and overrides.forces_cascade:
        cascade_why += f"; planned anyway: default configuration {overrides.default_configuration!r} is a {USER_OVERRIDE}"
    if cascade or overrides.forces_cascade:
        locator = plan_locator(fingerprint, fullres, budget, in_channels)
        segmenter = plan_cascade_fullres(fingerprint, fullres, locator, budget, in_channels, classes,
                                         network_options=network_family_options(network))
        _note_network(segmenter, network, overrides)
        crops_voxels = len(fingerprint.get("cases") or [1]) * math.prod(segmenter.cascade.crop_size)
        _apply_segmentation_overrides(segmenter, overrides, budget, in_channels, classes, crops_voxels)
        configurations["locator"] = locator
        configurations["cascade_fullres"] = segmenter

    default, default_why = _default_configuration(fullres, cascade, overrides)
    budget_gib = budget / 2**30
    return Plans(
        dataset_name=fingerprint["dataset_name"],
        channel_names=dict(fingerprint["channel_names"]),
        labels=scheme.to_dict()["labels"],
        regions_class_order=list(scheme.regions_class_order) if scheme.regions_class_order is not None else None,
        dropped_labels=dropped,
        configurations=configurations,
        default_configuration=default,
        gpu_memory_gb=float(gpu_memory_gb),
        why={
            "default_configuration": default_why,
            "cascade": cascade_why,
            "gpu_memory_gb": (
                f"activation budget = {ACTIVATION_FRACTION} x {gpu_memory_gb:g} GB = {budget_gib:.2f} GiB "
                "(estimate of activations kept for backward, half precision)"
            ),
            "network": network_why,
            "labels": labels_why,
        },
    )


def _label_choice(fingerprint: dict, overrides: PlanOverrides):
    """The labels the model predicts (all, or the ``--labels`` subset), what was dropped, and why."""
    scheme = parse_label_scheme(fingerprint["labels"], fingerprint.get("regions_class_order"))
    kind = ("regions (sigmoid outputs, regions_class_order " + str(list(scheme.regions_class_order)) + ")"
            if scheme.is_regions else "labels (softmax outputs)")
    ignore = (f"; voxels of the ignore label {scheme.ignore_label} count for no loss or metric and are never "
              "predicted" if scheme.ignore_label is not None else "")
    if not overrides.labels:
        return scheme, {}, f"every label of dataset.json: {scheme.num_outputs} {kind}{ignore}"
    kept = select_labels(scheme, overrides.labels)
    dropped = {n: v for n, v in scheme.labels.items() if n not in kept.labels}
    return kept, dropped, (f"{USER_OVERRIDE} (--labels): kept {', '.join(kept.foreground_names)}; "
                           f"{', '.join(dropped) or 'nothing'} become(s) background: {kept.num_outputs} {kind}{ignore}")


def _network_choice(overrides: PlanOverrides) -> tuple[str, str]:
    """The segmentation configurations' network and why (the locator keeps the plain U-Net)."""
    others = ", ".join(sorted(NETWORK_FAMILIES))
    if overrides.network is not None:
        name = overrides.network
        return name, (f"{name}: {NETWORK_FAMILIES[name]['what']} ({USER_OVERRIDE}, --network; known: {others}); "
                      "the locator keeps the plain unet")
    return "unet", (f"unet: {NETWORK_FAMILIES['unet']['what']} (default; segforge_plan_and_preprocess --network "
                    f"chooses among {others})")


def _note_network(configuration: Configuration, network: str, overrides: PlanOverrides) -> None:
    """A network the user chose is named in the configuration's ``why.network``."""
    if overrides.network is not None:
        configuration.why["network"] = (f"{network} ({USER_OVERRIDE}, --network): "
                                        + configuration.why.get("network", ""))


def _segmentation_configuration(
    name, fingerprint, spacing, spacing_why, normalization, median_spacing, budget, in_channels, classes, overrides,
    network: str = "unet",
) -> Configuration:
    """``3d_fullres`` (patch ``(z, y, x)``) or ``2d`` (patch ``(y, x)`` of z-slices)."""

    dims = 2 if name == "2d" else 3
    median_shape = median_shape_at_spacing(fingerprint, spacing)
    net_spacing = spacing[-dims:]
    fit_batch = FIT_BATCH_2D if dims == 2 else FIT_BATCH_3D
    fit = fit_patch_to_memory(net_spacing, median_shape[-dims:], budget, in_channels, classes, fit_batch,
                              network_options=network_family_options(network))
    dataset_voxels = total_voxels_at_spacing(fingerprint, spacing)
    batch, batch_why = choose_batch_size(fit.sample_bytes, budget, fit.patch_size, dataset_voxels, dims)
    removed = summary(fingerprint).get("median_nonzero_fraction_removed", 0.0)
    why = {
        "name": "2d: slices (y, x) of the 3D grid" if dims == 2 else "3d: patches of the whole (cropped) image",
        "kind": "segmentation",
        "spacing": spacing_why if dims == 3 else f"the 3D grid the slices are cut from: {spacing_why}",
        "patch_size": fit.patch_why,
        "batch_size": batch_why,
        "network": fit.network_why,
        "normalization": "per channel, see each entry's why",
        "resampling": "see resampling.why",
        "median_shape": f"median shape after cropping to non-zero, at spacing {spacing}",
        "crop_to_nonzero": f"True: cropping to the non-zero region removes {removed:.0%} of the median image",
        "data_identifier": (
            "3d_fullres: same spacing, cropping, normalisation and resampling, so the 2d slices are cut from "
            "the 3d_fullres cases"
            if dims == 2
            else "preprocessed cases in ./3d_fullres"
        ),
        "input_slices": "1: each slice alone (2.5d stacks its neighbours)" if dims == 2 else "1: a 3D network",
    }
    configuration = Configuration(
        name=name,
        kind="segmentation",
        spacing=list(spacing),
        patch_size=list(fit.patch_size),
        batch_size=batch,
        network=fit.topology,
        normalization=copy.deepcopy(normalization),
        resampling=resampling_settings(median_spacing, spacing),
        median_shape=median_shape,
        crop_to_nonzero=True,
        data_identifier="3d_fullres",
        why=why,
    )
    _note_network(configuration, network, overrides)
    _apply_segmentation_overrides(configuration, overrides, budget, in_channels, classes, dataset_voxels)
    return configuration


def _stacked_slices(flat: Configuration) -> Configuration:
    """``2.5d``: the ``2d`` configuration fed ``k`` adjacent slices as input channels (``slice_stack_rule``)."""
    k, k_why = adjacent_slices(flat.spacing, flat.median_shape[0])
    stacked = copy.deepcopy(flat)
    stacked.name, stacked.input_slices = "2.5d", k
    stacked.why["name"] = ("2.5d: the 2d network predicting each slice from it and its neighbours, stacked as input "
                           "channels")
    stacked.why["input_slices"] = k_why
    stacked.why["patch_size"] = f"as 2d ({flat.why['patch_size']}); the stacked channels only widen the first convolution"
    return stacked


def _apply_segmentation_overrides(
    configuration: Configuration, overrides: PlanOverrides, budget, in_channels, classes, dataset_voxels
) -> None:
    """Patch size and batch size imposed by the user (topology re-derived for the patch)."""
    dims = configuration.dims
    if overrides.patch_size is not None and len(overrides.patch_size) == dims:
        net_spacing = configuration.spacing[-dims:]
        base, _ = base_features_for_budget(budget)
        patch, topology = fit_topology(
            net_spacing, list(overrides.patch_size), round_up=False, base_features=base,
            **network_family_options(configuration.network.name),
        )
        configuration.patch_size = patch
        configuration.network = topology
        configuration.why["patch_size"] = USER_OVERRIDE
        configuration.why["network"] = describe_topology(topology, net_spacing) + f" (for the {USER_OVERRIDE} patch)"
        if overrides.batch_size is None:
            sample = training_memory_bytes(topology, patch, 1, in_channels, classes)
            batch, batch_why = choose_batch_size(sample, budget, patch, dataset_voxels, dims)
            configuration.batch_size = batch
            configuration.why["batch_size"] = batch_why + f" (for the {USER_OVERRIDE} patch)"
    if overrides.batch_size is not None:
        configuration.batch_size = int(overrides.batch_size)
        configuration.why["batch_size"] = USER_OVERRIDE
    if overrides.batch_size is not None or (overrides.patch_size is not None and len(overrides.patch_size) == dims):
        _check_override_fits(configuration, budget, in_channels, classes)


def _check_override_fits(configuration: Configuration, budget: int, in_channels: int, classes: int) -> None:
    """A patch or batch the user imposed must still fit the memory budget the plan is made for;
    it is refused here, with the estimate, rather than by the out-of-memory killer in training."""
    sample = training_memory_bytes(configuration.network, configuration.patch_size, 1, in_channels, classes)
    needed = sample * configuration.batch_size
    if needed > budget:
        gib = 2**30
        patch = "x".join(map(str, configuration.patch_size))
        raise InputError(
            f"{configuration.name}: patch {patch} at batch {configuration.batch_size} needs about "
            f"{needed / gib:.1f} GB of training activations (estimate), but the plan's budget is {budget / gib:.2f} GB "
            f"({ACTIVATION_FRACTION} x --gpu-memory-gb); choose a smaller --patch-size or --batch-size, or give "
            "--gpu-memory-gb of the GPU that will train")


def _default_configuration(fullres: Configuration, cascade: bool, overrides: PlanOverrides) -> tuple[str, str]:
    if overrides.default_configuration is not None:
        return overrides.default_configuration, USER_OVERRIDE
    if cascade:
        return "cascade_fullres", "cascade chosen (see why.cascade): training it trains the locator, then the segmenter"
    slices = fullres.median_shape[0]
    ratio = anisotropy(fullres.spacing)
    coarse_z = int(np.argmax(fullres.spacing)) == 0
    if slices < FEW_SLICES or (coarse_z and ratio > 6 and slices < 2 * FEW_SLICES):
        return "2d", (
            f"median {slices} slices along z at target spacing (anisotropy {ratio:.1f}): essentially 2D data -> 2d"
        )
    return "3d_fullres", f"median {slices} slices along z, anisotropy {ratio:.1f}: 3D data, no cascade -> 3d_fullres"
