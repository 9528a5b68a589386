"""Preprocessing throughput and memory, and segforge's resampling against scipy.ndimage.zoom.

    python benchmarks/bench_preprocessing.py                      # 8 synthetic CT cases of 96x160x160
    python benchmarks/bench_preprocessing.py --num-cases 16 -np 4
    python benchmarks/bench_preprocessing.py --smoke

1. ``segforge_plan_and_preprocess`` on a synthetic dataset, as a child process: wall time,
   cases/s and the peak resident memory of its whole process tree (workers included);
   then again with the plans' preprocessed cases deleted, so only planning and
   preprocessing run (verification and fingerprint are reused while the raw files are
   unchanged): preprocessing cases/s.
2. Cubic (order 3) resampling of one volume (default 160^3, smooth random values) to a
   coarser and a finer grid: ``segforge.preprocessing.resample_image`` (separable, torch;
   with all threads and with one) against ``scipy.ndimage.zoom(order=3)`` (one thread),
   and how far apart their results are (scipy in voxel-centre mode, the convention
   segforge uses, mean absolute difference relative to the volume's standard deviation).
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
from _common import (
    Timer,
    base_parser,
    make_organs_dataset,
    run_measured,
    use_workdir,
    write_result,
)


def main(argv=None) -> int:
    parser = base_parser(__doc__, "bench_preprocessing")
    parser.add_argument("--num-cases", type=int, default=8, help="synthetic training cases (default 8)")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 160, 160), metavar=("Z", "Y", "X"),
                        help="voxels per case (default 96 160 160)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="preprocessing processes (default 2)")
    parser.add_argument("--resample-edge", type=int, default=160, help="edge of the resampled cube (default 160)")
    parser.add_argument("--skip-resampling", action="store_true", help="only the dataset part")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_cases, args.shape, args.resample_edge, args.num_processes = 2, (20, 40, 40), 32, 1
    out = args.out or args.workdir / "bench_preprocessing.json"
    env = use_workdir(args.workdir)

    result: dict = {"num_cases": args.num_cases, "shape": list(args.shape), "num_processes": args.num_processes}
    with Timer() as t:
        name = make_organs_dataset(991, args.num_cases, 0, args.shape)
    result["dataset"], result["generate_seconds"] = name, t.seconds

    command = [sys.executable, "-m", "segforge.cli.plan_and_preprocess", "-d", name, "-np", str(args.num_processes),
               "-c", "3d_fullres"]
    full = _measured(command, env, args.workdir / "plan_and_preprocess.log")
    preprocessed = args.workdir / "segforge_preprocessed" / name
    for folder in [p for p in preprocessed.iterdir() if p.is_dir()]:
        shutil.rmtree(folder)  # keep the fingerprint and its raw signature: the second run re-plans and preprocesses
    again = _measured(command, env, args.workdir / "preprocess_again.log")
    result["plan_and_preprocess"] = {
        "seconds": full.seconds, "cases_per_second": args.num_cases / full.seconds,
        "peak_rss_gib": full.peak_rss_bytes / 2**30,
        "what": "verify + fingerprint + plan + preprocess 3d_fullres, child process tree"}
    result["preprocess_only"] = {
        "seconds": again.seconds, "cases_per_second": args.num_cases / again.seconds,
        "peak_rss_gib": again.peak_rss_bytes / 2**30,
        "what": "same command with the preprocessed cases deleted (verification and fingerprint reused)"}
    line = (f"preprocessing {args.num_cases} x {'x'.join(map(str, args.shape))} with -np {args.num_processes}: "
            f"{full.seconds:.1f} s in all ({args.num_cases / full.seconds:.2f} cases/s, peak "
            f"{full.peak_rss_bytes / 2**30:.2f} GiB), {again.seconds:.1f} s without verify+fingerprint "
            f"({args.num_cases / again.seconds:.2f} cases/s)")
    if not args.skip_resampling:
        result["resampling"] = compare_resampling(args.resample_edge)
        for r in result["resampling"]:
            line += (f"; resample {r['from']} -> {r['to']}: segforge {r['segforge_seconds']:.2f} s "
                     f"({r['segforge_1thread_seconds']:.2f} s on 1 thread), scipy zoom {r['scipy_seconds']:.2f} s "
                     f"= {r['speedup']:.0f}x ({r['speedup_1thread']:.0f}x on 1 thread)")
    write_result(out, result, line)
    if not args.keep:
        shutil.rmtree(args.workdir / "raw", ignore_errors=True)
        shutil.rmtree(preprocessed, ignore_errors=True)
    return 0


def _measured(command: list[str], env: dict, log):
    m = run_measured(command, env=env, log_path=log)
    if m.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({m.returncode}), see {log}:\n{m.output_tail}")
    return m


def compare_resampling(edge: int) -> list[dict]:
    """Order-3 resampling of an ``edge``^3 volume to 0.8x and 1.25x the edge: segforge vs scipy."""
    import torch
    from scipy import ndimage

    from segforge.preprocessing import resample_image

    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.standard_normal((edge,) * 3).astype(np.float32), 2.0)
    volume /= volume.std()
    threads = torch.get_num_threads()
    rows = []
    for factor in (0.8, 1.25):
        target = (int(round(edge * factor)),) * 3
        resample_image(volume[None, :8, :8, :8], (4, 4, 4))  # warm-up (operator caches, thread pool)
        with Timer() as t_sf:
            ours = resample_image(volume[None], target, order=3)[0]
        torch.set_num_threads(1)
        try:
            with Timer() as t_sf1:
                resample_image(volume[None], target, order=3)
        finally:
            torch.set_num_threads(threads)
        zoom = [n / edge for n in target]
        with Timer() as t_sp:
            ndimage.zoom(volume, zoom, order=3)  # plain zoom, as a user would call it
        centred = ndimage.zoom(volume, zoom, order=3, mode="mirror", grid_mode=True)
        inner = tuple(slice(4, n - 4) for n in target)  # edges: the two treat the outside differently
        rows.append({
            "from": f"{edge}^3", "to": f"{target[0]}^3", "segforge_seconds": t_sf.seconds,
            "segforge_threads": threads, "segforge_1thread_seconds": t_sf1.seconds, "scipy_seconds": t_sp.seconds,
            "speedup": t_sp.seconds / t_sf.seconds, "speedup_1thread": t_sp.seconds / t_sf1.seconds,
            "mean_abs_difference_vs_scipy_centred": float(np.abs(ours[inner] - centred[inner]).mean()),
            "difference_unit": "standard deviations of the volume",
        })
    return rows


if __name__ == "__main__":
    sys.exit(main())
