"""Data-parallel search with torch.distributed (gloo, 2 CPU processes): every rank keeps the same architecture, bit
for bit; 2 ranks of half a batch take the step one process takes on the whole batch; only rank 0 writes; a run
resumes with another number of ranks; torchrun drives the command line."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from gaeanas.errors import ConfigError
from gaeanas.distributed import DataParallel
from gaeanas.rundir import read_log
from gaeanas.search import Search, SearchConfig

import dist_driver
from synth import make_image_folder

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(make_image_folder(tmp_path_factory.mktemp("tiny"), classes=3, per_class=12))


def tiny(data: str, method: str, **settings) -> SearchConfig:
    values = {**dict(data=data, method=method, channels=2, cells=1, epochs=2, batch_size=12, seed=0), **settings}
    return SearchConfig(**values)


def spawn(fn, *args) -> None:
    mp.spawn(fn, args=args, nprocs=2, join=True)


@pytest.mark.parametrize("method", ["gaea-darts", "darts", "gdas"])
def test_every_rank_keeps_the_same_architecture_bit_for_bit(tmp_path, tiny_data, method):
    cfg = tiny(tiny_data, method, objective="bilevel" if method == "gdas" else "erm")
    runs = [str(tmp_path / "run"), str(tmp_path / "rank1-run")]
    spawn(dist_driver.search, 2, str(tmp_path / "init"), json.dumps(dataclasses.asdict(cfg)), runs, str(tmp_path))
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert a["epoch"] == b["epoch"] == 2
    for name in a["arch"]:
        assert torch.equal(a["arch"][name], b["arch"][name]), name
    assert all(torch.equal(p, q) for p, q in zip(a["weights"], b["weights"]))
    assert not (tmp_path / "rank1-run").exists(), "only rank 0 writes"
    assert len(read_log(tmp_path / "run")) == 2 and (tmp_path / "run" / "result.json").is_file()
    start = torch.full_like(a["arch"]["cell"], 1 / a["arch"]["cell"].shape[-1])
    assert not torch.allclose(a["arch"]["cell"].softmax(-1) if method != "gaea-darts" else a["arch"]["cell"], start,
                              atol=1e-7), "the architecture moved"


@pytest.mark.parametrize("method", ["gaea-darts", "xnas"])
def test_two_ranks_of_half_a_batch_step_as_one_process_on_the_batch(tmp_path, method):
    """BN from running statistics, so that the maths do not depend on how the batch is split (in training mode each
    rank normalises its share with its own statistics)."""
    cfg = SearchConfig(method=method, channels=4, cells=1, epochs=2, batch_size=10, arch_lr=5.0)
    torch.manual_seed(1)
    torch.save({"x": torch.randn(10, 3, 8, 8), "y": torch.randint(0, 3, (10,))}, tmp_path / "batch.pt")
    spawn(dist_driver.one_step, 2, str(tmp_path / "init"), json.dumps(dataclasses.asdict(cfg)),
          str(tmp_path / "batch.pt"), str(tmp_path))
    dist_driver.save_one_step(cfg, torch.load(tmp_path / "batch.pt"), None, tmp_path / "single.pt")
    single, ranks = torch.load(tmp_path / "single.pt"), [torch.load(tmp_path / f"step{r}.pt") for r in (0, 1)]
    for name, theta in single["arch"].items():
        assert torch.allclose(ranks[0]["arch"][name], theta, atol=1e-6), name
        assert torch.equal(ranks[0]["arch"][name], ranks[1]["arch"][name])
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(single["weights"], ranks[0]["weights"]))
    # the step is no step of size 0: both the architecture and the weights moved well beyond the tolerance
    assert (single["arch"]["cell"] - single["before"]["arch"]["cell"]).abs().max() > 1e-4
    assert max(float((p - q).abs().max()) for p, q in zip(single["weights"], single["before"]["weights"])) > 1e-3


def test_a_run_resumes_with_another_number_of_ranks(tmp_path, tiny_data):
    cfg = tiny(tiny_data, "gaea-darts", epochs=2)

    class StopAfterFirstEpoch:
        def on_epoch_start(self, *args): pass
        def on_step(self, *args): pass
        def on_epoch_end(self, record):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Search(cfg, tmp_path / "run", torch.device("cpu"), [StopAfterFirstEpoch()]).run()
    assert len(read_log(tmp_path / "run")) == 1
    runs = [str(tmp_path / "run")] * 2
    spawn(dist_driver.search, 2, str(tmp_path / "init"), json.dumps(dataclasses.asdict(cfg)), runs, str(tmp_path))
    log = read_log(tmp_path / "run")
    assert [r["epoch"] for r in log] == [1, 2] and (tmp_path / "run" / "result.json").is_file()
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(a["arch"]["cell"], b["arch"]["cell"])


def test_a_batch_too_small_to_share_is_refused():
    dp = DataParallel(1, 4)
    with pytest.raises(ConfigError, match="cannot be shared by 4 ranks"):
        dp.shard(torch.zeros(3, 1), torch.zeros(3))
    x, y, weight = DataParallel(1, 2).shard(torch.arange(5.0)[:, None], torch.arange(5))
    assert y.tolist() == [3, 4] and weight == pytest.approx(2 * 2 / 5)


def test_torchrun_drives_the_command_line(tmp_path, tiny_data):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--standalone", "-m", "gaeanas", "search", "--data", tiny_data, "--epochs", "1",
                           "--channels", "2", "--cells", "1", "--batch-size", "12", "--out", str(tmp_path / "run"),
                           "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("gaeanas search:") == 1 and "x 2 ranks" in proc.stdout
    assert json.loads((tmp_path / "run" / "result.json").read_text())["epochs"] == 1


NB201_CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"


def test_data_parallel_training_keeps_ranks_equal_and_steps_as_one_process(tmp_path):
    from gaeanas.train import TrainConfig

    from synth import make_train_test_folders

    data = str(make_train_test_folders(tmp_path / "data"))
    cfg = TrainConfig(genotype=NB201_CELL, data=data, channels=2, cells=1, epochs=2, batch_size=8, seed=0)
    cfg_json = json.dumps(dataclasses.asdict(cfg))
    spawn(dist_driver.train, 2, str(tmp_path / "init"), cfg_json, str(tmp_path / "run"), str(tmp_path), False)
    a, b = torch.load(tmp_path / "train0-2.pt"), torch.load(tmp_path / "train1-2.pt")
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert [r["epoch"] for r in read_log(tmp_path / "run")] == [1, 2]
    # one step, BN from running statistics: 2 ranks of half the batch against one process on all of it
    spawn(dist_driver.train, 2, str(tmp_path / "init2"), cfg_json, str(tmp_path / "step"), str(tmp_path), True)
    dist_driver.train(0, 1, "", cfg_json, str(tmp_path / "single"), str(tmp_path), True)
    two, one = torch.load(tmp_path / "train0-2.pt"), torch.load(tmp_path / "train0-1.pt")
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(two, one))


def test_torchrun_drives_training_and_refuses_seeds(tmp_path):
    from synth import make_train_test_folders

    data = str(make_train_test_folders(tmp_path / "data"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "gaeanas",
            "train", "--genotype", NB201_CELL, "--data", data, "--epochs", "1", "--channels", "2", "--cells", "1",
            "--batch-size", "8", "--no-progress"]
    proc = subprocess.run(base + ["--out", str(tmp_path / "run")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("gaeanas train:") == 1 and "x 2 ranks" in proc.stdout
    assert json.loads((tmp_path / "run" / "result.json").read_text())["epochs"] == 1
    proc = subprocess.run(base + ["--seeds", "0,1"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0 and "under torchrun, train one seed" in proc.stderr


def test_under_torchrun_a_bad_run_directory_stops_every_rank(tmp_path, tiny_data):
    (tmp_path / "afile").write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "gaeanas", "search", "--data", tiny_data, "--epochs", "1", "--channels", "2",
                           "--cells", "1", "--batch-size", "12", "--out", str(tmp_path / "afile"), "--no-progress"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode != 0
    assert "exists and is a file" in proc.stderr and "rank 0 could not start the run" in proc.stderr
