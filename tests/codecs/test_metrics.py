"""Metrics against independent oracles: PSNR from numpy, MS-SSIM from pytorch_msssim, BD-rate on
curves with a known answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as oracle_ms_ssim

from ssm_apps.codecs.metrics import bd_rate, bpp_from_likelihoods, ms_ssim, psnr


def test_psnr_matches_numpy():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 20, 30, generator=gen), torch.rand(2, 3, 20, 30, generator=gen)
    expected = [10 * np.log10(1 / np.mean((a.numpy() - b.numpy()) ** 2)) for a, b in zip(x, y)]
    np.testing.assert_allclose(psnr(x, y).numpy(), expected, rtol=1e-5)


def test_ms_ssim_matches_pytorch_msssim():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 192, 200, generator=gen)
    y = (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    ours = ms_ssim(x, y)
    oracle = oracle_ms_ssim(x, y, data_range=1.0, size_average=False)
    torch.testing.assert_close(ours, oracle, atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="161"):
        ms_ssim(x[..., :100, :100], y[..., :100, :100])


def test_bd_rate_known_answers():
    rate = np.array([0.2, 0.4, 0.8, 1.6])
    quality = np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate(rate, quality, rate, quality) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(rate, quality, rate * 0.5, quality) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(rate, quality, rate * 1.2, quality) == pytest.approx(20.0, abs=1e-6)
    with pytest.raises(ValueError, match="overlap"):
        bd_rate(rate, quality, rate, quality + 20)
    with pytest.raises(ValueError, match=">= 4"):
        bd_rate(rate[:3], quality[:3], rate, quality)


def test_bpp_from_likelihoods():
    lik = {"y": torch.full((2, 4, 2, 2), 0.5), "z": torch.full((2, 1, 1, 1), 0.25)}
    torch.testing.assert_close(bpp_from_likelihoods(lik, 8), torch.tensor([18 / 8, 18 / 8]))
