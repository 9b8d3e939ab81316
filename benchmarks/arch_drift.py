"""How far the architecture weights have moved from uniform, per architecture step, for search runs.

For each run directory: the largest |theta - 1/k| over the operation weights at the end of each epoch, against the
number of architecture steps taken so far (steps per epoch = ceil(held-out images / batch) under bilevel, the
training images under ERM; warm-up epochs take none). Prints the final distance, the final entropy and the drift per
1,000 architecture steps, and draws OUT (one line per run).

    python benchmarks/arch_drift.py docs/results/nb201-cpu/runs/gaea-gdas-bilevel-seed0 \\
        docs/results/nb201-cpu-gdas-diagnostic/gaea-gdas-arch-lr-0.1-seed0 --out drift.png
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from gaeanas.report import _pyplot, op_entropy
from gaeanas.rundir import read_log


def arch_steps_per_epoch(config: dict) -> int:
    """Architecture steps in one epoch of a run: one per batch of the split the architecture learns from."""
    images = config.get("subset") or 0
    if not images:
        raise SystemExit(f"{config.get('data')}: this script needs a run with --subset (to count its images)")
    split = images // 2 if config["objective"] == "bilevel" else images
    return math.ceil(split / config["batch_size"])


def drift(run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(architecture steps after each epoch, max |theta - uniform| then, the run's config)."""
    config = json.loads((run_dir / "config.json").read_text())
    per_epoch = arch_steps_per_epoch(config)
    warmup = config.get("warmup_epochs") or 0
    steps, distance = [], []
    for record in read_log(run_dir):
        rows = [row for rows in record["arch_weights"].values() if rows and isinstance(rows[0], list) for row in rows]
        distance.append(max(abs(p - 1.0 / len(row)) for row in rows for p in row))
        steps.append(per_epoch * max(record["epoch"] - warmup, 0))
    return np.array(steps), np.array(distance), config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="search run directories")
    p.add_argument("--out", type=Path, required=True, help="the PNG to draw")
    args = p.parse_args(argv)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    print("| Run | Method | Arch lr | Arch steps | Final max abs(theta - 1/k) | Final entropy | Drift per 1k steps |")
    print("|---|---|---|---|---|---|---|")
    for run_dir in args.runs:
        steps, distance, config = drift(run_dir)
        final = read_log(run_dir)[-1]
        rate = 1000 * distance[-1] / steps[-1] if steps[-1] else float("nan")
        label = f"{config['method']} lr {config['arch_lr']:g} ({run_dir.name})"
        ax.plot(steps, distance, label=label)
        print(f"| {run_dir.name} | {config['method']} | {config['arch_lr']:g} | {steps[-1]:,} | {distance[-1]:.4f} | "
              f"{op_entropy(final):.4f} | {rate:.4f} |")
    ax.set_xlabel("architecture steps")
    ax.set_ylabel("max |theta - 1/k| over the operation weights")
    ax.set_title("Distance of the architecture weights from uniform", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
