"""Each setting reaches the code it drives: search (architecture optimizer, clip, sparse skip, Gumbel schedule,
cosine floor) and from-scratch training (drop-path schedule, Cutout, auxiliary weight)."""
import pytest
import torch

import gaeanas.train
from gaeanas.methods import METHODS, ExponentiatedGradientOnSimplex, GumbelSampling, SoftMixture
from gaeanas.relax import GumbelHard
from gaeanas.rundir import read_log
from gaeanas.search import Search, SearchConfig, run_search
from gaeanas.train import TrainConfig, Trainer, run_training

from synth import make_image_folder, make_train_test_folders, working_pairs

CPU = torch.device("cpu")
NB201 = [m for s, m in working_pairs() if s == "nb201"]
EG = [m for m in NB201 if isinstance(METHODS[m].update, ExponentiatedGradientOnSimplex)]
SIMPLEX = [m for m in NB201 if METHODS[m].parametrisation == "simplex"]
ADAM = [m for m in NB201 if METHODS[m].parametrisation == "logits"]
MIXTURE = [m for m in NB201 if isinstance(METHODS[m].relaxation, SoftMixture)]
GUMBEL = [m for m in NB201 if isinstance(METHODS[m].relaxation, GumbelSampling)]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(make_image_folder(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    return str(make_train_test_folders(tmp_path_factory.mktemp("train")))


def search(data: str, tmp_path, **settings) -> Search:
    values = {**dict(data=data, channels=2, cells=1, epochs=3, batch_size=12, seed=0), **settings}
    return Search(SearchConfig(**values), tmp_path / "run", CPU)


# ---- search ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", NB201)
def test_arch_lr_is_the_optimizers_rate(tmp_path, tiny_data, method):
    s = search(tiny_data, tmp_path, method=method, arch_lr=0.0123)
    assert [g["lr"] for g in s.arch_opt.param_groups] == [0.0123]
    default = search(tiny_data, tmp_path / "default", method=method)
    assert default.arch_opt.param_groups[0]["lr"] == METHODS[method].update.lr


@pytest.mark.parametrize("method", EG)
def test_eg_floor_and_entropy_coef_reach_exponentiated_gradient(tmp_path, tiny_data, method):
    group = search(tiny_data, tmp_path, method=method, eg_floor=0.03, entropy_coef=0.2).arch_opt.param_groups[0]
    assert (group["floor"], group["entropy_coef"]) == (0.03, 0.2)


@pytest.mark.parametrize("method", EG)
def test_eg_floor_acts_in_a_search(tmp_path, tiny_data, method):
    result = run_search(SearchConfig(data=tiny_data, method=method, channels=2, cells=1, epochs=2, batch_size=12,
                                     eg_floor=0.15, arch_lr=5.0), tmp_path / "run")
    weights = torch.tensor(result["arch_weights"]["cell"])
    assert weights.min() >= 0.15 / (1 + 4 * 0.15) - 1e-6  # a clamped weight, renormalised


@pytest.mark.parametrize("method", ADAM)
def test_arch_weight_decay_is_adams(tmp_path, tiny_data, method):
    assert search(tiny_data, tmp_path, method=method, arch_weight_decay=0.07).arch_opt.param_groups[0][
        "weight_decay"] == 0.07


@pytest.mark.parametrize("method", SIMPLEX)
def test_arch_grad_clip_bounds_the_architecture_step(tmp_path, tiny_data, method):
    def step_size(clip: float) -> float:
        s = search(tiny_data, tmp_path / f"clip{clip}", method=method, arch_grad_clip=clip, arch_lr=1.0)
        before = s.model.arch.theta["cell"].detach().clone()
        s.step.arch_step(*next(iter(s.arch_loader)))
        return float((s.model.arch.theta["cell"].detach() - before).abs().max())

    assert step_size(1e-9) < 1e-6 < step_size(0.0)  # 1e-6: float32 rounding (xnas steps in log space)


@pytest.mark.parametrize("method", MIXTURE)
def test_sparse_skip_is_the_relaxations_threshold(tmp_path, tiny_data, method):
    assert search(tiny_data, tmp_path, method=method, sparse_skip=0.07).model.relax.threshold == 0.07
    assert search(tiny_data, tmp_path / "default", method=method).model.relax.threshold == 0.0


@pytest.mark.parametrize("method", GUMBEL)
def test_gumbel_temperature_follows_its_schedule(tmp_path, tiny_data, method):
    s = search(tiny_data, tmp_path, method=method, tau_max=5.0, tau_min=1.0, warmup_epochs=0)
    assert isinstance(s.model.relax, GumbelHard) and s.model.relax.tau == 5.0
    s.run()
    assert [r["tau"] for r in read_log(tmp_path / "run")] == [5.0, 3.0, 1.0]
    assert s.model.relax.tau == 1.0  # the temperature the last epoch sampled with


@pytest.mark.parametrize("method", GUMBEL)
def test_the_temperature_holds_through_the_warmup_then_falls_at_the_same_rate(tmp_path, tiny_data, method):
    """GAEA GDAS's reference schedule: tau_max - (tau_max - tau_min) * max(e - warmup, 0) / (E - 1)."""
    search(tiny_data, tmp_path, method=method, epochs=4, tau_max=5.0, tau_min=2.0, warmup_epochs=2).run()
    assert [r["tau"] for r in read_log(tmp_path / "run")] == pytest.approx([5.0, 5.0, 5.0, 4.0])


def test_the_gumbel_temperature_scales_the_straight_through_gradient():
    from gaeanas.relax import Architecture

    def grad_norm(tau: float) -> float:
        arch = Architecture({"cell": (6, 5)}, "logits")
        mixing = GumbelHard(tau, torch.Generator().manual_seed(0))(arch, "cell")
        (mixing.weights * torch.arange(5.0)).sum().backward()
        return float(arch.theta["cell"].grad.norm())

    assert grad_norm(0.5) > 4 * grad_norm(5.0)


def test_lr_min_is_the_cosine_floor(tmp_path, tiny_data):
    s = search(tiny_data, tmp_path, lr=0.1, lr_min=0.02, lr_cycle=0)
    assert s.scheduler.eta_min == 0.02
    s.run()
    assert s.weight_opt.param_groups[0]["lr"] == pytest.approx(0.02)
    assert [r["lr"] for r in read_log(tmp_path / "run")] == pytest.approx([0.1, 0.08, 0.04])


def test_lr_cycle_restarts_the_cosine_with_its_peak_halved(tmp_path, tiny_data):
    """The GAEA reference's schedule: a cosine over lr_cycle epochs, then again from half the peak."""
    s = search(tiny_data, tmp_path, lr=0.1, lr_min=0.02, lr_cycle=2, epochs=5)
    s.run()
    assert [r["lr"] for r in read_log(tmp_path / "run")] == pytest.approx([0.1, 0.06, 0.05, 0.035, 0.025])


def test_a_shorter_run_keeps_the_recipes_shape(tmp_path, tiny_data):
    """Left to their defaults, the warm-up and the cosine cycle scale with --epochs (gaea-gdas: 50 and 50 of 150)."""
    cfg = SearchConfig(method="gaea-gdas", epochs=30).resolved()
    assert (cfg.warmup_epochs, cfg.lr_cycle) == (10, 10)
    assert SearchConfig(method="gaea-gdas", epochs=30, warmup_epochs=3).resolved().warmup_epochs == 3
    assert SearchConfig(method="gaea-darts", epochs=10).resolved().lr_cycle == 20  # 50 of 25 epochs


@pytest.mark.parametrize("nesterov", [True, False])
def test_nesterov_reaches_sgd(tmp_path, tiny_data, nesterov):
    assert search(tiny_data, tmp_path, nesterov=nesterov).weight_opt.param_groups[0]["nesterov"] is nesterov


@pytest.mark.parametrize("order", ["arch-first", "weights-first"])
def test_update_order_decides_which_update_sees_the_other(tmp_path, tiny_data, order, monkeypatch):
    s = search(tiny_data, tmp_path, update_order=order, epochs=1)
    calls = []
    for name in ("arch_step", "weight_step"):
        original = getattr(s.step, name)
        monkeypatch.setattr(s.step, name, lambda *a, _n=name, _f=original: calls.append(_n) or _f(*a))
    s.run()
    first = "arch_step" if order == "arch-first" else "weight_step"
    assert calls[0] == first and calls[:4] == [first, ({"arch_step", "weight_step"} - {first}).pop()] * 2


# ---- training -------------------------------------------------------------------------------------

def trainer(data: str, tmp_path, **settings) -> Trainer:
    values = {**dict(genotype="DARTS_V2", data=data, channels=4, cells=3, epochs=3, batch_size=8, seed=0), **settings}
    return Trainer(TrainConfig(**values), tmp_path / "run", CPU)


def test_drop_path_probability_follows_its_schedule(tmp_path, train_data):
    t = trainer(train_data, tmp_path, drop_path=0.3)
    seen = []
    first_cell = t.model.cells[0]
    first_cell.register_forward_pre_hook(lambda module, args: seen.append(args[2]))
    t.run()
    assert [r["drop_path_prob"] for r in read_log(tmp_path / "run")] == pytest.approx([0.0, 0.1, 0.2])
    assert sorted(set(seen)) == pytest.approx([0.0, 0.1, 0.2])  # what the cells were called with


def test_cutout_reaches_the_training_loader(tmp_path, train_data):
    t = trainer(train_data, tmp_path, cutout=5)
    assert t.train_loader.cutout == 5 and t.test_loader.cutout == 0
    x, _ = next(iter(t.train_loader))
    assert ((x == 0).all(dim=1).flatten(1).sum(dim=1) >= 1).all(), "every image has zeroed pixels"


@pytest.mark.parametrize("weight", [0.0, 0.7])
def test_auxiliary_weight_reaches_the_loss(tmp_path, train_data, monkeypatch, weight):
    seen = []
    real = gaeanas.train.training_loss

    def spy(logits, aux_logits, y, aux_weight):
        seen.append((aux_logits is not None, aux_weight))
        return real(logits, aux_logits, y, aux_weight)

    monkeypatch.setattr(gaeanas.train, "training_loss", spy)
    run_training(TrainConfig(genotype="DARTS_V2", data=train_data, channels=4, cells=3, epochs=1, batch_size=8,
                             auxiliary_weight=weight), tmp_path / "run")
    assert seen and set(seen) == {(True, weight)}


def test_auxiliary_weight_without_the_auxiliary_head_is_refused():
    from gaeanas.errors import ConfigError

    with pytest.raises(ConfigError, match="--auxiliary-weight does not apply with --no-auxiliary"):
        TrainConfig(genotype="DARTS_V2", auxiliary=False, auxiliary_weight=0.3).resolved()
    assert TrainConfig(genotype="DARTS_V2", auxiliary=False).resolved().auxiliary_weight is None


def test_search_and_training_leave_the_global_rng_alone(tmp_path, tiny_data, train_data):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    search(tiny_data, tmp_path / "search", method="gdas", epochs=1).run()
    trainer(train_data, tmp_path / "train", epochs=1, drop_path=0.2).run()
    assert torch.equal(torch.get_rng_state(), state)


def test_a_run_does_not_depend_on_the_global_rng(tmp_path, tiny_data):
    results = []
    for outside in (1, 2):
        torch.manual_seed(outside)
        results.append(run_search(SearchConfig(data=tiny_data, method="gdas", channels=2, cells=1, epochs=1,
                                               batch_size=12), tmp_path / f"run{outside}")["arch_weights"])
    assert results[0] == results[1]
