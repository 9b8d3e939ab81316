"""Tables and plots from search runs: the GAEA paper's Table 2 layout, Figure 1 (entropy) and Figure 4 (oracle)."""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import ConfigError
from .nasbench.nb201 import DATASETS
from .rundir import CONFIG_FILE, LOG_FILE, RESULT_FILE, read_json, read_log, run_kind

DATASET_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "ImageNet16-120": "ImageNet16-120"}
# Benchmark scores beside the NAS-Bench-201 datasets (NAS-Bench-1Shot1's NAS-Bench-101 lookup): title, y label.
SCORE_PANELS = {
    "test_regret": ("NAS-Bench-101 test regret", "test error - the space's best (fraction, log scale)"),
    "test_accuracy": ("NAS-Bench-101 test accuracy", "mean test accuracy at 108 epochs (%)"),
}


@dataclass(frozen=True)
class Run:
    """One finished search run, read back from its run directory."""

    path: Path
    config: dict[str, Any]
    log: list[dict[str, Any]]
    result: dict[str, Any]

    @property
    def group(self) -> tuple[str, str]:
        return self.config["method"], self.config["objective"]


def load_run(path: str | os.PathLike) -> Run:
    """Read config.json, log.jsonl and result.json of a finished run."""
    path = Path(path)
    for name in (CONFIG_FILE, RESULT_FILE):
        if not (path / name).is_file():
            raise ConfigError(f"{path} is not a finished gaeanas run: {name} is missing")
    return Run(path, read_json(path / CONFIG_FILE), read_log(path), read_json(path / RESULT_FILE))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (numpy's default, ddof=0) over seeds."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std())


def skip_count(genotype: str) -> int:
    """Number of skip_connect edges in a genotype string."""
    return genotype.count("skip_connect")


# A cell with this many of its 6 edges on skip_connect counts as collapsed (the all-skip failure of DARTS, 54.30 on
# NAS-Bench-201's CIFAR-10, has 5 or 6).
COLLAPSE_SKIPS = 5


def collapsed(genotype: str) -> bool:
    """Whether a genotype has collapsed to skip connections (COLLAPSE_SKIPS or more skip edges)."""
    return skip_count(genotype) >= COLLAPSE_SKIPS


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% at z=1.96); sensible at 0 or n successes."""
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    arr = np.asarray(values, dtype=float)
    order = np.argsort(arr, kind="stable")
    ranks = np.empty(len(arr))
    ranks[order] = np.arange(1, len(arr) + 1)
    for value in np.unique(arr):
        tied = arr == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the (tie-averaged) ranks."""
    rx, ry = _ranks(x), _ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either list handled as scipy.stats.kendalltau does)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("kendall_tau needs two lists of the same length, at least 2")
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordance = float((dx * dy).sum())
    untied_x, untied_y = float((dx != 0).sum()), float((dy != 0).sum())
    return concordance / math.sqrt(untied_x * untied_y) if untied_x and untied_y else math.nan


def discordant_pairs(x: Sequence[float], y: Sequence[float]) -> list[tuple[int, int]]:
    """Index pairs (i, j) ordered one way by x and the other by y, the widest x gaps first."""
    pairs = [(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if (x[i] - x[j]) * (y[i] - y[j]) < 0]
    return sorted(pairs, key=lambda p: -abs(x[p[0]] - x[p[1]]))


def first_collapse_epoch(run: Run) -> int | None:
    """The first epoch whose logged genotype has collapsed, or None if none did."""
    return next((r["epoch"] for r in run.log if r.get("genotype") and collapsed(r["genotype"])), None)


def group_runs(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs by (method, objective), in first-seen order, each group sorted by seed."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return {key: sorted(value, key=lambda r: r.config["seed"]) for key, value in groups.items()}


def aggregate(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One row per (method, objective): mean and std over seeds of the final genotype's figures."""
    rows = []
    for (method, objective), group in group_runs(runs).items():
        row: dict[str, Any] = {
            "method": method, "objective": objective,
            "ops": "no none" if group[0].config.get("exclude_none") else "all 5",
            "seeds": len(group),
        }
        row["epochs"] = group[0].result.get("epochs", len(group[0].log))
        row["select"] = group[0].result.get("select", "last")
        for name in DATASETS:
            accs = [r.result["oracle"][name] for r in group if name in (r.result.get("oracle") or {})]
            row[name] = mean_std(accs) if accs else None
        last = [last_epoch(r).get("oracle", {}).get("cifar10") for r in group]
        row["last_cifar10"] = mean_std(last) if None not in last else None
        row["search_seconds"] = mean_std([r.result["search_seconds"] for r in group])
        row["entropy"] = mean_std([r.result["entropy"] for r in group])
        row["skip_edges"] = mean_std([skip_count(r.result["genotype"]) for r in group])
        k = sum(collapsed(r.result["genotype"]) for r in group)
        row["collapse"] = (k, len(group), *wilson_interval(k, len(group)))
        c10 = [r.result["oracle"]["cifar10"] for r in group if "cifar10" in (r.result.get("oracle") or {})]
        row["cifar10_median"] = float(np.median(c10)) if c10 else None
        row["cifar10_worst"] = min(c10) if c10 else None
        rows.append(row)
    return rows


def last_epoch(run: Run) -> dict[str, Any]:
    """The last epoch's genotype and scores (a result.json written before best-epoch selection has only those)."""
    return run.result.get("last") or {"genotype": run.result["genotype"], "oracle": run.result.get("oracle") or {}}


def _pm(value: tuple[float, float] | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"


TABLE_COLUMNS = ["Method", "Objective", "Ops", "Seeds", "Epochs", "Genotype of", "CIFAR-10", "CIFAR-10 median",
                 "CIFAR-10 worst", "CIFAR-100", "ImageNet16-120", "CIFAR-10, last epoch", "Search (s)", "Final entropy",
                 "Skip edges", "Collapsed (95% CI)"]
SELECT_LABELS = {"best": "best valid epoch", "last": "last epoch"}


def _collapse_cell(collapse: tuple[int, int, float, float]) -> str:
    k, n, low, high = collapse
    return f"{k}/{n} ({100 * low:.0f}–{100 * high:.0f}%)"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table_cells(row: dict[str, Any]) -> list[str]:
    """A row's cells in TABLE_COLUMNS order."""
    c10, c100, imagenet = (_pm(row[name]) for name in DATASETS)
    return [row["method"], row["objective"], row["ops"], str(row["seeds"]), str(row["epochs"]),
            SELECT_LABELS[row["select"]], c10, _number(row["cifar10_median"]), _number(row["cifar10_worst"]), c100,
            imagenet, _pm(row["last_cifar10"]), _pm(row["search_seconds"], 0), _pm(row["entropy"], 3),
            _pm(row["skip_edges"], 2), _collapse_cell(row["collapse"])]


def optimal_cells(best: dict[str, float]) -> list[str]:
    """The benchmark's optimal row in TABLE_COLUMNS order."""
    c10, c100, imagenet = (f"{best[name]:.2f}" for name in DATASETS)
    return ["optimal (benchmark)", "", "", "", "", "", c10, "", "", c100, imagenet, "", "", "", "", ""]


def format_table_md(rows: Sequence[dict[str, Any]], best: dict[str, float] | None = None) -> str:
    """Markdown table in the layout of the paper's Table 2 (search on CIFAR-10, transfer to the others)."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    if best is not None:
        lines.append("| " + " | ".join(optimal_cells(best)) + " |")
    return "\n".join(lines) + "\n"


def write_table_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike,
                    best: dict[str, float] | None = None) -> None:
    """The same table as CSV, with separate mean and std columns."""
    figures = (*DATASETS, "last_cifar10", "search_seconds", "entropy", "skip_edges")
    header = ["method", "objective", "ops", "seeds", "epochs", "select"]
    for name in figures:
        header += [f"{name}_mean", f"{name}_std"]
    header += ["cifar10_median", "cifar10_worst", "collapsed", "collapse_rate", "collapse_ci_low", "collapse_ci_high"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            values = [row["method"], row["objective"], row["ops"], row["seeds"], row["epochs"], row["select"]]
            for name in figures:
                values += list(row[name]) if row[name] is not None else ["", ""]
            k, n, low, high = row["collapse"]
            values += [_blank(row["cifar10_median"]), _blank(row["cifar10_worst"]), k, k / n, low, high]
            writer.writerow(values)
        if best is not None:
            values = ["optimal", "", "", "", "", ""]
            for name in figures:
                values += [best[name], ""] if name in best else ["", ""]
            writer.writerow(values + [""] * 6)


def _blank(value: float | None) -> float | str:
    return "" if value is None else value


def _curves(group: Sequence[Run], key) -> np.ndarray:
    """(seeds, epochs) array of key(record); shorter runs are padded with NaN."""
    length = max(len(r.log) for r in group)
    out = np.full((len(group), length), math.nan)
    for i, run in enumerate(group):
        for j, record in enumerate(run.log):
            value = key(record)
            out[i, j] = math.nan if value is None else value
    return out


def _label(key: tuple[str, str]) -> str:
    return f"{key[0]} ({key[1]})"


def op_rows(record: dict[str, Any]) -> list[list[float]]:
    """The operation-weight rows of a log record: every row of every 2-D tensor in arch_weights (PC-DARTS' 1-D edge
    weights are left out)."""
    return [row for rows in record["arch_weights"].values() if rows and isinstance(rows[0], list) for row in rows]


def op_entropy(record: dict[str, Any]) -> float:
    """Mean entropy (nats) of the operation weights in a log record (op_rows; as in the paper's Figure 1)."""
    rows = op_rows(record)
    entropies = [-sum(p * math.log(p) for p in row if p > 0) for row in rows]
    return float(np.mean(entropies))


def plot_entropy(groups: dict[tuple[str, str], list[Run]], path: str | os.PathLike,
                 title: str = "Architecture-weight entropy") -> None:
    """Mean operation-weight entropy per epoch for each method (the paper's Figure 1)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, group in groups.items():
        _band(ax, _curves(group, op_entropy), _label(key))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean entropy of operation weights (nats)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def oracle_scores(runs: Iterable[Run]) -> list[str]:
    """The benchmark scores the runs' logs hold, in panel order: NAS-Bench-201's datasets, then regret, accuracy."""
    found = {name for run in runs for r in run.log for name in (r.get("oracle") or {})}
    return [name for name in (*DATASETS, *SCORE_PANELS) if name in found]


def plot_oracle(groups: dict[tuple[str, str], list[Run]], path: str | os.PathLike) -> None:
    """Benchmark score of each epoch's genotype, one panel per score: test accuracy per NAS-Bench-201 dataset (the
    paper's Figure 4), or NAS-Bench-1Shot1's test regret and accuracy (Figure 2)."""
    plt = _pyplot()
    names = oracle_scores(run for group in groups.values() for run in group)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for key, group in groups.items():
            curves = _curves(group, lambda r: (r.get("oracle") or {}).get(name))
            if not np.isnan(curves).all():
                _band(ax, curves, _label(key))
        title, ylabel = SCORE_PANELS.get(name, (DATASET_LABELS.get(name, name),
                                                 "test accuracy of discretised genotype (%)"))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if name == "test_regret":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_skip_strip(groups: dict[tuple[str, str], list[Run]], path: str | os.PathLike) -> None:
    """Final skip-edge count of each seed, one strip per method and objective, with the collapse line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 4))
    rng = np.random.default_rng(0)  # horizontal jitter only, so equal counts stay readable
    for i, group in enumerate(groups.values()):
        counts = np.array([skip_count(r.result["genotype"]) for r in group], dtype=float)
        ax.scatter(i + rng.uniform(-0.18, 0.18, len(counts)), counts + rng.uniform(-0.08, 0.08, len(counts)),
                   s=28, alpha=0.8, color=np.where(counts >= COLLAPSE_SKIPS, "tab:red", "tab:blue"))
        ax.text(i, 6.55, f"{int((counts >= COLLAPSE_SKIPS).sum())}/{len(counts)}", ha="center", fontsize=8)
    ax.axhline(COLLAPSE_SKIPS - 0.5, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(groups)), [_label(key) for key in groups], rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(7))
    ax.set_ylim(-0.5, 7)
    ax.set_ylabel("skip_connect edges in the final cell (of 6)")
    ax.set_title(f"Final skip edges per seed (red: collapsed, {COLLAPSE_SKIPS}+)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_rank_scatter(benchmark: Sequence[float], ours: Sequence[float], path: str | os.PathLike,
                      title: str) -> None:
    """Our test accuracy against the benchmark's, one dot per architecture."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(benchmark, ours, s=30)
    ax.set_xlabel("NAS-Bench-201 CIFAR-10 test accuracy (%, 200 epochs)")
    ax.set_ylabel("our trainer's test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: str | os.PathLike, title: str = "") -> None:
    """A confusion matrix (rows: true class, columns: predicted) as a heat map with the counts written in."""
    plt = _pyplot()
    n = len(classes)
    side = min(2.0 + 0.45 * n, 16.0)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(matrix, cmap="Blues")
    if n <= 30:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "Confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _band(ax, curves: np.ndarray, label: str) -> None:
    """Mean line with a ±1 std band over seeds (no band for a single seed)."""
    epochs = np.arange(1, curves.shape[1] + 1)
    mean, std = np.nanmean(curves, axis=0), np.nanstd(curves, axis=0)
    (line,) = ax.plot(epochs, mean, label=label)
    if curves.shape[0] > 1:
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _search_run(run_dir: Path) -> Run:
    """A search run (finished or not) with at least one logged epoch, read for plotting."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir} is not a gaeanas run directory: it has no {CONFIG_FILE}")
    config = read_json(run_dir / CONFIG_FILE)
    kind = run_kind(config) if isinstance(config, dict) else None
    if kind != "search":
        raise ConfigError(f"{run_dir} is {'a ' + kind if kind else 'not a'} run, not a search run: gaeanas report "
                          "draws the architecture weights of search runs")
    log = read_log(run_dir)
    if not log:
        raise ConfigError(f"{run_dir} has no logged epoch yet ({LOG_FILE} is missing or empty)")
    return Run(run_dir, config, log, {})


def report_run(run_dirs: str | os.PathLike | Sequence[str | os.PathLike],
               out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Draw entropy.png (and oracle.png when the runs have benchmark accuracies) for one search run, or for
    several together (one curve per method and objective, a band over seeds). Runs may still be going."""
    paths = [Path(run_dirs)] if isinstance(run_dirs, (str, os.PathLike)) else [Path(p) for p in run_dirs]
    if not paths:
        raise ConfigError("no run directories given")
    runs = [_search_run(run_dir) for run_dir in paths]
    if out_dir is None and len(paths) > 1:
        raise ConfigError("several runs: say where the plots go (out_dir / --out)")
    out = Path(out_dir) if out_dir else paths[0]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the plots")
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    written = [out / "entropy.png"]
    plot_entropy(groups, written[0])
    if any(r.get("oracle") for run in runs for r in run.log):
        written.append(out / "oracle.png")
        plot_oracle(groups, written[1])
    return written


def format_1shot1_tables(runs: Sequence[Run]) -> str:
    """Markdown for NAS-Bench-1Shot1 runs: per space and method, the final cell's test regret and the final entropies
    over seeds; then each run's cell as NAS-Bench-101 sees it (hash, adjacency rows, operations)."""
    by_key: dict[tuple[str, str, str], list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.config["space"], r.config["method"], r.config["seed"])):
        by_key.setdefault((run.config["space"], run.config["method"], run.config["objective"]), []).append(run)
    lines = ["| Space | Method | Objective | Seeds | Epochs | Test regret | NB-101 test accuracy | Op entropy | "
             "Parent entropy | Search (s) |", "|" + "---|" * 10]
    for (space, method, objective), group in by_key.items():
        oracles = [r.result.get("oracle") or {} for r in group]
        regret = [o["test_regret"] for o in oracles if "test_regret" in o]
        test = [o["test_accuracy"] for o in oracles if "test_accuracy" in o]
        edge = [r.result["edge_entropy"] for r in group if "edge_entropy" in r.result]
        lines.append(f"| {space} | {method} | {objective} | {len(group)} | {group[0].result['epochs']} | "
                     f"{_pm(mean_std(regret), 4) if regret else 'n/a'} | {_pm(mean_std(test)) if test else 'n/a'} | "
                     f"{_pm(mean_std([r.result['entropy'] for r in group]), 3)} | "
                     f"{_pm(mean_std(edge), 3) if edge else 'n/a'} | "
                     f"{_pm(mean_std([r.result['search_seconds'] for r in group]), 0)} |")
    lines += ["", "| Run | Genotype | NB-101 hash | Adjacency (rows) | Operations |", "|---|---|---|---|---|"]
    for group in by_key.values():
        for run in group:
            cell = run.result.get("nb101") or {}
            rows = "/".join("".join(str(v) for v in row) for row in cell.get("matrix", []))
            ops = ", ".join(cell.get("ops", []))
            genotype = run.result["genotype"].replace("|", "\\|")  # a pipe would split the markdown cell
            lines.append(f"| {run.path.name} | `{genotype}` | `{cell.get('hash', 'n/a')}` | "
                         f"`{rows}` | {ops} |")
    return "\n".join(lines) + "\n"
