"""Where a search step's time goes: torch.profiler over our step, grouped by kind of work, against the machine's peak.

The step is `supernet_speed.py`'s (first-order DARTS: an architecture update, then a weight update, batch 64, fp32,
32x32 inputs, channels_last). Printed per group of aten ops (convolutions, batch norm, elementwise, layout copies,
pooling, the rest): self time per step and its share. Convolutions also get their FLOPs and GFLOP/s, which bound the
whole step's fraction of peak: a step cannot beat its convolutions' own efficiency times their share of the
FLOPs, however fast the rest gets.

    python benchmarks/step_profile.py --space darts --steps 2
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the step and FLOP counting of supernet_speed.py
from supernet_speed import CONFIGS, conv_backward_flops, matmul_peak, ours  # noqa: E402

GROUPS = {
    "convolution": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::_batch_norm_with_update",
                   "aten::batch_norm_backward"),
    "elementwise": ("aten::mul", "aten::add", "aten::add_", "aten::addcmul_", "aten::relu", "aten::clamp_min",
                    "aten::threshold_backward", "aten::sum", "aten::fill_", "aten::mul_", "aten::div", "aten::sub",
                    "aten::zero_", "aten::neg", "aten::exp", "aten::sqrt"),
    "layout and copies": ("aten::cat", "aten::copy_", "aten::clone", "aten::contiguous", "aten::constant_pad_nd"),
    "pooling": ("aten::avg_pool2d", "aten::avg_pool2d_backward", "aten::max_pool2d_with_indices",
                "aten::max_pool2d_with_indices_backward", "aten::mean"),
}


def group_of(name: str) -> str:
    return next((g for g, names in GROUPS.items() if name in names), "other")


def conv_flops(step) -> float:
    """FLOPs of one step's convolutions, forward and backward (grouped backward counted correctly)."""
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops})
    with counter:
        step()
    counts = counter.get_flop_counts()["Global"]
    return float(sum(v for k, v in counts.items() if "convolution" in str(k)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", choices=sorted(CONFIGS), default="darts")
    p.add_argument("--steps", type=int, default=2, help="profiled steps, after one warm-up step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels", type=int, default=None, help="C (default: the space's configuration above)")
    p.add_argument("--cells", type=int, default=None)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--peak-n", type=int, default=2048, help="size of the matmul that measures the peak")
    p.add_argument("--top", type=int, default=12, help="ops listed by self time")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    peak = matmul_peak(device, args.peak_n)
    conf = {**CONFIGS[args.space], **{k: getattr(args, k) for k in ("channels", "cells") if getattr(args, k)}}
    c = ours(args.space, conf, args.batch, device)
    c.step()
    flops = conv_flops(c.step)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            c.step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events) / 1e6 / args.steps  # s per step (aten self time)
    by_group: dict[str, float] = defaultdict(float)
    for e in events:
        by_group[group_of(e.key)] += e.self_cpu_time_total / 1e6 / args.steps
    print(f"space {args.space}, {conf}, batch {args.batch}, fp32, {args.threads} threads; attainable peak "
          f"(2048^3 fp32 matmul) {peak:.1f} GFLOP/s; aten self time {total:.3f} s per step (profiler on)\n")
    print("| group | s / step | share | GFLOP / step | GFLOP/s | of peak |")
    print("|---|---|---|---|---|---|")
    for name, seconds in sorted(by_group.items(), key=lambda kv: -kv[1]):
        if name == "convolution":
            print(f"| {name} | {seconds:.3f} | {seconds / total:.0%} | {flops / 1e9:.1f} | "
                  f"{flops / seconds / 1e9:.1f} | {flops / seconds / 1e9 / peak:.0%} |")
        else:
            print(f"| {name} | {seconds:.3f} | {seconds / total:.0%} | - | - | - |")
    print(f"\nwhole step: {flops / total / 1e9:.1f} GFLOP/s of convolution work, {flops / total / 1e9 / peak:.0%} of "
          f"peak; with every other group free it would reach {flops / by_group['convolution'] / 1e9 / peak:.0%}\n")
    print("| op | group | s / step | calls / step |")
    print("|---|---|---|---|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        print(f"| {e.key} | {group_of(e.key)} | {e.self_cpu_time_total / 1e6 / args.steps:.3f} | "
              f"{e.count // args.steps} |")


if __name__ == "__main__":
    main()
