"""Fault injection: a search killed with SIGKILL anywhere (checkpoint rename, log append, random moments) resumes
to exactly the run that was never interrupted."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gaeanas.rundir import CHECKPOINT_FILE, CONFIG_FILE, LOG_FILE, RESULT_FILE, load_checkpoint, read_json, read_log
from gaeanas.search import run_search

import fault_driver
from synth import make_image_folder

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return str(make_image_folder(tmp_path_factory.mktemp("faults") / "data", classes=2, per_class=12))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data) -> dict[str, tuple[Path, float]]:
    """The uninterrupted run of each method, and how long it took."""
    runs = {}
    for method in ("gaea-darts", "gdas"):
        path = tmp_path_factory.mktemp("straight") / method
        start = time.perf_counter()
        run_search(fault_driver.config(data, method), path)
        runs[method] = (path, time.perf_counter() - start)
    return runs


def run_child(run_dir: Path, data: str, method: str, fault: str, cache: Path) -> int:
    """The driver in a fresh process with one fault installed; its return code (-9: killed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "GAEANAS_CACHE": str(cache)}
    return subprocess.run([sys.executable, str(TESTS / "fault_driver.py"), str(run_dir), data, method, fault],
                          env=env, capture_output=True, timeout=300).returncode


def finish(run_dir: Path, data: str, method: str) -> None:
    """Continue a killed run in this process: resume when it has a config, else start it again."""
    resume = (run_dir / CONFIG_FILE).is_file()
    run_search(fault_driver.config(data, method), run_dir, resume=resume)


def assert_identical(run_dir: Path, straight_dir: Path) -> None:
    untimed = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    assert untimed(read_log(run_dir)) == untimed(read_log(straight_dir))
    assert len((run_dir / LOG_FILE).read_text().splitlines()) == 3
    got, want = read_json(run_dir / RESULT_FILE), read_json(straight_dir / RESULT_FILE)
    got.pop("search_seconds"), want.pop("search_seconds")
    assert got == want
    a, b = load_checkpoint(run_dir / CHECKPOINT_FILE), load_checkpoint(straight_dir / CHECKPOINT_FILE)
    for part in ("model", "arch"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert not list(run_dir.glob("*.tmp"))


@pytest.mark.parametrize("faults", [
    ["replace:1:before"], ["replace:2:after"], ["link:1"], ["append:2"], ["append:1", "logreplace:1"],
    ["replace:2:before", "replace:1:after"],
], ids=lambda faults: "+".join(faults))
def test_a_search_killed_at_a_chosen_point_resumes_bit_identical(faults, tmp_path, data, straight):
    run_dir = tmp_path / "run"
    for fault in faults:
        assert run_child(run_dir, data, "gaea-darts", fault, tmp_path / "cache") == -9, f"{fault} never fired"
    finish(run_dir, data, "gaea-darts")
    assert_identical(run_dir, straight["gaea-darts"][0])


def test_searches_killed_at_random_moments_resume_bit_identical(tmp_path, data, straight):
    straight_dir, seconds = straight["gdas"]
    killed = 0
    for seed in range(4):
        run_dir = tmp_path / f"run{seed}"
        delay = random.Random(seed).uniform(0.1, 0.9) * seconds
        killed += run_child(run_dir, data, "gdas", f"random:{delay:.3f}", tmp_path / "cache") == -9
        finish(run_dir, data, "gdas")
        assert_identical(run_dir, straight_dir)
    assert killed >= 2, "the random kills should mostly land inside the run"
