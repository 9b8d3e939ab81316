"""XNAS (Nayman et al., 2019) as GAEA's appendix C.4 runs it: expert advice with the wipeout, and architecture gradients
clipped per example before the batch average."""
import math

import pytest
import torch

from gaeanas.errors import ConfigError
from gaeanas.optim import ExpertAdvice, create_arch_optimizer, expert_advice_step, exponentiated_gradient_step
from gaeanas.rundir import read_log
from gaeanas.search import SearchConfig, SearchStep, build_search_model, run_search

from synth import make_image_folder


def test_without_wipeout_the_step_is_exponentiated_gradient_without_a_floor():
    theta, grad = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]), torch.tensor([[1.0, -2.0, 0.5], [0.1, 0.2, -3.0]])
    want = exponentiated_gradient_step(theta.clone(), grad, lr=0.7, floor=0.0)
    assert torch.allclose(expert_advice_step(theta.clone(), grad, 0.7, None), want, atol=1e-6)


def test_the_wipeout_drops_what_cannot_catch_up_and_it_stays_out():
    theta = torch.tensor([0.5, 0.3, 0.2])
    out = expert_advice_step(theta, torch.zeros(3), 1.0, wipeout_gap=math.log(0.5 / 0.3) + 1e-3)
    assert out[2] == 0 and torch.allclose(out, torch.tensor([0.5, 0.3, 0.0]) / 0.8)
    again = expert_advice_step(out.clone(), torch.tensor([0.0, 0.0, -100.0]), 1.0, None)
    assert again[2] == 0 and torch.isclose(again.sum(), torch.tensor(1.0))


def test_the_wipeout_gap_narrows_as_the_steps_run_out():
    """gap = 2 lr L (T - t): with lr = L = 1 and T = 3 it is 4 after step 1 and 2 after step 2."""
    theta = torch.nn.Parameter(torch.tensor([0.5, 0.3, 0.2]))
    opt = ExpertAdvice([theta], lr=1.0, grad_bound=1.0)
    theta.grad = torch.tensor([0.0, 0.0, 3.0])
    opt.step()
    assert theta[2] > 0  # trails by log(2.5) + 3 = 3.92 < 4
    opt.set_horizon(3)
    fresh = torch.nn.Parameter(torch.tensor([0.5, 0.3, 0.2]))
    opt = ExpertAdvice([fresh], lr=1.0, grad_bound=1.0)
    opt.set_horizon(3)
    fresh.grad = torch.tensor([0.0, 0.0, 3.0])
    opt.step()
    assert fresh[2] > 0
    opt.step()  # trails by 6.92 > 2
    assert fresh[2] == 0 and fresh[1] > 0
    state = opt.state_dict()["param_groups"][0]
    assert (state["steps"], state["horizon"]) == (2, 3)


def test_the_optimizer_is_registered_and_refuses_bad_values():
    theta = torch.nn.Parameter(torch.full((2, 4), 0.25))
    assert isinstance(create_arch_optimizer("xnas", [theta], lr=0.1, grad_bound=2.0), ExpertAdvice)
    with pytest.raises(ConfigError, match="grad_bound"):
        ExpertAdvice([theta], grad_bound=-1.0)


@pytest.mark.parametrize("space, size", [("nb201", dict(channels=4, cells=1)),
                                         ("nb1shot1-s2", dict(channels=4, cells=1))])
def test_per_example_clipping_matches_a_loop_over_examples(space, size):
    """In eval mode (BN from running statistics) the examples are independent: each one's share must be its own
    gradient, clipped, then averaged. With a clip that never acts the result is the plain batch gradient."""
    cfg = SearchConfig(space=space, method="xnas", epochs=2, batch_size=5, **size).resolved()
    torch.manual_seed(0)
    model = build_search_model(cfg, 3).eval()
    with torch.no_grad():
        for theta in model.arch.theta.values():
            theta.copy_(torch.rand(theta.shape).softmax(-1))
    x, y = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    own = []
    for b in range(5):
        loss = torch.nn.functional.cross_entropy(model(x[b:b + 1]), y[b:b + 1])
        own.append(torch.autograd.grad(loss, model.arch_parameters()))
    norms = [float(torch.cat([g.flatten() for g in grads]).norm()) for grads in own]
    clip = (sorted(norms)[1] + sorted(norms)[2]) / 2  # three examples above it are clipped, two are not
    step = SearchStep(SearchConfig(**{**cfg.__dict__, "example_clip": clip}), model, torch.device("cpu"))
    _, _, clipped = step.clipped_example_grads(x, y)
    for i, got in enumerate(clipped):
        want = sum(grads[i] * min(1.0, clip / norm) for grads, norm in zip(own, norms)) / 5
        assert torch.allclose(got, want, atol=1e-7)
    assert int(step.clipped) == 3 and step.examples == 5
    step.cfg = SearchConfig(**{**cfg.__dict__, "example_clip": 1e9})  # never acts
    _, _, unclipped = step.clipped_example_grads(x, y)
    loss, _ = step.loss(x, y)
    for got, plain in zip(unclipped, torch.autograd.grad(loss, step.arch_params)):
        assert torch.allclose(got, plain, atol=1e-6)


def test_xnas_is_refused_where_its_supernet_cannot_take_per_example_weights():
    with pytest.raises(ConfigError, match="DARTS space"):
        SearchConfig(space="darts", method="xnas").resolved()


def test_a_search_logs_the_clipping_and_the_wipeout(tmp_path):
    data = make_image_folder(tmp_path / "data")
    cfg = SearchConfig(space="nb201", method="xnas", data=str(data), epochs=2, channels=2, cells=1, batch_size=12,
                       example_clip=1e-4, arch_lr=50.0)
    result = run_search(cfg, tmp_path / "run")
    log = read_log(tmp_path / "run")
    assert [r["examples_clipped"] for r in log] == [1.0, 1.0]  # every example's gradient is above 1e-4
    # 2 lr L (T - t) = 0.01 per step left: by the end every edge keeps a single operation
    assert log[-1]["wiped_out"] == 6 * 4 and result["entropy"] == pytest.approx(0.0, abs=1e-6)
    assert all(sum(v > 0 for v in row) == 1 for row in result["arch_weights"]["cell"])


def test_sparse_skip_is_refused_with_per_example_clipping():
    with pytest.raises(ConfigError, match="--sparse-skip does not apply to method 'xnas'"):
        SearchConfig(method="xnas", sparse_skip=0.1).resolved()
