"""Candidate operations: shapes for every registered op; FactorizedReduce and the undilated depthwise conv
against their definitions; every op's fused kernel against its blocks one by one."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaeanas.kernels import AvgPool3x3, avg_pool3x3, depthwise_conv2d, factorized_reduce_together, fused_kernel
from gaeanas.ops import DARTS_FUSED, DARTS_OPS, NB201_FUSED, NB201_OPS, DepthwiseConv2d, FactorizedReduce
from gaeanas.spaces.darts import MixedOp as DartsMixedOp


@pytest.mark.parametrize("name", sorted(DARTS_OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_darts_ops_keep_channels_and_apply_stride(name, stride):
    x = torch.randn(2, 8, 10, 10)
    out = DARTS_OPS[name](8, stride, False)(x)
    assert out.shape == (2, 8, 10 // stride, 10 // stride)


@pytest.mark.parametrize("name", sorted(NB201_OPS))
def test_nb201_ops_keep_shape(name):
    x = torch.randn(2, 4, 8, 8)
    assert NB201_OPS[name](4, 4, 1, False)(x).shape == x.shape


@pytest.mark.parametrize("channels_last", [False, True])
def test_factorized_reduce_is_two_offset_stride2_convs(channels_last):
    torch.manual_seed(0)
    op = FactorizedReduce(4, 6, affine=False)
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = op(x.contiguous(memory_format=fmt))
    r = torch.relu(x)
    a = F.conv2d(r, op.conv_a.weight, stride=2)
    b = F.conv2d(r[:, :, 1:, 1:], op.conv_b.weight, stride=2)
    expected = F.batch_norm(torch.cat([a, b], 1), None, None, training=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    out.sum().backward()  # channels_last with < 8 channels: must not crash
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("channels_last", [False, True])
def test_factorized_reduces_together_match_each_one(size, channels_last):
    """Outputs, input and weight gradients, and BN running statistics equal those of the blocks one by one."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    blocks = [FactorizedReduce(4, 6, affine=True) for _ in range(3)]
    twins = [FactorizedReduce(4, 6, affine=True) for _ in range(3)]
    for b, t in zip(blocks, twins):
        t.load_state_dict(b.state_dict())
    x = torch.randn(3, 4, size, size).contiguous(memory_format=fmt).requires_grad_()
    x_twin = x.detach().clone().requires_grad_()
    out = factorized_reduce_together(x, blocks)
    expected = torch.cat([t(x_twin) for t in twins], dim=1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert out.is_contiguous(memory_format=fmt)
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_twin.grad, atol=1e-5, rtol=1e-4)
    for b, t in zip(blocks, twins):
        for p, q in zip(b.parameters(), t.parameters()):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(b.bn.running_var, t.bn.running_var)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])  # 7: not divisible by the dilation, the plain conv runs
@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise_conv_matches_dilated_conv_in_values_and_gradients(kernel, dilation, stride, size, channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 4, size, size).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(4, 1, kernel, kernel, requires_grad=True)
    padding = dilation * (kernel - 1) // 2
    ref = F.conv2d(x, w, None, stride, padding, dilation, groups=4)
    out = depthwise_conv2d(x, w, stride, padding, dilation)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(ref)
    want = torch.autograd.grad(ref, (x, w), grad)
    got = torch.autograd.grad(out, (x, w), grad)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7, 1])
@pytest.mark.parametrize("channels_last", [False, True])
def test_avg_pool3x3_is_avg_pool_without_padding_in_values_and_gradients(stride, size, channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 5, size, size + 2).contiguous(memory_format=fmt).requires_grad_()
    ref = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    out = avg_pool3x3(x, stride)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    grad = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(ref, x, grad)[0],
                               atol=1e-6, rtol=1e-5)


def test_avg_pool3x3_keeps_the_autocast_dtype_and_has_no_state():
    x = torch.randn(2, 4, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert avg_pool3x3(x).dtype == F.conv2d(x, torch.ones(4, 1, 3, 3), padding=1, groups=4).dtype
    assert AvgPool3x3(2).state_dict() == {} and not list(AvgPool3x3().parameters())


def test_depthwise_module_keeps_conv2d_state_dict():
    conv = DepthwiseConv2d(6, 3, 1, 2, 2)
    plain = nn.Conv2d(6, 6, 3, 1, 2, dilation=2, groups=6, bias=False)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 6, 8, 8)
    torch.testing.assert_close(conv(x), plain(x), atol=1e-5, rtol=1e-5)


# ---- fused kernels: the name -> kernel tables against the blocks one by one --------------------------

def _assert_fused_matches_each_block(fused, blocks: list[nn.Module], x: torch.Tensor, per_example: bool = False
                                     ) -> None:
    """fused(x, blocks, scale) -> per-edge outputs equal scale[e] * block e on x: values, gradients of x, of the
    scale (the mixing weights) and of every parameter, BN running statistics. The blocks are compared with deep
    copies run one by one. per_example: a weight per edge and example, (E, B, 1, 1, 1), as XNAS' clipping uses."""
    twins = [copy.deepcopy(b) for b in blocks]
    x, x_twin = x.clone().requires_grad_(), x.clone().requires_grad_()
    scale = torch.tensor([0.7, -0.2, 1.3][:len(blocks)])
    if per_example:
        scale = scale.view(-1, 1, 1, 1, 1) * torch.linspace(0.5, 1.5, len(x)).view(1, -1, 1, 1, 1)
    scale.requires_grad_()
    scale_twin = scale.detach().clone().requires_grad_()
    outs, expected = fused(x, blocks, scale), [w * t(x_twin) for w, t in zip(scale_twin, twins)]
    assert len(outs) == len(expected)
    for out, want in zip(outs, expected):
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-4)
    grads = [torch.randn_like(want) for want in expected]
    torch.autograd.backward(list(outs), grads)
    torch.autograd.backward(expected, grads)
    torch.testing.assert_close(x.grad, x_twin.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(scale.grad, scale_twin.grad, atol=1e-4, rtol=1e-4)
    for b, t in zip(blocks, twins):
        for p, q in zip(b.parameters(), t.parameters()):  # batch sums: grouped and plain convs add in other
            torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4)  # orders (2.9e-5 apart on an AMD EPYC)
        for p, q in zip(b.buffers(), t.buffers()):
            torch.testing.assert_close(p, q)


@pytest.mark.parametrize("name", sorted(set(DARTS_OPS) - {"none"}))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("affine,per_example", [(True, False), (False, False), (False, True)])
def test_every_darts_op_has_a_fused_kernel_equal_to_its_edges_one_by_one(name, stride, affine, per_example):
    """The kernel of DARTS_FUSED on 3 edges' blocks (as the search cell builds them) is their stacked outputs, each
    times its edge's mixing weight (folded into BN where the op ends in one)."""
    assert name in DARTS_FUSED, f"DARTS op {name!r} has no fused kernel in DARTS_FUSED"
    torch.manual_seed(0)
    blocks = [DartsMixedOp._build(name, 4, stride, affine=affine) for _ in range(3)]

    def fused(x, blocks, scale):
        return DARTS_FUSED[name](x, blocks, {}, scale).chunk(len(blocks), dim=1)

    _assert_fused_matches_each_block(fused, blocks, torch.randn(2, 4, 8, 8), per_example)


@pytest.mark.parametrize("name", sorted(set(NB201_OPS) - {"none"}))
@pytest.mark.parametrize("affine,per_example", [(True, False), (False, False), (False, True)])
def test_every_nb201_op_has_a_fused_kernel_equal_to_its_edges_one_by_one(name, affine, per_example):
    """The kernel of NB201_FUSED on 3 edges' blocks gives each block's output times its edge's mixing weight."""
    assert name in NB201_FUSED, f"NAS-Bench-201 op {name!r} has no fused kernel in NB201_FUSED"
    torch.manual_seed(0)
    blocks = [NB201_OPS[name](4, 4, 1, affine) for _ in range(3)]
    _assert_fused_matches_each_block(lambda x, b, s: NB201_FUSED[name](x, b, {}, s), blocks, torch.randn(2, 4, 8, 8),
                                     per_example)


def test_none_has_no_fused_kernel_and_an_unknown_op_names_itself():
    """`none` is skipped by the cells, so it has no kernel; a lookup without a kernel names the op."""
    assert "none" not in DARTS_FUSED and "none" not in NB201_FUSED
    with pytest.raises(NotImplementedError, match="'my_op' has no fused kernel"):
        fused_kernel(DARTS_FUSED, "my_op")
