"""Does our NAS-Bench-201 trainer rank architectures as the benchmark does? Kendall tau and Spearman rho.

Picks K architectures spread over the benchmark's CIFAR-10 accuracy range (architecture k is drawn at random, with
--seed, from the k-th of K equal-count bins of the table sorted by accuracy), trains each from scratch with
`gaeanas train` at a small CPU budget, and compares our final test accuracies with the table's. Finished trainings
in OUT/runs/ are reused, so the command can be stopped and started again. Writes OUT/table.md, OUT/table.csv and
OUT/scatter.png, and prints the table, tau, rho and the most widely separated pairs that flip.

    python benchmarks/nb201_rank.py --benchmark nb201-tss-test-acc.csv --data /tmp/cifar10 --out docs/results/nb201-train
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from gaeanas.nasbench import NB201Table
from gaeanas.report import discordant_pairs, kendall_tau, plot_rank_scatter, spearman_rho
from gaeanas.runtime import resolve_device
from gaeanas.train import TrainConfig, run_training


def pick_architectures(table: NB201Table, count: int, seed: int) -> list[str]:
    """One architecture from each of `count` equal-count bins of the table sorted by CIFAR-10 accuracy."""
    ranked = sorted(table.accuracies, key=lambda arch: (table.accuracies[arch][0], arch))
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, len(ranked), count + 1).round().astype(int)
    return [ranked[rng.integers(low, high)] for low, high in zip(edges[:-1], edges[1:])]


def train_all(archs: list[str], args: argparse.Namespace) -> list[dict]:
    """Each architecture's result.json (trained now, or reused from OUT/runs/<k>/)."""
    device = resolve_device(args.device)
    results = []
    for k, arch in enumerate(archs):
        run_dir = args.out / "runs" / f"arch{k:02d}"
        if (run_dir / "result.json").is_file():
            result = json.loads((run_dir / "result.json").read_text())
        else:
            cfg = TrainConfig(genotype=arch, data=args.data, resize=args.resize, subset=args.subset,
                              test_subset=args.test_subset, epochs=args.epochs, channels=args.channels,
                              cells=args.cells, batch_size=args.batch_size, seed=args.seed)
            result = run_training(cfg, run_dir, device, resume=run_dir.exists())
        print(f"[{k + 1}/{len(archs)}] {arch}: {result['final_test_acc']:.2f}% "
              f"({result['train_seconds']:.0f} s)", flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", required=True, help="NAS-Bench-201 table (CSV)")
    p.add_argument("--data", required=True, help="CIFAR-10 (a folder with train/ and test/, or a python release)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--archs", type=int, default=12, help="architectures, one per accuracy bin (default: 12)")
    p.add_argument("--seed", type=int, default=0, help="picks the architectures and seeds each training")
    p.add_argument("--epochs", type=int, default=4, help="training epochs per architecture (default: 4)")
    p.add_argument("--resize", type=int, default=16, help="pixels (default: 16)")
    p.add_argument("--subset", type=int, default=10_000, help="training images (default: 10,000)")
    p.add_argument("--test-subset", type=int, default=2_000, help="test images (default: 2,000)")
    p.add_argument("--channels", type=int, default=16, help="C (the benchmark: 16)")
    p.add_argument("--cells", type=int, default=5, help="N cells per stage (the benchmark: 5)")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (the benchmark: 256)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    table = NB201Table.load(args.benchmark)
    archs = pick_architectures(table, args.archs, args.seed)
    results = train_all(archs, args)
    theirs = [table.query(a)["cifar10"] for a in archs]
    ours = [r["final_test_acc"] for r in results]
    tau, rho = kendall_tau(theirs, ours), spearman_rho(theirs, ours)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["| # | Architecture | NAS-Bench-201 CIFAR-10 | Ours | Train (s) |", "|---|---|---|---|---|"]
    lines += [f"| {k} | `{a.replace('|', chr(92) + '|')}` | {t:.2f} | {o:.2f} | {r['train_seconds']:.0f} |"
              for k, (a, t, o, r) in enumerate(zip(archs, theirs, ours, results))]
    budget = (f"{args.epochs} epochs, {args.resize}x{args.resize} images, {args.subset:,} training and "
              f"{args.test_subset:,} test images, C={args.channels}, N={args.cells}, batch {args.batch_size}")
    flips = discordant_pairs(theirs, ours)
    summary = [f"Kendall tau {tau:.3f}, Spearman rho {rho:.3f} over {len(archs)} architectures ({budget}).",
               f"{len(flips)} of {len(archs) * (len(archs) - 1) // 2} pairs flip; the widest: " +
               ("; ".join(f"#{i} vs #{j} ({theirs[i]:.2f} vs {theirs[j]:.2f} in the table, {ours[i]:.2f} vs "
                          f"{ours[j]:.2f} here)" for i, j in flips[:3]) or "none")]
    (args.out / "table.md").write_text("\n".join(lines) + "\n\n" + "\n\n".join(summary) + "\n")
    with open(args.out / "table.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["architecture", "nb201_cifar10", "ours", "train_seconds"])
        writer.writerows([a, t, o, r["train_seconds"]] for a, t, o, r in zip(archs, theirs, ours, results))
    plot_rank_scatter(theirs, ours, args.out / "scatter.png", f"tau {tau:.2f}, rho {rho:.2f}: {budget}")
    print("\n".join(lines))
    print("\n".join(summary))


if __name__ == "__main__":
    main()
