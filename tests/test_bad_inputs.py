"""A corpus of bad and unusual inputs, tried through the command line as a new user would.

Each bad input must exit non-zero with one line on stderr that names the flag or the file, no traceback, and
leave nothing that a later run could mistake for a result. Each valid but unusual input must simply work.
"""
from __future__ import annotations

import fcntl
import gzip
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from gaeanas.cli import main
from gaeanas.rundir import CHECKPOINT_FILE, LOCK_FILE, PREVIOUS_CHECKPOINT_FILE, RESULT_FILE, read_log

from synth import make_image_folder, make_train_test_folders, write_full_nb201_table

TINY_SEARCH = ["--channels", "2", "--cells", "1", "--batch-size", "12", "--no-progress"]
TINY_TRAIN = ["--channels", "4", "--cells", "3", "--batch-size", "8", "--epochs", "1", "--cutout", "0",
              "--no-progress"]


def cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `gaeanas argv`, run in this process; argparse exits count as codes."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


# ---- what the cases are made of -----------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_search(tmp_path_factory) -> Path:
    """A finished 2-epoch search (so it keeps checkpoint.prev.pt), to copy and damage."""
    root = tmp_path_factory.mktemp("search")
    data = make_image_folder(root / "data", classes=2, per_class=6)
    assert main(["search", "--data", str(data), "--epochs", "2", "--out", str(root / "run"), *TINY_SEARCH]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def finished_train(tmp_path_factory) -> Path:
    """A finished 1-epoch from-scratch training."""
    root = tmp_path_factory.mktemp("train")
    data = make_train_test_folders(root / "data")
    assert main(["train", "--genotype", "DARTS_V2", "--data", str(data), "--out", str(root / "run"),
                 *TINY_TRAIN]) == 0
    return root / "run"


@dataclass
class Workspace:
    """One case's folder, with the shared runs it may copy."""

    root: Path
    search_run: Path
    train_run: Path

    def data(self, classes: int = 2, size: int = 8) -> str:
        return str(make_image_folder(self.root / "data", classes=classes, per_class=6, size=size))

    def out(self) -> str:
        return str(self.root / "out")

    def file(self, name: str, content: bytes) -> str:
        path = self.root / name
        path.write_bytes(content)
        return str(path)

    def interrupted_search(self) -> Path:
        """A copy of the finished search as it was after epoch 1: its previous checkpoint, no result."""
        run = self.root / "run"
        shutil.copytree(self.search_run, run)
        os.replace(run / PREVIOUS_CHECKPOINT_FILE, run / CHECKPOINT_FILE)
        (run / RESULT_FILE).unlink()
        return run

    def search_copy(self) -> Path:
        run = self.root / "run"
        shutil.copytree(self.search_run, run)
        return run

    def table(self) -> Path:
        return write_full_nb201_table(self.root / "table.csv")


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def search(ws: Workspace, *extra: str, data: str | None = None, out: str | None = None) -> list[str]:
    return ["search", "--data", data or ws.data(), "--epochs", "1", "--out", out or ws.out(), *TINY_SEARCH, *extra]


def truncated_table(ws: Workspace) -> str:
    text = ws.table().read_text()
    return ws.file("cut.csv", text[: len(text) // 2].rsplit("\n", 1)[0].encode() + b"\n")


def table_cut_mid_line(ws: Workspace) -> str:
    return ws.file("cut.csv", ws.table().read_bytes()[:-3])


def one_pixel_images(ws: Workspace) -> str:
    return ws.data(size=1)


def symlink_loop(ws: Workspace) -> str:
    data = ws.data()
    os.symlink("..", Path(data) / "class0" / "loop")
    return data


def corrupt_image(ws: Workspace) -> str:
    data = ws.data()
    (Path(data) / "class1" / "broken.png").write_bytes(b"not an image at all")
    return data


def genotype_file(ws: Workspace, text: str) -> str:
    return ws.file("cell.txt", text.encode())


GENOTYPE = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat={concat}, reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


def damage_checkpoint(ws: Workspace, keep: int) -> Path:
    run = ws.interrupted_search()
    blob = (run / CHECKPOINT_FILE).read_bytes()
    (run / CHECKPOINT_FILE).write_bytes(blob[:keep])
    return run


def other_runs_checkpoint(ws: Workspace) -> Path:
    run = ws.interrupted_search()
    config = json.loads((run / "config.json").read_text())
    config["epochs"] = 4
    (run / "config.json").write_text(json.dumps(config))
    return run


def rewrite_config(ws: Workspace, text: str) -> Path:
    run = ws.interrupted_search()
    (run / "config.json").write_text(text)
    return run


def config_with(ws: Workspace, **changes) -> Path:
    run = ws.interrupted_search()
    config = json.loads((run / "config.json").read_text())
    config.update(changes)
    (run / "config.json").write_text(json.dumps(config))
    return run


def data_gained_a_class(ws: Workspace) -> Path:
    """A search of its own (the shared one's data must stay as it is), stopped after epoch 1; then a class is added."""
    run, data = ws.root / "run", ws.data()
    assert main(["search", "--data", data, "--epochs", "2", "--out", str(run), *TINY_SEARCH]) == 0
    os.replace(run / PREVIOUS_CHECKPOINT_FILE, run / CHECKPOINT_FILE)
    (run / RESULT_FILE).unlink()
    shutil.copytree(Path(data) / "class0", Path(data) / "zebra")
    return run


def held_by_another_process(ws: Workspace) -> Path:
    run = ws.interrupted_search()
    fd = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"424242\n", 0)
    ws.held = fd  # released when the case ends
    return run


def damaged_log_line(ws: Workspace) -> Path:
    run = ws.search_copy()
    lines = (run / "log.jsonl").read_text().splitlines()
    (run / "log.jsonl").write_text(lines[0][:40] + "\n" + lines[1] + "\n")
    return run


@dataclass
class Bad:
    """A bad input: argv(ws) builds it; the error line must contain `names`; `run` is a run directory the case
    damages and that must be left as it was (None: a new --out, which must not exist afterwards)."""

    id: str
    argv: Callable[[Workspace], list[str]]
    names: str | Callable[[Workspace], str]
    resumes: bool = False


BAD = [
    # non-finite numbers, divergence and settings that cannot work: refused before anything runs
    Bad("lr-inf", lambda ws: search(ws, "--lr", "inf"), "--lr"),
    Bad("lr-min-nan", lambda ws: search(ws, "--lr-min", "nan"), "--lr-min"),
    Bad("momentum-nan", lambda ws: search(ws, "--momentum", "nan"), "--momentum"),
    Bad("grad-clip-nan", lambda ws: search(ws, "--grad-clip", "nan"), "--grad-clip"),
    Bad("lr-diverges", lambda ws: search(ws, "--lr", "1e6", "--batch-size", "2"), "--lr"),
    Bad("arch-lr-diverges", lambda ws: search(ws, "--arch-lr", "1e6"), "--arch-lr"),
    Bad("warmup-as-long-as-the-run", lambda ws: search(ws, "--warmup-epochs", "1"), "--warmup-epochs"),
    Bad("tau-max-negative", lambda ws: search(ws, "--method", "gdas", "--tau-max", "-1"), "--tau-max"),
    Bad("tau-max-below-tau-min", lambda ws: search(ws, "--method", "gdas", "--tau-max", "0.01"), "--tau-max"),
    Bad("seed-beyond-64-bits", lambda ws: search(ws, "--seed", str(2**64)), "--seed"),
    Bad("seed-negative", lambda ws: search(ws, "--seed", "-1"), "--seed"),
    Bad("arch-weight-decay-negative", lambda ws: search(ws, "--method", "darts", "--arch-weight-decay", "-1"),
        "--arch-weight-decay"),
    Bad("eg-floor-above-one", lambda ws: search(ws, "--eg-floor", "2"), "--eg-floor"),
    Bad("setting-the-method-ignores", lambda ws: search(ws, "--method", "darts", "--eg-floor", "0.1"), "--eg-floor"),
    Bad("partial-channels-indivisible", lambda ws: search(ws, "--space", "darts", "--method", "gaea-pcdarts",
                                                          "--cells", "3", "--channels", "6", "--warmup-epochs", "0"), "--channels"),
    Bad("reproduce-zero-epochs", lambda ws: ["reproduce", "nb201", "--data", ws.data(), "--benchmark",
                                             str(ws.table()), "--epochs", "0", "--out", ws.out()], "--epochs"),
    Bad("train-seeds-empty", lambda ws: ["train", "--genotype", "DARTS_V2", "--seeds", ",", "--out", ws.out()],
        "--seeds"),
    Bad("train-seeds-gap", lambda ws: ["train", "--genotype", "DARTS_V2", "--seeds", "1,,2", "--out", ws.out()],
        "--seeds"),
    # benchmark tables and genotype files
    Bad("table-cut-mid-file", lambda ws: search(ws, "--benchmark", truncated_table(ws)), "cut.csv"),
    Bad("table-cut-mid-line", lambda ws: search(ws, "--benchmark", table_cut_mid_line(ws)), "cut.csv"),
    Bad("table-is-gzip", lambda ws: search(ws, "--benchmark", ws.file("t.csv.gz", gzip.compress(b"a,b\n1,2\n"))),
        "t.csv.gz"),
    Bad("table-is-png", lambda ws: search(ws, "--benchmark", ws.file("t.png", png_bytes())), "t.png"),
    Bad("table-missing", lambda ws: search(ws, "--benchmark", str(ws.root / "none.csv")), "none.csv"),
    Bad("genotype-is-gzip", lambda ws: ["train", "--genotype", ws.file("g.gz", gzip.compress(b"x")), "--data",
                                        ws.data(), "--out", ws.out(), *TINY_TRAIN], "g.gz"),
    Bad("genotype-is-png", lambda ws: ["train", "--genotype", ws.file("g.png", png_bytes()), "--data", ws.data(),
                                       "--out", ws.out(), *TINY_TRAIN], "g.png"),
    Bad("genotype-huge-range", lambda ws: ["train", "--genotype",
                                           genotype_file(ws, GENOTYPE.format(concat="range(2, 10**12)")),
                                           "--data", ws.data(), "--out", ws.out(), *TINY_TRAIN], "cell.txt"),
    Bad("genotype-fractional-range", lambda ws: ["train", "--genotype",
                                                 genotype_file(ws, GENOTYPE.format(concat="range(2.5, 6)")),
                                                 "--data", ws.data(), "--out", ws.out(), *TINY_TRAIN], "cell.txt"),
    # images and data folders
    Bad("one-pixel-images", lambda ws: search(ws, data=one_pixel_images(ws)), "--resize"),
    Bad("symlink-loop", lambda ws: search(ws, data=symlink_loop(ws)), "loop"),
    Bad("resize-beyond-memory", lambda ws: search(ws, "--resize", "100000"), "--resize"),
    Bad("data-missing", lambda ws: search(ws, data=str(ws.root / "nowhere")), "nowhere"),
    Bad("corrupt-image", lambda ws: search(ws, data=corrupt_image(ws)), "broken.png"),
    Bad("one-class", lambda ws: search(ws, data=ws.data(classes=1)), "has 1 class"),
    # output paths
    Bad("out-is-a-file", lambda ws: search(ws, out=ws.file("taken", b"x")), "taken"),
    Bad("out-not-writable", lambda ws: search(ws, out=str(Path(ws.file("plain", b"x")) / "run")), "plain"),
    Bad("report-out-is-a-file", lambda ws: ["report", str(ws.search_run), "--out", ws.file("taken.png", b"x")],
        "--out"),
    # damaged or mismatched run directories
    Bad("report-on-a-train-run", lambda ws: ["report", str(ws.train_run), "--out", ws.out()], "train run"),
    Bad("report-on-a-damaged-log", lambda ws: ["report", str(damaged_log_line(ws)), "--out", ws.out()], "log.jsonl",
        resumes=True),
    Bad("resume-search-on-a-train-run", lambda ws: ["search", "--resume", str(ws.train_run)], "train run"),
    Bad("resume-train-on-a-search-run", lambda ws: ["train", "--resume", str(ws.interrupted_search())],
        "search run", resumes=True),
    Bad("checkpoint-truncated", lambda ws: ["search", "--resume", str(damage_checkpoint(ws, 5000))],
        "checkpoint.pt", resumes=True),
    Bad("checkpoint-empty", lambda ws: ["search", "--resume", str(damage_checkpoint(ws, 0))], "checkpoint.pt",
        resumes=True),
    Bad("checkpoint-of-another-run", lambda ws: ["search", "--resume", str(other_runs_checkpoint(ws))],
        "checkpoint.pt", resumes=True),
    Bad("config-null", lambda ws: ["search", "--resume", str(rewrite_config(ws, "null"))], "config.json",
        resumes=True),
    Bad("config-list", lambda ws: ["search", "--resume", str(rewrite_config(ws, "[1, 2]"))], "config.json",
        resumes=True),
    Bad("config-not-json", lambda ws: ["search", "--resume", str(rewrite_config(ws, "{epochs: 2"))], "config.json",
        resumes=True),
    Bad("config-string-for-a-number", lambda ws: ["search", "--resume", str(config_with(ws, epochs="ten"))],
        "config.json", resumes=True),
    Bad("data-gained-a-class", lambda ws: ["search", "--resume", str(data_gained_a_class(ws))], "data",
        resumes=True),
    Bad("run-dir-in-use", lambda ws: ["search", "--resume", str(held_by_another_process(ws))], "PID 424242",
        resumes=True),
]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in a run directory but its lock, with its bytes."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != LOCK_FILE} if folder.is_dir() else {}


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_is_one_clear_line_and_leaves_nothing(case, tmp_path, capsys, finished_search, finished_train,
                                                        monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "cache"))
    ws = Workspace(tmp_path, finished_search, finished_train)
    argv = case.argv(ws)
    damaged = tmp_path / "run"
    before = snapshot(damaged)
    try:
        code, _, err = cli(capsys, argv)
    finally:
        if hasattr(ws, "held"):
            os.close(ws.held)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None), f"{case.id} was accepted"
    assert "Traceback" not in err
    assert len(lines) == 1, f"want one line, got: {err!r}"
    assert "error:" in lines[0] and case.names in lines[0], lines[0]
    assert not Path(ws.out()).exists(), "a refused run left its output folder behind"
    if case.resumes:
        assert snapshot(damaged) == before, "a refused resume changed the run directory"


# ---- valid but unusual inputs: these must work -------------------------------------------------

def image_folder(root: Path, mode: str, names: tuple[str, str] = ("class0", "class1")) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (8, 8, 4), dtype=np.uint8)
            image = Image.fromarray(pixels, "RGBA").convert(mode)
            image.save(root / name / f"{i}-ü.png")
    return root


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA"])
def test_unusual_image_modes_work(tmp_path, capsys, mode, monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "cache"))
    data = image_folder(tmp_path / "data", mode)
    code, out, err = cli(capsys, ["search", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "r"),
                                  *TINY_SEARCH])
    assert code == 0, err
    assert json.loads((tmp_path / "r" / RESULT_FILE).read_text())["classes"] == ["class0", "class1"]


def test_unicode_paths_and_symlinked_classes_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "cache"))
    elsewhere = image_folder(tmp_path / "ailleurs", "RGB", ("chat", "chien"))
    data = tmp_path / "données d'entrée"
    data.mkdir()
    os.symlink(elsewhere / "chat", data / "chat")
    os.symlink(elsewhere / "chien", data / "chien")
    out = tmp_path / "résultats" / "run"
    code, _, err = cli(capsys, ["search", "--data", str(data), "--epochs", "1", "--out", str(out), *TINY_SEARCH])
    assert code == 0, err
    assert json.loads((out / RESULT_FILE).read_text())["classes"] == ["chat", "chien"]


def test_renamed_classes_are_not_served_from_the_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "cache"))
    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    for run, names in (("a", ["class0", "class1"]), ("b", ["airplane", "cat"])):
        if run == "b":
            os.rename(data / "class0", data / "airplane")
            os.rename(data / "class1", data / "cat")
        code, _, err = cli(capsys, ["search", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / run),
                                    *TINY_SEARCH])
        assert code == 0, err
        assert json.loads((tmp_path / run / RESULT_FILE).read_text())["classes"] == names


def test_a_failed_start_can_be_retried_with_fixed_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "cache"))
    data = str(make_image_folder(tmp_path / "data", classes=2, per_class=6))
    out = tmp_path / "run"
    code, _, err = cli(capsys, ["search", "--data", data, "--lr", "1e6", "--epochs", "1", "--out", str(out),
                                *TINY_SEARCH, "--batch-size", "2"])
    assert code == 2 and "diverged" in err and not out.exists()
    out.mkdir()  # as a start killed before its first checkpoint leaves it
    (out / "config.json").write_text("{}")
    (out / "log.jsonl").write_text("")
    code, _, err = cli(capsys, ["search", "--data", data, "--epochs", "1", "--out", str(out), *TINY_SEARCH])
    assert code == 0, err
    assert (out / RESULT_FILE).is_file()


@pytest.mark.parametrize("damage", ["cut-last-line", "deleted"])
def test_a_damaged_log_is_rebuilt_from_the_checkpoint_on_resume(tmp_path, capsys, finished_search, damage):
    ws = Workspace(tmp_path, finished_search, finished_search)
    run = ws.interrupted_search()
    if damage == "deleted":
        (run / "log.jsonl").unlink()
    else:
        text = (run / "log.jsonl").read_text()
        (run / "log.jsonl").write_text(text[:-25])
    code, _, err = cli(capsys, ["search", "--resume", str(run)])
    assert code == 0, err
    want = [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(finished_search)]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(run)] == want
    assert json.loads((run / RESULT_FILE).read_text())["genotype"] == want[-1]["genotype"]


def test_a_damaged_checkpoint_offers_the_previous_one_which_resumes(tmp_path, capsys, finished_search):
    ws = Workspace(tmp_path, finished_search, finished_search)
    run = ws.search_copy()
    (run / RESULT_FILE).unlink()
    (run / CHECKPOINT_FILE).write_bytes((run / CHECKPOINT_FILE).read_bytes()[:-10])
    code, _, err = cli(capsys, ["search", "--resume", str(run)])
    assert code == 2 and "after epoch 1, is intact" in err and "mv " in err
    os.replace(run / PREVIOUS_CHECKPOINT_FILE, run / CHECKPOINT_FILE)
    code, _, err = cli(capsys, ["search", "--resume", str(run)])
    assert code == 0, err
    assert read_log(run)[-1]["genotype"] == read_log(finished_search)[-1]["genotype"]


def test_result_json_is_strict_json(tmp_path, finished_search):
    json.loads((finished_search / RESULT_FILE).read_text(), parse_constant=lambda name: pytest.fail(name))


def test_a_second_process_on_the_same_out_is_refused_naming_the_holder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "cache"))
    data = str(make_image_folder(tmp_path / "data", classes=2, per_class=6))
    out = tmp_path / "run"
    out.mkdir()
    holder = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(holder, b"31337\n", 0)
        code, _, err = cli(capsys, ["search", "--data", data, "--epochs", "1", "--out", str(out), *TINY_SEARCH])
        assert code == 2 and "in use by another gaeanas process (PID 31337)" in err
        assert {p.name for p in out.iterdir()} == {LOCK_FILE}
    finally:
        os.close(holder)
    code, _, err = cli(capsys, ["search", "--data", data, "--epochs", "1", "--out", str(out), *TINY_SEARCH])
    assert code == 0, err


def test_progress_bars_stay_off_when_output_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "cache"))
    data = str(make_image_folder(tmp_path / "data", classes=2, per_class=6))
    argv = ["search", "--data", data, "--epochs", "2", "--out", str(tmp_path / "run"), *TINY_SEARCH[:-1]]
    code, out, err = cli(capsys, argv)  # no --no-progress: captured output is not a terminal
    assert code == 0 and err == "" and "\r" not in out
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("epoch")] == [["epoch", "1"],
                                                                                          ["epoch", "2"]]


def test_a_search_step_beyond_memory_is_refused_before_it_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GAEANAS_MEMORY_LIMIT", str(2 * 2**20))
    data = str(make_image_folder(tmp_path / "data", classes=2, per_class=6))
    code, _, err = cli(capsys, ["search", "--data", data, "--epochs", "1", "--out", str(tmp_path / "run"),
                                "--channels", "16", "--cells", "5", "--batch-size", "64", "--no-progress"])
    assert code == 2 and "a search step of the nb201 supernet" in err and "--batch-size" in err
    assert not (tmp_path / "run").exists()


def test_divergence_after_a_checkpoint_stops_the_run_and_keeps_that_checkpoint(tmp_path, capsys, monkeypatch):
    from gaeanas.search import SearchStep

    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "cache"))
    data = str(make_image_folder(tmp_path / "data", classes=2, per_class=6))
    out = tmp_path / "run"
    argv = ["search", "--data", data, "--epochs", "3", "--out", str(out), *TINY_SEARCH, "--batch-size", "6"]
    real_step, calls = SearchStep.weight_step, []

    def poisoned_in_epoch_2(self, x, y):  # 2 steps an epoch: the 4th call is epoch 2, step 2
        calls.append(1)
        totals = real_step(self, x, y)
        return totals * float("nan") if len(calls) == 4 else totals
    monkeypatch.setattr(SearchStep, "weight_step", poisoned_in_epoch_2)
    code, _, err = cli(capsys, argv)
    assert code == 2
    assert "diverged at epoch 2, step 2: non-finite values in the weight-training loss (NaN)" in err
    assert "its last good checkpoint, after epoch 1, is kept" in err
    assert not (out / RESULT_FILE).exists() and len(read_log(out)) == 1
    monkeypatch.setattr(SearchStep, "weight_step", real_step)
    code, _, err = cli(capsys, ["search", "--resume", str(out)])
    assert code == 0, err
    assert [r["epoch"] for r in read_log(out)] == [1, 2, 3]


def test_a_checkpoint_of_gaeanas_0_2_still_resumes(tmp_path, capsys, finished_search):
    """0.2 wrote plain torch.save checkpoints without the log's records; resume reads log.jsonl instead."""
    import torch

    from gaeanas.rundir import load_checkpoint

    run = Workspace(tmp_path, finished_search, finished_search).interrupted_search()
    state = load_checkpoint(run / CHECKPOINT_FILE)
    del state["log"], state["data"]
    torch.save(state, run / CHECKPOINT_FILE)
    code, _, err = cli(capsys, ["search", "--resume", str(run)])
    assert code == 0, err
    untimed = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    assert untimed(read_log(run)) == untimed(read_log(finished_search))
