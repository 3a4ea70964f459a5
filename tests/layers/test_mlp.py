"""BlockedMlp: the cache-blocked CPU inference path against timm's Mlp (the plain path) on the same weights."""
import pytest
import torch
from timm.layers import Mlp
from torch import nn

from ssm_apps.layers import BlockedMlp


def _oracle(blocked: BlockedMlp) -> Mlp:
    """timm's Mlp with the blocked module's weights (channel-last)."""
    ref = Mlp(blocked.fc1.in_features, blocked.fc1.out_features, act_layer=nn.GELU).double().eval()
    with torch.no_grad():
        for mine, theirs in ((blocked.fc1, ref.fc1), (blocked.fc2, ref.fc2)):
            theirs.weight.copy_(mine.weight.reshape(theirs.weight.shape))
            theirs.bias.copy_(mine.bias)
    return ref


@pytest.mark.parametrize("channel_first", [False, True])
def test_blocked_path_equals_timm_mlp(channel_first):
    torch.manual_seed(0)
    mlp = BlockedMlp(24, 96, channel_first=channel_first, chunk_rows=37, min_hidden_bytes=0).eval()
    ref = _oracle(mlp)
    x = torch.randn(3, 11, 13, 24)  # 429 pixels: blocks of 37 with a partial last one
    inp = x.permute(0, 3, 1, 2) if channel_first else x  # channel-first: channels-last memory, as after LayerNorm2d
    with torch.no_grad():
        assert mlp._use_blocks(inp) and mlp._rows(inp) is not None
        got = mlp(inp)
    expected = ref(x.double())
    got_last = got.permute(0, 2, 3, 1) if channel_first else got
    assert got.shape == inp.shape
    torch.testing.assert_close(got_last.double(), expected, rtol=1e-5, atol=1e-5)


def test_plain_path_where_blocks_do_not_apply():
    mlp = BlockedMlp(8, 32, chunk_rows=4, min_hidden_bytes=0)
    x = torch.randn(2, 5, 8, requires_grad=True)
    assert not mlp._use_blocks(x)  # autograd needs the plain path
    with torch.no_grad():
        assert BlockedMlp(8, 32, min_hidden_bytes=10**9).eval()._use_blocks(x) is False  # small input
    cf = BlockedMlp(8, 32, channel_first=True, min_hidden_bytes=0).eval()
    assert cf._rows(torch.randn(2, 8, 3, 3)) is None  # contiguous NCHW: no copy-free row view, plain path
    with torch.no_grad():
        y = cf(torch.randn(2, 8, 3, 3))
    assert y.shape == (2, 8, 3, 3)
