"""The gaeanas command line: the only place that prints, reads flags and picks devices."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from . import distributed
from .errors import ConfigError, GaeanasError
from .methods import METHODS
from .rundir import CHECKPOINT_FILE, CONFIG_FILE, claimed_run_dir, flag, read_json
from .runner import NullCallback
from .runtime import DEVICES, PRECISIONS, resolve_device
from .search import OBJECTIVES, SELECTIONS, UPDATE_ORDERS, Search, SearchConfig, load_config
from .spaces import SPACES
from .spaces.darts_genotypes import PUBLISHED
from .train import NETWORKS, SEEDS_FILE, TrainConfig

CHOICES = {"space": sorted(SPACES), "method": sorted(METHODS), "objective": list(OBJECTIVES),
           "device": list(DEVICES), "precision": list(PRECISIONS), "network": sorted(NETWORKS),
           "update_order": list(UPDATE_ORDERS), "select": list(SELECTIONS)}
STEP_REFRESH = 5  # update the progress bar's numbers every this many steps (each update syncs the device)
HELP_FORMAT = argparse.RawDescriptionHelpFormatter  # keeps the examples' line breaks; defaults are in the help
EXAMPLES = {
    "search": """examples:
  gaeanas search                                   # GAEA DARTS on NAS-Bench-201's cell, bundled digits
  gaeanas search --space darts --method gaea-pcdarts --data path/to/cifar10/train --subset 10000 --epochs 10""",
    "reproduce": """examples:
  gaeanas reproduce nb201 --data path/to/cifar10/train --benchmark path/to/nb201-tss-test-acc.csv
  gaeanas reproduce nb201 --scale cpu-deep --methods gaea-darts,darts --objectives bilevel --data ... --benchmark ...
  gaeanas reproduce nb1shot1 --data path/to/cifar10/train --benchmark path/to/nasbench_only108.tfrecord""",
    "report": """examples:
  gaeanas report runs/nb201-gaea-darts-erm-seed0-20261201-120000
  gaeanas report runs/run-a runs/run-b --out plots/""",
    "train": """examples:
  gaeanas train --genotype runs/darts-gaea-pcdarts-bilevel-seed0-20261201-120000 --data path/to/cifar10
  gaeanas train --genotype PC_DARTS --data digits --channels 8 --cells 5 --epochs 5 --seeds 0,1,2
  gaeanas train --genotype runs/nb201-gaea-darts-erm-seed0-20261201-120000 --data path/to/images --resize 32
  gaeanas train --genotype '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|' \
      --data path/to/cifar10 --epochs 20""",
    "export": """examples:
  gaeanas export runs/train-nb201-seed0-20261201-120000                 # writes RUN_DIR/export/
  gaeanas export runs/train-nb201-seed0-20261201-120000 --out my-model""",
    "predict": """examples:
  gaeanas predict my-model cat.png dog.jpg --top-k 3
  gaeanas predict my-model path/to/images/            # every image in the folder
  gaeanas predict my-model path/to/test/ --out eval/  # a class-folder tree: accuracy, confusion matrix (text, PNG)""",
    "draw": """examples:
  gaeanas draw PC_DARTS --out pc_darts
  gaeanas draw runs/darts-gaea-pcdarts-bilevel-seed0-20261201-120000""",
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the usage is one --help away)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def finite_float(text: str) -> float:
    """argparse type: a finite number (nan and inf are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value:g}")
    return value


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal: in a log file every refresh would become a line (epoch lines still print)."""
    return not args.no_progress and sys.stderr.isatty()


class ProgressBar(NullCallback):
    """A tqdm bar per epoch with loss, accuracy and architecture entropy, and a summary line per epoch."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self.bar = enabled, None

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not self.enabled,
                        dynamic_ncols=True)

    def on_step(self, step: int, metrics: dict) -> None:
        self.bar.update(1)
        if step % STEP_REFRESH == 0 and self.enabled:
            self.bar.set_postfix(loss=f"{float(metrics['loss']):.3f}", acc=f"{100 * float(metrics['acc']):.1f}",
                                 H=f"{float(metrics['entropy']):.3f}")

    def on_epoch_end(self, record: dict) -> None:
        self.bar.close()
        oracle = record.get("oracle")
        bench = "".join(f"  {ORACLE_LABELS.get(name, name)} {score_text(name, value)}"
                        for name, value in (oracle or {}).items())
        valid = "" if record.get("valid_acc") is None else f"valid {record['valid_acc']:5.2f}  "
        print(f"epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  acc {record['train_acc']:5.2f}  {valid}"
              f"entropy {record['entropy']:.4f}  {record['seconds']:6.1f}s  {record['genotype']}{bench}", flush=True)


# Short names of the benchmark scores in the per-epoch line (NAS-Bench-201 datasets; NAS-Bench-101 via 1Shot1).
ORACLE_LABELS = {"cifar10": "c10", "cifar100": "c100", "ImageNet16-120": "in16", "test_accuracy": "test",
                 "validation_accuracy": "valid", "test_regret": "regret"}


def score_text(name: str, value: float) -> str:
    """A benchmark score as printed: accuracies in % with 2 decimals, regret (a fraction) with 4."""
    return f"{value:.{4 if name == 'test_regret' else 2}f}"


def _flag_type(field: dataclasses.Field, config_cls: type) -> Any:
    """The scalar type of a config field, with Optional[...] unwrapped."""
    hint = typing.get_type_hints(config_cls)[field.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type = SearchConfig) -> None:
    """One flag per config field (defaults None, so a resumed run can tell what was given).

    The help shows the field's default once; a field whose default is None names its default in its help.
    """
    for field in dataclasses.fields(config_cls):
        kind = _flag_type(field, config_cls)
        if kind not in (int, float, str, bool):
            continue
        help_ = field.metadata.get("help", "")
        if field.default is not None:
            shown = ("on" if field.default else "off") if kind is bool else field.default
            help_ += f" (default: {shown})"
        if kind is bool:
            parser.add_argument(flag(field.name), dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_)
        else:
            parser.add_argument(flag(field.name), dest=field.name, type=finite_float if kind is float else kind,
                                default=None, choices=CHOICES.get(field.name), help=help_)


def add_launch_flags(parser: argparse.ArgumentParser, one: str, many: str) -> None:
    """--workers, --ray and --ray-cpus: where independent runs (grid runs, training seeds) go."""
    parser.add_argument("--workers", type=positive_int, default=1,
                        help=f"{many} at a time, each in its own process with its share of the CPU threads and its "
                             f"output in OUT/logs/; a worker that dies loses only its {one}, which the same command "
                             "resumes (default: 1, in this process)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help=f"send each {one} to a Ray cluster as its own task: its address, auto (the cluster this "
                             "machine is in) or local (start Ray here); needs pip install 'gaeanas[ray]'; on a "
                             "cluster the results folder must be on storage every node shares")
    parser.add_argument("--ray-cpus", type=positive_float, default=None,
                        help="with --ray: CPUs each task asks for (default: 1); a GPU too with --device cuda")


def add_run_dir_flags(parser: argparse.ArgumentParser, what: str, out_help: str) -> None:
    """The run-directory flags every running subcommand shares: --out, --resume, --cache-dir, --no-progress."""
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help=f"continue the {what} in DIR from its last checkpoint, with its saved settings")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where downloads and decoded datasets are cached (default: $GAEANAS_CACHE or "
                             "~/.cache/gaeanas)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (epoch lines still print; bars show only on a terminal)")


def refuse_flags_on_resume(args: argparse.Namespace, config_cls: type, others: Sequence[str] = ()) -> None:
    """--resume continues with the saved settings: any other setting given (except --device) is an error."""
    given = [n for n in given_flags(args, config_cls) if n != "device"]
    given += [n for n in ("out", *others) if getattr(args, n, None)]
    if given:
        raise ConfigError(f"--resume continues a run with its saved config.json; drop {', '.join(map(flag, given))}")


def config_from_args(args: argparse.Namespace, config_cls: type = SearchConfig) -> Any:
    """A config (SearchConfig or TrainConfig) from the flags that were given; the rest keep their defaults."""
    return config_cls(**given_flags(args, config_cls))


def given_flags(args: argparse.Namespace, config_cls: type) -> dict[str, Any]:
    """The config fields that were set on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
            if getattr(args, f.name, None) is not None}


def default_run_dir(cfg: SearchConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cfg = cfg.resolved()
    return Path("runs") / f"{cfg.space}-{cfg.method}-{cfg.objective}-seed{cfg.seed}-{stamp}"


def resumed(args: argparse.Namespace, load_config_of) -> Any:
    """The saved config of the run named by --resume (with --device applied when given)."""
    cfg = load_config_of(args.resume)
    if args.device:
        cfg = dataclasses.replace(cfg, device=args.device)
    print(f"resuming {args.resume}")
    return cfg


def cmd_search(args: argparse.Namespace) -> int:
    if args.resume:
        refuse_flags_on_resume(args, SearchConfig)
        cfg, run_dir = resumed(args, load_config), args.resume
    else:
        cfg = config_from_args(args)
        cfg.resolved()  # refuses bad settings before anything is written or loaded
        run_dir = args.out or default_run_dir(cfg)
    device = resolve_device(cfg.device)
    dp = distributed.from_environment()
    if dp is not None:
        device = distributed.start(dp, device)

    def start(path: Path) -> Search:
        search = Search(cfg, path, device, [ProgressBar(show_progress(args))], cache_dir=args.cache_dir, dp=dp)
        ranks = "" if dp is None else f" x {dp.world_size} ranks"
        print(f"gaeanas search: {search.cfg.method} ({search.cfg.objective}) on {search.cfg.space}, data "
              f"{search.cfg.data}, {search.cfg.epochs} epochs, device {device}{ranks}; run directory {path}",
              flush=True)
        return search

    follow = lambda path: Search(cfg, path, device, [], cache_dir=args.cache_dir, dp=dp)  # noqa: E731
    result = run_ranked(start, follow, "search", run_dir, bool(args.resume), dp)
    if dp is not None and not dp.is_main:
        return 0
    if result is None:
        return 130
    print_result(result, run_dir)
    return 0


def run_ranked(start, follow, command: str, run_dir: Path, resume: bool, dp) -> dict | None:
    """run_in_dir(start, ...), and under torchrun the other ranks' part: once rank 0 has claimed the run directory
    they run follow(run_dir), which computes with rank 0 and reads the directory but never writes it."""
    try:
        if dp is not None and not dp.is_main:
            return follow(Path(distributed.wait_for_main(dp))).run()
        return run_in_dir(start, command, run_dir, resume, dp)
    finally:
        distributed.stop()


def run_in_dir(start, command: str, run_dir: Path, resume: bool, dp=None) -> dict | None:
    """start(run_dir).run() in the claimed run directory, or None after Ctrl-C with a note on what was kept. In a
    data-parallel run (dp, rank 0) the other ranks start once the directory is claimed, or stop with its error."""
    try:
        with contextlib.ExitStack() as stack:
            try:
                path = stack.enter_context(claimed_run_dir(run_dir, resume))
            except BaseException as err:
                if dp is not None:
                    distributed.release_others(dp, str(err))
                raise
            if dp is not None:
                distributed.release_others(dp, None, str(path))
            return start(path).run()
    except KeyboardInterrupt:
        if (Path(run_dir) / CHECKPOINT_FILE).exists():
            print(f"\ninterrupted; continue with: gaeanas {command} --resume {run_dir}", file=sys.stderr)
        else:
            print("\ninterrupted before the first epoch finished; nothing was kept", file=sys.stderr)
        return None


def print_result(result: dict, run_dir: Path) -> None:
    print(f"genotype: {result['genotype']}  (epoch {result['selected_epoch']}, the {result['select']} one)")
    if result["select"] == "best" and result["last"]["genotype"] != result["genotype"]:
        print(f"last epoch's genotype: {result['last']['genotype']}")
    print(f"final architecture entropy: {result['entropy']:.4f} nats; search time {result['search_seconds']:.1f}s")
    for name, value in (result.get("oracle") or {}).items():
        label = name.replace("_", " ") if name in ORACLE_LABELS and "_" in name else f"{name} test accuracy"
        print(f"  {label:>28}: {score_text(name, value)}")
    if result.get("nb101"):
        print(f"  NAS-Bench-101 cell {result['nb101']['hash']}: ops {result['nb101']['ops']}, "
              f"adjacency {result['nb101']['matrix']}")
    print(f"results in {run_dir}/result.json")


def _csv(kind):
    """argparse type: a comma-separated, non-empty list of `kind`, without empty items."""
    def parse(text: str) -> list:
        parts = [part.strip() for part in text.split(",")]
        if not text.strip() or any(not part for part in parts):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list without empty items, got {text!r}")
        try:
            return [kind(part) for part in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}s, got {text!r}") from None
    return parse


def parse_seeds(text: str) -> list[int]:
    """argparse type: seeds as a comma-separated list of integers and inclusive ranges, e.g. `0-9` or `0,2,5-7`."""
    seeds: list[int] = []
    for part in _csv(str)(text):
        low, dash, high = part.partition("-")
        try:
            first, last = (int(low), int(high)) if dash else (int(part), int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2 or 0-9, got {part!r} in {text!r}") from None
        if first > last:
            raise argparse.ArgumentTypeError(f"seed range {part!r} runs backwards; write {last}-{first}")
        seeds += [seed for seed in range(first, last + 1) if seed not in seeds]
    return seeds


class GridProgress(ProgressBar):
    """Per-epoch bars plus a header line for each run of a grid."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        super().__init__(enabled)
        self.total = total

    def on_run_start(self, index: int, run, reused: bool) -> None:
        state = "finished earlier, reused" if reused else "running"
        print(f"[{index + 1}/{self.total}] {run.name}: {state}", flush=True)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .nasbench import NB201Table
    from .reproduce import build_grid, compact_nb101_table, finished_runs, run_grid, run_grid_in_workers, write_report

    launch = launch_from_args(args)
    if args.report_only and launch is not None:
        raise ConfigError("--workers and --ray run the grid; --report-only runs nothing: give one of them")
    target = args.benchmark_name
    if target == "nb201" and not args.benchmark:
        raise ConfigError("reproduce nb201 needs --benchmark: the NAS-Bench-201 table (CSV) scores every genotype")
    table = NB201Table.load(args.benchmark) if target == "nb201" else None
    grid = build_grid(args.methods, args.objectives, args.seeds, target)
    out = args.out or Path("results") / f"{target}-{args.scale}"
    device = resolve_device(args.device)
    if target == "nb1shot1" and args.benchmark and not args.report_only:
        args.benchmark = str(compact_nb101_table(args.benchmark, Path(out)))
    print(f"gaeanas reproduce {target}: {len(grid)} runs at scale {args.scale!r} on {device}; results in {out}")
    progress = GridProgress(len(grid), show_progress(args))
    overrides = {"epochs": args.epochs} if args.epochs else {}
    failed = []
    try:
        if args.report_only:
            paths = finished_runs(grid, out)
            print(f"reporting the {len(paths)} of {len(grid)} runs that have finished")
        elif launch is not None:
            outcomes = run_grid_in_workers(grid, out, args.scale, args.data, args.benchmark,
                                           args.device if launch.ray else device, launch,
                                           _print_worker_event, args.cache_dir, **overrides)
            failed = [o for o in outcomes if o.exitcode != 0]
            paths = finished_runs(grid, out)
        else:
            paths = run_grid(grid, out, args.scale, args.data, args.benchmark, device, [progress],
                             progress.on_run_start, args.cache_dir, **overrides)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue the grid", file=sys.stderr)
        return 130
    for path in write_report(out, paths, table, target):
        print(f"wrote {path}")
    print((out / "table.md").read_text())
    return _report_failed_workers(failed)


def _report_failed_workers(failed: Sequence) -> int:
    """Name each worker run that did not finish, with its log; 1 if any, else 0."""
    for outcome in failed:
        how = f"killed by signal {-outcome.exitcode}" if outcome.exitcode < 0 else f"exit code {outcome.exitcode}"
        print(f"{outcome.name} did not finish ({how}); its log: {outcome.log}", file=sys.stderr)
    if failed:
        print("run the same command again to resume the runs that did not finish", file=sys.stderr)
        return 1
    return 0


def launch_from_args(args: argparse.Namespace):
    """A runner.Launch for --workers N (N > 1) or --ray ADDRESS; None for the serial default."""
    from .runner import Launch

    if args.ray is not None and args.workers > 1:
        raise ConfigError("give --workers (processes on this machine) or --ray (a Ray cluster), not both")
    if args.ray is None and args.ray_cpus is not None:
        raise ConfigError("--ray-cpus goes with --ray")
    if args.ray is not None:
        gpus = 1.0 if str(getattr(args, "device", None) or "").startswith("cuda") else 0.0
        return Launch(ray=args.ray, ray_cpus=args.ray_cpus or 1.0, ray_gpus=gpus)
    return Launch(workers=args.workers) if args.workers > 1 else None


def _print_worker_event(event: str, job, detail) -> None:
    """One line when a worker starts a run or one ends."""
    stamp = time.strftime("%H:%M:%S")
    if event == "start":
        where = f" (process {detail.pid})" if hasattr(detail, "pid") else " (Ray task)"
        print(f"{stamp} started {job.name}{where}", flush=True)
    else:
        state = "finished" if detail.exitcode == 0 else f"FAILED (exit {detail.exitcode}; log {detail.log})"
        print(f"{stamp} {job.name} {state}", flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report_run

    for path in report_run(args.run_dir, args.out):
        print(f"wrote {path}")
    return 0


class TrainProgress(ProgressBar):
    """A tqdm bar per epoch with training loss and accuracy, one summary line per epoch, a header per seed."""

    def __init__(self, enabled: bool = True, total: int = 1) -> None:
        super().__init__(enabled)
        self.total = total

    def on_step(self, step: int, metrics: dict) -> None:
        self.bar.update(1)
        if step % STEP_REFRESH == 0 and self.enabled:
            self.bar.set_postfix(loss=f"{float(metrics['loss']):.3f}", acc=f"{100 * float(metrics['acc']):.1f}")

    def on_epoch_end(self, record: dict) -> None:
        self.bar.close()
        drop_path = f"drop-path {record['drop_path_prob']:.3f}  " if "drop_path_prob" in record else ""
        print(f"epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  acc {record['train_acc']:5.2f}  "
              f"test loss {record['test_loss']:.4f}  test acc {record['test_acc']:5.2f}  "
              f"{drop_path}lr {record['lr']:.5f}  {record['seconds']:6.1f}s", flush=True)

    def on_seed_start(self, index: int, seed: int, reused: bool) -> None:
        state = "finished earlier, reused" if reused else "training"
        print(f"[{index + 1}/{self.total}] seed {seed}: {state}", flush=True)


def _genotype_label(spec: str) -> str:
    """A short name for a genotype spec, for default output names: the published name or the file's stem."""
    if spec in PUBLISHED:
        return spec
    if spec.startswith("random:"):
        return spec.replace(":", "")
    if spec.strip().startswith("|"):
        return "nb201"
    path = Path(spec)
    return path.stem if len(spec) < 200 and path.exists() else "custom"


def _network_line(cfg: TrainConfig) -> str:
    """'nb201 network, C=16, N=5' or 'cifar network, C=36, L=20'."""
    if cfg.space == "nb201":
        return f"nb201 network, C={cfg.channels}, N={cfg.cells} per stage"
    return f"{cfg.network} network, C={cfg.channels}, L={cfg.cells}"


def cmd_train(args: argparse.Namespace) -> int:
    from .train import Trainer, load_train_config, resume_seeds, run_seeds

    progress = TrainProgress(show_progress(args))
    if args.resume:
        refuse_flags_on_resume(args, TrainConfig, ("seeds",))
        if launch_from_args(args) is not None:
            raise ConfigError("--workers and --ray go with --seeds: run the same `gaeanas train --seeds ...` "
                              "command again, which resumes the seeds that did not finish")
        if (args.resume / SEEDS_FILE).is_file() and not (args.resume / CONFIG_FILE).is_file():
            print(f"resuming the seeds in {args.resume}")
            device = resolve_device(args.device or "auto")
            progress.total = len(read_json(args.resume / SEEDS_FILE)["seeds"])
            return _finish_seeds(lambda: resume_seeds(args.resume, device, [progress], progress.on_seed_start,
                                                      args.cache_dir), args.resume)
        cfg, run_dir = resumed(args, load_train_config), args.resume
    else:
        cfg = config_from_args(args, TrainConfig)
        if args.seeds and args.seed is not None:
            raise ConfigError("give --seed for one training or --seeds for several, not both")
        label = _genotype_label(cfg.genotype or "")
        cfg = cfg.resolved()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        launch = launch_from_args(args)
        if launch is not None and not args.seeds:
            raise ConfigError("--workers and --ray train several seeds at a time: give --seeds")
        if args.seeds and distributed.from_environment() is not None:
            raise ConfigError("under torchrun, train one seed with all the ranks; --seeds fans several trainings out "
                              "(--workers or --ray), each on one process")
        if args.seeds:
            out = args.out or Path("runs") / f"train-{label}-seeds-{stamp}"
            device = resolve_device(cfg.device)
            progress.total = len(args.seeds)
            print(f"gaeanas train: {label} ({_network_line(cfg)}), data {cfg.data}, {cfg.epochs} epochs, seeds "
                  f"{args.seeds}, device {device}; results in {out}", flush=True)
            if launch is not None:
                return _train_seeds_in_workers(cfg, out, args, cfg.device if launch.ray else device, launch)
            return _finish_seeds(lambda: run_seeds(cfg, out, args.seeds, device, [progress], progress.on_seed_start,
                                                   args.cache_dir), out)
        run_dir = args.out or Path("runs") / f"train-{label}-seed{cfg.seed}-{stamp}"
    device = resolve_device(cfg.device)
    dp = distributed.from_environment()
    if dp is not None:
        device = distributed.start(dp, device)

    def start(path: Path) -> Trainer:
        trainer = Trainer(cfg, path, device, [progress], cache_dir=args.cache_dir, dp=dp)
        ranks = "" if dp is None else f" x {dp.world_size} ranks"
        print(f"gaeanas train: {_genotype_label(trainer.cfg.genotype)} ({_network_line(trainer.cfg)}), data "
              f"{trainer.cfg.data}, {trainer.cfg.epochs} epochs, device {device}{ranks}; run directory {path}",
              flush=True)
        print(f"test split: {trainer.test_source}", flush=True)
        return trainer

    follow = lambda path: Trainer(cfg, path, device, [], cache_dir=args.cache_dir, dp=dp)  # noqa: E731
    result = run_ranked(start, follow, "train", run_dir, bool(args.resume), dp)
    if dp is not None and not dp.is_main:
        return 0
    if result is None:
        return 130
    print_train_result(result)
    print(f"results in {run_dir}/result.json")
    return 0


def _train_seeds_in_workers(cfg: TrainConfig, out: Path, args: argparse.Namespace, device, launch) -> int:
    """gaeanas train --seeds ... --workers N (or --ray): the seeds in worker processes or Ray tasks, then the summary."""
    from .train import run_seeds_in_workers

    summary, outcomes = run_seeds_in_workers(cfg, out, args.seeds, device, launch, _print_worker_event,
                                             args.cache_dir)
    failed = [o for o in outcomes if o.exitcode != 0]
    if summary is not None:
        _print_seed_summary(summary, out)
    return _report_failed_workers(failed)


def _finish_seeds(train, out: Path) -> int:
    """Run a multi-seed training and print its summary (or how to continue it)."""
    try:
        summary = train()
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: gaeanas train --resume {out}", file=sys.stderr)
        return 130
    _print_seed_summary(summary, out)
    return 0


def _print_seed_summary(summary: dict, out: Path) -> None:
    print_train_result(summary)
    for seed, error in zip(summary["seeds"], summary["test_errors"]):
        print(f"  seed {seed}: test error {error:.2f}%")
    print(f"test error over {len(summary['seeds'])} seeds: {summary['mean_test_error']:.2f} ± "
          f"{summary['std_test_error']:.2f}% (mean ± population std)")
    print(f"summary in {out}/summary.json")


def print_train_result(result: dict) -> None:
    print(f"genotype: {result['genotype']}")
    print(f"parameters: {result['parameters_m']:.4g}M (auxiliary head excluded)")
    print(f"multiply-adds: {result['multiply_adds_m']:.4g}M per image")
    if "final_test_error" in result:
        print(f"final test error: {result['final_test_error']:.2f}% (accuracy {result['final_test_acc']:.2f}%)")


def cmd_export(args: argparse.Namespace) -> int:
    from .export import MODEL_FILE, META_FILE, export_model

    out = args.out or args.run_dir / "export"
    meta = export_model(args.run_dir, out, command=" ".join(["gaeanas", *args.argv]))
    print(f"exported {meta['space']} network ({meta['parameters_m']:.4g}M parameters, {len(meta['classes'])} classes, "
          f"input 3x{meta['input']['size'][0]}x{meta['input']['size'][1]}) with test accuracy "
          f"{meta['test_accuracy']:.2f}% on {meta['test_split']}")
    print(f"wrote {out / MODEL_FILE} (torch.export program: torch.export.load(path).module() needs only torch) and "
          f"{out / META_FILE}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from .export import confusion_matrix, image_files, labelled_images, load_exported, read_images
    from .report import plot_confusion

    model = load_exported(args.model)
    classes = model.classes
    k = min(args.top_k, len(classes))
    if len(args.images) == 1 and args.images[0].is_dir() and any(p.is_dir() for p in args.images[0].iterdir()):
        root = args.images[0]
        paths, labels = labelled_images(root, classes)
        predicted = model.probabilities(read_images(paths, model.meta)).argmax(dim=1).tolist()
        matrix = confusion_matrix(labels, predicted, len(classes))
        accuracy = 100.0 * float(np.trace(matrix)) / len(labels)
        print(f"accuracy on {root}: {accuracy:.2f}% ({int(np.trace(matrix))} of {len(labels)} images)")
        print("confusion matrix (rows: true class, columns: predicted):")
        width = max(len(c) for c in classes)
        print(" " * (width + 1) + " ".join(f"{i:>5d}" for i in range(len(classes))))
        for i, (name, row) in enumerate(zip(classes, matrix)):
            print(f"{name:>{width}} " + " ".join(f"{v:>5d}" for v in row) + f"   ({i})")
        out = args.out or Path(".")
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion(matrix, classes, out / "confusion.png", f"{root.name}: accuracy {accuracy:.2f}%")
        print(f"wrote {out / 'confusion.png'}")
        return 0
    paths = [p for arg in args.images for p in (image_files(arg) if arg.is_dir() else [arg])]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"no such image file: {missing[0]}")
    if not paths:
        raise ConfigError("no images given (a folder holds no image files)")
    probs = model.probabilities(read_images(paths, model.meta))
    top = probs.topk(k, dim=1)
    for path, values, indices in zip(paths, top.values.tolist(), top.indices.tolist()):
        ranked = ", ".join(f"{classes[i]} {100 * v:.1f}%" for v, i in zip(values, indices))
        print(f"{path}: {ranked}")
    return 0


def cmd_draw(args: argparse.Namespace) -> int:
    from .draw import draw_genotype
    from .spaces.darts_genotypes import load_genotype

    genotype = load_genotype(args.genotype)
    prefix = args.out or Path(_genotype_label(args.genotype))
    for path in draw_genotype(genotype, prefix):
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gaeanas", description="Geometry-aware gradient-based NAS (GAEA).",
                                     formatter_class=HELP_FORMAT, epilog=EXAMPLES["search"])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    search = sub.add_parser("search", help="run an architecture search", formatter_class=HELP_FORMAT,
                            epilog=EXAMPLES["search"])
    add_run_dir_flags(search, "search", "run directory (default: runs/<space>-<method>-<objective>-seed<N>-<time>)")
    add_config_flags(search)
    search.set_defaults(func=cmd_search)

    repro = sub.add_parser("reproduce", help="reproduce the paper's NAS-Bench-201 table and figures, or its "
                                             "NAS-Bench-1Shot1 searches", formatter_class=HELP_FORMAT,
                           epilog=EXAMPLES["reproduce"])
    repro.add_argument("benchmark_name", choices=["nb201", "nb1shot1"],
                       help="which results to reproduce: nb201 (Table 2, Figures 1 and 4) or nb1shot1 (PC-DARTS "
                            "against GAEA PC-DARTS on spaces 1-3, Figures 1 and 2)")
    repro.add_argument("--scale", choices=["paper", "cpu", "cpu-deep"], default="cpu",
                       help="paper: the reference code's settings, for a GPU; cpu: nb201 C=8, N=1, 10k images, 0.4 "
                            "of each method's epochs (gaea-darts 10, gaea-gdas 60, gdas 100), nb1shot1 C=8, one "
                            "cell per stage, 16x16 images, 10k images, 10 epochs; cpu-deep (nb201 only): C=8, N=5, "
                            "16x16 images, 10k images, 0.8 of each method's epochs (default: cpu)")
    repro.add_argument("--methods", type=_csv(str), default=None,
                       help="comma-separated methods (default: the paper's grid)")
    repro.add_argument("--objectives", type=_csv(str), default=None, help="comma-separated objectives")
    repro.add_argument("--seeds", type=parse_seeds, default=None,
                       help="seeds, comma-separated, with inclusive ranges: 0-9 or 0,2,5-7 (default: nb201 0,1,2; "
                            "nb1shot1 0-3)")
    repro.add_argument("--data", required=True, help="CIFAR-10 training images (folder or python release)")
    repro.add_argument("--benchmark", default=None,
                       help="nb201: the NAS-Bench-201 table (CSV), required; nb1shot1: NAS-Bench-101's "
                            "nasbench_only108.tfrecord for the test regret, read once into OUT/nb101-table.json "
                            "(without it the searches run and report no regret)")
    repro.add_argument("--epochs", type=positive_int, default=None, help="override the preset's epochs")
    repro.add_argument("--out", type=Path, default=None,
                       help="results folder (default: results/<nb201 or nb1shot1>-<scale>)")
    repro.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    repro.add_argument("--cache-dir", type=Path, default=None, help="dataset cache")
    repro.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_launch_flags(repro, "run", "runs")
    repro.add_argument("--report-only", action="store_true",
                       help="run nothing: write the table and figures from the runs that have finished")
    repro.set_defaults(func=cmd_reproduce)

    report = sub.add_parser("report", help="draw entropy.png and oracle.png for search runs (one or several)",
                            formatter_class=HELP_FORMAT, epilog=EXAMPLES["report"])
    report.add_argument("run_dir", type=Path, nargs="+", help="search run directories; several share the plots")
    report.add_argument("--out", type=Path, default=None,
                        help="where to write the plots (default: RUN_DIR; required with several runs)")
    report.set_defaults(func=cmd_report)

    train = sub.add_parser("train", help="train a discovered cell from scratch: DARTS-space or NAS-Bench-201 (one seed "
                                         "or several)",
                           formatter_class=HELP_FORMAT, epilog=EXAMPLES["train"])
    train.add_argument("--seeds", type=parse_seeds, default=None,
                       help="seeds (0,1,2 or 0-4): one training each into OUT/seed<N>/, then mean ± std")
    add_launch_flags(train, "seed", "with --seeds: seeds")
    add_run_dir_flags(train, "training (or the set of seeds)",
                      "run directory, or with --seeds the folder of seed runs (default: runs/train-...)")
    add_config_flags(train, TrainConfig)
    train.set_defaults(func=cmd_train)

    export = sub.add_parser("export", help="write a trained network as a self-contained torch.export program",
                            formatter_class=HELP_FORMAT, epilog=EXAMPLES["export"])
    export.add_argument("run_dir", type=Path, help="a finished `gaeanas train` run directory (one seed)")
    export.add_argument("--out", type=Path, default=None, help="the export folder (default: RUN_DIR/export)")
    export.set_defaults(func=cmd_export)

    predict = sub.add_parser("predict", help="classify images with an exported model",
                             formatter_class=HELP_FORMAT, epilog=EXAMPLES["predict"])
    predict.add_argument("model", type=Path, help="an export folder (model.pt2 and model.json)")
    predict.add_argument("images", type=Path, nargs="+",
                         help="image files, folders of images, or one class-folder tree (then: accuracy and confusion)")
    predict.add_argument("--top-k", type=positive_int, default=3, help="classes shown per image (default: 3)")
    predict.add_argument("--out", type=Path, default=None,
                         help="where confusion.png goes for a class-folder tree (default: the current folder)")
    predict.set_defaults(func=cmd_predict)

    draw = sub.add_parser("draw", help="draw the normal and reduction cells of a DARTS-space genotype",
                          formatter_class=HELP_FORMAT, epilog=EXAMPLES["draw"])
    draw.add_argument("genotype", help="a published name (DARTS_V2, PC_DARTS), random:SEED, a genotype file, a run directory, "
                                       "or the genotype text")
    draw.add_argument("--out", type=Path, default=None,
                      help="file prefix: writes PREFIX-normal.{png,svg} and PREFIX-reduce.{png,svg} "
                           "(default: the genotype's name in the current folder)")
    draw.set_defaults(func=cmd_draw)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except GaeanasError as err:
        print(f"gaeanas: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print("gaeanas: error: out of memory; use --resize with a smaller size, --subset, or a smaller --batch-size",
              file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a file that vanished mid-run: the OS says what and where
        where = f": {err.filename}" if err.filename else ""
        print(f"gaeanas: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
