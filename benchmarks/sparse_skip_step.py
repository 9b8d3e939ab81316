"""Sparse skip where it matters, at a search's end: step time dense and with --sparse-skip T, at a run's final weights.

Reads a finished search run directory (config.json, result.json), builds its supernet once per setting
(dense, and skipping the operations whose weight is below each threshold T), loads the run's final
architecture weights into each, and times the search step (architecture update + weight update) on random
batches of the run's image size, the settings alternating in one process. Whole searches on a shared
2-core machine drift by several percent between runs; this isolates what the mode saves per step once
the weights are as sparse as the search leaves them.

    python benchmarks/sparse_skip_step.py docs/results/speed/sparse-skip/dense --thresholds 0.05,0.1,0.15
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from gaeanas.errors import ConfigError
from gaeanas.search import SearchConfig, SearchStep, build_search_model, load_config


def read_result(run_dir: Path) -> dict:
    """The result.json of a finished search run (final architecture weights, class names, ...)."""
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        raise ConfigError(f"{run_dir} has no result.json: not a finished search run")
    return json.loads(result_path.read_text())


def stepper_at(cfg: SearchConfig, probs: dict[str, torch.Tensor], num_classes: int, device: torch.device
               ) -> tuple[SearchStep, Callable[[], None]]:
    """A SearchStep for cfg and a function that puts the architecture back at `probs`."""
    torch.manual_seed(cfg.seed)
    model = build_search_model(cfg, num_classes).to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def reset() -> None:
        for name, p in probs.items():
            theta = model.arch.theta[name]
            theta.copy_(p if model.arch.parametrisation == "simplex" else p.clamp_min(1e-30).log())

    reset()
    return SearchStep(cfg, model, device), reset


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a finished search run directory")
    p.add_argument("--thresholds", default="0.05,0.1,0.15", help="comma-separated sparse-skip thresholds T")
    p.add_argument("--image", type=int, default=32, help="image side when the run did not resize (pixels)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per setting, alternating")
    p.add_argument("--steps", type=int, default=5, help="search steps per timed repeat")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cfg = load_config(args.run_dir)
    result = read_result(args.run_dir)
    probs = {name: torch.tensor(rows) for name, rows in result["arch_weights"].items()}
    num_classes = len(result["classes"])
    side = cfg.resize or args.image
    gen = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    batches = [(torch.randn(cfg.batch_size, 3, side, side, generator=gen).to(device, memory_format=fmt),
                torch.randint(0, num_classes, (cfg.batch_size,), generator=gen).to(device)) for _ in range(2)]
    thresholds = [0.0] + [float(t) for t in args.thresholds.split(",")]
    settings = {t: stepper_at(replace(cfg, sparse_skip=t).resolved(), probs, num_classes, device) for t in thresholds}
    times: dict[float, list[float]] = {t: [] for t in thresholds}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for t, (stepper, reset) in settings.items():
            reset()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                stepper.arch_step(*batches[1])
                stepper.weight_step(*batches[0])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if repeat:
                times[t].append((time.perf_counter() - start) / args.steps)
    op_weights = [w for w in probs.values() if w.dim() == 2]  # (rows, ops) tensors; edge weights not skipped
    rows, total = sum(w.shape[0] for w in op_weights), sum(w.numel() for w in op_weights)
    print(f"{args.run_dir}: {cfg.space} {cfg.method}, C={cfg.channels} cells={cfg.cells}, {side}x{side}, "
          f"batch {cfg.batch_size}, final weights; {args.repeats} repeats x {args.steps} steps, alternating\n")
    print("| sparse skip T | operation weights below T | ms/step (median) | vs dense |")
    print("|---|---|---|---|")
    dense = statistics.median(times[0.0])
    for t in thresholds:
        below = sum(int((w < t).sum()) for w in op_weights)
        median = statistics.median(times[t])
        label, skipped = ("dense", "-") if t == 0 else (f"{t:g}", f"{below} of {total} ({rows} rows)")
        print(f"| {label} | {skipped} | {1e3 * median:.1f} | {median / dense:.3f} |")


if __name__ == "__main__":
    main()
