"""What torch.compile buys a search: compile time, step time, and the steps it takes to pay the compile back.

One search step (the architecture update and the weight update of the search loop) on the supernet, eager against
torch.compile'd (the supernet's forward; the backward follows through AOTAutograd), in the same process on the
same batches. The first compiled steps include the compile (one per distinct input shape: the step's batch, and
the last, shorter batch of an epoch if there is one). Printed: eager and compiled seconds per step (median over
--steps), the compile overhead (the first compiled steps' time beyond that many compiled steps), the break-even
number of steps, and the verdict for a whole search of --search-steps steps (default: the `cpu` preset's
gaea-darts ERM search, 10 epochs of 10,000 images in batches of 64).

    python benchmarks/compile_breakeven.py                                   # NB-201 cpu preset, this CPU
    python benchmarks/compile_breakeven.py --device cuda --channels 16 --cells 5 --search-steps 19550
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from gaeanas.search import SearchConfig, SearchStep, build_search_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(step: SearchStep, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device
                ) -> list[float]:
    """Seconds of each search step (architecture, then weights) over the batches."""
    out = []
    for x, y in batches:
        sync(device)
        start = time.perf_counter()
        step.arch_step(x, y)
        step.weight_step(x, y)
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def make_step(args: argparse.Namespace, device: torch.device, compiled: bool) -> SearchStep:
    cfg = SearchConfig(space=args.space, method=args.method, objective="erm", channels=args.channels,
                       cells=args.cells, batch_size=args.batch, epochs=10).resolved()
    torch.manual_seed(0)
    model = build_search_model(cfg, 10).to(device).to(memory_format=torch.channels_last)
    if compiled:
        model.net.forward = torch.compile(model.net.forward, backend=args.backend)
    return SearchStep(cfg, model, device)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--space", default="nb201")
    p.add_argument("--method", default="gaea-darts")
    p.add_argument("--channels", type=int, default=8, help="C (the cpu preset: 8)")
    p.add_argument("--cells", type=int, default=1, help="N (the cpu preset: 1)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image", type=int, default=32, help="image side in pixels")
    p.add_argument("--steps", type=int, default=20, help="timed steps after the compile")
    p.add_argument("--backend", default="inductor", help="torch.compile backend (inductor; eager for a dry run)")
    p.add_argument("--search-steps", type=int, default=10 * math.ceil(10_000 / 64),
                   help="steps of the whole search the verdict is for")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, 3, args.image, args.image, generator=gen).to(device),
                torch.randint(0, 10, (args.batch,), generator=gen).to(device)) for _ in range(args.steps + 2)]
    batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    eager = timed_steps(make_step(args, device, False), batches, device)[2:]
    compiled_times = timed_steps(make_step(args, device, True), batches, device)
    first, steady = compiled_times[:2], compiled_times[2:]
    eager_step, compiled_step = statistics.median(eager), statistics.median(steady)
    overhead = sum(first) - 2 * compiled_step
    gain = eager_step - compiled_step
    breakeven = math.ceil(overhead / gain) if gain > 0 else None
    whole_eager = args.search_steps * eager_step
    whole_compiled = overhead + args.search_steps * compiled_step
    print(f"{args.space} {args.method}, C={args.channels}, N={args.cells}, batch {args.batch}, "
          f"{args.image}x{args.image}, {device}, backend {args.backend}")
    print(f"eager step: {eager_step * 1000:.1f} ms; compiled step: {compiled_step * 1000:.1f} ms "
          f"({eager_step / compiled_step:.2f}x)")
    print(f"compile overhead: {overhead:.1f} s")
    print("break-even: " + (f"{breakeven} steps" if breakeven is not None else "never (compiled steps are not faster)"))
    verdict = "gains" if whole_compiled < whole_eager else "loses"
    print(f"a search of {args.search_steps} steps: eager {whole_eager:.0f} s, compiled {whole_compiled:.0f} s: "
          f"compiling {verdict} {abs(whole_eager - whole_compiled):.0f} s")


if __name__ == "__main__":
    main()
