"""The DARTS search space: supernet layout, PC-DARTS partial channels and edge weights, discretisation, search."""
import json

import pytest
import torch

from gaeanas.errors import ConfigError
from gaeanas.methods import METHODS, GumbelSampling
from gaeanas.ops import FactorizedReduce, ReLUConvBN
from gaeanas.relax import Mixing
from gaeanas.relax.partial import PartialChannels, channel_shuffle, channel_unshuffle
from gaeanas.search import SearchConfig, build_search_model, run_search
from gaeanas.spaces import SPACES
from gaeanas.spaces.darts import (EDGES, MixedOp, SearchCell, Supernet, arch_shapes, build_supernet, discretise,
                                  edge_tensor_name, reduction_cells)
from gaeanas.spaces.darts_genotypes import OPS, Genotype

from synth import make_image_folder, working_pairs

EDGE_NAMES = [edge_tensor_name(kind, n) for kind in ("normal", "reduce") for n in (2, 3, 4, 5)]


def assert_round_trips(genotype: Genotype) -> None:
    """JSON and the printed Python form both parse back to the same genotype."""
    assert Genotype.from_dict(json.loads(genotype.to_json())) == genotype
    assert Genotype.parse(genotype.to_json()) == genotype
    assert Genotype.parse(str(genotype)) == genotype


def uniform(k: int) -> Mixing:
    return Mixing(torch.full((len(EDGES), k), 1.0 / k))


# ---- supernet with every method -------------------------------------------------------------------

DARTS_METHODS = [m for space, m in working_pairs() if space == "darts"]


@pytest.mark.parametrize("method", DARTS_METHODS)
def test_supernet_forward_backward_for_every_method(method):
    torch.manual_seed(0)
    cfg = SearchConfig(space="darts", method=method, channels=8, cells=3).resolved()
    model = build_search_model(cfg, num_classes=3, gumbel_generator=torch.Generator().manual_seed(0))
    x, y = torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 2])
    logits = model(x)
    assert logits.shape == (3, 3)
    torch.nn.functional.cross_entropy(logits, y).backward()
    m = METHODS[method]
    expected = {"normal": (14, 8), "reduce": (14, 8)}
    if m.edge_norm:
        expected.update({name: (int(name[-1]),) for name in EDGE_NAMES})
    assert {name: tuple(p.shape) for name, p in model.arch.theta.items()} == expected
    for name, theta in model.arch.theta.items():
        assert theta.grad is not None and torch.isfinite(theta.grad).all(), name
        assert (theta.grad.abs().sum(-1) > 0).all(), f"every row of {name} gets a gradient"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.weight_parameters())
    genotype = model.genotype()
    assert isinstance(genotype, Genotype)
    assert_round_trips(genotype)


@pytest.mark.parametrize("method", ["darts", "gaea-pcdarts"])
def test_supernet_without_none(method):
    torch.manual_seed(0)
    cfg = SearchConfig(space="darts", method=method, channels=8, cells=3, exclude_none=True).resolved()
    model = build_search_model(cfg, num_classes=3)
    assert model.arch.theta["normal"].shape == (14, 7) and "none" not in model.ops
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.arch_parameters())
    assert_round_trips(model.genotype())


def test_hard_mixed_op_runs_only_the_sampled_op():
    torch.manual_seed(0)
    op = MixedOp(4, 1, OPS, affine=False)
    weights = torch.zeros(len(OPS)).index_fill_(0, torch.tensor([4]), 1.0).requires_grad_()
    out = op(torch.randn(2, 4, 6, 6), weights, index=4)  # sep_conv_3x3
    out.sum().backward()
    for k, candidate in enumerate(op.candidates):
        grads = [p.grad for p in candidate.parameters()]
        if k == 4:
            assert grads and all(g is not None for g in grads)
        else:
            assert all(g is None for g in grads)
    assert (weights.grad != 0).all(), "the other weights keep a gradient"


def test_soft_mixed_op_is_the_weighted_sum():
    torch.manual_seed(0)
    op = MixedOp(4, 2, OPS, affine=False).eval()
    x, w = torch.randn(2, 4, 8, 8), torch.softmax(torch.randn(len(OPS)), 0)
    expected = sum(w[k] * c(x) for k, c in enumerate(op.candidates))
    torch.testing.assert_close(op(x, w), expected)
    assert op(x, w).shape == (2, 4, 4, 4)
    pool = op.candidates[OPS.index("avg_pool_3x3")]
    assert isinstance(pool[-1], torch.nn.BatchNorm2d) and not pool[-1].affine  # pooling is followed by BN


# ---- partial channels -----------------------------------------------------------------------------

def test_channel_shuffle_is_a_permutation():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    y = torch.randn(2, 8, 3, 3)
    for groups in (1, 2, 4, 8):
        shuffled = channel_shuffle(y, groups)
        torch.testing.assert_close(channel_unshuffle(shuffled, groups), y)
        assert sorted(shuffled[0, :, 0, 0].tolist()) == sorted(y[0, :, 0, 0].tolist())
    cl = y.contiguous(memory_format=torch.channels_last)
    for groups in (2, 4):  # the channels_last path permutes the innermost dimension: same values, same layout
        torch.testing.assert_close(channel_shuffle(cl, groups), channel_shuffle(y, groups), rtol=0, atol=0)
        assert channel_shuffle(cl, groups).is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(channel_unshuffle(channel_shuffle(cl, groups), groups), cl, rtol=0, atol=0)
    with pytest.raises(ValueError):
        channel_shuffle(y, 3)


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channels_only_send_c_over_k_channels_through_the_ops(stride):
    torch.manual_seed(0)
    c, k = 8, 4
    edge = PartialChannels(MixedOp(c // k, stride, OPS, affine=False), c, k, stride).eval()
    full = MixedOp(c, stride, OPS, affine=False).eval()
    x, w = torch.randn(2, c, 8, 8), torch.softmax(torch.randn(len(OPS)), 0)
    out = edge(x, w)
    assert out.shape == full(x, w).shape == (2, c, 8 // stride, 8 // stride)
    sep = edge.edge.candidates[OPS.index("sep_conv_3x3")]
    assert sep[0][1].in_channels == c // k and sep[-1][2].out_channels == c // k  # depthwise in, pointwise out
    # The op output lands on channels 0, K, 2K, ...; the bypassed channels elsewhere.
    changed = x.clone()
    changed[:, c // k:] = torch.randn(2, c - c // k, 8, 8)
    out2 = edge(changed, w)
    op_pos = list(range(0, c, k))
    bypass_pos = [i for i in range(c) if i % k]
    torch.testing.assert_close(out2[:, op_pos], out[:, op_pos])
    assert not torch.allclose(out2[:, bypass_pos], out[:, bypass_pos])
    expected = changed[:, c // k:] if stride == 1 else torch.nn.functional.max_pool2d(changed[:, c // k:], 2)
    torch.testing.assert_close(channel_unshuffle(out2, k)[:, c // k:], expected)


def test_partial_channels_in_the_supernet():
    net = build_supernet(8, 3, 3, OPS, METHODS["pcdarts"])
    for cell in net.cells:
        c = cell.pre1[1].out_channels
        for (node, j), edge in zip(EDGES, cell.edges):
            assert isinstance(edge, PartialChannels) and edge.k == 4
            stride = 2 if cell.reduction and j < 2 else 1
            assert isinstance(edge.bypass, torch.nn.MaxPool2d) == (stride == 2)
            assert edge.edge.candidates[OPS.index("dil_conv_3x3")][1].in_channels == c // 4
    plain = build_supernet(8, 3, 3, OPS, METHODS["gaea-darts"])
    assert all(isinstance(e, MixedOp) for cell in plain.cells for e in cell.edges)


# ---- edge normalisation ---------------------------------------------------------------------------

def test_edge_weights_scale_each_nodes_incoming_edges():
    torch.manual_seed(0)
    cell = SearchCell(8, 8, 4, reduction=False, reduction_prev=False, ops=OPS, partial=4).eval()
    s0, s1, mixing = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6), uniform(len(OPS))
    plain = cell(s0, s1, mixing)
    ones = [torch.ones(n) for n in (2, 3, 4, 5)]
    torch.testing.assert_close(cell(s0, s1, mixing, ones), plain)
    doubled = ones[:3] + [torch.full((5,), 2.0)]  # node 5 is the last 4 channels and feeds no other node
    out = cell(s0, s1, mixing, doubled)
    torch.testing.assert_close(out[:, :12], plain[:, :12])
    torch.testing.assert_close(out[:, 12:], 2 * plain[:, 12:])
    only_first = [torch.eye(n)[0] for n in (2, 3, 4, 5)]  # every node takes only input 0
    cut = cell(s0, s1.clone().normal_(), mixing, only_first)
    torch.testing.assert_close(cut, cell(s0, s1, mixing, only_first))  # s1 no longer matters


# ---- layout ----------------------------------------------------------------------------------------

def test_layout_reductions_channels_and_edges():
    assert reduction_cells(8) == (2, 5) and reduction_cells(3) == (1, 2) and reduction_cells(20) == (6, 13)
    net = Supernet(channels=8, cells=8, num_classes=10)
    assert net.stem[0].out_channels == 24
    assert [cell.reduction for cell in net.cells] == [i in (2, 5) for i in range(8)]
    assert [cell.pre1[1].out_channels for cell in net.cells] == [8, 8, 16, 16, 16, 32, 32, 32]
    assert [isinstance(cell.pre0, FactorizedReduce) for cell in net.cells] == [i in (3, 6) for i in range(8)]
    assert all(isinstance(cell.pre0, ReLUConvBN) for i, cell in enumerate(net.cells) if i not in (3, 6))
    assert net.head[-1].in_features == 4 * 32
    assert EDGES[:5] == ((2, 0), (2, 1), (3, 0), (3, 1), (3, 2)) and len(EDGES) == 14
    for cell in net.cells:
        assert len(cell.edges) == 14
        for (node, j), edge in zip(EDGES, cell.edges):
            conv = edge.candidates[OPS.index("sep_conv_3x3")][0][1]
            assert conv.stride == ((2, 2) if cell.reduction and j < 2 else (1, 1))
            assert not edge.candidates[OPS.index("sep_conv_3x3")][0][3].affine  # search BN has no affine


def test_cell_output_shapes():
    net = Supernet(channels=4, cells=3, num_classes=3)
    shapes = []
    for cell in net.cells:
        cell.register_forward_hook(lambda mod, args, out: shapes.append(tuple(out.shape)))
    net(torch.randn(2, 3, 8, 8), {"normal": uniform(8), "reduce": uniform(8)})
    assert shapes == [(2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]


def test_per_example_methods_are_refused():
    refused = sorted(set(METHODS) - set(DARTS_METHODS))
    assert refused == ["xnas"]
    with pytest.raises(ConfigError, match="does not support"):
        SearchConfig(space="darts", method="xnas").resolved()


def test_number_of_architecture_tensors_per_method():
    for name, method in METHODS.items():
        shapes = arch_shapes(OPS, method)
        assert len(shapes) == (10 if method.edge_norm else 2), name
    assert arch_shapes(OPS[1:]) == {"normal": (14, 7), "reduce": (14, 7)}


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=8, cells=2), "--cells must be at least 3"),
    (dict(channels=6, cells=3, partial=4), "--channels must be divisible by 4"),
    (dict(channels=8, cells=3, ops=("none",)), "besides 'none'"),
    (dict(channels=8, cells=3, ops=("conv_7x1",)), "unknown DARTS operation"),
])
def test_supernet_rejects_bad_configurations(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Supernet(num_classes=3, **kwargs)


def test_space_is_registered_with_the_papers_defaults():
    space = SPACES["darts"]
    assert space.ops == OPS and space.parse_genotype == Genotype.parse
    assert space.defaults == {"channels": 16, "cells": 8, "objective": "bilevel", "epochs": 50,
                              "batch_size": 256, "lr": 0.1, "lr_min": 0.0, "lr_cycle": 50, "weight_decay": 3e-4,
                              "nesterov": False, "update_order": "arch-first"}
    cfg = SearchConfig(space="darts", method="gaea-pcdarts").resolved()
    assert (cfg.warmup_epochs, cfg.arch_lr, cfg.channels, cfg.cells) == (10, 0.1, 16, 8)
    cfg = SearchConfig(space="darts", method="pcdarts").resolved()
    assert (cfg.warmup_epochs, cfg.arch_lr, cfg.arch_weight_decay) == (15, 6e-4, 1e-3)
    assert METHODS["pcdarts"].update.betas == (0.5, 0.999)
    with pytest.raises(ConfigError, match="use --space darts"):
        build_search_model(SearchConfig(space="nb201", method="pcdarts", channels=4, cells=1).resolved(), 3)


# ---- discretisation --------------------------------------------------------------------------------

def cell_weights(ops, entries: dict[tuple[int, int], dict[str, float]], base: float = 0.01) -> torch.Tensor:
    """(14, k) weights: `base` everywhere, then entries[(node, input)][op] = value."""
    w = torch.full((len(EDGES), len(ops)), base)
    for edge, values in entries.items():
        for op, value in values.items():
            w[EDGES.index(edge), ops.index(op)] = value
    return w


NORMAL = {
    (2, 0): {"none": 0.9, "avg_pool_3x3": 0.05},     # none-dominated, but node 2 keeps both inputs
    (2, 1): {"sep_conv_3x3": 0.6},
    (3, 0): {"none": 0.9, "sep_conv_5x5": 0.06},     # would win if `none` counted
    (3, 1): {"skip_connect": 0.3},
    (3, 2): {"dil_conv_3x3": 0.2},
    (4, 3): {"dil_conv_5x5": 0.5}, (4, 0): {"max_pool_3x3": 0.4},
    (5, 4): {"sep_conv_3x3": 0.7}, (5, 2): {"skip_connect": 0.3},
}
REDUCE = {(2, 0): {"max_pool_3x3": 0.5}, (2, 1): {"max_pool_3x3": 0.6},
          (3, 2): {"skip_connect": 0.5}, (3, 1): {"max_pool_3x3": 0.4},
          (4, 0): {"avg_pool_3x3": 0.5}, (4, 3): {"sep_conv_5x5": 0.3},
          (5, 1): {"dil_conv_5x5": 0.9}, (5, 4): {"sep_conv_3x3": 0.2}}
EXPECTED_NORMAL = (("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 2),
                   ("dil_conv_5x5", 3), ("max_pool_3x3", 0), ("sep_conv_3x3", 4), ("skip_connect", 2))
EXPECTED_REDUCE = (("max_pool_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2), ("max_pool_3x3", 1),
                   ("avg_pool_3x3", 0), ("sep_conv_5x5", 3), ("dil_conv_5x5", 1), ("sep_conv_3x3", 4))


@pytest.mark.parametrize("ops", [OPS, OPS[1:]], ids=["with-none", "without-none"])
def test_discretise_keeps_the_two_strongest_non_none_edges(ops):
    normal = {e: {op: v for op, v in d.items() if op in ops} for e, d in NORMAL.items()}
    probs = {"normal": cell_weights(ops, normal), "reduce": cell_weights(ops, REDUCE)}
    genotype = discretise(probs, ops)
    assert genotype.normal == EXPECTED_NORMAL  # strongest first; none ignored in ranking and choice
    assert genotype.reduce == EXPECTED_REDUCE
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert_round_trips(genotype)


def test_edge_weights_change_which_edges_are_kept():
    probs = {"normal": cell_weights(OPS, NORMAL), "reduce": cell_weights(OPS, REDUCE)}
    probs.update({name: torch.full((int(name[-1]),), 1.0 / int(name[-1])) for name in EDGE_NAMES})
    assert discretise(probs, OPS).normal == EXPECTED_NORMAL  # equal betas change nothing
    probs["normal_edges3"] = torch.tensor([0.8, 0.1, 0.1])  # scores 0.048, 0.03, 0.02
    probs["reduce_edges5"] = torch.tensor([0.01, 0.01, 0.01, 0.01, 0.96])
    genotype = discretise(probs, OPS)
    assert genotype.normal[2:4] == (("sep_conv_5x5", 0), ("skip_connect", 1))
    assert genotype.normal[:2] == EXPECTED_NORMAL[:2] and genotype.normal[4:] == EXPECTED_NORMAL[4:]
    assert genotype.reduce[6:] == (("sep_conv_3x3", 4), ("dil_conv_5x5", 1))
    assert_round_trips(genotype)


# ---- search -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(make_image_folder(tmp_path_factory.mktemp("tiny")))


@pytest.mark.parametrize("method", ["pcdarts", "gaea-pcdarts"])
def test_one_epoch_search_on_the_darts_space(tmp_path, tiny_data, method):
    # channels_last (the default) with C=8: FactorizedReduce sees 2C/K = 4 channels on reduction edges, the case
    # where oneDNN's stride-2 1x1 backward used to crash (see ops.FactorizedReduce).
    cfg = SearchConfig(space="darts", method=method, data=tiny_data, channels=8, cells=3, epochs=1,
                       batch_size=6, warmup_epochs=0, seed=0)
    result = run_search(cfg, tmp_path / "run")
    genotype = Genotype.parse(result["genotype"])
    assert_round_trips(genotype)
    weights = result["arch_weights"]
    assert set(weights) == {"normal", "reduce", *EDGE_NAMES}
    if METHODS[method].parametrisation == "simplex":  # EG keeps every row on the simplex (a softmax always is)
        for name, rows in weights.items():
            torch.testing.assert_close(torch.tensor(rows).sum(-1), torch.ones(torch.tensor(rows).shape[:-1]))
        assert not torch.allclose(torch.tensor(weights["normal"]), torch.full((14, 8), 1 / 8)), "architecture learned"
    assert result["epochs"] == 1


# ---- the fused fast path ----------------------------------------------------------------------------

def _twins(meth) -> tuple[Supernet, Supernet]:
    """A small per-edge supernet for the method and an identical copy on the fused path."""
    import copy

    plain = Supernet(channels=8, cells=3, num_classes=3, partial=meth.partial_channels, edge_norm=meth.edge_norm,
                     fused=False)
    fused = copy.deepcopy(plain)
    for cell in fused.cells:
        cell.fused = True
    return plain, fused


@pytest.mark.parametrize("method", ["darts", "pcdarts"])
@pytest.mark.parametrize("train_mode", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_cells_match_the_per_edge_path(method, train_mode, channels_last):
    """Edges leaving a state computed together (grouped convs, stacked BN, one shuffle per node) give the
    per-edge path's outputs, gradients of weights and of every architecture tensor, and BN statistics."""
    from synth import assert_fast_path_matches

    torch.manual_seed(0)
    meth = METHODS[method]
    plain, fused = _twins(meth)
    x = torch.randn(4, 3, 8, 8)
    if channels_last:
        plain, fused = (m.to(memory_format=torch.channels_last) for m in (plain, fused))
        x = x.contiguous(memory_format=torch.channels_last)
    plain.train(train_mode)
    fused.train(train_mode)
    arch = {name: torch.softmax(torch.randn(shape), dim=-1) for name, shape in arch_shapes(OPS, meth).items()}
    assert_fast_path_matches(plain, fused, x, arch)


@pytest.mark.parametrize("method", ["gaea-darts", "gaea-pcdarts"])
def test_sparse_skipping_on_the_fused_path_matches_the_per_edge_path(method):
    """With weights below the threshold skipped, the fused cells give the per-edge path's outputs and gradients,
    and both equal the dense mixture with those weights set to 0."""
    from gaeanas.relax import sparse_mixing
    from synth import assert_fast_path_matches

    torch.manual_seed(0)
    meth = METHODS[method]
    plain, fused = _twins(meth)
    arch = {name: torch.softmax(3 * torch.randn(shape), dim=-1) for name, shape in arch_shapes(OPS, meth).items()}
    arch["normal"][3:, 1:] = 0.0  # every op but `none` off on these edges: a fully skipped edge
    x = torch.randn(4, 3, 8, 8)

    def sparse(v):
        return sparse_mixing(v, 0.1) if v.dim() == 2 else Mixing(v)

    dense = {k: Mixing(sparse(v).weights) for k, v in arch.items()}
    torch.testing.assert_close(plain(x, {k: sparse(v) for k, v in arch.items()}), plain(x, dense), atol=1e-6, rtol=1e-5)
    assert_fast_path_matches(plain, fused, x, arch, mixing=sparse, buffers=False)


def test_sparse_skip_needs_a_soft_mixture_and_a_threshold_below_1():
    with pytest.raises(ConfigError, match="--sparse-skip does not apply to method .gdas."):
        SearchConfig(space="darts", method="gdas", sparse_skip=0.01).resolved()
    with pytest.raises(ConfigError, match="--sparse-skip must be in"):
        SearchConfig(sparse_skip=1.5).resolved()


def test_random_genotypes_are_valid_seeded_and_cover_the_space():
    from gaeanas.errors import GenotypeError
    from gaeanas.spaces.darts_genotypes import load_genotype, random_genotype

    genotypes = [random_genotype(seed) for seed in range(200)]
    assert load_genotype("random:7") == genotypes[7] == random_genotype(7)
    assert len({g.to_json() for g in genotypes}) == 200
    for g in genotypes[:20]:
        g.validate()
        assert_round_trips(g)
    ops_seen, inputs_seen = set(), {node: set() for node in range(2, 6)}
    for g in genotypes:
        for cell in (g.normal, g.reduce):
            for node, (a, b) in zip(range(2, 6), zip(cell[::2], cell[1::2])):
                assert a[1] != b[1] and {a[1], b[1]} <= set(range(node))  # two distinct earlier inputs
                inputs_seen[node] |= {a[1], b[1]}
                ops_seen |= {a[0], b[0]}
    assert ops_seen == set(OPS) - {"none"}
    assert all(inputs_seen[node] == set(range(node)) for node in inputs_seen)
    with pytest.raises(GenotypeError, match="random:SEED"):
        load_genotype("random:x")


@pytest.mark.parametrize("method", ["darts", "pcdarts", "gdas"])
def test_supernet_keeps_channels_last_through_backward(method):
    """In a channels_last supernet, every BN backward gets its gradient in its input's layout: CPU batch norm
    falls to a kernel several times slower when the two differ (an NCHW `repeat`, slices, the concatenated
    outputs of per-edge factorized reduces and the pooling head's NCHW gradient once did it)."""
    from synth import batch_norm_layout_mismatches

    torch.manual_seed(0)
    meth = METHODS[method]
    net = build_supernet(8, 3, 3, OPS, meth).to(memory_format=torch.channels_last)
    weights = {name: torch.softmax(torch.randn(shape), dim=-1) for name, shape in arch_shapes(OPS, meth).items()}
    hard = isinstance(meth.relaxation, GumbelSampling)
    arch = {name: Mixing(w, w.argmax(-1).tolist() if hard and w.dim() == 2 else None) for name, w in weights.items()}
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    mismatches = batch_norm_layout_mismatches(net(x, arch).logsumexp(-1).sum())
    assert not mismatches, f"BN backward with (gradient, input) layouts {mismatches}"


# --------------------------------------------------------------------------- genotype inputs


def _printed_with_concat(concat: str) -> str:
    from gaeanas.spaces.darts_genotypes import DARTS_V2

    return str(DARTS_V2).replace("normal_concat=[2, 3, 4, 5]", f"normal_concat={concat}")


def test_genotype_text_accepts_small_ranges():
    from gaeanas.spaces.darts_genotypes import DARTS_V2, load_genotype

    assert load_genotype(_printed_with_concat("range(2, 6)")) == DARTS_V2
    assert load_genotype(_printed_with_concat("range(5, 1, -1)")).normal_concat == (5, 4, 3, 2)


@pytest.mark.parametrize("concat, match", [
    ("range(2, 10**12)", r"range\(2, 10 \*\* 12\): 10 \*\* 12 is not a plain value"),
    ("range(2, 1000000000000)", r"range\(2, 1000000000000\): range arguments must be node indices \(a cell has "
                                r"nodes 0\.\.5\)"),
    ("range(2.5, 6)", r"range\(2\.5, 6\): range arguments must be integers, got 2\.5"),
    ("range('a')", r"range\('a'\): range arguments must be integers, got 'a'"),
    ("range(True, 6)", r"range arguments must be integers, got True"),
    ("range(2, 6, 0)", r"range step must not be 0"),
    ("range()", r"want range\(start, stop\)"),
    ("range(2, 6, 1, 1)", r"want range\(start, stop\)"),
    ("range(stop=6)", r"want range\(start, stop\)"),
    ("range(-3, 2)", r"normal_concat must list nodes in 0\.\.5, got \[-3, -2, -1, 0, 1\]"),
    ("range(2, 7)", r"range\(2, 7\): range arguments must be node indices"),
    ("x", r"x is not a plain value"),
])
def test_genotype_text_with_bad_range_is_one_line_error(concat, match):
    from gaeanas.errors import GenotypeError
    from gaeanas.spaces.darts_genotypes import load_genotype

    with pytest.raises(GenotypeError, match=match) as err:
        load_genotype(_printed_with_concat(concat))
    assert "\n" not in str(err.value)


def test_genotype_text_that_is_too_long_or_too_deep():
    from gaeanas.errors import GenotypeError
    from gaeanas.spaces.darts_genotypes import Genotype

    with pytest.raises(GenotypeError, match="genotype text is 70,010 characters"):
        Genotype.parse("Genotype(" + "1" * 70_000 + ")")
    with pytest.raises(GenotypeError, match="malformed DARTS genotype: too many nested parentheses"):
        Genotype.parse("Genotype(normal=" + "[" * 300 + "]" * 300 + ")")
    with pytest.raises(GenotypeError, match="malformed DARTS genotype: cannot convert float infinity"):
        Genotype.parse('{"normal": [], "normal_concat": [Infinity], "reduce": [], "reduce_concat": []}')


def test_genotype_json_must_be_an_object():
    from gaeanas.errors import GenotypeError
    from gaeanas.spaces.darts_genotypes import Genotype

    with pytest.raises(GenotypeError, match=r"must be an object with fields \['normal', .*got list"):
        Genotype.from_dict([1, 2])  # type: ignore[arg-type]


def test_genotype_file_that_is_binary_empty_or_not_a_genotype(tmp_path):
    import gzip

    from gaeanas.errors import GenotypeError
    from gaeanas.spaces.darts_genotypes import DARTS_V2, load_genotype

    good = tmp_path / "good.txt"
    good.write_text(str(DARTS_V2) + "\n")
    assert load_genotype(good) == DARTS_V2
    gz = tmp_path / "g.json.gz"
    gz.write_bytes(gzip.compress(DARTS_V2.to_json().encode()))
    with pytest.raises(GenotypeError) as err:
        load_genotype(gz)
    assert str(err.value).startswith(f"{gz} is not a genotype file: it looks like gzip-compressed data; a genotype (--genotype) is")
    png = tmp_path / "cell.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    with pytest.raises(GenotypeError, match=r"cell\.png is not a genotype file: it looks like a PNG image"):
        load_genotype(png)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"Genotype(\xe9)")
    with pytest.raises(GenotypeError, match=r"latin\.txt is not a genotype file: it is not UTF-8 text"):
        load_genotype(latin)
    empty = tmp_path / "empty.json"
    empty.write_text(" \n")
    with pytest.raises(GenotypeError, match=r"empty\.json is empty"):
        load_genotype(empty)
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    with pytest.raises(GenotypeError, match=r"array\.json: not a DARTS genotype"):
        load_genotype(array)
    big = tmp_path / "big.txt"
    big.write_text("x" * 70_000)
    with pytest.raises(GenotypeError, match=r"big\.txt is .* KiB, too large to be a genotype file"):
        load_genotype(big)


def test_genotype_of_run_directory(tmp_path):
    from gaeanas.errors import GenotypeError
    from gaeanas.spaces.darts_genotypes import DARTS_V2, load_genotype

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(GenotypeError, match=r"run is a folder without result\.json"):
        load_genotype(run)
    result = run / "result.json"
    result.write_text(json.dumps({"genotype": str(DARTS_V2)}))
    assert load_genotype(run) == DARTS_V2
    result.write_text(json.dumps({"genotype": DARTS_V2.to_dict()}))
    assert load_genotype(run) == DARTS_V2
    for bad, match in (("[1, 2]", "holds no DARTS-space genotype"), ("{bad", "is not valid JSON"),
                       ('{"genotype": "|none~0|"}', "not a DARTS genotype"), ("", "is not valid JSON")):
        result.write_text(bad)
        with pytest.raises(GenotypeError, match=rf"result\.json:? {match}"):
            load_genotype(run)
    result.write_bytes(b"\x1f\x8b\x08\x00")
    with pytest.raises(GenotypeError, match=r"result\.json is not a run result \(JSON\): it looks like gzip"):
        load_genotype(run)
    with pytest.raises(GenotypeError, match=r"is not a published genotype \(DARTS_V2, PC_DARTS\)"):
        load_genotype(tmp_path / "nowhere.json")
