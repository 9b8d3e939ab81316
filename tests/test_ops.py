"""Candidate operations: shapes for every registered op; FactorizedReduce and the undilated depthwise conv
against their definitions."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaeanas.ops import (DARTS_OPS, NB201_OPS, DepthwiseConv2d, FactorizedReduce, depthwise_conv2d,
                         factorized_reduce_together)


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


def test_depthwise_module_keeps_conv2d_state_dict():
    conv = DepthwiseConv2d(6, 3, 1, 2, 2)
    plain = nn.Conv2d(6, 6, 3, 1, 2, dilation=2, groups=6, bias=False)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 6, 8, 8)
    torch.testing.assert_close(conv(x), plain(x), atol=1e-5, rtol=1e-5)
