"""Run in each rank of a 2-process gloo group by tests/test_distributed.py (spawned: module-level functions only)."""
import json
from pathlib import Path

import torch
import torch.distributed as dist

from gaeanas.distributed import DataParallel
from gaeanas.search import Search, SearchConfig, SearchStep, build_search_model


def _join(rank: int, world: int, init_file: str) -> DataParallel:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    return DataParallel(rank, world)


def search(rank: int, world: int, init_file: str, cfg_json: str, run_dirs: list[str], out: str) -> None:
    """A whole search on every rank; rank r uses run_dirs[r] (equal paths in real use); saves its final state."""
    dp = _join(rank, world, init_file)
    try:
        s = Search(SearchConfig(**json.loads(cfg_json)), Path(run_dirs[rank]), torch.device("cpu"), dp=dp)
        s.run()
        torch.save({"arch": {k: v.detach() for k, v in s.model.arch.theta.items()},
                    "weights": [p.detach() for p in s.model.weight_parameters()], "epoch": s.epoch},
                   Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def one_step(rank: int, world: int, init_file: str, cfg_json: str, batch: str, out: str) -> None:
    """One architecture step and one weight step on a fixed batch, BN from running statistics (eval mode)."""
    dp = _join(rank, world, init_file) if world > 1 else None
    try:
        save_one_step(SearchConfig(**json.loads(cfg_json)), torch.load(batch), dp, Path(out) / f"step{rank}.pt")
    finally:
        if dp is not None:
            dist.destroy_process_group()


def save_one_step(cfg: SearchConfig, batch: dict, dp: DataParallel | None, path: Path) -> None:
    torch.manual_seed(0)
    model = build_search_model(cfg.resolved(), 3, torch.Generator().manual_seed(0)).eval()
    step = SearchStep(cfg.resolved(), model, torch.device("cpu"), dp)
    before = {"arch": {k: v.detach().clone() for k, v in model.arch.theta.items()},
              "weights": [p.detach().clone() for p in model.weight_parameters()]}
    step.arch_step(batch["x"], batch["y"])
    step.weight_step(batch["x"], batch["y"])
    torch.save({"arch": {k: v.detach() for k, v in model.arch.theta.items()},
                "weights": [p.detach() for p in model.weight_parameters()], "before": before}, path)


def train(rank: int, world: int, init_file: str, cfg_json: str, run_dir: str, out: str, eval_bn: bool) -> None:
    """A whole training (eval_bn: one step of it with BN from running statistics, saved before and after)."""
    from gaeanas.train import TrainConfig, Trainer

    dp = _join(rank, world, init_file) if world > 1 else None
    try:
        trainer = Trainer(TrainConfig(**json.loads(cfg_json)), Path(run_dir), torch.device("cpu"), dp=dp)
        if eval_bn:
            x, y = next(iter(trainer.train_loader))
            trainer.model.eval()
            trainer._train_step(x, y)
        else:
            trainer.run()
        torch.save([p.detach() for p in trainer.model.parameters()], Path(out) / f"train{rank}-{world}.pt")
    finally:
        if dp is not None:
            dist.destroy_process_group()
