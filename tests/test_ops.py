"""Candidate operations: shapes for every registered op, and FactorizedReduce against its definition."""
import pytest
import torch
import torch.nn.functional as F

from gaeanas.ops import DARTS_OPS, NB201_OPS, FactorizedReduce


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
