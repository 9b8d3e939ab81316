"""What drives skip collapse at CPU scale: the `cpu-deep` NAS-Bench-201 grid with one factor changed at a time.

Each variant reruns the chosen methods, objectives and seeds at `cpu-deep` with one setting changed (image size,
search length, the weights' LR schedule, the architecture step size, the width), into OUT/<variant>/runs/, and
prints one row per variant, method and objective: the collapse rate (final cell with 5+ skip edges) with its Wilson
95% interval, the mean NAS-Bench-201 CIFAR-10 accuracy, and the epoch at which the skip count first reached 5.
Finished runs are reused, so the command can be stopped and started again; the table goes to OUT/ablation.md.

    python benchmarks/collapse_ablation.py --data /tmp/cifar10/train --benchmark nb201-tss-test-acc.csv \\
        --out docs/results/collapse-ablation --baseline docs/results/nb201-cpu-deep --seeds 0-9
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gaeanas.cli import parse_seeds
from gaeanas.runtime import resolve_device
from gaeanas.report import aggregate, first_collapse_epoch, load_run
from gaeanas.reproduce import GridRun, build_grid, grid_config, run_grid
from gaeanas.search import SearchConfig

SCALE = "cpu-deep"


def _arch_lr_times(factor: float) -> Callable[[GridRun], dict[str, Any]]:
    def overrides(run: GridRun) -> dict[str, Any]:
        default = SearchConfig(space="nb201", method=run.method, objective=run.objective).resolved().arch_lr
        return {"arch_lr": default * factor}
    return overrides


# variant -> the one setting it changes against the cpu-deep preset (C=8, N=5, 16x16 images, 20 epochs for the
# DARTS family, the reference's cosine over 50 scaled epochs), as a function of the grid run.
VARIANTS: dict[str, Callable[[GridRun], dict[str, Any]]] = {
    "baseline": lambda run: {},
    "images-32px": lambda run: {"resize": 32},
    "epochs-x2": lambda run: {"epochs": 2 * grid_config(run, SCALE, "unused", None).epochs},
    "lr-one-cosine": lambda run: {"lr_cycle": 0},
    "arch-lr-x0.3": _arch_lr_times(0.3),
    "arch-lr-x3": _arch_lr_times(3.0),
    "channels-16": lambda run: {"channels": 16},
}


def run_variant(name: str, grid: list[GridRun], out: Path, data: str, benchmark: str, device: torch.device,
                report_only: bool) -> list[Path]:
    """Run (or, with report_only, find) one variant's grid; returns the finished run directories."""
    paths = []
    for run in grid:
        if not report_only:
            run_grid([run], out, SCALE, data, benchmark, device, **VARIANTS[name](run))
        path = out / "runs" / run.name
        if (path / "result.json").is_file():
            paths.append(path)
    return paths


def ablation_rows(name: str, paths: list[Path]) -> list[list[str]]:
    """One table row per method and objective of a variant."""
    runs = [load_run(p) for p in paths]
    rows = []
    for row in aggregate(runs):
        group = [r for r in runs if r.group == (row["method"], row["objective"])]
        epochs = [first_collapse_epoch(r) for r in group]
        reached = [e for e in epochs if e is not None]
        k, n, low, high = row["collapse"]
        mean, std = row["cifar10"] if row["cifar10"] else (float("nan"), float("nan"))
        rows.append([name, row["method"], row["objective"], str(n), f"{k}/{n} ({100 * low:.0f}–{100 * high:.0f}%)",
                     f"{mean:.2f} ± {std:.2f}", f"{row['skip_edges'][0]:.2f}",
                     f"{np.mean(reached):.1f} ({len(reached)} of {n})" if reached else "never",
                     " ".join("-" if e is None else str(e) for e in epochs)])
    return rows


HEADER = ["Variant", "Method", "Objective", "Seeds", "Collapsed (95% CI)", "CIFAR-10", "Skip edges",
          "First epoch with 5+ skips (mean)", "Per seed"]


def format_rows(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 training images (folder or python release)")
    p.add_argument("--benchmark", required=True, help="NAS-Bench-201 table (CSV)")
    p.add_argument("--out", type=Path, required=True, help="results folder: OUT/<variant>/runs/...")
    p.add_argument("--baseline", type=Path, default=None,
                   help="a `gaeanas reproduce nb201 --scale cpu-deep` folder whose runs are the baseline variant")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--methods", default="gaea-darts,darts")
    p.add_argument("--objectives", default="bilevel")
    p.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="0-9 or 0,1,2")
    p.add_argument("--device", default="auto")
    p.add_argument("--report-only", action="store_true", help="run nothing: tabulate the finished runs")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    grid = build_grid(args.methods.split(","), args.objectives.split(","), args.seeds)
    device = resolve_device(args.device)
    rows = []
    for name in variants:
        out = args.baseline if name == "baseline" and args.baseline else args.out / name
        paths = run_variant(name, grid, out, args.data, args.benchmark, device, args.report_only)
        rows += ablation_rows(name, paths) if paths else []
        print(f"{name}: {len(paths)} of {len(grid)} runs finished", flush=True)
    table = format_rows(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
