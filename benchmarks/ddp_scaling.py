"""Data-parallel search scaling: one search run by torchrun with N ranks against the same search in one process.

Each configuration is a whole `gaeanas search` (data loading included), timed from process start to result.json,
with the same global batch, so the architecture it finds should agree up to floating-point order and BatchNorm
statistics (each rank normalises its share of a batch). Printed: wall seconds, the speed-up over the one-process
run, and each run's final genotype and entropy.

    # this 2-core machine: 2 gloo ranks of 1 thread against 1 process of 2 threads
    python benchmarks/ddp_scaling.py --data /tmp/cifar10/train --ranks 1,2 --threads-per-rank 1 --single-threads 2
    # a GPU machine: 1, 2, 4, 8 GPUs (NCCL), the paper's NB-201 supernet
    python benchmarks/ddp_scaling.py --data /path/to/cifar10/train --device cuda --ranks 1,2,4,8 \
        --channels 16 --cells 5 --batch-size 256 --subset 25000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def search_command(args: argparse.Namespace, out: Path) -> list[str]:
    return ["-m", "gaeanas", "search", "--data", args.data, "--method", args.method, "--epochs", str(args.epochs),
            "--channels", str(args.channels), "--cells", str(args.cells), "--batch-size", str(args.batch_size),
            "--subset", str(args.subset), "--resize", str(args.resize), "--device", args.device, "--out", str(out),
            "--no-progress", *(["--cache-dir", args.cache_dir] if args.cache_dir else [])]


def run(args: argparse.Namespace, ranks: int, threads: int, out: Path) -> tuple[float, dict]:
    """(wall seconds, result.json) of one search with `ranks` processes (1: plain python) of `threads` threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    launcher = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
    start = time.perf_counter()
    proc = subprocess.run(launcher + search_command(args, out), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{ranks} rank(s) failed:\n{proc.stderr[-3000:]}")
    return seconds, json.loads((out / "result.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="an image folder, e.g. CIFAR-10's train/")
    parser.add_argument("--ranks", default="1,2", help="comma-separated rank counts (1: one process, no torchrun)")
    parser.add_argument("--threads-per-rank", type=int, default=1, help="CPU threads of each rank")
    parser.add_argument("--single-threads", type=int, default=None,
                        help="threads of the one-process run (default: ranks x threads-per-rank of the largest run)")
    parser.add_argument("--method", default="gaea-darts")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch, shared by the ranks")
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--resize", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.ranks.split(",")]
    single_threads = args.single_threads or max(counts) * args.threads_per_rank
    work = Path(tempfile.mkdtemp(prefix="ddp-scaling-"))
    rows = []
    try:
        for n in counts:
            threads = single_threads if n == 1 else args.threads_per_rank
            seconds, result = run(args, n, threads, work / f"ranks{n}")
            rows.append((n, threads, seconds, result))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = next((s for n, _, s, _ in rows if n == 1), rows[0][2])
    print(f"search: {args.method}, C={args.channels}, N={args.cells}, global batch {args.batch_size}, "
          f"{args.subset} images at {args.resize}px, {args.epochs} epoch(s), device {args.device}")
    print("| ranks | threads each | wall (s) | speed-up | final entropy | genotype |")
    print("|---|---|---|---|---|---|")
    for n, threads, seconds, result in rows:
        print(f"| {n} | {threads} | {seconds:.1f} | {base / seconds:.2f}x | {result['entropy']:.4f} | "
              f"`{result['genotype']}` |")


if __name__ == "__main__":
    main()
