"""Fault injection: searches SIGKILLed at write points or random times resume bit-identical to an unbroken run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from gaeanas.rundir import (CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE, LOG_FILE, PREVIOUS_CHECKPOINT_FILE,
                            RESULT_FILE, RUN_INFO_KEY, load_checkpoint)
from gaeanas.search import run_search

from fault_driver import EPOCHS, fault_config
from synth import make_image_folder

TESTS = Path(__file__).resolve().parent
DRIVER, SRC = TESTS / "fault_driver.py", TESTS.parent / "src"
KILLED = -signal.SIGKILL
RUN_FILES = {LOCK_FILE, CONFIG_FILE, LOG_FILE, CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE, RESULT_FILE}
Setup = tuple[str, str]  # (method, objective)
ERM: Setup = ("gaea-darts", "erm")
LAST_WRITE = "replace:result.json:1:before"  # kills a run at its very end
RANDOM_SEEDS = range(4)

# Each case: the faults that kill the run one after another (the first in a new run, the others in resumes of it),
# then a resume in this process. replace:<file>:<k>:before|after kills at the k-th os.replace onto <file>; link:<k>
# right after the k-th os.link (checkpoint.prev.pt rotation); append:<k> halfway through the k-th log line.
CASES = {
    "first checkpoint written, not renamed": (ERM, ["replace:checkpoint.pt:1:before"]),
    "second checkpoint renamed": (ERM, ["replace:checkpoint.pt:2:after"]),
    "last checkpoint written, not renamed": (ERM, ["replace:checkpoint.pt:3:before"]),
    "previous checkpoint linked, not renamed": (ERM, ["link:1"]),
    "second log line half written": (ERM, ["append:2"]),
    "log rewrite at a new start": (ERM, ["replace:log.jsonl:1:before"]),
    "result written, not renamed": (ERM, [LAST_WRITE]),
    "log rewrite at a resume": (ERM, ["replace:checkpoint.pt:2:after", "replace:log.jsonl:1:before"]),
    "gdas bilevel: previous checkpoint linked, then config rewrite at a resume": (
        ("gdas", "bilevel"), ["link:1", "replace:config.json:1:before"]),
}

# Kills of a new run before its first checkpoint: a new start must clear what they leave (claimed_run_dir's rule).
NEW_START_FAULTS = ["replace:log.jsonl:1:before", "replace:checkpoint.pt:1:before", "replace:config.json:1:before"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return str(make_image_folder(tmp_path_factory.mktemp("data"), classes=2, per_class=12))


def child(run_dir: Path, data: str, setup: Setup, fault: str) -> subprocess.CompletedProcess:
    """Run the driver in a child process (a new run, or a resume when run_dir holds config.json)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(DRIVER), str(run_dir), data, *setup, fault], env=env,
                          capture_output=True, text=True, timeout=120)


def describe(run_dir: Path) -> str:
    """What a run directory holds, for failure messages."""
    if not run_dir.exists():
        return f"{run_dir} does not exist"
    log = (run_dir / LOG_FILE).read_text() if (run_dir / LOG_FILE).exists() else ""
    return (f"{run_dir} holds {sorted(p.name for p in run_dir.iterdir())}; log.jsonl has {log.count(chr(10))} "
            f"lines{'' if log.endswith(chr(10)) or not log else ' and a cut one'}")


def kill(run_dir: Path, data: str, setup: Setup, fault: str) -> None:
    """Run the driver with `fault`, checking that it really died by SIGKILL."""
    done = child(run_dir, data, setup, fault)
    assert done.returncode == KILLED, (f"fault {fault} did not kill the run (exit {done.returncode}); "
                                       f"{describe(run_dir)}\n{done.stderr[-3000:]}")


def resume_here(run_dir: Path, data: str, setup: Setup) -> dict[str, Any]:
    """Continue a killed run in this process as a user would: resume if config.json is there, else start anew."""
    return run_search(fault_config(data, *setup), run_dir, resume=(run_dir / CONFIG_FILE).is_file())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> Callable[[Setup], Path]:
    """The run directory of an uninterrupted in-process run of each setup (run once, on first use)."""
    runs: dict[Setup, Path] = {}

    def get(setup: Setup) -> Path:
        if setup not in runs:
            runs[setup] = tmp_path_factory.mktemp("reference") / "run"
            run_search(fault_config(data, *setup), runs[setup])
        return runs[setup]

    return get


@pytest.fixture(scope="module")
def killed(tmp_path_factory, data) -> Callable[[str, Setup, Path], Path]:
    """killed(fault, setup, into): a copy, at `into`, of a new run killed by `fault` (each such child runs once)."""
    snapshots: dict[tuple[str, Setup], Path] = {}

    def get(fault: str, setup: Setup, into: Path) -> Path:
        if (fault, setup) not in snapshots:
            snapshots[fault, setup] = tmp_path_factory.mktemp("killed") / "run"
            kill(snapshots[fault, setup], data, setup, fault)
        shutil.copytree(snapshots[fault, setup], into)
        return into

    return get


def without_seconds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def assert_same(got: Any, want: Any, where: str) -> None:
    """Equal nested values: tensors bit-identical (dtype, shape and every element), everything else ==."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype and got.shape == want.shape, where
        assert torch.equal(got, want), f"{where}: tensors differ"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{where}: keys {list(got)} != {list(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def comparable_checkpoint(path: Path) -> dict[str, Any]:
    state = load_checkpoint(path)
    return {**state, "log": without_seconds(state["log"])}


def assert_matches_reference(run_dir: Path, ref_dir: Path) -> None:
    """The run directory holds what the uninterrupted run's does, bit for bit, timings apart; no *.tmp is left."""
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES, describe(run_dir)
    result, want = (json.loads((d / RESULT_FILE).read_text()) for d in (run_dir, ref_dir))
    assert {**result, "search_seconds": 0} == {**want, "search_seconds": 0}
    lines = (run_dir / LOG_FILE).read_text().splitlines(keepends=True)
    assert len(lines) == EPOCHS and all(line.endswith("\n") for line in lines), describe(run_dir)
    ref_lines = (ref_dir / LOG_FILE).read_text().splitlines()
    assert without_seconds([json.loads(line) for line in lines]) == without_seconds([json.loads(r) for r in ref_lines])
    config, ref_config = (json.loads((d / CONFIG_FILE).read_text()) for d in (run_dir, ref_dir))
    assert {**config, RUN_INFO_KEY: None} == {**ref_config, RUN_INFO_KEY: None}
    for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE):  # every tensor: model, arch, optimizers, RNG states
        assert_same(comparable_checkpoint(run_dir / name), comparable_checkpoint(ref_dir / name), name)


@pytest.mark.parametrize("case", list(CASES))
def test_kills_at_write_points_resume_bit_identical(tmp_path, data, reference, killed, case):
    setup, (first, *then) = CASES[case]
    run_dir = killed(first, setup, tmp_path / "run")
    assert not (run_dir / RESULT_FILE).exists()
    for fault in then:
        kill(run_dir, data, setup, fault)
    resume_here(run_dir, data, setup)
    assert_matches_reference(run_dir, reference(setup))


@pytest.mark.parametrize("fault", NEW_START_FAULTS)
def test_a_start_killed_before_its_first_checkpoint_can_start_anew(tmp_path, data, reference, killed, fault):
    run_dir = killed(fault, ERM, tmp_path / "run")
    assert not (run_dir / CHECKPOINT_FILE).exists()
    run_search(fault_config(data, *ERM), run_dir)
    assert_matches_reference(run_dir, reference(ERM))


def test_kills_at_random_times_resume_bit_identical(tmp_path, data, reference, killed):
    """Kills at random times in the first 90% of a run's epochs, timed by the run killed at its very end (file
    times from its config.json write to its result.json write)."""
    full = killed(LAST_WRITE, ERM, tmp_path / "full")
    epochs = (full / (RESULT_FILE + ".tmp")).stat().st_mtime - (full / CONFIG_FILE).stat().st_mtime
    outcomes = []
    # The window shrinks when no kill has fired: on a loaded machine the timing run can be slower than the rest.
    attempts = [(seed, 0.9) for seed in RANDOM_SEEDS] + [(100 + i, 0.9 / 4 ** (i + 1)) for i in range(3)]
    for seed, share in attempts:
        if seed >= 100 and any(f"exit {KILLED};" in o for o in outcomes):
            break
        run_dir = tmp_path / f"seed{seed}" / "run"
        done = child(run_dir, data, ERM, f"random:{seed}:{share * epochs:.3f}")
        assert done.returncode in (0, KILLED), f"seed {seed}: exit {done.returncode}\n{done.stderr[-3000:]}"
        outcomes.append(f"seed {seed}: exit {done.returncode}; {describe(run_dir)}")
        resume_here(run_dir, data, ERM)
        assert_matches_reference(run_dir, reference(ERM))
    assert any(f"exit {KILLED};" in o for o in outcomes), "no random kill fired:\n" + "\n".join(outcomes)
