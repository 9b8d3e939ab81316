"""How far the architecture weights have moved from uniform, per architecture step, for search runs.

For each run directory: the largest |theta - 1/k| over the operation weights at the end of each epoch, and their
mean entropy, against the number of architecture steps taken so far (steps per epoch = ceil(held-out images / batch)
under bilevel, the training images under ERM; warm-up epochs take none). Prints the final distance, the final
entropy and the drift per 1,000 architecture steps, and draws OUT (distance and entropy, one line per run).

    python benchmarks/arch_drift.py docs/results/nb201-cpu/runs/gaea-gdas-bilevel-seed0 \\
        docs/results/nb201-cpu-gdas-diagnostic/gaea-gdas-arch-lr-0.1-seed0 --out drift.png
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from gaeanas.report import _pyplot, op_entropy, op_rows
from gaeanas.rundir import read_log


def arch_steps_per_epoch(config: dict) -> int:
    """Architecture steps in one epoch of a run: one per batch of the split the architecture learns from."""
    images = config.get("subset") or 0
    if not images:
        raise SystemExit(f"{config.get('data')}: this script needs a run with --subset (to count its images)")
    split = images // 2 if config["objective"] == "bilevel" else images
    return math.ceil(split / config["batch_size"])


def drift(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(architecture steps after each epoch, max |theta - uniform| then, the entropy then, the run's config)."""
    config = json.loads((run_dir / "config.json").read_text())
    per_epoch = arch_steps_per_epoch(config)
    warmup = config.get("warmup_epochs") or 0
    steps, distance, entropy = [], [], []
    for record in read_log(run_dir):
        entropy.append(op_entropy(record))
        rows = op_rows(record)
        distance.append(max(abs(p - 1.0 / len(row)) for row in rows for p in row))
        steps.append(per_epoch * max(record["epoch"] - warmup, 0))
    return np.array(steps), np.array(distance), np.array(entropy), config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="search run directories")
    p.add_argument("--out", type=Path, required=True, help="the PNG to draw")
    args = p.parse_args(argv)
    plt = _pyplot()
    fig, (ax, ax_h) = plt.subplots(1, 2, figsize=(11, 4))
    print("| Run | Method | Arch lr | Arch steps | Final max abs(theta - 1/k) | Final entropy | Drift per 1k steps |")
    print("|---|---|---|---|---|---|---|")
    for run_dir in args.runs:
        steps, distance, entropy, config = drift(run_dir)
        rate = 1000 * distance[-1] / steps[-1] if steps[-1] else float("nan")
        label = f"{run_dir.name} ({config['method']}, lr {config['arch_lr']:g})"
        ax.plot(steps, distance, label=label)
        ax_h.plot(steps, entropy, label=label)
        print(f"| {run_dir.name} | {config['method']} | {config['arch_lr']:g} | {steps[-1]:,} | {distance[-1]:.4f} | "
              f"{entropy[-1]:.4f} | {rate:.4f} |")
    ax.set_xlabel("architecture steps")
    ax.set_ylabel("max |theta - 1/k| over the operation weights")
    ax.set_title("Distance of the architecture weights from uniform", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax_h.axhline(math.log(len(op_rows(read_log(args.runs[0])[-1])[0])), color="grey", lw=0.8, ls="--")
    ax_h.set_xlabel("architecture steps")
    ax_h.set_ylabel("entropy of the operation weights (nats)")
    ax_h.set_title("Mean entropy (dashed: uniform)", fontsize=10)
    ax_h.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
