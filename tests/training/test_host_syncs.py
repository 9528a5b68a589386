"""Nothing in the training or validation loop waits for the device per batch (issue 13): the confusion
counts are made without ``torch.bincount`` (which reads the largest value back to size its output), the
losses are summed on the device, and the host reads one number per epoch for each.

On the CPU a copy to the host is invisible, so the tests count the operations that make a GPU wait
wherever they run: scalar reads (``.item()``, ``float()``, ``bool()``) and operations whose output size
depends on the data (``bincount``, ``nonzero``, ``unique``, ``masked_select``)."""

import collections

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from training.test_trainer import options, trainer

from segforge.training.segmentation_trainer import confusion_matrix

SYNCING = {"_local_scalar_dense", "bincount", "nonzero", "unique", "_unique", "_unique2", "unique_consecutive",
           "masked_select", "repeat_interleave", "is_nonzero", "equal", "histc"}


class CountSyncs(TorchDispatchMode):
    """Counts the syncing operations dispatched while it is active."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in SYNCING:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def test_the_counter_sees_what_would_sync():
    x = torch.tensor([0, 2, 2, 1])
    with CountSyncs() as seen:
        x.sum().item()
        torch.bincount(x)
        float(x.max())
        confusion_matrix(x, x.flip(0), 3)
    assert seen.ops == {"_local_scalar_dense": 2, "bincount": 1}


def test_confusion_counts_worked_out_by_hand():
    truth = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 1, 0]])
    # truth rows, prediction columns: (0,0) x2, (0,1) x1, (1,1) x2, (2,2) x1, (2,0) x1, (2,1) x1
    expected = np.array([[2, 1, 0], [0, 2, 0], [1, 1, 1]])
    got = confusion_matrix(truth, pred, 3)
    assert got.dtype == torch.int64 and np.array_equal(got.numpy(), expected)
    labels = torch.randint(0, 4, (2, 5, 6, 7), generator=torch.Generator().manual_seed(0))
    guess = torch.randint(0, 4, (2, 5, 6, 7), generator=torch.Generator().manual_seed(1))
    counts = torch.bincount((labels * 4 + guess).flatten(), minlength=16).view(4, 4)
    assert torch.equal(confusion_matrix(labels, guess, 4), counts)


@pytest.mark.parametrize("augment_on", ["cpu", "gpu"])
def test_a_training_run_reads_the_device_a_fixed_number_of_times_whatever_its_length(tmp_path, augment_on):
    """One epoch of 2 and one of 5 training and validation batches: the same few scalar reads (the
    epoch's mean losses, the per-epoch checks), none per batch, and no data-dependent operation; with
    ``--augment-on gpu`` the torch augmentation (on CPU tensors here) adds none either."""
    counts = {}
    for n in (2, 5):
        t = trainer(tmp_path / str(n), options(augment_on=augment_on, epochs=1, iters_per_epoch=n, val_iters=n,
                                               plots=False))
        with CountSyncs() as seen:
            t.run()
        assert t.history.column("epoch") == [0]
        counts[n] = dict(seen.ops)
    assert counts[2] == counts[5], counts
    assert set(counts[5]) == {"_local_scalar_dense"} and counts[5]["_local_scalar_dense"] <= 6, counts
