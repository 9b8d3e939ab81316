"""Reproduce the GAEA paper's benchmark results (Li et al., ICLR 2021): the NAS-Bench-201 table and figures (Table 2,
Figures 1 and 4), and the NAS-Bench-1Shot1 searches (Figures 1 and 2)."""
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
from .report import Run, aggregate, format_1shot1_tables, format_table_md, group_runs, load_run, plot_entropy, \
    plot_oracle, plot_skip_strip, write_table_csv
from .rundir import RESULT_FILE
from .runner import Launch, PlannedRun, WorkerJob, WorkerOutcome, run_set, saved_matching
from .runtime import resolve_device
from .spaces import nb1shot1
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

# NAS-Bench-1Shot1 (appendix C.2): the 1Shot1 code's search (C=16, 9 cells, batch 96, 50 epochs) on each space.
PRESETS_1SHOT1: dict[str, dict[str, Any]] = {
    "paper": dict(channels=16, cells=3, epoch_scale=1.0, batch_size=96, subset=None, resize=None),
    # 2 CPU cores: C=8, one cell per stage, 16x16 images, a 10,000-image subset, 10 of the 50 epochs.
    "cpu": dict(channels=8, cells=1, epoch_scale=0.2, batch_size=96, subset=10_000, resize=16),
}
SPACES_1SHOT1 = nb1shot1.SPACE_NAMES


def presets_for(space: str) -> dict[str, dict[str, Any]]:
    """The scales a space's grid runs at."""
    return PRESETS_1SHOT1 if space in SPACES_1SHOT1 else PRESETS


# The paper's NAS-Bench-201 grid: DARTS-style methods under both objectives, GDAS-style under bilevel.
DEFAULT_GRID: tuple[tuple[str, str], ...] = (
    ("gaea-darts", "erm"), ("darts", "erm"), ("gaea-darts", "bilevel"), ("darts", "bilevel"),
    ("gaea-gdas", "bilevel"), ("gdas", "bilevel"),
)
DEFAULT_SEEDS = (0, 1, 2)
# A saved run is the wanted one whatever the device or the benchmark table's path; crop_pad is resolved from the
# images' size only when the run starts.
SAME_SETUP_IGNORES = frozenset({"device", "benchmark", "crop_pad"})
# darts and gaea-darts run without `none` in the paper's NB201 reproductions; gdas keeps all five ops; xnas, an
# optional row set against GAEA DARTS (appendix C.4), runs as GAEA DARTS does.
EXCLUDE_NONE = {"darts": True, "gaea-darts": True, "gdas": False, "gaea-gdas": False, "xnas": True}


@dataclass(frozen=True)
class GridRun:
    """One cell of the grid."""

    method: str
    objective: str
    seed: int
    space: str = "nb201"

    @property
    def name(self) -> str:
        prefix = "" if self.space == "nb201" else f"{self.space}-"
        return f"{prefix}{self.method}-{self.objective}-seed{self.seed}"


@dataclass(frozen=True)
class Target:
    """What `gaeanas reproduce <name>` runs: the spaces, the paper's (method, objective) pairs, its seeds."""

    name: str
    spaces: tuple[str, ...]
    grid: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...]


TARGETS: dict[str, Target] = {
    "nb201": Target("nb201", ("nb201",), DEFAULT_GRID, DEFAULT_SEEDS),
    # Figure 2: PC-DARTS against GAEA PC-DARTS, 4 seeds, on each space.
    "nb1shot1": Target("nb1shot1", SPACES_1SHOT1, (("pcdarts", "bilevel"), ("gaea-pcdarts", "bilevel")),
                       (0, 1, 2, 3)),
}


def build_grid(methods: Sequence[str] | None = None, objectives: Sequence[str] | None = None,
               seeds: Sequence[int] | None = None, target: str = "nb201") -> list[GridRun]:
    """The paper's grid for `target` by default; with methods or objectives given, their full product, in every
    space of the target."""
    if target not in TARGETS:
        raise ConfigError(f"unknown results to reproduce {target!r}; known: {sorted(TARGETS)}")
    spec = TARGETS[target]
    seeds = spec.seeds if seeds is None else seeds
    for method in methods or ():
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; known: {sorted(METHODS)}")
    for objective in objectives or ():
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {objective!r}; known: {OBJECTIVES}")
    if methods is None and objectives is None:
        pairs = list(spec.grid)
    else:
        pairs = [(m, o) for m in (methods or sorted({m for m, _ in spec.grid}))
                 for o in (objectives or OBJECTIVES)]
    if not seeds:
        raise ConfigError("no seeds given")
    return [GridRun(m, o, s, space) for space in spec.spaces for m, o in pairs for s in seeds]


def grid_config(run: GridRun, scale: str, data: str, benchmark: str | None, **overrides: Any) -> SearchConfig:
    """The SearchConfig of one grid run at a scale."""
    presets = presets_for(run.space)
    if scale not in presets:
        raise ConfigError(f"unknown scale {scale!r} for {run.space}; known: {sorted(presets)}")
    preset = dict(presets[scale])
    epoch_scale = preset.pop("epoch_scale")
    values = dict(space=run.space, method=run.method, objective=run.objective, seed=run.seed, data=data,
                  benchmark=benchmark, **preset)
    if run.space == "nb201":
        values["exclude_none"] = EXCLUDE_NONE.get(run.method, False)
    values.update(overrides)
    if values.get("epochs") is None:
        method_epochs = SearchConfig(space=run.space, method=run.method, objective=run.objective).resolved().epochs
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


def write_report(out_dir: str | os.PathLike, run_paths: Sequence[Path], table: NB201Table | None,
                 target: str = "nb201") -> list[Path]:
    """table.md, table.csv, entropy.png, skips.png and oracle.png for the finished NAS-Bench-201 runs; for
    NAS-Bench-1Shot1 runs see write_1shot1_report."""
    out = Path(out_dir)
    runs = [load_run(p) for p in run_paths]
    if target == "nb1shot1":
        return write_1shot1_report(out, runs)
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


def write_1shot1_report(out: Path, runs: Sequence[Run]) -> list[Path]:
    """table.md (regret and entropies per space and method, then each run's NAS-Bench-101 cell), and per space
    entropy-<space>.png (Figure 1) and, with the NAS-Bench-101 lookup, oracle-<space>.png (Figure 2's regret)."""
    (out / "table.md").write_text(format_1shot1_tables(runs))
    written = [out / "table.md"]
    for space in sorted({r.config["space"] for r in runs}):
        groups = group_runs(r for r in runs if r.config["space"] == space)
        written.append(out / f"entropy-{space}.png")
        plot_entropy(groups, written[-1], f"Architecture-weight entropy, {space}")
        if any(r.get("oracle") for group in groups.values() for run in group for r in run.log):
            written.append(out / f"oracle-{space}.png")
            plot_oracle(groups, written[-1])
    (out / "grid.json").write_text(json.dumps([str(r.path.relative_to(out)) for r in runs], indent=2) + "\n")
    return written


NB101_TABLE = "nb101-table.json"


def compact_nb101_table(path: str | os.PathLike, out_dir: Path) -> Path:
    """The NAS-Bench-101 lookup as out_dir/nb101-table.json, read from the TFRecord once (a saved table as is), so
    that each run loads a few MB instead of reading 500 MB."""
    from .nasbench import NB101Table

    path = Path(path)
    if path.suffix == ".json":
        NB101Table.load(path)  # a clear error now, not in every run
        return path
    compact = out_dir / NB101_TABLE
    if not compact.is_file():
        table = NB101Table.from_tfrecord(path)
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = compact.with_suffix(".json.tmp")
        table.save(tmp)
        tmp.replace(compact)
    return compact
