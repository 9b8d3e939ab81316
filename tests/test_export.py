"""From images to a shipped model: NAS-Bench-201 training, a held-out test split, export, loading without gaeanas,
predict."""
import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from gaeanas.cli import main
from gaeanas.errors import ConfigError, DataError, RunDirError
from gaeanas.export import Preprocessed, export_model, load_exported, read_images, trained_network
from gaeanas.spaces.nb201 import Genotype
from gaeanas.spaces.nb201_eval import NetworkNB201
from gaeanas.train import SPACE_DEFAULTS, TrainConfig, Trainer, load_train_data

from synth import make_image_folder, make_train_test_folders

CPU = torch.device("cpu")
CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
TINY = ["--channels", "4", "--cells", "1", "--batch-size", "8", "--no-progress"]

# Loads model.pt with torch alone: any import of gaeanas fails, and the source tree is off sys.path.
STANDALONE = textwrap.dedent("""
    import importlib.abc, sys
    class NoGaeanas(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "gaeanas" or name.startswith("gaeanas."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
    sys.meta_path.insert(0, NoGaeanas())
    sys.path = [p for p in sys.path if not p.endswith("src") and "gaeanas" not in p]
    import json, torch
    folder, inputs, outputs = sys.argv[1:4]
    meta = json.load(open(folder + "/model.json"))
    model = torch.export.load(folder + "/" + meta["file"]).module()
    with torch.no_grad():
        torch.save(model(torch.load(inputs)), outputs)
    assert not any(name.startswith("gaeanas") for name in sys.modules)
    print("loaded without gaeanas")
""")


@pytest.mark.parametrize("mode, size", [("L", 12), ("RGB", 10)])
def test_search_train_export_load_predict(tmp_path, capsys, mode, size):
    data = make_image_folder(tmp_path / "images", classes=3, per_class=10, size=size, mode=mode)
    search, train, export = tmp_path / "search", tmp_path / "train", tmp_path / "model"
    assert main(["search", "--data", str(data), "--epochs", "1", "--out", str(search), "--channels", "2", "--cells",
                 "1", "--batch-size", "8", "--no-progress"]) == 0
    assert main(["train", "--genotype", str(search), "--data", str(data), "--epochs", "2", "--out", str(train),
                 *TINY]) == 0
    assert "test split: 3 images held out of the training images" in capsys.readouterr().out
    result = json.loads((train / "result.json").read_text())
    assert result["genotype"] == json.loads((search / "result.json").read_text())["genotype"]
    assert result["space"] == "nb201" and result["image_size"] == [size, size]
    assert main(["export", str(train), "--out", str(export)]) == 0
    assert "wrote" in capsys.readouterr().out
    meta = json.loads((export / "model.json").read_text())
    assert meta["classes"] == ["class0", "class1", "class2"] and meta["input"]["size"] == [size, size]
    assert meta["test_accuracy"] == result["final_test_acc"] and meta["genotype"] == result["genotype"]
    assert meta["trained_by"].startswith("gaeanas train --genotype '|") and "--epochs 2" in meta["trained_by"]
    assert meta["exported_by"] == f"gaeanas export {train} --out {export}"

    images = sorted((data / "class1").iterdir())[:4]
    x = read_images(images, meta)
    assert x.shape == (4, 3, size, size) and 0.0 <= x.min() and x.max() <= 1.0
    network, _, _ = trained_network(train)
    with torch.no_grad():
        expected = Preprocessed(network, **result["normalisation"]).eval()(x)
    torch.save(x, tmp_path / "x.pt")
    done = subprocess.run([sys.executable, "-c", STANDALONE, str(export), str(tmp_path / "x.pt"),
                           str(tmp_path / "y.pt")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "loaded without gaeanas" in done.stdout
    assert torch.equal(torch.load(tmp_path / "y.pt").argmax(1), expected.argmax(1))
    assert torch.allclose(torch.load(tmp_path / "y.pt"), expected, atol=1e-5)

    assert main(["predict", str(export), *map(str, images), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    top = [meta["classes"][i] for i in expected.argmax(1).tolist()]
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == top
    assert all(line.count("%") == 2 for line in lines)
    assert main(["predict", str(export), str(data), "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "accuracy on" in out and "(rows: true class, columns: predicted)" in out
    assert (tmp_path / "eval" / "confusion.png").read_bytes().startswith(b"\x89PNG")


def _hashes(ds) -> set:
    return {bytes(img.numpy().tobytes()) for img in ds.images}


def test_a_folder_without_test_split_is_held_out_never_trained_on(tmp_path):
    data = make_image_folder(tmp_path / "images", classes=3, per_class=10, size=8)
    cfg = TrainConfig(genotype=CELL, data=str(data), epochs=1, batch_size=8, channels=4, cells=1).resolved()
    train, test, source = load_train_data(cfg)
    assert len(train) == 27 and len(test) == 3 and "held out" in source
    assert sorted(test.labels.tolist()) == [0, 1, 2]  # stratified: one of each class
    assert not _hashes(train) & _hashes(test)
    again = load_train_data(dataclasses.replace(cfg, seed=5))[1]  # the same split whatever the training seed
    assert torch.equal(again.images, test.images)
    trainer = Trainer(cfg, tmp_path / "run", CPU)
    assert "held out" in trainer.test_source
    assert sum(len(y) for _, y in trainer.test_loader) == 3 and sum(len(y) for _, y in trainer.train_loader) == 27


def test_a_test_folder_is_used_and_holdout_is_refused_with_it(tmp_path):
    data = make_train_test_folders(tmp_path / "data")
    cfg = TrainConfig(genotype=CELL, data=str(data), epochs=1, batch_size=8, channels=4, cells=1).resolved()
    train, test, source = load_train_data(cfg)
    assert (len(train), len(test), source) == (24, 12, "the data's own test split")
    with pytest.raises(ConfigError, match="--holdout does not apply"):
        TrainConfig(genotype=CELL, data=str(data), holdout=0.2).resolved()
    held = TrainConfig(genotype=CELL, data=str(data / "train"), holdout=0.25).resolved()
    assert [len(s) for s in load_train_data(held)[:2]] == [18, 6]


def test_darts_training_holds_out_too(tmp_path):
    data = make_image_folder(tmp_path / "images", classes=3, per_class=10, size=8)
    cfg = TrainConfig(genotype="DARTS_V2", data=str(data), epochs=1, batch_size=8, channels=4, cells=3).resolved()
    train, test, _ = load_train_data(cfg)
    assert (len(train), len(test)) == (27, 3) and not _hashes(train) & _hashes(test)


@pytest.mark.parametrize("field, value", [("drop_path", 0.1), ("auxiliary", True), ("auxiliary_weight", 0.2),
                                          ("network", "imagenet")])
def test_darts_network_settings_are_refused_for_nb201(field, value):
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} does not apply to nb201"):
        TrainConfig(genotype=CELL, **{field: value}).resolved()


def test_nb201_recipe_reaches_the_optimizer(tmp_path):
    data = make_image_folder(tmp_path / "images", classes=3, per_class=10, size=8)
    cfg = TrainConfig(genotype=CELL, data=str(data), channels=4, cells=1)
    resolved = TrainConfig(genotype=CELL).resolved()
    assert {k: getattr(resolved, k) for k in SPACE_DEFAULTS["nb201"]} == SPACE_DEFAULTS["nb201"]
    assert (resolved.channels, resolved.cells, resolved.nesterov, resolved.grad_clip) == (16, 5, True, 0.0)
    assert (resolved.epochs, resolved.batch_size, resolved.lr, resolved.weight_decay) == (200, 256, 0.1, 5e-4)
    group = Trainer(cfg, tmp_path / "run", CPU).optimizer.param_groups[0]
    assert (group["nesterov"], group["lr"], group["weight_decay"]) == (True, 0.1, 5e-4)
    plain = Trainer(dataclasses.replace(cfg, nesterov=False, lr=0.05), tmp_path / "run2", CPU).optimizer.param_groups[0]
    assert (plain["nesterov"], plain["lr"]) == (False, 0.05)


def test_nb201_network_follows_the_genotype():
    genotype = Genotype.parse(CELL)
    net = NetworkNB201(genotype, channels=4, cells=2, num_classes=5)
    cell = net.layers[0]
    assert len(cell.edges) == 4  # the two `none` edges have no module
    assert cell.wiring == [(1, 0), (2, 1), (3, 0), (3, 1)]
    logits, aux = net(torch.randn(2, 3, 12, 12))
    assert logits.shape == (2, 5) and aux is None
    assert net(torch.randn(1, 3, 10, 10))[0].shape == (1, 5)  # odd sides after the first reduction (10 -> 5 -> 3)
    dead = NetworkNB201(Genotype(("none",) * 6), channels=4, cells=1, num_classes=3).eval()
    with torch.no_grad():  # no path through the cell: every image gets the same logits
        out = dead(torch.randn(3, 3, 8, 8))[0]
    assert torch.allclose(out, out[:1].expand_as(out))


def test_export_refuses_what_it_cannot_ship(tmp_path):
    data = make_image_folder(tmp_path / "images", classes=3, per_class=6, size=8)
    train = tmp_path / "train"
    assert main(["train", "--genotype", CELL, "--data", str(data), "--epochs", "1", "--out", str(train), *TINY]) == 0
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        export_model(train, tmp_path / "taken")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "seeds.json").write_text("{}")
    with pytest.raises(RunDirError, match="no finished seed"):
        export_model(seeds, tmp_path / "out")
    (seeds / "seed0").mkdir()
    with pytest.raises(RunDirError, match="several seeds.*seeds/seed0"):
        export_model(seeds, tmp_path / "out")
    (train / "result.json").unlink()
    with pytest.raises(RunDirError, match="not finished"):
        export_model(train, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="not a gaeanas export"):
        load_exported(tmp_path / "taken")


def test_predict_names_a_class_folder_the_model_does_not_know(tmp_path, capsys):
    data = make_image_folder(tmp_path / "images", classes=3, per_class=6, size=8)
    train, export = tmp_path / "train", tmp_path / "model"
    assert main(["train", "--genotype", CELL, "--data", str(data), "--epochs", "1", "--out", str(train), *TINY]) == 0
    assert main(["export", str(train), "--out", str(export)]) == 0
    other = make_image_folder(tmp_path / "other", classes=4, per_class=2, size=8)
    assert main(["predict", str(export), str(other)]) == 2
    assert "class3" in capsys.readouterr().err
    assert main(["predict", str(export), str(tmp_path / "missing.png")]) == 2
    assert "no such image file" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        read_images([tmp_path / "bad.png"], json.loads((export / "model.json").read_text()))


def test_a_darts_space_network_exports_too_even_with_a_last_batch_of_one(tmp_path):
    data = make_image_folder(tmp_path / "images", classes=3, per_class=11, size=10)
    train, export = tmp_path / "train", tmp_path / "model"
    # 33 images, 3 held out: 30 to train on in batches of 29 leave one image, which the auxiliary head's 1x1 batch
    # norm cannot train on: that batch is skipped, not an error
    assert main(["train", "--genotype", "DARTS_V2", "--data", str(data), "--channels", "4", "--cells", "3",
                 "--batch-size", "29", "--epochs", "1", "--out", str(train), "--no-progress"]) == 0
    meta = export_model(train, export)
    assert meta["space"] == "darts" and meta["input"]["size"] == [10, 10]
    x = read_images(sorted((data / "class0").iterdir())[:3], meta)
    network, _, result = trained_network(train)
    with torch.no_grad():
        expected = Preprocessed(network, **result["normalisation"]).eval()(x)
    assert torch.allclose(load_exported(export).probabilities(x), torch.softmax(expected, 1), atol=1e-6)


def test_space_flag_decides_how_the_genotype_is_read():
    from gaeanas.errors import GenotypeError

    assert TrainConfig(genotype=CELL).resolved().space == "nb201"  # told by the genotype
    assert TrainConfig(genotype=CELL, space="nb201").resolved().genotype == CELL
    with pytest.raises(GenotypeError):  # read as a DARTS genotype, which it is not
        TrainConfig(genotype=CELL, space="darts").resolved()
    with pytest.raises(GenotypeError):
        TrainConfig(genotype="DARTS_V2", space="nb201").resolved()
    assert TrainConfig(genotype="DARTS_V2").resolved().space == "darts"
