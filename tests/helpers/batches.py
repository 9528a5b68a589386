"""A batch source for the loader's worker processes (batchgenerators' data-loader protocol)."""

import numpy as np


class ConstantBatches:
    """Endless batches of one ``(1, 1, 4, 4, 4)`` image filled with ``value`` and an all-background target."""

    def __init__(self, value: float = 0.0):
        self.value = value

    def set_thread_id(self, thread_id):
        pass

    def __iter__(self):
        return self

    def __next__(self):
        return {"data": np.full((1, 1, 4, 4, 4), self.value, np.float32), "target": np.zeros((1, 1, 4, 4, 4), np.int16)}
