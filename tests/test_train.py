"""Training a DARTS-space cell from scratch: networks, drop-path, auxiliary head, cutout, runs, resume, seeds, CLI."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaeanas.cli import main
from gaeanas.data import DeviceLoader, ImageDataset, cutout_batch
from gaeanas.errors import ConfigError, GenotypeError
from gaeanas.ops import FactorizedReduce
from gaeanas.rundir import load_checkpoint, read_log
from gaeanas.spaces.darts_eval import (EvalCell, NetworkCIFAR, NetworkImageNet, count_multiply_adds, count_parameters,
                                       drop_path, drop_path_schedule)
from gaeanas.spaces.darts_genotypes import DARTS_V2, PUBLISHED, Genotype
from gaeanas.train import TrainConfig, Trainer, resume_seeds, run_seeds, run_training, training_loss

from synth import kill_and_resume, make_train_test_folders

# Published parameter counts (millions, auxiliary head excluded): CIFAR-10 at C=36, L=20 (DARTS, PC-DARTS
# papers), and the mobile ImageNet setting at C=48, L=14 with the CIFAR-searched cell.
PUBLISHED_CIFAR_M = {"DARTS_V2": 3.3, "PC_DARTS": 3.6}
PUBLISHED_IMAGENET_M = {"DARTS_V2": 4.7, "PC_DARTS": 5.3}
ALL_SKIP = Genotype(tuple(("skip_connect", i) for i in (0, 1, 0, 1, 0, 1, 0, 1)), (2, 3, 4, 5),
                    tuple(("skip_connect", i) for i in (0, 1, 0, 1, 0, 1, 0, 1)), (2, 3, 4, 5))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(make_train_test_folders(tmp_path_factory.mktemp("tiny")))


def tiny_config(data: str, **overrides) -> TrainConfig:
    values = dict(genotype="DARTS_V2", data=data, channels=4, cells=3, epochs=1, batch_size=8, cutout=4, seed=0)
    values.update(overrides)
    return TrainConfig(**values)


def tiny_net(**kwargs) -> NetworkCIFAR:
    torch.manual_seed(0)
    return NetworkCIFAR(DARTS_V2, channels=4, cells=3, num_classes=3, **kwargs)


# ---- networks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_genotypes_have_their_published_parameter_counts(name):
    assert name in PUBLISHED_CIFAR_M, f"add {name}'s published parameter count to the test"
    net = NetworkCIFAR(PUBLISHED[name], channels=36, cells=20, num_classes=10, auxiliary=True)
    assert count_parameters(net) == pytest.approx(PUBLISHED_CIFAR_M[name], abs=0.05)
    aux = sum(p.numel() for p in net.auxiliary.parameters()) / 1e6
    assert count_parameters(net, exclude_auxiliary=False) == pytest.approx(count_parameters(net) + aux)
    mobile = NetworkImageNet(PUBLISHED[name], channels=48, cells=14, num_classes=1000, auxiliary=False)
    assert count_parameters(mobile) == pytest.approx(PUBLISHED_IMAGENET_M[name], abs=0.05)


def test_reductions_and_auxiliary_position():
    net = NetworkCIFAR(DARTS_V2, channels=4, cells=20)
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [6, 13]
    assert net.aux_index == 13
    assert net.auxiliary.reduce[0].in_channels == 4 * 4 * 4  # 4 concat nodes x 4C after the 2nd reduction


def test_multiply_adds_count_convolutions_and_linear_layers():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).train()
    expected = 8 * 8 * 4 * 3 * 9 + 8 * 8 * 4 * 1 * 9 + 256 * 10
    assert count_multiply_adds(model, (3, 8, 8)) == pytest.approx(expected / 1e6)
    assert model.training  # mode restored


def test_imagenet_network_forward_shapes():
    torch.manual_seed(0)
    net = NetworkImageNet(DARTS_V2, channels=8, cells=3, num_classes=7, auxiliary=True).train()
    logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux.shape == (2, 7)
    assert net.eval()(torch.randn(2, 3, 64, 64))[1] is None
    assert isinstance(net.cells[0].preprocess0, FactorizedReduce)  # stem0's output has twice stem1's resolution


@pytest.mark.parametrize("network, size", [(NetworkCIFAR, 32), (NetworkImageNet, 64)])
@pytest.mark.parametrize("drop_prob", [0.0, 0.2])
def test_channels_last_networks_give_every_bn_its_gradient_in_its_layout(network, size, drop_prob):
    """BN backward on the CPU is several times slower when gradient and input layouts differ (the cells' cat
    and the pooling heads once handed back strided and NCHW gradients)."""
    from synth import batch_norm_layout_mismatches

    torch.manual_seed(0)
    net = network(DARTS_V2, channels=8, cells=5, num_classes=3, auxiliary=True).to(memory_format=torch.channels_last)
    net.drop_path_prob = drop_prob
    logits, aux = net.train()(torch.randn(4, 3, size, size).contiguous(memory_format=torch.channels_last))
    mismatches = batch_norm_layout_mismatches(logits.logsumexp(-1).sum() + aux.logsumexp(-1).sum())
    assert not mismatches, f"BN backward with (gradient, input) layouts {mismatches}"


# ---- drop-path ----------------------------------------------------------------------------------

def test_drop_path_keeps_the_expectation_and_drops_whole_samples():
    torch.manual_seed(0)
    x = torch.full((20000, 2, 3), 2.0)
    y = drop_path(x, 0.3)
    dropped = (y == 0).all(dim=(1, 2))
    kept = torch.isclose(y, torch.tensor(2.0 / 0.7)).all(dim=(1, 2))
    assert bool((dropped | kept).all())  # each sample is either dropped or scaled as a whole
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert y.mean().item() == pytest.approx(2.0, abs=0.05)
    assert drop_path(x, 0.0) is x


def test_drop_path_schedule_is_linear_in_the_epoch():
    assert [drop_path_schedule(0.3, e, 600) for e in (0, 300, 599)] == pytest.approx([0.0, 0.15, 0.3 * 599 / 600])


def test_eval_mode_ignores_drop_path():
    net = tiny_net(auxiliary=False).eval()
    x = torch.randn(4, 3, 16, 16)
    outputs = []
    for p in (0.0, 0.5, 0.9):
        net.drop_path_prob = p
        outputs.append(net(x)[0])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    torch.testing.assert_close(outputs[0], outputs[2], rtol=0, atol=0)


def test_training_mode_drop_path_changes_outputs():
    net = tiny_net(auxiliary=False).train()
    x = torch.randn(8, 3, 16, 16)
    net.drop_path_prob = 0.0
    plain = net(x)[0]
    torch.manual_seed(1)
    net.drop_path_prob = 0.5
    dropped = net(x)[0]
    assert not torch.allclose(plain, dropped)


def test_identity_ops_are_never_dropped():
    torch.manual_seed(0)
    s0, s1 = torch.randn(4, 8, 8, 8), torch.randn(4, 8, 8, 8)
    normal = EvalCell(ALL_SKIP, 8, 8, 8, reduction=False, reduction_prev=False).train()
    torch.testing.assert_close(normal(s0, s1, 0.9), normal(s0, s1, 0.0), rtol=0, atol=0)
    reduce = EvalCell(ALL_SKIP, 8, 8, 8, reduction=True, reduction_prev=False).train()  # stride-2 skips: not identity
    assert not torch.equal(reduce(s0, s1, 0.9), reduce(s0, s1, 0.0))


# ---- auxiliary head -----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [8, 16, 32])
def test_auxiliary_head_only_in_training_mode(size):
    net = tiny_net(auxiliary=True)
    x = torch.randn(2, 3, size, size)
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (2, 3)
    logits, aux = net.eval()(x)
    assert logits.shape == (2, 3) and aux is None


def test_auxiliary_head_is_excluded_from_the_parameter_count():
    with_aux, without = tiny_net(auxiliary=True), tiny_net(auxiliary=False)
    assert count_parameters(with_aux) == count_parameters(without) == count_parameters(without, False)
    assert count_parameters(with_aux, exclude_auxiliary=False) > count_parameters(with_aux)


def test_the_loss_weights_the_auxiliary_head_by_0_4():
    assert TrainConfig(genotype="DARTS_V2").resolved().auxiliary_weight == 0.4
    torch.manual_seed(0)
    logits, aux, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    expected = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
    torch.testing.assert_close(training_loss(logits, aux, y, 0.4), expected)
    torch.testing.assert_close(training_loss(logits, None, y, 0.4), F.cross_entropy(logits, y))


# ---- cutout -------------------------------------------------------------------------------------

def expected_cutout_mask(b, h, w, size, seed):
    """The squares cutout_batch should zero, from the same generator draws, one image at a time."""
    gen = torch.Generator().manual_seed(seed)
    cy = torch.randint(0, h, (b,), generator=gen)
    cx = torch.randint(0, w, (b,), generator=gen)
    mask = np.zeros((b, h, w), dtype=bool)
    for i in range(b):
        top, left = int(cy[i]) - size // 2, int(cx[i]) - size // 2
        mask[i, max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = True
    return mask, cy, cx


@pytest.mark.parametrize("size", [1, 4, 5])
def test_cutout_zeroes_one_clipped_square_per_image(size):
    b, h, w = 64, 10, 12
    x = torch.rand(b, 3, h, w) + 1.0  # never zero before cutout
    out = cutout_batch(x, size, torch.Generator().manual_seed(7))
    mask, cy, cx = expected_cutout_mask(b, h, w, size, 7)
    zero = (out == 0).numpy()
    assert (zero == mask[:, None]).all()  # the same pixels in every channel
    counts = zero[:, 0].sum(axis=(1, 2))
    rows = [min(int(c) - size // 2 + size, h) - max(int(c) - size // 2, 0) for c in cy]
    cols = [min(int(c) - size // 2 + size, w) - max(int(c) - size // 2, 0) for c in cx]
    assert counts.tolist() == [r * c for r, c in zip(rows, cols)]
    assert (counts == size * size).any() and (size == 1 or (counts < size * size).any())  # whole and clipped
    keep = torch.from_numpy(~mask)[:, None].expand_as(x)
    assert torch.equal(out[keep], x[keep])  # everything else untouched


def test_cutout_of_size_zero_changes_nothing():
    x = torch.rand(4, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert torch.equal(cutout_batch(x, 0, gen), x)
    assert torch.equal(gen.get_state(), state)


def test_device_loader_cutout_is_off_by_default():
    images = torch.full((6, 3, 8, 8), 200, dtype=torch.uint8)
    ds = ImageDataset(images, torch.zeros(6, dtype=torch.int64), ["a"], "flat")
    plain = DeviceLoader(ds, 6, torch.Generator(), augment=False, mean=[0, 0, 0], std=[1, 1, 1])
    cut = DeviceLoader(ds, 6, torch.Generator(), augment=False, mean=[0, 0, 0], std=[1, 1, 1], cutout=3)
    assert not (next(iter(plain))[0] == 0).any()
    zeros = (next(iter(cut))[0] == 0).all(dim=1).sum(dim=(1, 2))
    assert ((zeros >= 1) & (zeros <= 9)).all()


# ---- training runs ------------------------------------------------------------------------------

def test_one_epoch_from_scratch_writes_its_run_directory(tmp_path, tiny_data):
    result = run_training(tiny_config(tiny_data), tmp_path / "run")
    run_dir = tmp_path / "run"
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "log.jsonl", "checkpoint.pt", "result.json", ".lock"}
    config = json.loads((run_dir / "config.json").read_text())
    assert config["genotype"] == "DARTS_V2" and config["channels"] == 4 and config["cutout"] == 4
    (record,) = read_log(run_dir)
    assert set(record) >= {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "drop_path_prob", "lr",
                           "seconds"}
    assert record["drop_path_prob"] == 0.0 and record["lr"] == 0.025
    assert Genotype.parse(result["genotype"]) == DARTS_V2
    assert result["parameters_m"] == pytest.approx(count_parameters(tiny_net(auxiliary=False)))
    assert result["multiply_adds_m"] > 0 and result["image_size"] == [16, 16]
    assert result["test_acc"] == [record["test_acc"]]
    assert result["final_test_error"] == pytest.approx(100.0 - record["test_acc"])
    assert result == json.loads((run_dir / "result.json").read_text())


def test_a_genotype_file_is_resolved_into_the_config(tmp_path, tiny_data):
    path = tmp_path / "cell.json"
    path.write_text(PUBLISHED["PC_DARTS"].to_json())
    trainer = Trainer(tiny_config(tiny_data, genotype=str(path), network="imagenet"), tmp_path / "run",
                      torch.device("cpu"))
    assert Genotype.parse(trainer.cfg.genotype) == PUBLISHED["PC_DARTS"]
    assert isinstance(trainer.model, NetworkImageNet)


NB201_CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, tiny_data, space):
    if space == "darts":
        cfg = tiny_config(tiny_data, epochs=3, drop_path=0.5)
    else:
        cfg = TrainConfig(genotype=NB201_CELL, data=tiny_data, channels=2, cells=1, epochs=3, batch_size=8)
    straight, resumed = kill_and_resume(run_training, cfg, tmp_path)
    drop_time = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert drop_time(read_log(tmp_path / "killed")) == drop_time(read_log(tmp_path / "straight"))
    assert resumed["test_acc"] == straight["test_acc"]
    a = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_several_seeds_are_summarised_and_reused(tmp_path, tiny_data):
    cfg = tiny_config(tiny_data)
    starts = []
    summary = run_seeds(cfg, tmp_path / "seeds", [0, 1], on_run_start=lambda i, s, reused: starts.append(reused))
    assert starts == [False, False]
    errors = [json.loads((tmp_path / "seeds" / f"seed{s}" / "result.json").read_text())["final_test_error"]
              for s in (0, 1)]
    assert summary["test_errors"] == errors and summary["seeds"] == [0, 1]
    assert summary["mean_test_error"] == pytest.approx(np.mean(errors))
    assert summary["std_test_error"] == pytest.approx(np.std(errors))  # population std
    assert json.loads((tmp_path / "seeds" / "summary.json").read_text()) == summary
    assert json.loads((tmp_path / "seeds" / "seed1" / "config.json").read_text())["seed"] == 1
    again = resume_seeds(tmp_path / "seeds", on_run_start=lambda i, s, reused: starts.append(reused))
    assert starts[2:] == [True, True] and again == summary
    with pytest.raises(ConfigError, match="other settings"):
        run_seeds(tiny_config(tiny_data, lr=0.1), tmp_path / "seeds", [0])


@pytest.mark.parametrize("field, value, match", [
    ("genotype", None, "no genotype given"), ("network", "mobile", "unknown network"),
    ("drop_path", 1.0, r"--drop-path must be in \[0, 1\)"), ("channels", 5, "channels must be even"),
    ("cutout", -1, "cutout must be >= 0"), ("epochs", 0, "epochs must be > 0"),
])
def test_config_errors(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{"genotype": "DARTS_V2", field: value}).resolved()


def test_unknown_genotype_is_a_genotype_error():
    with pytest.raises(GenotypeError, match="not a published genotype"):
        TrainConfig(genotype="DARTS_V3").resolved()


# ---- command line -------------------------------------------------------------------------------

TINY = ["--channels", "4", "--cells", "3", "--batch-size", "8", "--cutout", "4", "--epochs", "1", "--no-progress"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_trains_and_reports(tmp_path, tiny_data, capsys):
    code, out, err = run_cli(capsys, "train", "--genotype", "DARTS_V2", "--data", tiny_data,
                             "--out", str(tmp_path / "run"), *TINY)
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "epoch   1" in out and "test acc" in out
    assert f"parameters: {result['parameters_m']:.4g}M" in out and "multiply-adds:" in out
    assert f"final test error: {result['final_test_error']:.2f}%" in out
    code, out, err = run_cli(capsys, "train", "--resume", str(tmp_path / "run"), "--epochs", "3")
    assert code == 2 and "drop --epochs" in err


def test_cli_trains_several_seeds(tmp_path, tiny_data, capsys):
    code, out, err = run_cli(capsys, "train", "--genotype", "PC_DARTS", "--data", tiny_data, "--seeds", "0,1",
                             "--out", str(tmp_path / "seeds"), *TINY)
    assert code == 0, err
    summary = json.loads((tmp_path / "seeds" / "summary.json").read_text())
    assert f"test error over 2 seeds: {summary['mean_test_error']:.2f} ± {summary['std_test_error']:.2f}%" in out
    code, out, err = run_cli(capsys, "train", "--resume", str(tmp_path / "seeds"), "--no-progress")
    assert code == 0, err
    assert out.count("finished earlier, reused") == 2


def write_bad_genotype(tmp_path):
    path = tmp_path / "broken-cell.json"
    path.write_text('{"normal": [["sep_conv_3x3", 0]]')
    return str(path)


@pytest.mark.parametrize("make_args, match", [
    (lambda tmp, data: ["--genotype", "DARTS_V3", "--data", data], "'DARTS_V3' is not a published genotype"),
    (lambda tmp, data: ["--genotype", write_bad_genotype(tmp), "--data", data], "broken-cell.json"),
    (lambda tmp, data: ["--genotype", "DARTS_V2", "--data", str(tmp / "nowhere")], "nowhere"),
    (lambda tmp, data: ["--data", data], "no genotype given"),
])
def test_cli_train_errors_are_clear_and_leave_no_run(tmp_path, tiny_data, capsys, make_args, match):
    for extra in ([], ["--seeds", "0,1"]):
        out_dir = tmp_path / "run"
        code, out, err = run_cli(capsys, "train", *make_args(tmp_path, tiny_data), "--out", str(out_dir), *TINY, *extra)
        assert code == 2
        assert err.startswith("gaeanas: error:") and match in err and "Traceback" not in err
        assert not out_dir.exists()


def test_seeds_in_workers_match_the_serial_seeds_and_a_killed_one_resumes(tmp_path, capsys):
    import threading

    from gaeanas.cli import main
    from gaeanas.train import run_seeds, run_seeds_in_workers

    data = make_train_test_folders(tmp_path / "data")
    cfg = TrainConfig(genotype=NB201_CELL, data=str(data), channels=2, cells=1, epochs=3, batch_size=8)
    out = tmp_path / "workers"

    def kill_seed1(event, job, process):
        if event == "start" and job.name == "seed1":
            def kill():
                while not (out / "seed1" / "config.json").is_file() and process.is_alive():
                    pass
                process.kill()
            threading.Thread(target=kill, daemon=True).start()

    summary, outcomes = run_seeds_in_workers(cfg, out, [0, 1, 2], "cpu", 2, kill_seed1)
    assert summary is None and {o.name: o.exitcode < 0 for o in outcomes} == {"seed0": False, "seed1": True,
                                                                            "seed2": False}
    assert main(["train", "--seeds", "0-2", "--workers", "2", "--genotype", cfg.genotype, "--data", str(data),
                 "--channels", "2", "--cells", "1", "--epochs", "3", "--batch-size", "8", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "started seed1" in printed and "started seed0" not in printed  # only the killed seed ran again
    serial = run_seeds(cfg, tmp_path / "serial", [0, 1, 2], "cpu")
    together = json.loads((out / "summary.json").read_text())
    assert together["test_errors"] == pytest.approx(serial["test_errors"], abs=1e-9)


def test_workers_need_seeds(tmp_path, capsys):
    from gaeanas.cli import main

    assert main(["train", "--genotype", "DARTS_V2", "--workers", "2", "--data", "digits"]) == 2
    assert "--workers and --ray train several seeds" in capsys.readouterr().err


def test_workers_are_refused_on_resume(tmp_path, capsys):
    from gaeanas.cli import main

    assert main(["train", "--resume", str(tmp_path), "--workers", "2"]) == 2
    assert "--workers and --ray go with --seeds" in capsys.readouterr().err
