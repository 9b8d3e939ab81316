"""NAS-Bench-201 space: genotype strings, discretisation, and supernet forward/backward for every method."""
import pytest
import torch

from gaeanas.errors import ConfigError, GenotypeError
from gaeanas.methods import METHODS
from gaeanas.search import SearchConfig, build_search_model
from gaeanas.spaces import SPACES, candidate_ops, get_space
from gaeanas.spaces.nb201 import EDGES, OPS, Genotype, Supernet, discretise

from synth import assert_fast_path_matches, nb201_methods

# Published strings: the best CIFAR-10 cell of NAS-Bench-201, DARTS' all-skip collapse, and a mixed cell.
KNOWN = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|none~2|",
]


@pytest.mark.parametrize("text", KNOWN)
def test_genotype_round_trip(text):
    genotype = Genotype.parse(text)
    assert str(genotype) == text
    assert Genotype.parse(str(genotype)) == genotype


def test_edge_order_follows_the_architecture_string():
    genotype = Genotype.parse("|a0~0|+|a1~0|a2~1|+|a3~0|a4~1|a5~2|".replace("a0", "none").replace(
        "a1", "skip_connect").replace("a2", "nor_conv_1x1").replace("a3", "nor_conv_3x3").replace(
        "a4", "avg_pool_3x3").replace("a5", "skip_connect"))
    assert genotype.ops == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "skip_connect")
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


@pytest.mark.parametrize("text, match", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "3 '\\+'-separated"),
    ("|conv_7x7~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|", "unknown operation"),
    ("|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|", "bad token"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|none~0|none~1|none~2|", "needs 2 inputs"),
    ("nor_conv_3x3~0+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|", "not '\\|...\\|'"),
])
def test_malformed_strings_raise(text, match):
    with pytest.raises(GenotypeError, match=match):
        Genotype.parse(text)


def test_discretise_takes_argmax_per_edge_over_candidates():
    ops = candidate_ops(SPACES["nb201"], exclude_none=True)
    assert "none" not in ops and len(ops) == 4
    probs = torch.full((6, 4), 0.1)
    for edge, col in enumerate([0, 1, 2, 3, 2, 1]):
        probs[edge, col] = 0.7
    genotype = discretise({"cell": probs}, ops)
    assert genotype.ops == tuple(ops[c] for c in [0, 1, 2, 3, 2, 1])


def test_supernet_layout_matches_the_benchmark():
    net = Supernet(channels=16, cells=5, num_classes=10)
    cells = [m for m in net.layers if m.__class__.__name__ == "SearchCell"]
    assert len(cells) == 15 and len(net.layers) == 17
    assert net.stem[0].out_channels == 16 and net.head[-1].in_features == 64
    bn = cells[0].edges[0].candidates[OPS.index("nor_conv_3x3")][2]
    assert not bn.affine  # BN is not affine during search
    out = net(torch.randn(2, 3, 32, 32), {"cell": __import__("gaeanas").relax.Mixing(torch.full((6, 5), 0.2))})
    assert out.shape == (2, 10)


NB201_METHODS = nb201_methods()


@pytest.mark.parametrize("method", NB201_METHODS)
@pytest.mark.parametrize("exclude_none", [False, True])
def test_supernet_forward_backward_for_every_method(method, exclude_none):
    torch.manual_seed(0)
    cfg = SearchConfig(method=method, channels=4, cells=1, exclude_none=exclude_none).resolved()
    model = build_search_model(cfg, num_classes=3, gumbel_generator=torch.Generator().manual_seed(0))
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    (theta,) = model.arch_parameters()
    assert theta.shape == (6, 4 if exclude_none else 5)
    assert theta.grad is not None and torch.isfinite(theta.grad).all()
    assert (theta.grad.abs().sum(-1) > 0).all(), "every edge's architecture weights get a gradient"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.weight_parameters())
    assert isinstance(model.genotype(), Genotype)


def test_simplex_methods_start_uniform_and_logit_methods_near_zero():
    for method in NB201_METHODS:
        torch.manual_seed(0)
        model = build_search_model(SearchConfig(method=method, channels=2, cells=1).resolved(), 3)
        (theta,) = model.arch_parameters()
        if METHODS[method].parametrisation == "simplex":
            torch.testing.assert_close(theta.detach(), torch.full((6, 5), 0.2))
        else:
            assert theta.abs().max() < 1e-2 and theta.std() > 0
        torch.testing.assert_close(model.arch.entropy(), torch.tensor(1.6094), atol=1e-3, rtol=0)


def test_gumbel_runs_only_the_sampled_op():
    torch.manual_seed(0)
    cfg = SearchConfig(method="gdas", channels=4, cells=1).resolved()
    model = build_search_model(cfg, 3, torch.Generator().manual_seed(0))
    state = model.relax.generator.get_state()
    mixing = model.relax(model.arch, "cell")
    model.relax.generator.set_state(state)  # the forward pass below draws the same sample
    assert len(mixing.index) == 6
    assert ((mixing.weights.detach() - 1).abs() < 1e-6).sum() == 6  # one-hot in value
    assert (mixing.weights.detach().abs() < 1e-6).sum() == 6 * 4
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    cell = model.net.layers[0]
    for edge, k in zip(cell.edges, mixing.index):
        for j, op in enumerate(edge.candidates):
            grads = [p.grad for p in op.parameters()]
            if j != k and grads:
                assert all(g is None for g in grads), "unsampled ops must not run"


@pytest.mark.parametrize("method", sorted(set(METHODS) - set(NB201_METHODS)))
def test_partial_channel_methods_are_refused_on_nb201(method):
    with pytest.raises(ConfigError, match="does not have"):
        build_search_model(SearchConfig(method=method, channels=4, cells=1).resolved(), 3)


def test_unknown_space_and_method():
    with pytest.raises(ConfigError, match="unknown search space"):
        get_space("nb101")
    with pytest.raises(ConfigError, match="unknown method"):
        SearchConfig(method="enas").resolved()


@pytest.mark.parametrize("exclude_none", [False, True])
@pytest.mark.parametrize("train_mode", [True, False])
def test_fused_cell_matches_the_per_edge_path(exclude_none, train_mode):
    """The fast path (edges leaving a node computed together) gives the same outputs, gradients and BN stats."""
    import copy

    torch.manual_seed(0)
    ops = candidate_ops(SPACES["nb201"], exclude_none)
    plain = Supernet(channels=4, cells=2, num_classes=3, ops=ops, fused=False)
    fused = copy.deepcopy(plain)
    for module in fused.modules():
        if hasattr(module, "fused"):
            module.fused = True
    plain.train(train_mode)
    fused.train(train_mode)
    weights = torch.softmax(torch.randn(6, len(ops)), dim=-1)
    assert_fast_path_matches(plain, fused, torch.randn(5, 3, 8, 8), {"cell": weights})


def _twins(**kwargs):
    """A per-edge supernet and an identical fused copy."""
    import copy

    plain = Supernet(fused=False, **kwargs)
    fused = copy.deepcopy(plain)
    for module in fused.modules():
        if hasattr(module, "fused"):
            module.fused = True
    return plain, fused


def test_sparse_skipping_equals_zeroing_the_small_weights():
    """Ops below the threshold are not run, and the result is the dense mixture with those weights at 0:
    on the per-edge path, on the fused path, and with no gradient for the skipped weights."""
    from gaeanas.relax import Mixing, sparse_mixing

    torch.manual_seed(0)
    plain, fused = _twins(channels=4, cells=1, num_classes=3)
    weights = torch.softmax(3 * torch.randn(6, len(OPS)), dim=-1)
    keep = weights >= 0.1
    assert 0 < int(keep.sum()) < keep.numel()  # some ops are really skipped
    x = torch.randn(4, 3, 8, 8)
    # per-edge sparse vs per-edge dense with zeroed weights; then fused sparse vs per-edge sparse
    sparse = (lambda v: sparse_mixing(v, 0.1))
    leaf = weights.clone().requires_grad_(True)
    out_sparse = plain(x, {"cell": sparse(leaf)})
    torch.testing.assert_close(out_sparse, plain(x, {"cell": Mixing(weights * keep)}), atol=1e-6, rtol=1e-5)
    out_sparse.square().sum().backward()
    assert torch.all(leaf.grad[~keep] == 0) and torch.any(leaf.grad[keep] != 0)
    assert_fast_path_matches(plain, fused, x, {"cell": weights}, mixing=sparse, buffers=False)


@pytest.mark.parametrize("fused", [True, False])
def test_channels_last_supernet_gives_every_bn_its_gradient_in_its_layout(fused):
    """CPU BN backward is several times slower when gradient and input layouts differ."""
    from gaeanas.relax import Mixing
    from synth import batch_norm_layout_mismatches

    torch.manual_seed(0)
    net = Supernet(channels=4, cells=2, num_classes=3, ops=OPS, fused=fused).to(memory_format=torch.channels_last)
    mixing = Mixing(torch.softmax(torch.randn(len(EDGES), len(OPS)), dim=-1))
    out = net(torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last), {"cell": mixing})
    mismatches = batch_norm_layout_mismatches(out.logsumexp(-1).sum())
    assert not mismatches, f"BN backward with (gradient, input) layouts {mismatches}"


def test_fused_cell_looks_up_each_ops_kernel_by_name(monkeypatch):
    """The fused path runs NB201_FUSED[name]; an op without a kernel is refused with its name."""
    from gaeanas.ops import NB201_FUSED
    from gaeanas.relax import Mixing

    net = Supernet(channels=4, cells=1, num_classes=3, ops=OPS)
    monkeypatch.delitem(NB201_FUSED, "avg_pool_3x3")
    with pytest.raises(NotImplementedError, match="'avg_pool_3x3' has no fused kernel"):
        net(torch.randn(2, 3, 8, 8), {"cell": Mixing(torch.full((len(EDGES), len(OPS)), 0.2))})


@pytest.mark.parametrize("space, method, channels, cells, side", [
    ("nb201", "gaea-darts", 4, 1, 16), ("nb201", "darts", 8, 2, 32),
    ("darts", "gaea-darts", 4, 3, 16), ("darts", "gaea-pcdarts", 8, 3, 16),
])
def test_supernet_memory_estimate_is_within_a_factor_of_two_of_a_measurement(space, method, channels, cells, side):
    """supernet_bytes' activations against the forward outputs of every leaf module, counted on the meta device."""
    from gaeanas.search import SearchConfig, build_search_model
    from gaeanas.spaces import SPACES, candidate_ops, supernet_bytes

    cfg = SearchConfig(space=space, method=method, channels=channels, cells=cells, warmup_epochs=0).resolved()
    with torch.device("meta"):
        model = build_search_model(cfg, 10)
    outputs = []
    for module in model.modules():
        if not list(module.children()):
            module.register_forward_hook(lambda m, i, out: outputs.append(out.numel()))
    model(torch.empty(1, 3, side, side, device="meta"))
    measured = 4 * 2 * sum(outputs)  # fp32, forward outputs plus as much again kept for the backward pass
    n_ops = len(candidate_ops(SPACES[space], False))
    estimate = supernet_bytes(SPACES[space], channels, cells, n_ops, (side, side), batch_size=1, parameters=0)
    assert 0.5 <= estimate / measured <= 2.0
