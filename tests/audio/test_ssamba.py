"""SSAMBA against the official fixtures (<= 1e-4), the converter, masking and the presets."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from ssm_apps.audio import SSAMBA, cluster_mask, create_ssamba, resize_pos_embed
from ssm_apps.audio.ssamba import OFFICIAL_ENCODER_RULES, OFFICIAL_HEAD_RULES
from ssm_apps.convert import ConversionError, apply_rules, unwrap_checkpoint
from tests.helpers import load_fixture

TOL = 1e-4


@pytest.fixture(scope="module")
def pre() -> dict:
    return load_fixture("ssamba_pretrain_public.pt")


@pytest.fixture(scope="module")
def ft() -> dict:
    return load_fixture("ssamba_finetune_public.pt")


@pytest.fixture(scope="module")
def pre_model(pre: dict) -> SSAMBA:
    return SSAMBA.from_official(pre["kwargs"], pre["state_dict"]).eval()


@pytest.fixture(scope="module")
def ft_model(pre: dict, ft: dict) -> SSAMBA:
    """The fine-tuning model built from the *pretraining* checkpoint, as the official constructor."""
    return SSAMBA.from_official(ft["kwargs"], pre["state_dict"]).eval()


def _mask(index: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros(index.shape[0], n, dtype=torch.bool).scatter_(1, index, True)


def test_pretraining_losses_match_official(pre: dict, pre_model: SSAMBA) -> None:
    inp, out = pre["input"], pre["outputs"]
    with torch.no_grad():
        ours = pre_model.masked_losses(inp["fbank"], inp["mask_index_mpc"], inp["mask_index_mpg"])
        for name, index in (("mpc", inp["mask_index_mpc"]), ("mpg", inp["mask_index_mpg"])):
            tokens = pre_model.forward_features(inp["fbank"], mask=_mask(index, 64))
            assert (tokens - out[f"{name}_tokens"]).abs().max() <= TOL
    for key, ref in (("mpc_acc", "mpc_acc"), ("mpc_nce", "mpc_nce"), ("mpg_mse", "mpg_mse"), ("loss", "joint_loss")):
        assert abs(ours[key].item() - out[ref].item()) <= TOL, key
    assert ours["loss"].item() == pytest.approx(ours["mpc_nce"].item() + 10 * ours["mpg_mse"].item(), rel=1e-6)


def test_cluster_masking_reproduces_the_recorded_masks(pre: dict) -> None:
    """The official masks were drawn after random.seed(11), mpc pass then mpg pass, one per clip."""
    rng = random.Random(11)
    drawn = [cluster_mask(64, 40, 8, rng) for _ in range(4)]
    assert torch.equal(torch.stack(drawn[:2]), pre["input"]["mask_index_mpc"])
    assert torch.equal(torch.stack(drawn[2:]), pre["input"]["mask_index_mpg"])


def test_cluster_masks_are_clustered_blocks() -> None:
    rng = random.Random(0)
    for _ in range(20):
        idx = cluster_mask(512, 300, 64, rng)
        assert idx.numel() == 300 == idx.unique().numel() and idx.min() > 0 and idx.max() < 512
    with pytest.raises(ValueError, match="num_masked"):
        cluster_mask(64, 63, 8)


def test_finetune_converter_matches_official_state_dict(pre: dict, ft: dict, ft_model: SSAMBA) -> None:
    """Every encoder (``v.*``) tensor equals the official fine-tuning model's exactly; the head is new."""
    official = unwrap_checkpoint(ft["state_dict"])
    mapped, unmatched, _, dropped = apply_rules(official, OFFICIAL_ENCODER_RULES + OFFICIAL_HEAD_RULES)
    assert not unmatched and dropped == ["v.head.weight", "v.head.bias"]
    ours = ft_model.state_dict()
    encoder = [k for k in mapped if not k.startswith("head.")]
    assert len(encoder) == sum(1 for k in official if k.startswith("v.") and not k.startswith("v.head."))
    for key in encoder:
        assert torch.equal(ours[key], mapped[key]), key
    assert ours["pos_embed"].shape == (1, 145, 32) and ft_model.grid == (12, 12)
    assert set(ours) - set(mapped) == set()  # nothing left unconverted
    assert not torch.equal(ours["head.fc.weight"], mapped["head.fc.weight"])  # newly initialised


def test_finetune_outputs_match_official(ft: dict, ft_model: SSAMBA) -> None:
    official = unwrap_checkpoint(ft["state_dict"])
    ft_model.head.norm.load_state_dict({"weight": official["mlp_head.0.weight"], "bias": official["mlp_head.0.bias"]})
    ft_model.head.fc.load_state_dict({"weight": official["mlp_head.1.weight"], "bias": official["mlp_head.1.bias"]})
    x, out = ft["input"]["fbank"], ft["outputs"]
    with torch.no_grad():
        assert (ft_model(x, pooling="mean") - out["logits_ft_avgtok"]).abs().max() <= TOL
        assert (ft_model(x, pooling="cls") - out["logits_ft_cls"]).abs().max() <= TOL
        assert (ft_model.forward_features(x) - out["tokens"]).abs().max() <= TOL
        first = ft_model.forward_features(x, double_norm=False)
        assert (first - out["tokens_after_first_norm_f"]).abs().max() <= TOL


def test_finetune_checkpoint_loads_directly(ft: dict) -> None:
    model = SSAMBA.from_official(ft["kwargs"], ft["state_dict"]).eval()
    with torch.no_grad():
        assert (model(ft["input"]["fbank"]) - ft["outputs"]["logits_ft_avgtok"]).abs().max() <= TOL


def test_parameter_count_equals_official(pre: dict, pre_model: SSAMBA) -> None:
    """Ours = the official tensors minus VisionMamba's unused 1000-way head and the two int64 scalars."""
    official = unwrap_checkpoint(pre["state_dict"])
    unused = official["v.head.weight"].numel() + official["v.head.bias"].numel() + 2
    assert sum(p.numel() for p in pre_model.parameters()) == sum(v.numel() for v in official.values()) - unused


def test_unsupported_official_settings_are_refused(pre: dict) -> None:
    kwargs = {**pre["kwargs"], "vision_mamba_config": {**pre["kwargs"]["vision_mamba_config"], "if_devide_out": False}}
    with pytest.raises(ConversionError, match="if_devide_out"):
        SSAMBA.from_official(kwargs, pre["state_dict"])
    bad = dict(pre["state_dict"])
    del bad["module.v.norm_f.bias"]
    with pytest.raises(ConversionError, match="norm_f.bias"):
        SSAMBA.from_official(pre["kwargs"], bad)


def test_resize_pos_embed_rules() -> None:
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 8 * 6, 4)
    assert torch.equal(resize_pos_embed(pos, (8, 6), (8, 6)), pos)
    cropped = resize_pos_embed(pos, (8, 6), (8, 2))  # time centre crop: columns 2, 3
    grid = pos[:, 1:].reshape(1, 8, 6, 4)
    assert torch.equal(cropped[:, 1:].reshape(1, 8, 2, 4), grid[:, :, 2:4])
    grown = resize_pos_embed(pos, (8, 6), (12, 9))
    oracle = F.interpolate(grid.permute(0, 3, 1, 2), size=(8, 9), mode="bilinear")
    oracle = F.interpolate(oracle, size=(12, 9), mode="bilinear").flatten(2).transpose(1, 2)
    assert torch.allclose(grown[:, 1:], oracle) and torch.equal(grown[:, :1], pos[:, :1])


def test_input_shape_is_checked() -> None:
    model = SSAMBA(num_classes=3, embed_dim=16, depth=2, input_tdim=32, patch_stride=16)
    with pytest.raises(ValueError, match="input_tdim=32"):
        model(torch.zeros(1, 40, 128))


def test_masked_losses_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = SSAMBA(embed_dim=16, depth=2, input_tdim=64, patch_stride=16, pretrain_heads=True, num_masked=10)
    losses = model.masked_losses(torch.randn(2, 64, 128), rng=random.Random(0))
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert 0.0 <= losses["mpc_acc"].item() <= 1.0


@pytest.mark.parametrize("name,params", [("ssamba_tiny", 6_858_659), ("ssamba_small", 25_218_851),
                                         ("ssamba_base", 96_443_939)])
def test_preset_parameter_counts(name: str, params: int) -> None:
    """Fine-tuning models (35 classes, 128 frames, stride 10) as the Speech Commands recipe."""
    with torch.device("meta"):
        model = create_ssamba(name, num_classes=35, input_tdim=128, patch_stride=10)
    assert sum(p.numel() for p in model.parameters()) == params
