"""The search loop on a tiny synthetic dataset: ERM and bilevel, run directories, oracle, resume."""
import json
import math

import pytest
import torch

from gaeanas.errors import ConfigError, RunDirError
from gaeanas.methods import METHODS
from gaeanas.rundir import CHECKPOINT_FILE, load_checkpoint, read_log
from gaeanas.methods import gumbel_temperature
from gaeanas.search import Search, SearchConfig, run_search
from gaeanas.spaces.nb201 import Genotype

from synth import kill_and_resume, make_image_folder, nb201_methods, write_full_nb201_table


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(make_image_folder(tmp_path_factory.mktemp("tiny")))


def tiny_config(data: str, **overrides) -> SearchConfig:
    values = dict(data=data, channels=2, cells=1, epochs=2, batch_size=12, seed=0)
    values.update(overrides)
    return SearchConfig(**values)


@pytest.mark.parametrize("objective", ["erm", "bilevel"])
@pytest.mark.parametrize("method", nb201_methods())
def test_search_runs_and_writes_its_run_directory(tmp_path, tiny_data, method, objective):
    run_dir = tmp_path / "run"
    result = run_search(tiny_config(tiny_data, method=method, objective=objective), run_dir)
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "log.jsonl", "checkpoint.pt", "result.json"}
    assert not list(run_dir.glob("*.tmp"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["method"] == method and config["channels"] == 2 and config["arch_lr"] == METHODS[method].settings()["arch_lr"]
    records = read_log(run_dir)
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert {"train_loss", "train_acc", "entropy", "genotype", "arch_weights", "seconds"} <= set(record)
        weights = torch.tensor(record["arch_weights"]["cell"])
        if METHODS[method].parametrisation == "simplex":  # EG keeps rows on the simplex (a softmax always is)
            torch.testing.assert_close(weights.sum(-1), torch.ones(6))
        assert 0 <= record["entropy"] <= math.log(5) + 1e-6
    assert Genotype.parse(result["genotype"]) and result["epochs"] == 2
    assert result == json.loads((run_dir / "result.json").read_text())
    init = torch.full((6, 5), 0.2)
    assert not torch.allclose(torch.tensor(result["arch_weights"]["cell"]), init, atol=1e-6), "architecture learned"
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    assert {"model", "arch", "weight_optimizer", "arch_optimizer", "rng", "epoch"} <= set(checkpoint)
    assert checkpoint["epoch"] == 2


def test_bilevel_splits_the_training_set_in_two(tmp_path, tiny_data):
    search = Search(tiny_config(tiny_data, objective="bilevel"), tmp_path / "run", torch.device("cpu"))
    weight_images, arch_images = search.weight_loader.ds.images, search.arch_loader.ds.images
    assert len(weight_images) == len(arch_images) == 18
    flat = lambda t: {bytes(img.flatten().tolist()) for img in t}  # noqa: E731
    assert not flat(weight_images) & flat(arch_images)
    erm = Search(tiny_config(tiny_data), tmp_path / "erm", torch.device("cpu"))
    assert erm.weight_loader.ds is erm.arch_loader.ds and len(erm.weight_loader.ds) == 36


def test_gaea_sharpens_the_architecture_weights(tmp_path, tiny_data):
    result = run_search(tiny_config(tiny_data, method="gaea-darts", epochs=3), tmp_path / "run")
    records = read_log(tmp_path / "run")
    assert records[-1]["entropy"] < records[0]["entropy"] < math.log(5)
    assert result["entropy"] == records[-1]["entropy"]


def test_warmup_epochs_leave_the_architecture_alone(tmp_path, tiny_data):
    result = run_search(tiny_config(tiny_data, epochs=2, warmup_epochs=1), tmp_path / "run")
    warm, learned = read_log(tmp_path / "run")
    torch.testing.assert_close(torch.tensor(warm["arch_weights"]["cell"]), torch.full((6, 5), 0.2))
    assert learned["arch_loss"] is not None and warm["arch_loss"] is None
    assert not torch.allclose(torch.tensor(result["arch_weights"]["cell"]), torch.full((6, 5), 0.2))


def test_oracle_accuracies_are_logged(tmp_path, tiny_data):
    table = write_full_nb201_table(tmp_path / "table.csv")
    result = run_search(tiny_config(tiny_data, epochs=1, benchmark=str(table)), tmp_path / "run")
    conv = Genotype.parse(result["genotype"]).count("nor_conv_3x3")
    assert result["oracle"] == {"cifar10": 80 + 2 * conv, "cifar100": 50 + 3 * conv, "ImageNet16-120": 20 + 4 * conv}
    assert read_log(tmp_path / "run")[0]["oracle"] == result["oracle"]


@pytest.mark.parametrize("method", ["gaea-darts", "gdas"])
def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, tiny_data, method):
    cfg = tiny_config(tiny_data, method=method, epochs=3, objective="bilevel")
    straight, resumed = kill_and_resume(run_search, cfg, tmp_path)
    assert resumed["genotype"] == straight["genotype"]
    assert resumed["arch_weights"] == straight["arch_weights"]
    assert [r["epoch"] for r in read_log(tmp_path / "killed")] == [1, 2, 3]
    assert [r["train_loss"] for r in read_log(tmp_path / "killed")] == [r["train_loss"] for r in read_log(tmp_path / "straight")]


def test_run_directory_rules(tmp_path, tiny_data):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(RunDirError, match="already exists"):
        run_search(tiny_config(tiny_data), tmp_path / "used")
    with pytest.raises(RunDirError, match="cannot resume"):
        run_search(tiny_config(tiny_data), tmp_path / "nothing", resume=True)


def test_gumbel_temperature_is_linear_from_max_to_min():
    assert [gumbel_temperature(10.0, 0.1, e, 5) for e in range(5)] == pytest.approx([10.0, 7.525, 5.05, 2.575, 0.1])


@pytest.mark.parametrize("field, value, match", [
    ("objective", "trilevel", "unknown objective"), ("epochs", 0, "epochs must be > 0"),
    ("lr", -1.0, "lr must be > 0"), ("weight_decay", -1.0, "--weight-decay must be >= 0"),
    ("space", "nb101", "unknown search space"), ("precision", "fp8", "unknown precision"),
])
def test_config_errors(field, value, match):
    with pytest.raises(ConfigError, match=match):
        SearchConfig(**{field: value}).resolved()


def test_resume_without_a_checkpoint_starts_over_cleanly(tmp_path, tiny_data):
    cfg = tiny_config(tiny_data, epochs=2)
    straight = run_search(cfg, tmp_path / "run")
    (tmp_path / "run" / "checkpoint.pt").unlink()
    (tmp_path / "run" / "result.json").unlink()
    again = run_search(cfg, tmp_path / "run", resume=True)
    assert [r["epoch"] for r in read_log(tmp_path / "run")] == [1, 2]
    assert again["genotype"] == straight["genotype"]
