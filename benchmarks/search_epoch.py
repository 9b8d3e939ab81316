"""One epoch of the paper-scale NAS-Bench-201 search (GAEA paper, appendix C.3), timed and projected.

gaea-darts, ERM, C=16, N=5, batch 64, on 50,000 synthetic CIFAR-shaped uint8 images held on the device and
augmented there (random crop, flip) by the search's own loader. Each step is the search loop's own
architecture update and weight update. Prints seconds per epoch, the projected 25-epoch search (the paper:
9,061 s on a P100), images per second and the peak device memory.

    python benchmarks/search_epoch.py --device cuda --precision bf16           # a full epoch on a GPU
    python benchmarks/search_epoch.py --device cpu --steps 20                  # a 20-step sample on a CPU
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from gaeanas.data import DeviceLoader, ImageDataset
from gaeanas.search import SearchConfig, SearchStep, build_search_model

TRAIN_IMAGES = 50_000
PAPER_EPOCHS = 25


def synthetic_cifar(n: int, device: torch.device, seed: int = 0) -> ImageDataset:
    """n random 32x32 RGB uint8 images with 10 balanced labels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % 10
    return ImageDataset(images.to(device), labels.to(device), [str(c) for c in range(10)], "synthetic-cifar")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--method", default="gaea-darts")
    p.add_argument("--steps", type=int, default=0, help="time only this many steps and extrapolate (0: a full epoch)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--sparse-skip", type=float, default=0.0)
    p.add_argument("--channels", type=int, default=16, help="C (the paper: 16)")
    p.add_argument("--cells", type=int, default=5, help="N (the paper: 5)")
    p.add_argument("--batch", type=int, default=64, help="images per step (the paper: 64)")
    p.add_argument("--images", type=int, default=TRAIN_IMAGES, help="training images per epoch (CIFAR-10: 50,000)")
    p.add_argument("--compile", action="store_true", help="torch.compile the supernet")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cfg = SearchConfig(space="nb201", method=args.method, objective="erm", precision=args.precision,
                       sparse_skip=args.sparse_skip, channels=args.channels, cells=args.cells,
                       batch_size=args.batch).resolved()
    torch.manual_seed(0)
    model = build_search_model(cfg, 10).to(device).to(memory_format=torch.channels_last)
    if args.compile:
        model.net.forward = torch.compile(model.net.forward)
    stepper = SearchStep(cfg, model, device)
    data = synthetic_cifar(args.images, device)
    gens = [torch.Generator(device=device).manual_seed(i) for i in range(2)]
    loaders = [DeviceLoader(data, cfg.batch_size, g, crop_pad=4, flip=True, channels_last=True) for g in gens]
    per_epoch = len(loaders[0])
    steps = per_epoch if args.steps <= 0 else min(args.steps, per_epoch)
    weight_batches, arch_batches = loaders[0].forever(), loaders[1].forever()

    def step() -> None:
        stepper.arch_step(*next(arch_batches))
        stepper.weight_step(*next(weight_batches))

    for _ in range(args.warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = time.perf_counter() - start
    epoch = seconds * per_epoch / steps
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}: {args.method} ERM, C={cfg.channels} N={cfg.cells} batch {cfg.batch_size}, {args.precision}"
          f"{' +compile' if args.compile else ''}, sparse-skip {args.sparse_skip}")
    print(f"timed {steps} of {per_epoch} steps in {seconds:.1f} s: {seconds / steps * 1e3:.1f} ms/step, "
          f"{cfg.batch_size * steps / seconds:.0f} img/s")
    print(f"epoch: {epoch:.1f} s{' (extrapolated)' if steps < per_epoch else ''}; "
          f"{PAPER_EPOCHS} epochs: {PAPER_EPOCHS * epoch:.0f} s (paper, P100: 9061 s)")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2 ** 30:.2f} GiB")
    if not math.isfinite(epoch):
        raise SystemExit("timing failed")


if __name__ == "__main__":
    main()
