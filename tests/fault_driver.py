"""Runs a tiny search with one fault installed that SIGKILLs this process (used by test_faults.py).

usage: python fault_driver.py RUN_DIR DATA METHOD FAULT
FAULT: replace:K:before | replace:K:after (the K-th rename onto checkpoint.pt), link:K (right after the K-th hard
link of checkpoint.prev.pt), append:K (half of the K-th log line written), logreplace:K (before the K-th rename
onto log.jsonl), random:SECONDS (a timer), none.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import gaeanas.rundir as rundir
import gaeanas.runner as runner
from gaeanas.search import SearchConfig, run_search


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def nth_call(k: int):
    """A function that returns True on its k-th call only."""
    calls = {"n": 0}

    def hit() -> bool:
        calls["n"] += 1
        return calls["n"] == k
    return hit


def install(fault: str) -> None:
    kind, *rest = fault.split(":")
    if kind == "none":
        return
    if kind == "random":
        threading.Timer(float(rest[0]), die).start()
        return
    hit = nth_call(int(rest[0]))
    real_replace, real_link = os.replace, os.link
    if kind in ("replace", "logreplace"):
        target = rundir.CHECKPOINT_FILE if kind == "replace" else rundir.LOG_FILE
        when = rest[1] if kind == "replace" else "before"

        def replace(src, dst, *args, **kwargs):
            mine = Path(dst).name == target and hit()
            if mine and when == "before":
                die()
            real_replace(src, dst, *args, **kwargs)
            if mine:
                die()
        os.replace = replace
    elif kind == "link":
        def link(src, dst, *args, **kwargs):
            real_link(src, dst, *args, **kwargs)
            if hit():
                die()
        os.link = link
    elif kind == "append":
        real_append = rundir.append_log

        def append(run_dir, record):
            if hit():
                line = json.dumps(record)
                with open(Path(run_dir) / rundir.LOG_FILE, "a") as f:
                    f.write(line[: len(line) // 2])
                die()
            real_append(run_dir, record)
        runner.append_log = append
    else:
        raise SystemExit(f"unknown fault {fault}")


def config(data: str, method: str) -> SearchConfig:
    return SearchConfig(data=data, method=method, channels=2, cells=1, epochs=3, batch_size=6, seed=0)


if __name__ == "__main__":
    run_dir, data, method, fault = sys.argv[1:5]
    install(fault)
    resume = (Path(run_dir) / rundir.CONFIG_FILE).is_file()
    run_search(config(data, method), run_dir, resume=resume)
