"""What XNAS' per-example clipping does to the architecture gradient, at the end of a finished `xnas` search.

Reloads the run's last checkpoint, sets the architecture to the weights logged for the epoch before the last (the
last epoch's wipeout leaves one operation per edge), and on a few of the run's architecture batches computes each
example's share of the batch gradient (see SearchStep.clipped_example_grads). Prints, per batch: the median share
norm, the fraction of examples the clip L acts on, the norms of the plain batch gradient and of the clipped mean,
and the cosine between the two directions.

    python benchmarks/xnas_clipping.py docs/results/nb201-cpu-deep/runs/xnas-bilevel-seed0 --data /tmp/cifar10/train
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from gaeanas.relax import Mixing
from gaeanas.rundir import config_identity, read_checkpoint, read_log
from gaeanas.search import Search, load_config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a finished (or checkpointed) xnas search")
    p.add_argument("--data", default=None, help="the run's data, if it has moved since the run")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    cfg = load_config(args.run_dir)
    if cfg.example_clip is None:
        raise SystemExit(f"{args.run_dir} is not an xnas run")
    if args.data:
        cfg = dataclasses.replace(cfg, data=args.data)
    scratch = Path(tempfile.mkdtemp(prefix="xnas-clipping-"))
    try:
        search = Search(cfg, scratch / "run", torch.device("cpu"), cache_dir=args.cache_dir)
        search.load_state_dict(read_checkpoint(args.run_dir, torch.device("cpu"), config_identity(search.cfg.record())))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log = read_log(args.run_dir)
    model = search.model
    with torch.no_grad():
        for name, theta in model.arch.theta.items():
            theta.copy_(torch.tensor(log[max(len(log) - 2, 0)]["arch_weights"][name]))
    model.train()
    clip = cfg.example_clip
    print(f"{args.run_dir}: L = {clip}, architecture of epoch {max(len(log) - 1, 1)}")
    print("| batch | median share norm | clipped | batch gradient norm | clipped mean norm | cosine |")
    print("|---|---|---|---|---|---|")
    for i, (x, y) in zip(range(args.batches), search.arch_loader):
        n = len(y)
        leaves = {k: model.arch.probs(k).detach()[(..., None, None, None, None)].expand(
            *model.arch.theta[k].shape, n, 1, 1, 1).clone().requires_grad_() for k in model.arch.theta}
        losses = F.cross_entropy(model.net(x, {k: Mixing(w) for k, w in leaves.items()}), y, reduction="none")
        shares = torch.cat([g.reshape(-1, n) for g in torch.autograd.grad(losses.sum(), list(leaves.values()))])
        norms = shares.norm(dim=0)
        plain = shares.mean(dim=1)
        clipped = (shares * (clip / norms.clamp_min(1e-12)).clamp(max=1.0)).mean(dim=1)
        cosine = float(F.cosine_similarity(plain, clipped, dim=0))
        print(f"| {i} | {float(norms.median()):.2f} | {float((norms > clip).float().mean()):.2f} | "
              f"{float(plain.norm()):.3f} | {float(clipped.norm()):.3f} | {cosine:.3f} |")


if __name__ == "__main__":
    main()
