"""Exponentiated gradient: the kernel's maths, the optimizer's invariants and errors, and a convergence race."""

import pytest
import torch

from gaeanas.errors import ConfigError
from gaeanas.optim import ARCH_OPTIMIZERS, ExponentiatedGradient, create_arch_optimizer, exponentiated_gradient_step


def random_simplex(rows: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(rows, k, generator=g), dim=-1)


def test_kernel_matches_closed_form():
    theta = random_simplex(6, 5)
    grad = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    expected = theta * torch.exp(-0.1 * grad)
    expected = expected / expected.sum(-1, keepdim=True)
    out = exponentiated_gradient_step(theta.clone(), grad, lr=0.1, floor=0.0)
    torch.testing.assert_close(out, expected)


def test_kernel_entropy_regulariser_adds_kl_gradient():
    theta = random_simplex(3, 4)
    grad = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    coef = 0.3
    reg = theta.clone().requires_grad_(True)
    (reg * torch.log(reg * 4)).sum().backward()  # KL(theta || uniform)
    expected = exponentiated_gradient_step(theta.clone(), grad + coef * reg.grad, lr=0.5, floor=0.0)
    out = exponentiated_gradient_step(theta.clone(), grad, lr=0.5, floor=0.0, entropy_coef=coef)
    torch.testing.assert_close(out, expected)


def test_floor_keeps_every_weight_alive():
    theta = torch.full((2, 5), 0.2)
    grad = torch.zeros(2, 5)
    grad[:, 0] = 1e3  # would drive op 0 to exp(-100) without the floor
    out = exponentiated_gradient_step(theta, grad, lr=0.1, floor=1e-5)
    assert (out > 0).all()
    torch.testing.assert_close(out[:, 0], torch.full((2,), 1e-5) / (1e-5 + 0.8), rtol=1e-4, atol=0)


@pytest.mark.parametrize("shape", [(5,), (6, 5), (2, 14, 8)])
def test_optimizer_keeps_rows_on_simplex(shape):
    theta = torch.nn.Parameter(torch.full(shape, 1.0 / shape[-1]))
    opt = ExponentiatedGradient([theta], lr=0.7)
    g = torch.Generator().manual_seed(3)
    for _ in range(50):
        theta.grad = torch.randn(shape, generator=g) * 5
        opt.step()
    torch.testing.assert_close(theta.sum(-1), torch.ones(shape[:-1]))
    assert (theta > 0).all()


def test_optimizer_step_equals_kernel_and_skips_missing_grads():
    a = torch.nn.Parameter(random_simplex(6, 5))
    b = torch.nn.Parameter(random_simplex(2, 3))
    b_before = b.detach().clone()
    a.grad = torch.randn(6, 5)
    expected = exponentiated_gradient_step(a.detach().clone(), a.grad, lr=0.1)
    ExponentiatedGradient([a, b], lr=0.1).step()
    torch.testing.assert_close(a.detach(), expected)
    torch.testing.assert_close(b.detach(), b_before)


def test_state_dict_round_trip():
    p = torch.nn.Parameter(random_simplex(6, 5))
    opt = ExponentiatedGradient([p], lr=0.05, entropy_coef=0.01)
    opt.param_groups[0]["lr"] = 0.02
    state = opt.state_dict()
    q = torch.nn.Parameter(random_simplex(6, 5))
    fresh = ExponentiatedGradient([q], lr=0.9)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == 0.02
    assert fresh.param_groups[0]["entropy_coef"] == 0.01
    p.grad = torch.ones(6, 5)
    q.data.copy_(p.data)
    q.grad = p.grad.clone()
    opt.step()
    fresh.step()
    torch.testing.assert_close(p.detach(), q.detach())


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[0.5, 0.6, -0.1]]), "negative"),
    (torch.tensor([[0.5, 0.6, 0.1]]), "not normalised"),
    (torch.tensor(1.0), "scalar"),
])
def test_rejects_parameters_off_the_simplex(bad, match):
    with pytest.raises(ConfigError, match=match):
        ExponentiatedGradient([torch.nn.Parameter(bad)], lr=0.1)


@pytest.mark.parametrize("lr", [0.0, -0.1])
def test_rejects_non_positive_lr(lr):
    with pytest.raises(ConfigError, match="learning rate"):
        ExponentiatedGradient([torch.nn.Parameter(torch.full((2, 3), 1 / 3))], lr=lr)


def test_unknown_optimizer_name():
    with pytest.raises(ConfigError, match="unknown architecture optimizer"):
        create_arch_optimizer("lion", [torch.nn.Parameter(torch.zeros(2))], lr=0.1)


@pytest.mark.parametrize("name, typo", [("adam", "flooor"), ("eg", "weight_decay"), ("eg", "max_grad_norm")])
def test_an_argument_the_optimizer_does_not_take_is_refused(name, typo):
    with pytest.raises(ConfigError, match=typo):
        create_arch_optimizer(name, [torch.nn.Parameter(torch.full((2, 3), 1 / 3))], lr=0.1, **{typo: 0.3})


@pytest.mark.parametrize("name", sorted(ARCH_OPTIMIZERS))
def test_registry_defaults_reach_the_optimizer(name):
    info = ARCH_OPTIMIZERS[name]
    opt = create_arch_optimizer(name, [torch.nn.Parameter(torch.full((2, 3), 1 / 3))], lr=0.05)
    assert isinstance(opt, info.cls) and opt.param_groups[0]["lr"] == 0.05
    for key, value in info.defaults.items():
        assert opt.param_groups[0][key] == value


# ---- the convergence race -----------------------------------------------------------------------
EDGES, OPS, NOISE = 14, 8, 1.0  # a DARTS-sized decision set; gradient noise std per entry
LRS = (0.03, 0.1, 0.3, 1.0)     # every method is tuned over the same grid
MAX_STEPS, HOLD = 2000, 20       # a method "reaches" the loss when it stays there for HOLD steps


def steps_to_target(kind: str, lr: float, cost: torch.Tensor, target: float) -> int:
    """Steps until the expected loss sum(p * cost) stays <= target, under noisy gradients."""
    noise = torch.Generator().manual_seed(1)
    if kind == "eg":
        theta = torch.nn.Parameter(torch.full((EDGES, OPS), 1.0 / OPS))
        opt = ExponentiatedGradient([theta], lr=lr)
        probs = lambda: theta  # noqa: E731
    else:
        theta = torch.nn.Parameter(torch.zeros(EDGES, OPS))
        opt = torch.optim.Adam([theta], lr=lr) if kind == "adam" else torch.optim.SGD([theta], lr=lr)
        probs = lambda: torch.softmax(theta, dim=-1)  # noqa: E731
    held = 0
    for step in range(MAX_STEPS):
        p = probs()
        held = held + 1 if float((p.detach() * cost).sum()) <= target else 0
        if held == HOLD:
            return step - HOLD + 1
        sample = (p * (cost + NOISE * torch.randn(EDGES, OPS, generator=noise))).sum()
        opt.zero_grad()
        sample.backward()
        opt.step()
    return MAX_STEPS


def test_exponentiated_gradient_beats_softmax_adam_and_sgd_on_the_simplex():
    cost = torch.rand(EDGES, OPS, generator=torch.Generator().manual_seed(0))
    best, start = float(cost.min(-1).values.sum()), float(cost.mean(-1).sum())
    target = best + 0.05 * (start - best)
    steps = {kind: min(steps_to_target(kind, lr, cost, target) for lr in LRS) for kind in ("eg", "adam", "sgd")}
    assert steps["eg"] < MAX_STEPS, steps
    assert steps["eg"] < steps["adam"], steps
    assert steps["eg"] < steps["sgd"], steps
