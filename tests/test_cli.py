"""The command line: a real tiny search end to end, resume, and a clear error for each bad input."""
import json

import numpy as np
import pytest
from PIL import Image

from gaeanas.cli import main

from synth import make_image_folder, write_full_nb201_table

TINY = ["--channels", "2", "--cells", "1", "--batch-size", "12", "--no-progress"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_search_prints_genotype_and_benchmark_accuracies(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    table = write_full_nb201_table(tmp_path / "table.csv")
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "search", "--space", "nb201", "--method", "gaea-darts", "--objective", "erm",
                             "--data", str(data), "--benchmark", str(table), "--epochs", "2",
                             "--out", str(run_dir), *TINY)
    assert code == 0, err
    result = json.loads((run_dir / "result.json").read_text())
    assert f"genotype: {result['genotype']}" in out
    for name in ("cifar10", "cifar100", "ImageNet16-120"):
        assert f"{name} test accuracy: {result['oracle'][name]:.2f}" in out
    assert out.count("entropy") >= 2  # one line per epoch


def test_resume_of_a_finished_run_keeps_its_result(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    run_dir = tmp_path / "run"
    assert run_cli(capsys, "search", "--data", str(data), "--epochs", "1", "--out", str(run_dir), *TINY)[0] == 0
    before = json.loads((run_dir / "result.json").read_text())
    code, out, err = run_cli(capsys, "search", "--resume", str(run_dir), "--no-progress")
    assert code == 0, err
    assert json.loads((run_dir / "result.json").read_text())["genotype"] == before["genotype"]
    code, out, err = run_cli(capsys, "search", "--resume", str(run_dir), "--epochs", "3")
    assert code == 2 and "drop --epochs" in err


def corrupt_folder(root):
    make_image_folder(root, classes=2, per_class=3)
    (root / "class1" / "broken.png").write_bytes(b"not a png at all")
    return root


def mixed_folder(root):
    make_image_folder(root, classes=2, per_class=3)
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(root / "class0" / "big.png")
    return root


def empty_folder(root):
    (root / "class0").mkdir(parents=True)
    (root / "class0" / "notes.txt").write_text("no images here")
    return root


@pytest.mark.parametrize("make, match", [
    (lambda root: root / "does-not-exist", "does-not-exist"),
    (empty_folder, "no images"),
    (corrupt_folder, "broken.png"),
    (mixed_folder, "--resize"),
])
def test_bad_data_gives_a_clear_error_and_leaves_no_run(tmp_path, capsys, make, match):
    data = make(tmp_path / "data")
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "search", "--data", str(data), "--out", str(run_dir), *TINY)
    assert code == 2
    assert err.startswith("gaeanas: error:") and match in err
    assert "Traceback" not in err
    assert not run_dir.exists()


def test_mixed_sizes_load_with_resize(tmp_path, capsys):
    data = mixed_folder(tmp_path / "data")
    code, out, err = run_cli(capsys, "search", "--data", str(data), "--resize", "8", "--epochs", "1",
                             "--out", str(tmp_path / "run"), *TINY)
    assert code == 0, err


@pytest.mark.parametrize("argv, match", [
    (["--method", "enas"], "invalid choice: 'enas'"),
    (["--objective", "trilevel"], "invalid choice: 'trilevel'"),
    (["--epochs", "many"], "invalid int value"),
])
def test_bad_flags_are_rejected_by_the_parser(capsys, argv, match):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", *argv])
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err


def test_other_bad_inputs(tmp_path, capsys):
    data = str(make_image_folder(tmp_path / "data", classes=2, per_class=3))
    code, _, err = run_cli(capsys, "search", "--data", data, "--benchmark", str(tmp_path / "missing.csv"), *TINY)
    assert code == 2 and "benchmark table not found" in err
    code, _, err = run_cli(capsys, "search", "--resume", str(tmp_path))
    assert code == 2 and "no config.json in" in err
    code, _, err = run_cli(capsys, "search", "--data", data, "--epochs", "0", *TINY)
    assert code == 2 and "epochs must be > 0" in err
    code, _, err = run_cli(capsys, "search", "--data", "imagenet-but-not-really", *TINY)
    assert code == 2 and "digits" in err  # lists the known dataset names


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, _, err = run_cli(capsys, "search", "--device", "cuda", "--out", str(tmp_path / "r"), *TINY)
    assert code == 2 and "no CUDA GPU" in err


@pytest.mark.parametrize("command", ["search", "train", "reproduce", "report", "draw"])
def test_help_shows_each_default_once_and_ends_with_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    flags = out.split("\noptions:")[1].split("\nexamples:")[0]
    entries = [e for e in flags.split("\n  -") if e.strip()]
    assert all(e.count("(default:") <= 1 for e in entries), [e for e in entries if e.count("(default:") > 1]
    assert "(default: None)" not in out
    assert f"gaeanas {command}" in out.split("\nexamples:")[1]


@pytest.mark.parametrize("argv, flag, owner", [
    (["search", "--method", "darts", "--eg-floor", "0.3"], "--eg-floor", "method 'darts'"),
    (["search", "--method", "gaea-darts", "--arch-weight-decay", "0.5"], "--arch-weight-decay", "method 'gaea-darts'"),
    (["search", "--method", "gaea-darts", "--tau-max", "99"], "--tau-max", "method 'gaea-darts'"),
    (["search", "--method", "gdas", "--sparse-skip", "0.1"], "--sparse-skip", "method 'gdas'"),
    (["search", "--space", "darts", "--benchmark", "t.csv"], "--benchmark", "space 'darts'"),
])
def test_a_setting_the_method_or_space_does_not_read_is_refused_in_one_line(tmp_path, capsys, argv, flag, owner):
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gaeanas: error: {flag} does not apply to {owner}") and "\n" not in err
    assert not (tmp_path / "run").exists()
