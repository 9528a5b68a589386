"""segforge's resampling against nnU-Net's way (skimage ``resize``) and ``scipy.ndimage.zoom``.

    python benchmarks/bench_resampling.py                 # 200^3 -> 250^3 and 140^3, one thread
    python benchmarks/bench_resampling.py --edge 128 --threads 4

Images: cubic (order 3) resampling of a smooth random volume. Labels: an ellipsoid and a
sphere (3 classes with background) through one-hot linear interpolation + arg-max, which
nnU-Net does with one skimage ``resize(order=1)`` per class. Best of two runs for segforge,
one run for the others; one result line per target size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.ndimage as ndi
import torch
from skimage.transform import resize

from segforge.preprocessing import resample_image, resample_label


def _seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edge", type=int, default=200, help="edge of the input cube (default 200)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for segforge (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.edge
    rng = np.random.default_rng(0)
    vol = ndi.gaussian_filter(rng.normal(size=(n, n, n)).astype(np.float32), 2)
    zz, yy, xx = np.indices(vol.shape) / n * 200
    seg = np.zeros(vol.shape, np.int16)
    seg[((zz - 100) / 40) ** 2 + ((yy - 90) / 50) ** 2 + ((xx - 100) / 30) ** 2 < 1] = 1
    seg[(zz - 120) ** 2 + (yy - 120) ** 2 + (xx - 80) ** 2 < 15**2] = 2
    for edge in (round(n * 1.25), round(n * 0.7)):
        target = (edge, edge, edge)
        ours = _seconds(lambda: resample_image(vol[None], target, 3), 2)
        zoom = _seconds(lambda: ndi.zoom(vol, edge / n, order=3, mode="nearest", grid_mode=True), 1)
        skimage = _seconds(lambda: resize(vol, target, order=3, mode="edge", anti_aliasing=False), 1)
        ours_seg = _seconds(lambda: resample_label(seg, target), 2)
        skimage_seg = _seconds(
            lambda: [resize((seg == k).astype(np.float32), target, order=1, mode="edge", anti_aliasing=False)
                     for k in (0, 1, 2)], 1)
        print(f"{n}^3 -> {edge}^3: image order 3: segforge {ours:.2f} s ({args.threads} thread), "
              f"scipy zoom {zoom:.2f} s, skimage resize {skimage:.2f} s; labels one-hot linear (3 classes): "
              f"segforge {ours_seg:.2f} s, skimage per class {skimage_seg:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
