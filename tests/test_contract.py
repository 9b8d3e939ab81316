"""The contract every registered space x method pair keeps: build, forward and backward, genotype round trip,
a tiny search, resume, and refusal of settings it does not read. A new space or method runs these as is."""
import dataclasses
import json

import pytest
import torch

from gaeanas.errors import ConfigError
from gaeanas.methods import METHODS, method_settings
from gaeanas.rundir import read_log
from gaeanas.search import SearchConfig, build_search_model, run_search
from gaeanas.spaces import SPACES, space_settings

from synth import kill_and_resume, make_image_folder, working_pairs

PAIRS = working_pairs()
# The smallest supernet of each space: the DARTS space needs 3 cells (two reductions), PC-DARTS channels % 4 == 0.
TINY = {"nb201": dict(channels=2, cells=1), "darts": dict(channels=4, cells=3),
        **{f"nb1shot1-s{n}": dict(channels=4, cells=1) for n in (1, 2, 3)}}
# A value for each method or space setting, valid wherever the setting is read.
VALUES = {"arch_lr": 0.05, "arch_weight_decay": 0.01, "example_clip": 2.0, "eg_floor": 1e-4, "entropy_coef": 0.1, "sparse_skip": 0.05,
          "tau_max": 5.0, "tau_min": 0.5, "warmup_epochs": 1, "benchmark": "table.csv", "eg_floor_last": True}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(make_image_folder(tmp_path_factory.mktemp("tiny")))


def tiny_config(space: str, method: str, **overrides) -> SearchConfig:
    values = dict(space=space, method=method, epochs=2, batch_size=12, seed=0, warmup_epochs=0, **TINY[space])
    values.update(overrides)
    return SearchConfig(**values)


def test_every_space_has_a_method_and_every_method_a_space():
    assert {s for s, _ in PAIRS} == set(SPACES) and {m for _, m in PAIRS} == set(METHODS)
    assert set(VALUES) == method_settings() | space_settings(), "give the contract a value for each new setting"


@pytest.mark.parametrize("space, method", PAIRS)
def test_build_forward_backward(space, method):
    cfg = tiny_config(space, method).resolved()
    torch.manual_seed(0)
    model = build_search_model(cfg, num_classes=3, gumbel_generator=torch.Generator().manual_seed(0))
    logits = model(torch.randn(4, 3, 8, 8))
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    for name, theta in model.arch.theta.items():
        assert theta.grad is not None and torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.weight_parameters())
    assert model.arch.parametrisation == METHODS[method].parametrisation


@pytest.mark.parametrize("space, method", PAIRS)
def test_genotype_round_trips(space, method):
    model = build_search_model(tiny_config(space, method).resolved(), num_classes=3)
    with torch.no_grad():
        for theta in model.arch.theta.values():  # a random point: on the simplex, or logits
            theta.copy_(torch.rand(theta.shape).softmax(-1) if model.arch.parametrisation == "simplex"
                        else torch.randn(theta.shape))
    genotype = model.genotype()
    assert SPACES[space].parse_genotype(str(genotype)) == genotype


@pytest.mark.parametrize("space, method", PAIRS)
def test_a_tiny_search_and_its_resume(tmp_path, tiny_data, space, method):
    cfg = tiny_config(space, method, data=tiny_data)
    straight, resumed = kill_and_resume(run_search, cfg, tmp_path)
    assert resumed["arch_weights"] == straight["arch_weights"] and resumed["genotype"] == straight["genotype"]
    assert [r["train_loss"] for r in read_log(tmp_path / "killed")] == \
        [r["train_loss"] for r in read_log(tmp_path / "straight")]
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())
    used = set(METHODS[method].settings()) | SPACES[space].settings
    assert set(saved) & (method_settings() | space_settings()) == used, "config.json keeps the settings it uses"
    assert saved["run_info"]["device"] == "cpu" and saved["device"] == "cpu"
    assert {"gaeanas_version", "git_commit", "git_dirty", "torch_version"} <= set(saved["run_info"])


@pytest.mark.parametrize("space, method", PAIRS)
@pytest.mark.parametrize("setting", sorted(VALUES))
def test_a_setting_is_read_or_refused(space, method, setting):
    cfg = tiny_config(space, method, **{setting: VALUES[setting]})
    read = setting in METHODS[method].settings() or setting in SPACES[space].settings
    if read:
        assert getattr(cfg.resolved(), setting) == VALUES[setting]
    else:
        flag = "--" + setting.replace("_", "-")
        with pytest.raises(ConfigError, match=f"^{flag} does not apply to (method '{method}'|space '{space}')"):
            cfg.resolved()


def test_refusal_comes_before_any_data_is_read(tmp_path):
    with pytest.raises(ConfigError, match="--eg-floor does not apply to method 'darts'"):
        run_search(SearchConfig(method="darts", eg_floor=0.3, data=str(tmp_path / "missing")), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_config_saved_before_refusal_still_loads(tmp_path):
    """Configs written by 0.1 kept every setting, used or not; reading them drops the unused ones."""
    from gaeanas.search import load_config

    old = dataclasses.asdict(SearchConfig(method="darts"))
    old.update(eg_floor=1e-5, entropy_coef=0.0, tau_max=10.0, tau_min=0.1, sparse_skip=0.0)
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = load_config(tmp_path)
    assert cfg.eg_floor is None and cfg.tau_max is None and cfg.sparse_skip == 0.0
    assert cfg.resolved().arch_weight_decay == 1e-3


def test_a_training_config_saved_before_refusal_still_loads(tmp_path):
    """0.1 kept auxiliary_weight even with --no-auxiliary; reading such a config drops it."""
    from gaeanas.train import TrainConfig, load_train_config

    old = dataclasses.asdict(TrainConfig(genotype="DARTS_V2", auxiliary=False))
    old["auxiliary_weight"] = 0.4
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = load_train_config(tmp_path)
    assert cfg.auxiliary_weight is None and cfg.resolved().auxiliary is False
