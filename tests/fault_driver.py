"""Child process for test_faults.py: a tiny search that SIGKILLs itself at one injected fault."""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

USAGE = """usage: fault_driver.py RUN_DIR DATA METHOD OBJECTIVE FAULT

Runs (or, when RUN_DIR holds config.json, resumes) a 3-epoch search after installing FAULT:
  none                            no fault
  replace:<file>:<k>:before|after SIGKILL before / right after the k-th os.replace onto a file named <file>
  link:<k>                        SIGKILL right after the k-th os.link (checkpoint.prev.pt rotation)
  append:<k>                      the k-th log append writes half its line (no newline), then SIGKILL
  random:<seed>:<seconds>         SIGKILL uniform(0, <seconds>) seconds (drawn from Random(seed)) after the
                                  run's config.json is written, i.e. in its epochs once it is set up
"""

EPOCHS = 3


def fault_config(data: str, method: str = "gaea-darts", objective: str = "erm") -> Any:
    """The tiny search every fault case runs (the test's uninterrupted reference runs it too)."""
    from gaeanas.search import SearchConfig

    return SearchConfig(data=data, channels=2, cells=1, epochs=EPOCHS, batch_size=12, seed=0, method=method,
                        objective=objective)


def die() -> None:
    """Stop this process the way a power cut or the OOM killer would: no cleanup, no exception handlers."""
    os.kill(os.getpid(), signal.SIGKILL)


def on_kth(k: int, predicate: Callable[..., bool], real: Callable[..., Any], before: Callable[..., None] | None,
           after: bool) -> Callable[..., Any]:
    """`real`, wrapped: on its k-th call for which predicate(*args) holds, run before(*args) then die (or die
    right after the real call when `after`)."""
    calls = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        if not predicate(*args):
            return real(*args, **kwargs)
        calls += 1
        if calls != k:
            return real(*args, **kwargs)
        if after:
            real(*args, **kwargs)
        elif before is not None:
            before(*args)
        die()

    return wrapped


def install(fault: str) -> None:
    """Install one fault (see USAGE); the patches are global, which is fine in a process that is to die."""
    import gaeanas.rundir as rundir
    import gaeanas.runner as runner

    kind, *args = fault.split(":")
    if kind == "none":
        return
    if kind == "replace":
        name, k, when = args[0], int(args[1]), args[2]
        assert when in ("before", "after"), fault
        os.replace = on_kth(k, lambda src, dst: Path(dst).name == name, os.replace, None, after=when == "after")
    elif kind == "link":
        os.link = on_kth(int(args[0]), lambda src, dst: True, os.link, None, after=True)
    elif kind == "append":
        def write_half(run_dir: Path, record: dict[str, Any]) -> None:
            line = json.dumps(rundir.strict_json(record), allow_nan=False) + "\n"
            with open(run_dir / rundir.LOG_FILE, "a") as f:
                f.write(line[: len(line) // 2])
                f.flush()

        append = on_kth(int(args[0]), lambda run_dir, record: True, rundir.append_log, write_half, after=False)
        rundir.append_log = runner.append_log = append  # the runner calls the name it imported
    elif kind == "random":
        timer = threading.Timer(random.Random(int(args[0])).uniform(0, float(args[1])), die)
        timer.daemon = True
        real = os.replace

        def replace(src: Any, dst: Any) -> None:
            real(src, dst)
            if Path(dst).name == rundir.CONFIG_FILE and timer.ident is None:
                timer.start()

        os.replace = replace
    else:
        raise SystemExit(f"unknown fault {fault!r}\n{USAGE}")


def main(argv: list[str]) -> None:
    if len(argv) != 5:
        raise SystemExit(USAGE)
    run_dir, data, method, objective, fault = argv
    from gaeanas.rundir import CONFIG_FILE
    from gaeanas.search import run_search

    cfg = fault_config(data, method, objective)
    resume = (Path(run_dir) / CONFIG_FILE).is_file()
    install(fault)
    run_search(cfg, run_dir, resume=resume)


if __name__ == "__main__":
    main(sys.argv[1:])
