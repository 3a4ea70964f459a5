"""CMamba: shapes, the CA-SSM fusion, gradients, and real-bitstream round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ssm_apps.codecs import codec
from ssm_apps.codecs.cmamba import (
    CASSMBlock,
    CMamba,
    checkerboard_mask,
    create_cmamba,
    deterministic_inference,
)
from ssm_apps.codecs.container import BitstreamError, pack, unpack


@pytest.fixture(scope="module")
def tiny() -> CMamba:
    torch.manual_seed(0)
    model = create_cmamba("tiny").eval()
    model.update(force=True)
    return model


def test_ca_ssm_block_fuses_both_branches():
    torch.manual_seed(0)
    block = CASSMBlock(8).eval()
    x = torch.randn(2, 8, 8, 12)
    with torch.no_grad():
        u = block.norm(x)
        alpha, beta = block.branch_weights(u)
        torch.testing.assert_close(alpha + beta, torch.ones_like(alpha))
        assert alpha.shape == (2, 8, 1, 1)
        assert not torch.allclose(alpha[0], alpha[1])  # content-adaptive: differs per image
        expected = x + block.fuse(alpha * block.ssm(u) + beta * (u + block.cnn(u)))
        torch.testing.assert_close(block(x), expected)
        # with alpha forced to 1 the CNN branch has no effect
        block.weight_mlp[-1].bias.data[:8] = 1e4
        out_a = block(x)
        block.cnn[0].weight.data.normal_()
        torch.testing.assert_close(block(x), out_a)


def test_forward_shapes_and_gradients():
    torch.manual_seed(0)
    model = create_cmamba("tiny")
    x = torch.rand(2, 3, 64, 128)
    out = model(x, quality=torch.tensor([1, 2]))
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, model.M, 4, 8)
    assert out["likelihoods"]["z"].shape == (2, model.N, 1, 2)
    assert all(((lik > 0) & (lik <= 1)).all() for lik in out["likelihoods"].values())
    loss = out["x_hat"].pow(2).mean() - sum(lik.log().mean() for lik in out["likelihoods"].values())
    loss.backward()
    for name in ("g_a.0.weight", "g_s.4.ssm.A_logs", "spatial_context.0.ssm.x_proj_weight", "lrp.4.0.weight", "gain"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert model.aux_loss().requires_grad


def test_quality_checks():
    model = create_cmamba("tiny")
    with pytest.raises(ValueError, match=r"one of \[1, 2\]; got \[3\]"):
        model(torch.rand(1, 3, 64, 64), quality=3)
    with pytest.raises(ValueError, match="'qualities' needs 2 increasing"):
        create_cmamba("tiny", qualities=[3, 3])


def test_fixed_rate_model_serves_its_preset_number():
    model = create_cmamba("tiny", num_qualities=1, lambdas=[0.0067], qualities=[3])
    assert model.quality_index(3, 2, torch.device("cpu")).tolist() == [0, 0]
    assert model.quality_index(None, 1, torch.device("cpu")).tolist() == [0]
    with pytest.raises(ValueError, match=r"one of \[3\]; got \[1\]"):
        model.quality_index(1, 1, torch.device("cpu"))
    model.eval().update(force=True)
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    result = codec.encode(model, image)  # default: the model's own quality
    assert unpack(result.data)[0].quality == 3
    np.testing.assert_array_equal(codec.decompress(result.data, model), result.reconstruction)
    with pytest.raises(ValueError, match="multiple of 'num_slices'"):
        CMamba(N=8, M=12, num_slices=5)


def test_checkerboard():
    mask = checkerboard_mask(3, 4, torch.device("cpu"))
    assert mask.tolist() == [[True, False, True, False], [False, True, False, True], [True, False, True, False]]


def test_gain_units_change_the_rate(tiny):
    x = torch.rand(1, 3, 64, 64)
    saved = tiny.gain.data.clone()
    with torch.no_grad():
        tiny.gain.data[0].fill_(0.3)
        tiny.gain.data[1].fill_(3.0)
        bits = [sum(-lik.log2().sum() for lik in tiny(x, q)["likelihoods"].values()) for q in (1, 2)]
    tiny.gain.data.copy_(saved)
    assert bits[0] < bits[1]


def test_compress_decompress_bit_exact(tiny):
    gen = np.random.default_rng(0)
    image = gen.integers(0, 256, (70, 45, 3), dtype=np.uint8)  # not a multiple of 64
    for quality in (1, 2):
        result = codec.encode(tiny, image, quality)
        decoded = codec.decompress(result.data, tiny)
        assert decoded.shape == (70, 45, 3) and decoded.dtype == np.uint8
        np.testing.assert_array_equal(decoded, result.reconstruction)
        with deterministic_inference(tiny):
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            x = torch.nn.functional.pad(x, (0, 19, 0, 58), mode="replicate")
            comp = tiny.compress(x, quality)
            again = tiny.decompress(comp["strings"], comp["shape"], quality)
        assert torch.equal(comp["y_hat"], again["y_hat"])


def test_colour_modes(tiny):
    gray = np.full((40, 50), 128, dtype=np.uint8)
    result = codec.encode(tiny, gray, 1)
    assert result.header.colour_mode == "gray"
    assert codec.decompress(result.data, tiny).shape == (40, 50, 3)
    rgba = np.zeros((40, 50, 4), dtype=np.uint8)
    with pytest.warns(UserWarning, match="alpha channel is dropped"):
        assert codec.encode(tiny, rgba, 1).header.colour_mode == "rgba"
    with pytest.raises(ValueError, match="uint8"):
        codec.encode(tiny, gray.astype(np.uint16), 1)


def test_decoder_drift_is_an_error_not_a_wrong_image(tiny):
    data = codec.compress(tiny, np.full((64, 64, 3), 90, dtype=np.uint8), 1)
    header, payloads = unpack(data)
    drifted = pack(dataclasses.replace(header, image_crc=header.image_crc ^ 1), payloads)  # a valid file otherwise
    with pytest.raises(BitstreamError, match="differs from the encoder's reconstruction"):
        codec.decompress(drifted, tiny)


def test_other_weights_and_training_mode_refused(tiny):
    data = codec.compress(tiny, np.zeros((64, 64, 3), dtype=np.uint8), 1)
    torch.manual_seed(1)
    other = create_cmamba("tiny").eval()
    other.update(force=True)
    with pytest.raises(BitstreamError, match="weights"):
        codec.decompress(data, other)
    other.train()
    with pytest.raises(ValueError, match="training mode"):
        codec.compress(other, np.zeros((64, 64, 3), dtype=np.uint8))
