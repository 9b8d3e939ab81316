"""Reproduce the GAEA paper's NAS-Bench-201 table and figures (Li et al., ICLR 2021, Table 2, Figures 1 and 4)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .errors import ConfigError
from .methods import METHODS
from .nasbench import NB201Table
from .report import aggregate, format_table_md, group_runs, load_run, plot_entropy, plot_oracle, plot_skip_strip, \
    write_table_csv
from .rundir import RESULT_FILE
from .runner import Launch, PlannedRun, WorkerJob, WorkerOutcome, run_set, saved_matching
from .runtime import resolve_device
from .search import OBJECTIVES, Search, SearchCallback, SearchConfig

# Overrides of SearchConfig for each scale. epoch_scale multiplies each method's own search length (gaea-darts and
# darts 25 epochs, gaea-gdas 150, gdas 250); its warm-up, temperature schedule and cosine cycle scale with it.
PRESETS: dict[str, dict[str, Any]] = {
    # Appendix C.3 and the reference code's lengths, for a GPU: C=16, N=5, the full training set.
    "paper": dict(channels=16, cells=5, epoch_scale=1.0, batch_size=64, subset=None, resize=None),
    # 2 CPU cores, about 5 to 10 minutes a run: a shallow, narrow supernet on a 10,000-image subset, 0.4 of each
    # method's length (gaea-darts 10 epochs, gaea-gdas 60, gdas 100).
    "cpu": dict(channels=8, cells=1, epoch_scale=0.4, batch_size=64, subset=10_000, resize=32),
    # The paper's depth (N=5) at C=8, on 16x16 images, 0.8 of each method's length (gaea-darts 20 epochs).
    "cpu-deep": dict(channels=8, cells=5, epoch_scale=0.8, batch_size=64, subset=10_000, resize=16),
}

# The paper's NAS-Bench-201 grid: DARTS-style methods under both objectives, GDAS-style under bilevel.
DEFAULT_GRID: tuple[tuple[str, str], ...] = (
    ("gaea-darts", "erm"), ("darts", "erm"), ("gaea-darts", "bilevel"), ("darts", "bilevel"),
    ("gaea-gdas", "bilevel"), ("gdas", "bilevel"),
)
DEFAULT_SEEDS = (0, 1, 2)
# A saved run is the wanted one whatever the device or the benchmark table's path; crop_pad is resolved from the
# images' size only when the run starts.
SAME_SETUP_IGNORES = frozenset({"device", "benchmark", "crop_pad"})
# darts and gaea-darts run without `none` in the paper's NB201 reproductions; gdas keeps all five ops.
EXCLUDE_NONE = {"darts": True, "gaea-darts": True, "gdas": False, "gaea-gdas": False}


@dataclass(frozen=True)
class GridRun:
    """One cell of the grid."""

    method: str
    objective: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-{self.objective}-seed{self.seed}"


def build_grid(methods: Sequence[str] | None = None, objectives: Sequence[str] | None = None,
               seeds: Sequence[int] = DEFAULT_SEEDS) -> list[GridRun]:
    """The paper's grid by default; with methods or objectives given, their full product."""
    for method in methods or ():
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; known: {sorted(METHODS)}")
    for objective in objectives or ():
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {objective!r}; known: {OBJECTIVES}")
    if methods is None and objectives is None:
        pairs = list(DEFAULT_GRID)
    else:
        pairs = [(m, o) for m in (methods or sorted({m for m, _ in DEFAULT_GRID}))
                 for o in (objectives or OBJECTIVES)]
    if not seeds:
        raise ConfigError("no seeds given")
    return [GridRun(m, o, s) for m, o in pairs for s in seeds]


def grid_config(run: GridRun, scale: str, data: str, benchmark: str | None, **overrides: Any) -> SearchConfig:
    """The SearchConfig of one grid run at a scale."""
    if scale not in PRESETS:
        raise ConfigError(f"unknown scale {scale!r}; known: {sorted(PRESETS)}")
    preset = dict(PRESETS[scale])
    epoch_scale = preset.pop("epoch_scale")
    values = dict(space="nb201", method=run.method, objective=run.objective, seed=run.seed, data=data,
                  benchmark=benchmark, exclude_none=EXCLUDE_NONE.get(run.method, False), **preset)
    values.update(overrides)
    if values.get("epochs") is None:
        method_epochs = SearchConfig(space="nb201", method=run.method, objective=run.objective).resolved().epochs
        values["epochs"] = max(1, round(method_epochs * epoch_scale))
    values["extra"] = {"scale": scale, "grid_run": run.name}
    return SearchConfig(**values)


def run_grid(grid: Sequence[GridRun], out_dir: str | os.PathLike, scale: str, data: str,
             benchmark: str | None, device: torch.device, callbacks: Sequence[SearchCallback] = (),
             on_run_start: Callable[[int, GridRun, bool], None] | None = None,
             cache_dir: str | os.PathLike | None = None, **overrides: Any) -> list[Path]:
    """Run every grid cell into out_dir/runs/<name>, reusing finished runs and resuming started ones.

    on_run_start(index, run, reused) is called before each cell; callbacks follow each search.
    """
    runs_dir = Path(out_dir) / "runs"
    planned = [PlannedRun(runs_dir / run.name, grid_config(run, scale, data, benchmark, **overrides).resolved())
               for run in grid]
    started = None if on_run_start is None else (lambda index, reused: on_run_start(index, grid[index], reused))
    run_set(planned, Search, SearchConfig, device, callbacks, cache_dir, ignore=SAME_SETUP_IGNORES,
            refresh={"device": str(device), "benchmark": benchmark}, on_run_start=started,
            mismatch=f"holds a run with other settings than --scale {scale}")
    return [p.path for p in planned]


def _run_cell(run: GridRun, out_dir: str, scale: str, data: str, benchmark: str | None, device: str,
              cache_dir: str | None, overrides: dict[str, Any]) -> None:
    """One grid cell, in a worker process (the device is resolved there: 'auto' takes the worker's GPU)."""
    run_grid([run], out_dir, scale, data, benchmark, resolve_device(device), cache_dir=cache_dir, **overrides)


def run_grid_in_workers(grid: Sequence[GridRun], out_dir: str | os.PathLike, scale: str, data: str,
                        benchmark: str | None, device: torch.device | str, launch: Launch | int,
                        on_event: Callable[[str, WorkerJob, Any], None] | None = None,
                        cache_dir: str | os.PathLike | None = None, **overrides: Any) -> list[WorkerOutcome]:
    """Run the grid's unfinished cells in worker processes or Ray tasks (`launch`; an int: that many local workers),
    each cell's output in out_dir/logs/<run>.txt. Finished runs are skipped and started ones resume, as in
    run_grid; a worker that dies loses only its own run, which resumes on the next call. Returns the outcomes of
    the runs started here."""
    launch = Launch(workers=launch) if isinstance(launch, int) else launch
    out = Path(out_dir)
    for run in grid:  # refuse other settings before anything starts, as the serial grid does
        check_grid_cell(run, out, scale, data, benchmark, **overrides)
    jobs = [WorkerJob(run.name, _run_cell, (run, str(out), scale, data, benchmark, str(device),
                                            None if cache_dir is None else str(cache_dir), overrides))
            for run in grid if not (out / "runs" / run.name / RESULT_FILE).is_file()]
    return launch.run(jobs, out / "logs", on_event)


def check_grid_cell(run: GridRun, out: Path, scale: str, data: str, benchmark: str | None, **overrides: Any) -> None:
    """ConfigError when the cell's run directory holds a run with other settings than this grid's."""
    planned = PlannedRun(out / "runs" / run.name, grid_config(run, scale, data, benchmark, **overrides).resolved())
    saved_matching(planned, SearchConfig, SAME_SETUP_IGNORES, f"holds a run with other settings than --scale {scale}")


def finished_runs(grid: Sequence[GridRun], out_dir: str | os.PathLike) -> list[Path]:
    """The run directories of the grid that hold a result.json."""
    paths = [Path(out_dir) / "runs" / run.name for run in grid]
    finished = [p for p in paths if (p / RESULT_FILE).is_file()]
    if not finished:
        raise ConfigError(f"no finished runs of this grid in {Path(out_dir) / 'runs'}")
    return finished


def write_report(out_dir: str | os.PathLike, run_paths: Sequence[Path], table: NB201Table | None) -> list[Path]:
    """table.md, table.csv, entropy.png, skips.png and oracle.png for the finished runs."""
    out = Path(out_dir)
    runs = [load_run(p) for p in run_paths]
    rows = aggregate(runs)
    best = table.best() if table is not None else None
    (out / "table.md").write_text(format_table_md(rows, best))
    write_table_csv(rows, out / "table.csv", best)
    groups = group_runs(runs)
    plot_entropy(groups, out / "entropy.png")
    plot_skip_strip(groups, out / "skips.png")
    written = [out / "table.md", out / "table.csv", out / "entropy.png", out / "skips.png"]
    if any(r.result.get("oracle") for r in runs):
        plot_oracle(groups, out / "oracle.png")
        written.append(out / "oracle.png")
    (out / "grid.json").write_text(json.dumps([str(p.relative_to(out)) for p in run_paths], indent=2) + "\n")
    return written
