"""A whole NAS-Bench-201 search, process start to genotype: gaeanas against xautodl's own DARTS-V1 search loop.

Both sides run the same search in a fresh process: first-order DARTS, bilevel (the architecture learns from a
held-out half), C=16, N=5, the five NAS-Bench-201 operations, batch 64, a 5,000-image subset of the real CIFAR-10
folder split 2,500 / 2,500, one epoch, then one pass over the held-out half and the genotype.

- gaeanas: `gaeanas.search.Search` with the CLI's settings, reading the image folder itself (decoded to one tensor,
  augmented in batches). Timed twice, with an empty cache folder and again with the same one. With a subset only
  the images kept are decoded and nothing is cached, so both runs decode them.
- the peer: AutoDL-Projects' `exps/NAS-Bench-201-algos/DARTS-V1.py`, whose `search_func` and `valid_func` are the
  loop it ran, fed by xautodl's own pipeline (`get_datasets`' CIFAR transforms, `get_nas_search_loaders`' split
  and DataLoaders). Four things are adapted to run it here, and nothing in its loop is changed:
  - its CIFAR reader wants the python release, so `torchvision.datasets.CIFAR10` is swapped for an `ImageFolder`
    over the same folder, with xautodl's transforms;
  - `cifar-split.txt` is written for the 5,000-image subset (same sizes as ours);
  - `.cuda()` is the identity (there is no GPU), and the PyPI torchvision wheel's CUDA-only C ops are not loaded
    (nothing here uses them);
  - its top-k accuracy helper calls `.view` on a transposed tensor, which current torch refuses; an equivalent
    one is put in its place (bookkeeping only).

Set up the peer's environment (not gaeanas'; a throwaway venv that sees this one's packages):

    python -m venv --system-site-packages /tmp/peer-env
    /tmp/peer-env/bin/pip install --no-deps xautodl==1.0.0 torchvision==0.28.0
    git clone https://github.com/D-X-Y/AutoDL-Projects /tmp/autodl      # exps/ and configs/ are not in the wheel
    python benchmarks/search_end_to_end.py --data /tmp/cifar10 --peer-repo /tmp/autodl \\
        --peer-python /tmp/peer-env/bin/python

`--data` is a folder holding `train/` and `test/` image folders (xautodl's reader opens both). Printed: wall time
from process start to genotype (median over --repeats), split into data (reading, decoding, augmenting and waiting
for batches), compute (forward, backward and updates, the held-out pass included) and other (interpreter start,
imports, building the network, writing the run directory), and the ratio peer / ours.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


def new_clock() -> dict[str, float]:
    """Seconds spent: load (building the datasets), loops (the search and held-out loops), waits (inside the loops,
    waiting for a batch)."""
    return {"load": 0.0, "loops": 0.0, "waits": 0.0}


def split(clock: dict[str, float]) -> dict[str, float]:
    """data = building the datasets and waiting for batches; compute = the loops less their waits."""
    return {"data": clock["load"] + clock["waits"], "compute": clock["loops"] - clock["waits"]}


class TimedLoader:
    """An iterable of batches that adds the time spent waiting for each batch to `waits[key]`."""

    def __init__(self, loader: Iterable, waits: dict[str, float], key: str = "waits") -> None:
        self.loader, self.waits, self.key = loader, waits, key

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        it = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                self.waits[self.key] += time.perf_counter() - start
            yield batch


def timed(fn: Callable, clock: dict[str, float], key: str) -> Callable:
    """fn, adding its running time to clock[key]."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[key] += time.perf_counter() - start
    return wrapper


# --------------------------------------------------------------------------- gaeanas


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import gaeanas.search as search_mod
    from gaeanas.search import Search, SearchConfig

    torch.set_num_threads(args.threads)
    clock = new_clock()
    search_mod.load_search_data = timed(search_mod.load_search_data, clock, "load")
    cfg = SearchConfig(space="nb201", method="darts", objective="bilevel", channels=args.channels, cells=args.cells,
                       data=args.data, subset=args.subset, epochs=args.epochs, batch_size=args.batch, seed=args.seed,
                       device="cpu", select="last")
    with tempfile.TemporaryDirectory() as run_dir:
        search = Search(cfg, run_dir, torch.device("cpu"), cache_dir=args.cache_dir)
        for name in ("weight_loader", "arch_loader", "valid_loader"):
            setattr(search, name, TimedLoader(getattr(search, name), clock))
        search._run_epoch = timed(search._run_epoch, clock, "loops")  # the epoch, and the held-out pass in it
        result = search.run()
    return {**split(clock), "genotype": result["genotype"]}


# --------------------------------------------------------------------------- xautodl


def _stub_for_cpu() -> None:
    """What running the peer on a CPU-only torch needs, and nothing more: no CUDA-built torchvision C ops, no
    NAS-Bench-201 API (the search does not query it), `.cuda()` as the identity."""
    import torch
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    api = types.ModuleType("nas_201_api")
    api.NASBench201API = None
    sys.modules["nas_201_api"] = api
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self


def top_k_accuracy(logits: Any, targets: Any, topk: tuple[int, ...] = (1,)) -> list[Any]:
    """Top-k accuracies in %, one 1-element tensor per k (what xautodl's obtain_accuracy returns)."""
    top = logits.topk(max(topk), dim=1).indices
    hits = top.eq(targets.reshape(-1, 1))
    return [hits[:, :k].any(dim=1).float().mean().mul(100).reshape(1) for k in topk]


def _image_folder_reader(root: str, train: bool, transform: Any = None, download: bool = False) -> Any:
    """torchvision's CIFAR10 signature over an image folder holding train/ and test/."""
    from torchvision.datasets import ImageFolder
    return ImageFolder(os.path.join(root, "train" if train else "test"), transform=transform)


def _write_split(config_root: Path, n_train: int, subset: int, seed: int) -> None:
    """cifar-split.txt for a search on `subset` images: two disjoint seeded halves of them."""
    import numpy as np
    perm = np.random.RandomState(seed).permutation(n_train)[:subset]
    half = subset // 2
    split = {"train": ["int", [str(i) for i in perm[:half]]], "valid": ["int", [str(i) for i in perm[half:]]]}
    (config_root / "cifar-split.txt").write_text(json.dumps(split))


def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    _stub_for_cpu()
    import torch
    import xautodl.datasets.get_dataset_with_transform as xdata
    from xautodl.config_utils import dict2config, load_config
    from xautodl.datasets import get_datasets, get_nas_search_loaders
    from xautodl.models import get_cell_based_tiny_net, get_search_spaces
    from xautodl.procedures import get_optim_scheduler, prepare_seed

    script = Path(args.peer_repo) / "exps" / "NAS-Bench-201-algos" / "DARTS-V1.py"
    spec = importlib.util.spec_from_file_location("darts_v1", script)
    darts_v1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(darts_v1)
    darts_v1.obtain_accuracy = top_k_accuracy  # xautodl's `.view` on a transposed tensor fails on current torch

    torch.set_num_threads(args.threads)
    prepare_seed(args.seed)
    clock = new_clock()
    xdata.dset.CIFAR10 = _image_folder_reader
    start = time.perf_counter()
    train_data, valid_data, xshape, class_num = get_datasets("cifar10", args.data, -1)
    with tempfile.TemporaryDirectory() as config_root:
        _write_split(Path(config_root), len(train_data), args.subset, args.seed)
        search_loader, _, valid_loader = get_nas_search_loaders(train_data, valid_data, "cifar10", config_root,
                                                                args.batch, args.peer_workers)
    clock["load"] += time.perf_counter() - start
    config = load_config(str(Path(args.peer_repo) / "configs" / "nas-benchmark" / "algos" / "DARTS.config"),
                         {"class_num": class_num, "xshape": xshape}, None)
    model_config = dict2config({"name": "DARTS-V1", "C": args.channels, "N": args.cells, "max_nodes": 4, "num_classes": class_num,
                                "space": get_search_spaces("cell", "nas-bench-201"), "affine": False,
                                "track_running_stats": False}, None)
    search_model = get_cell_based_tiny_net(model_config)
    w_optimizer, w_scheduler, criterion = get_optim_scheduler(search_model.get_weights(), config)
    a_optimizer = torch.optim.Adam(search_model.get_alphas(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    network = torch.nn.DataParallel(search_model).cuda()
    logger = types.SimpleNamespace(log=lambda *a, **k: None)
    search_func = timed(darts_v1.search_func, clock, "loops")
    valid_func = timed(darts_v1.valid_func, clock, "loops")
    for epoch in range(args.epochs):
        w_scheduler.update(epoch, 0.0)
        search_func(TimedLoader(search_loader, clock), network, criterion, w_scheduler, w_optimizer, a_optimizer,
                    f"{epoch:03d}-{args.epochs:03d}", 200, logger, 5.0)
        valid_func(TimedLoader(valid_loader, clock), network, criterion)
    genotype = search_model.genotype()
    return {**split(clock), "genotype": genotype.tostr()}


# --------------------------------------------------------------------------- the parent: fresh processes, timed


SIDES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"ours": run_ours, "peer": run_peer}


def child_command(args: argparse.Namespace, side: str, cache_dir: str | None) -> list[str]:
    python = args.peer_python if side == "peer" else sys.executable
    cmd = [python, os.path.abspath(__file__), "--side", side, "--data", args.data]
    for name in ("epochs", "threads", "seed", "peer_workers", "subset", "batch", "channels", "cells"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.peer_repo:
        cmd += ["--peer-repo", args.peer_repo]
    return cmd + (["--cache-dir", cache_dir] if cache_dir else [])


def timed_child(cmd: list[str]) -> dict[str, Any]:
    """Run one side in a fresh process; its JSON report plus the wall time from spawn to exit."""
    env = {**os.environ, "OMP_NUM_THREADS": cmd[cmd.index("--threads") + 1]}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**report, "wall": wall, "other": wall - report["data"] - report["compute"]}


def median_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time (its split is consistent with itself)."""
    return sorted(reports, key=lambda r: r["wall"])[len(reports) // 2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder holding train/ and test/ CIFAR-10 image folders")
    p.add_argument("--peer-repo", default=None, help="an AutoDL-Projects checkout (exps/ and configs/)")
    p.add_argument("--peer-python", default=sys.executable, help="interpreter with xautodl and torchvision")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--subset", type=int, default=5000, help="images of the training folder, split in two halves")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--channels", type=int, default=16, help="C")
    p.add_argument("--cells", type=int, default=5, help="N")
    p.add_argument("--threads", type=int, default=2, help="torch threads on each side")
    p.add_argument("--peer-workers", type=int, default=0, help="DataLoader worker processes of the peer")
    p.add_argument("--repeats", type=int, default=1, help="runs of each side; the median is printed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--side", choices=sorted(SIDES), default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side is None and not args.peer_repo:
        p.error("--peer-repo is required (an AutoDL-Projects checkout)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side is not None:  # a child: run one side, print its report as one JSON line
        print(json.dumps(SIDES[args.side](args)), flush=True)
        return
    rows = {}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            rows.setdefault("gaeanas, empty cache folder", []).append(
                timed_child(child_command(args, "ours", cache)))
            rows.setdefault("gaeanas, second run, same cache folder", []).append(
                timed_child(child_command(args, "ours", cache)))
        rows.setdefault(f"xautodl DARTS-V1 loop ({args.peer_workers} loader workers)", []).append(
            timed_child(child_command(args, "peer", None)))
    peer = median_report(rows[next(k for k in rows if k.startswith("xautodl"))])
    print(f"NAS-Bench-201 search, darts first order, bilevel, C={args.channels} N={args.cells}, batch {args.batch}, "
          f"{args.subset} images of "
          f"{args.data}, {args.epochs} epoch(s); torch {args.threads} threads; median of {args.repeats} run(s)\n")
    print("| run | wall (s) | data (s) | compute (s) | other (s) | peer / this | genotype |")
    print("|---|---|---|---|---|---|---|")
    for name, reports in rows.items():
        r = median_report(reports)
        print(f"| {name} | {r['wall']:.1f} | {r['data']:.1f} | {r['compute']:.1f} | {r['other']:.1f} | "
              f"{peer['wall'] / r['wall']:.2f}x | `{r['genotype']}` |")


if __name__ == "__main__":
    main()
