"""Where the architecture regulariser holds the weights: the stationary point of the update, from measured gradients.

For a search run with its checkpoint: loads the last epoch's supernet and architecture, sets that epoch's Gumbel
temperature, and averages the architecture gradient of the loss over `--batches` batches of the split the
architecture learns from (no update is taken). Then, per method, the point where the data gradient and the
regulariser balance:
- exponentiated gradient with the KL-to-uniform term c * sum(theta log(k theta)) (GAEA GDAS' `--entropy-coef`): the
  update stops moving when g_k + c log(theta_k) is equal across an edge's ops, so theta* ~ exp(-g / c), a Gibbs
  distribution over the ops with the mean gradient as energy and c as temperature;
- Adam on logits with L2 weight decay wd (GDAS' `--arch-weight-decay`): Adam moves along the sign of the mean of
  g + wd * alpha, so it stops where alpha* = -g / wd.
Without a regulariser there is no stationary point; the table gives the drift a step instead (lr * |g| for
exponentiated gradient, in log-weight units). Prints one row per run: the temperature, the mean |g| and its standard
error over the batches, the stationary point's entropy, and the run's final entropy (log 5 = 1.609 is uniform).
Uses the gradient at the run's last weights, so it is a first-order estimate near there.

    python benchmarks/arch_equilibrium.py docs/results/nb201-cpu-gdas-diagnostic/gaea-gdas-arch-lr-0.5-seed0
"""
from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import torch

from gaeanas.report import op_entropy
from gaeanas.rundir import CHECKPOINT_FILE, load_checkpoint, read_log
from gaeanas.search import Search, SearchConfig, load_config


def row_entropy(p: torch.Tensor) -> float:
    """Mean entropy (nats) over the rows of p."""
    return max(0.0, float(-(p * p.clamp_min(1e-30).log()).sum(dim=-1).mean()))  # no -0.0 for a one-hot


def mean_arch_gradient(search: Search, batches: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(mean, standard error) over `batches` architecture batches of d loss / d theta, per tensor; nothing updated."""
    model, step = search.model, search.step
    names = list(model.arch.theta)
    grads: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    model.train()
    for x, y in itertools.islice(itertools.cycle(search.arch_loader), batches):
        loss, _ = step.loss(x, y)
        for name, g in zip(names, torch.autograd.grad(loss, [model.arch.theta[n] for n in names])):
            grads[name].append(g.detach())
    stacked = {name: torch.stack(gs) for name, gs in grads.items()}
    return ({name: g.mean(0) for name, g in stacked.items()},
            {name: g.std(0) / math.sqrt(len(g)) for name, g in stacked.items()})


def regulariser(cfg: SearchConfig) -> float:
    """The coefficient that pulls the run's weights back to uniform: exponentiated gradient's KL term (the simplex
    methods), else Adam's L2 on the logits; 0 for none."""
    return (cfg.entropy_coef if cfg.entropy_coef is not None else cfg.arch_weight_decay) or 0.0


def stationary_entropy(cfg: SearchConfig, grad: torch.Tensor, coef: float | None = None) -> float | None:
    """Entropy of the update's stationary point for rows of mean gradients `grad` (with respect to the simplex
    weights, or to the logits for Adam), under the regulariser `coef` (default: the run's); None without one."""
    coef = regulariser(cfg) if coef is None else coef
    return row_entropy(torch.softmax(-grad / coef, dim=-1)) if coef else None


def measure(run_dir: Path, batches: int, coef: float | None = None) -> dict:
    cfg = load_config(run_dir)
    search = Search(cfg, run_dir, torch.device("cpu"))
    state = load_checkpoint(run_dir / CHECKPOINT_FILE)
    search.load_state_dict(state)
    epoch = state["epoch"] - 1  # the schedule of the last epoch run
    scheduled = search.method.on_epoch_start(search.model.relax, search.cfg, epoch)
    mean, error = mean_arch_gradient(search, batches)
    ops = search.model.arch.op_names
    g = torch.cat([mean[name].reshape(-1, mean[name].shape[-1]) for name in ops])
    se = torch.cat([error[name].reshape(-1, error[name].shape[-1]) for name in ops])
    centred = g - g.mean(dim=-1, keepdim=True)  # only differences between an edge's ops move the weights
    coef = regulariser(search.cfg) if coef is None else coef
    return {"run": run_dir.name, "method": cfg.method, "tau": scheduled.get("tau"), "epoch": state["epoch"],
            "g": float(centred.abs().mean()), "se": float(se.mean()), "lr": search.cfg.arch_lr, "coef": coef,
            "stationary": stationary_entropy(search.cfg, centred, coef),
            "simplex": search.model.arch.parametrisation == "simplex", "final": op_entropy(read_log(run_dir)[-1])}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="search run directories that keep their checkpoint.pt")
    p.add_argument("--batches", type=int, default=300, help="architecture batches averaged (each a forward and a "
                                                            "backward pass)")
    p.add_argument("--coef", type=float, default=None,
                   help="the regulariser to evaluate the stationary point under (default: each run's own: "
                        "--entropy-coef, or --arch-weight-decay for Adam), e.g. the reference's 0.01 for a run "
                        "made without it")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| Run | Epoch | tau | mean abs(g - edge mean) | its standard error | Regulariser | Stationary entropy | "
          "Drift a step (lr * g) | Final entropy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run_dir in args.runs:
        if not (run_dir / CHECKPOINT_FILE).is_file():
            raise SystemExit(f"{run_dir} has no {CHECKPOINT_FILE}: this needs a run directory with its checkpoint")
        r = measure(run_dir, args.batches, args.coef)
        tau = "—" if r["tau"] is None else f"{r['tau']:.2f}"
        stationary = "none (no regulariser)" if r["stationary"] is None else f"{r['stationary']:.4f}"
        drift = f"{r['lr'] * r['g']:.1e}" if r["simplex"] else f"at most {r['lr']:g} (Adam)"
        print(f"| {r['run']} | {r['epoch']} | {tau} | {r['g']:.2e} | {r['se']:.1e} | {r['coef']:g} | {stationary} | "
              f"{drift} | {r['final']:.4f} |")


if __name__ == "__main__":
    main()
