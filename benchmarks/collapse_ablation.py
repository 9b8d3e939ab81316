"""What the scale-down changes: a CPU-scale NAS-Bench-201 grid (`cpu-deep` by default), one factor changed at a time.

Each variant reruns the chosen methods, objectives and seeds at the scale with one setting changed (image size,
search length, the weights' LR schedule, the architecture step size, the width), into OUT/<variant>/runs/, and
prints one row per variant, method and objective: the collapse rate (final cell with 5+ skip edges) with its Wilson
95% interval, the mean NAS-Bench-201 CIFAR-10 accuracy, the skip lead (skip_lead), the final entropy of the operation
weights, and the epoch at which the skip count first reached 5. Finished runs are reused, so the command can be
stopped and started again; the table goes to OUT/ablation.md.

The `arch-lr-budget` variants give back the architecture movement the scale-down takes away: a preset that runs
epoch_scale of a recipe's epochs on subset of CIFAR-10's 50,000 training images takes that share of the reference's
architecture steps (cpu: 0.4 x 0.2, 8%), so they multiply the architecture step size by its inverse (cpu 12.5,
cpu-deep 6.25); `-no-reg` also turns off the regulariser that pulls the weights back to uniform (exponentiated
gradient's `--entropy-coef`, Adam's `--arch-weight-decay`), where the method has one.

    python benchmarks/collapse_ablation.py --data /tmp/cifar10/train --benchmark nb201-tss-test-acc.csv \\
        --out docs/results/collapse-ablation --baseline docs/results/nb201-cpu-deep --seeds 0-9
    python benchmarks/collapse_ablation.py --scale cpu --methods gdas,gaea-gdas --variants arch-lr-budget ...
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gaeanas.cli import parse_seeds
from gaeanas.errors import ConfigError
from gaeanas.methods import get_method
from gaeanas.report import Run, aggregate, first_collapse_epoch, load_run, op_rows
from gaeanas.reproduce import PRESETS, GridRun, build_grid, grid_config, run_grid
from gaeanas.runtime import resolve_device
from gaeanas.search import SearchConfig

SCALES = ("cpu", "cpu-deep")
CIFAR10_TRAIN = 50_000  # the reference's images per epoch, split in two under bilevel as the presets' subsets are
# the settings that pull architecture weights back to uniform: exponentiated gradient's KL term, Adam's L2 on logits
REGULARISERS = ("entropy_coef", "arch_weight_decay")
Variant = Callable[[GridRun, str], dict[str, Any]]


def default_arch_lr(run: GridRun) -> float:
    return SearchConfig(space="nb201", method=run.method, objective=run.objective).resolved().arch_lr


def arch_budget_ratio(scale: str) -> float:
    """The reference's architecture steps over the scale's: 1 / (its share of the epochs x of the images)."""
    preset = PRESETS[scale]
    return 1.0 / (preset["epoch_scale"] * (preset["subset"] or CIFAR10_TRAIN) / CIFAR10_TRAIN)


def _arch_lr_times(factor: float) -> Variant:
    return lambda run, scale: {"arch_lr": default_arch_lr(run) * factor}


def _arch_lr_budget(regularised: bool) -> Variant:
    def overrides(run: GridRun, scale: str) -> dict[str, Any]:
        changed: dict[str, Any] = {"arch_lr": default_arch_lr(run) * arch_budget_ratio(scale)}
        if not regularised:
            changed.update({name: 0.0 for name in REGULARISERS if name in get_method(run.method).settings()})
        return changed
    return overrides


# variant -> the one setting it changes against the preset (cpu-deep: C=8, N=5, 16x16 images, 20 epochs for the
# DARTS family, the reference's cosine over 50 scaled epochs), as a function of the grid run and the scale.
VARIANTS: dict[str, Variant] = {
    "baseline": lambda run, scale: {},
    "images-32px": lambda run, scale: {"resize": 32},
    "epochs-x2": lambda run, scale: {"epochs": 2 * grid_config(run, scale, "unused", None).epochs},
    "lr-one-cosine": lambda run, scale: {"lr_cycle": 0},
    "arch-lr-x0.3": _arch_lr_times(0.3),
    "arch-lr-x3": _arch_lr_times(3.0),
    "arch-lr-budget": _arch_lr_budget(regularised=True),
    "arch-lr-budget-no-reg": _arch_lr_budget(regularised=False),
    "channels-16": lambda run, scale: {"channels": 16},
}


def variant_overrides(name: str, run: GridRun, scale: str) -> dict[str, Any]:
    """The settings variant `name` changes for `run`; ConfigError where it would change nothing (e.g. 32-pixel images
    at `cpu`, which has them, or one cosine for gdas, which runs one), since that run would repeat the baseline."""
    overrides = VARIANTS[name](run, scale)
    if name != "baseline":
        base, changed = (grid_config(run, scale, "unused", None, **o).resolved() for o in ({}, overrides))
        if base == changed:
            raise ConfigError(f"variant {name!r} changes nothing for {run.method} at --scale {scale}: it already "
                              f"runs with {overrides}")
    return overrides


def applies(name: str, grid: list[GridRun], scale: str) -> bool:
    """Whether variant `name` changes something for every run of the grid at the scale."""
    try:
        for run in grid:
            variant_overrides(name, run, scale)
    except ConfigError:
        return False
    return True


def run_variant(name: str, grid: list[GridRun], out: Path, scale: str, data: str, benchmark: str,
                device: torch.device, report_only: bool) -> list[Path]:
    """Run (or, with report_only, find) one variant's grid; returns the finished run directories."""
    paths = []
    for run in grid:
        overrides = variant_overrides(name, run, scale)
        if not report_only:
            run_grid([run], out, scale, data, benchmark, device, **overrides)
        path = out / "runs" / run.name
        if (path / "result.json").is_file():
            paths.append(path)
    return paths


def skip_lead(run: Run) -> float | None:
    """How far skip_connect leads on an edge, in weight: the mean over edges of w_skip - max of the other ops, at the
    epoch whose genotype the run returned (its last where it selects none). Positive where skips win the argmax on
    average; a continuous reading of the skip count, which near-uniform weights turn into ties. None where the run
    did not record its op names or has no skip."""
    ops = run.result.get("ops")
    if not ops or "skip_connect" not in ops:
        return None
    epoch = run.result.get("selected_epoch") or run.log[-1]["epoch"]
    record = next(r for r in run.log if r["epoch"] == epoch)
    skip = ops.index("skip_connect")
    leads = [row[skip] - max(w for i, w in enumerate(row) if i != skip) for row in op_rows(record)]
    return float(np.mean(leads))


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
        leads = [lead for lead in map(skip_lead, group) if lead is not None]
        rows.append([name, row["method"], row["objective"], str(n), f"{k}/{n} ({100 * low:.0f}–{100 * high:.0f}%)",
                     f"{mean:.2f} ± {std:.2f}", f"{row['skip_edges'][0]:.2f}",
                     f"{np.mean(leads):+.4f}" if leads else "-", f"{row['entropy'][0]:.3f}",
                     f"{np.mean(reached):.1f} ({len(reached)} of {n})" if reached else "never",
                     " ".join("-" if e is None else str(e) for e in epochs)])
    return rows


HEADER = ["Variant", "Method", "Objective", "Seeds", "Collapsed (95% CI)", "CIFAR-10", "Skip edges", "Skip lead",
          "Final entropy", "First epoch with 5+ skips (mean)", "Per seed"]


def format_rows(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 training images (folder or python release)")
    p.add_argument("--benchmark", required=True, help="NAS-Bench-201 table (CSV)")
    p.add_argument("--out", type=Path, required=True, help="results folder: OUT/<variant>/runs/...")
    p.add_argument("--scale", choices=SCALES, default="cpu-deep", help="the preset the variants change")
    p.add_argument("--baseline", type=Path, default=None,
                   help="a `gaeanas reproduce nb201 --scale SCALE` folder whose runs are the baseline variant")
    p.add_argument("--variants", default=None, help=f"comma-separated, of: {', '.join(VARIANTS)} (default: every "
                                                    "one that changes something for each run of the grid)")
    p.add_argument("--methods", default="gaea-darts,darts")
    p.add_argument("--objectives", default="bilevel")
    p.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="0-9 or 0,1,2")
    p.add_argument("--device", default="auto")
    p.add_argument("--report-only", action="store_true", help="run nothing: tabulate the finished runs")
    args = p.parse_args(argv)
    grid = build_grid(args.methods.split(","), args.objectives.split(","), args.seeds)
    variants = args.variants.split(",") if args.variants else [name for name in VARIANTS
                                                                if applies(name, grid, args.scale)]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    device = resolve_device(args.device)
    rows = []
    for name in variants:
        out = args.baseline if name == "baseline" and args.baseline else args.out / name
        paths = run_variant(name, grid, out, args.scale, args.data, args.benchmark, device, args.report_only)
        rows += ablation_rows(name, paths) if paths else []
        print(f"{name}: {len(paths)} of {len(grid)} runs finished", flush=True)
    table = format_rows(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
