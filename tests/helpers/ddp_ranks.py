"""What each process of the two-process (gloo) tests in tests/training/test_distributed.py does."""

from __future__ import annotations

import time
import types
from pathlib import Path

import numpy as np
import torch

from segforge.planning.plans import Plans
from segforge.training.distributed import batch_share
from segforge.training.options import TrainingOptions
from segforge.training.segmentation_trainer import SegmentationTrainer

__all__ = ["make_trainer", "global_batch", "one_step", "train_stop_and_resume", "both"]


def make_trainer(preprocessed: Path, output: Path, **options) -> SegmentationTrainer:
    plans = Plans.load(Path(preprocessed) / "plans.json")
    base = dict(epochs=2, iters_per_epoch=2, val_iters=3, num_workers=0, cpu_threads=1, progress_bar=False,
                plots=False, augment_on="cpu", seed=11)
    base.update(options)
    return SegmentationTrainer(plans, "3d_fullres", 0, output_folder=output, device="cpu",
                               options=TrainingOptions(**base), preprocessed_dir=preprocessed, log=lambda *_: None)


def global_batch(trainer: SegmentationTrainer) -> dict:
    """A fixed batch of the planned (global) size: noise images, labels 0..2 with structure."""
    rng = np.random.RandomState(3)
    b = trainer.configuration.batch_size
    patch = trainer.configuration.patch_size
    target = (rng.uniform(size=(b, 1, *patch)) * 3).astype(np.int16)
    data = rng.normal(size=(b, 1, *patch)).astype(np.float32) + target
    return {"data": torch.from_numpy(data), "target": torch.from_numpy(target)}


def one_step(rank: int, preprocessed: str, output: str) -> dict:
    """This rank's gradients after one train step on its share of the global batch, and the validation
    numbers; ``rank`` -1 is the single process holding the whole batch."""
    trainer = make_trainer(Path(preprocessed), Path(output) / "step" / f"rank{rank}")
    trainer.initialize()
    trainer.wrap_network()
    batch = global_batch(trainer)
    world, me = trainer.dist.world_size, trainer.dist.rank
    lower = sum(batch_share(trainer.configuration.batch_size, r, world) for r in range(me))
    mine = {k: v[lower:lower + trainer.batch_size] for k, v in batch.items()}
    loss = trainer.train_step(trainer.prepare_batch(mine))
    grads = {name: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)).numpy()
             for name, p in trainer.plain_network.named_parameters()}
    trainer.make_training_loader()
    val_loss, dice, _ = trainer.validate_patches(keep_example=False)
    for loader in trainer.loaders + [trainer.val_loader]:
        loader.close()
    return {"grads": grads, "loss": float(loss), "batch_size": trainer.batch_size, "val_loss": val_loss,
            "dice": dice, "writes_files": trainer.writes_files}


def train_stop_and_resume(rank: int, preprocessed: str, output: str) -> dict:
    """Train under a tiny time budget with rank 1's clock running 1000x slower (alone it would go on),
    then resume both ranks into rank 0's folder for the full three epochs."""
    import segforge.training.trainer as trainer_module

    if rank == 1:
        real = time.monotonic
        trainer_module.time = types.SimpleNamespace(monotonic=lambda: real() / 1000, perf_counter=time.perf_counter)
    first = make_trainer(Path(preprocessed), Path(output) / f"rank{rank}", epochs=3, max_minutes=1e-4)
    first.run()
    resumed = make_trainer(Path(preprocessed), Path(output) / "rank0", epochs=3)
    resumed.run(resume=True)
    return {"first": first.history.column("epoch"), "resumed": resumed.history.column("epoch"),
            "losses": first.history.column("train_loss"), "writes_files": first.writes_files}


def both(rank: int, step_data: str, run_data: str, output: str) -> dict:
    """:func:`one_step` and :func:`train_stop_and_resume` in one start of the processes."""
    return {"step": one_step(rank, step_data, output), "run": train_stop_and_resume(rank, run_data, output)}
