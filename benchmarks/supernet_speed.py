"""Supernet search-step speed, ours against the field's reference (xautodl, AutoDL-Projects), side by side.

A step is what one iteration of a first-order search does: an architecture update on one batch and a
weight update (SGD, grad clip 5) on another, each a forward and a backward pass. Both implementations get
the same configuration, batch and synthetic CIFAR-shaped data, in the same process, timed in alternation.

    pip install xautodl          # the peer; only in the benchmark's environment, not a gaeanas dependency
    python benchmarks/supernet_speed.py                          # both spaces, fp32, this machine's CPU
    python benchmarks/supernet_speed.py --space nb201 --repeats 7 --device cuda

Printed per configuration: images per second (batch / step time; minimum and median over repeats), the
ratio ours/peer of the medians, peak memory of a step (RSS growth on CPU, allocator peak on GPU), each
implementation's FLOPs per step and achieved GFLOP/s, and its fraction of the attainable peak, measured in
the same run as the best of several large fp32 matmuls.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from gaeanas.search import SearchConfig, SearchStep, build_search_model

NUM_CLASSES = 10
# The configurations of issue 5. DARTS space: xautodl's NASNetworkDARTS has 3N cells (reductions at N and
# 2N), so 8 cells do not exist there; 9 cells (N=3) is the nearest identical layout (ours: L//3, 2L//3).
CONFIGS = {
    "nb201": dict(channels=16, cells=5, image=32),
    "darts": dict(channels=16, cells=9, image=32),
}


@dataclass
class Contender:
    """A named implementation: `step()` runs one search step on its fixed batches."""

    name: str
    step: Callable[[], None]
    params: int


def batches(batch: int, image: int, device: torch.device, channels_last: bool, seed: int = 0):
    """Two (x, y) batches (weights, architecture) of standard-normal CIFAR-shaped images."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        x = torch.randn(batch, 3, image, image, generator=gen)
        y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
        x = x.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        out.append((x, y.to(device)))
    return out


def ours(space: str, conf: dict, batch: int, device: torch.device, method: str = "darts",
         channels_last: bool = True, precision: str = "fp32", compile_model: bool = False,
         sparse_skip: float = 0.0) -> Contender:
    """gaeanas: the search loop's own SearchStep (architecture step, then weight step)."""
    cfg = SearchConfig(space=space, method=method, channels=conf["channels"], cells=conf["cells"], batch_size=batch,
                       precision=precision, channels_last=channels_last, sparse_skip=sparse_skip).resolved()
    torch.manual_seed(0)
    model = build_search_model(cfg, NUM_CLASSES).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    stepper = SearchStep(cfg, model, device)
    if compile_model:
        model.net.forward = torch.compile(model.net.forward)
    (xw, yw), (xa, ya) = batches(batch, conf["image"], device, channels_last)

    def step() -> None:
        stepper.arch_step(xa, ya)
        stepper.weight_step(xw, yw)

    label = f"gaeanas {method}" + (" +compile" if compile_model else "") + ("" if precision == "fp32" else f" {precision}")
    return Contender(label, step, sum(p.numel() for p in model.weight_parameters()))


def peer(space: str, conf: dict, batch: int, device: torch.device) -> Contender:
    """xautodl's DARTS search models with its own DARTS-V1 (first-order) step, at its default settings."""
    from xautodl.models.cell_operations import DARTS_SPACE, NAS_BENCH_201
    from xautodl.models.cell_searchs import NASNetworkDARTS, TinyNetworkDarts

    torch.manual_seed(0)
    if space == "nb201":
        net = TinyNetworkDarts(conf["channels"], conf["cells"], 4, NUM_CLASSES, NAS_BENCH_201, False, True)
    else:
        net = NASNetworkDARTS(conf["channels"], conf["cells"] // 3, 4, 4, 3, NUM_CLASSES, DARTS_SPACE, False, True)
    net = net.to(device)
    w_opt = torch.optim.SGD(net.get_weights(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(net.get_alphas(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    (xw, yw), (xa, ya) = batches(batch, conf["image"], device, channels_last=False)

    def step() -> None:  # as xautodl's search_func: weights first, then the architecture
        w_opt.zero_grad()
        _, logits = net(xw)
        F.cross_entropy(logits, yw).backward()
        torch.nn.utils.clip_grad_norm_(net.get_weights(), 5)
        w_opt.step()
        a_opt.zero_grad()
        _, logits = net(xa)
        F.cross_entropy(logits, ya).backward()
        a_opt.step()

    return Contender("xautodl DARTS-V1", step, sum(p.numel() for p in net.get_weights()))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device, steps: int) -> float:
    """Seconds per call of fn, averaged over `steps` calls."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of a convolution's backward: the forward's count for each gradient asked for (input, weight).
    torch's own formula ignores `groups` here and counts a depthwise conv's backward as a dense one."""
    positions = x_shape if transposed else grad_out_shape  # (B, C_out, H, W) of the forward's output
    forward = 2 * math.prod(positions) * math.prod(w_shape[1:])
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def flops_per_step(c: Contender) -> float:
    """FLOPs of one step as torch's FLOP counter sees them (convolutions and matmuls, forward and backward),
    with grouped-convolution backward counted correctly."""
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops})
    with counter:
        c.step()
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Attainable fp32 GFLOP/s: the best of `repeats` n x n matmuls."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = min(timed(lambda: torch.mm(a, b), device, 3) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def build(kind: str, space: str, args: argparse.Namespace, device: torch.device) -> Contender:
    """"ours" or "peer" for `space` with the command line's settings."""
    conf = {**CONFIGS[space], **{k: getattr(args, k) for k in ("channels", "cells") if getattr(args, k)}}
    if kind == "peer":
        return peer(space, conf, args.batch, device)
    return ours(space, conf, args.batch, device, args.method, args.channels_last, args.precision, args.compile)


def _peak_memory_child(kind: str, space: str, args: argparse.Namespace, queue) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    c = build(kind, space, args, torch.device("cpu"))
    before = _rss_bytes()
    for _ in range(2):  # the first step also allocates optimizer state and oneDNN caches
        c.step()
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)


def peak_memory(kind: str, space: str, args: argparse.Namespace, device: torch.device) -> float:
    """MiB a step needs beyond the built model and its batches: the allocator's peak on GPU; on CPU, the
    peak RSS growth over two steps in a fresh process (includes optimizer state and library caches)."""
    if device.type == "cuda":
        c = build(kind, space, args, device)
        c.step()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        c.step()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory_child, args=(kind, space, args, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return max(value, 0) / 2 ** 20


def compare(space: str, args: argparse.Namespace, device: torch.device, peak: float) -> list[str]:
    """Time ours and the peer in alternation; markdown table rows."""
    kinds = ["ours"] if args.no_peer else ["ours", "peer"]
    # Memory first, while this process holds no model: on the CPU a child process builds its own, and two
    # DARTS-space supernets plus a third in the child exceed 24 GiB.
    mems = {kind: peak_memory(kind, space, args, device) if args.memory else float("nan") for kind in kinds}
    contenders = [build(kind, space, args, device) for kind in kinds]
    for c in contenders:  # warm-up: first-call allocations, oneDNN primitive caches, compilation
        for _ in range(args.warmup):
            c.step()
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(args.repeats):
        for c in contenders:
            times[c.name].append(timed(c.step, device, args.steps))
    rows = []
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    peer_median = medians[contenders[-1].name] if len(contenders) > 1 else None
    for c, kind in zip(contenders, kinds):
        ts = times[c.name]
        flops = flops_per_step(c)
        gflops = flops / medians[c.name] / 1e9
        ratio = f"{peer_median / medians[c.name]:.2f}x" if peer_median else "-"
        rows.append(f"| {space} | {c.name} | {c.params / 1e6:.2f}M | {args.batch / max(ts):.1f} | "
                    f"{args.batch / medians[c.name]:.1f} | {ratio} | {mems[kind]:.0f} | {flops / 1e9:.1f} | "
                    f"{gflops:.1f} | {100 * gflops / peak:.0f}% |")
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="nb201,darts", help="comma-separated: nb201, darts")
    p.add_argument("--batch", type=int, default=64, help="images per batch (weight and architecture batch alike)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per implementation, alternating")
    p.add_argument("--steps", type=int, default=2, help="search steps per timed repeat")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--channels", type=int, default=0, help="override C (default: 16)")
    p.add_argument("--cells", type=int, default=0, help="override the cells (default: nb201 N=5, darts 9)")
    p.add_argument("--method", default="darts", help="our method; darts is the peer's softmax mixture + Adam")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 leaves torch's default")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="ours only (autocast)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="ours in NCHW")
    p.add_argument("--compile", action="store_true", help="torch.compile our supernet (slow to compile on CPU)")
    p.add_argument("--no-peer", action="store_true", help="time ours only (no xautodl installed)")
    p.add_argument("--peak-n", type=int, default=2048, help="matrix side of the peak-FLOP/s matmul")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = matmul_peak(device, args.peak_n)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; attainable peak "
          f"({args.peak_n}x{args.peak_n} fp32 matmul, best of 5): {peak:.1f} GFLOP/s")
    print(f"batch {args.batch}, {args.repeats} repeats x {args.steps} steps after {args.warmup} warm-up steps; "
          f"a step = architecture update + weight update; img/s = batch / step time\n")
    print("| space | implementation | weights | img/s min | img/s median | ours/peer | peak MiB | GFLOP/step "
          "| GFLOP/s | of peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for space in args.space.split(","):
        for row in compare(space, args, device, peak):
            print(row, flush=True)
    print(f"\nattainable peak re-measured at the end: {matmul_peak(device, args.peak_n):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
