"""The vectorisable exp2 and softplus of the numba kernels against float64 numpy."""
from __future__ import annotations

import numpy as np

from ssm_apps.kernels.scan.numba_cpu import LOG2E, exp2_rows, sigmoid_rows, softplus_rows


def _rows(n):
    return np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.int32)


def test_exp2_rows_is_exp_to_float32_accuracy_with_zero_inf_and_nan_at_the_ends():
    x = np.concatenate([np.linspace(-87, 88, 200_001), [-200.0, -1e30, 200.0, np.inf, -np.inf, np.nan]])
    x = x.astype(np.float32)
    v = (x.astype(np.float64) * LOG2E).astype(np.float32)
    _, p, e = _rows(len(x))
    exp2_rows(v, p, e, len(x))
    got = p.astype(np.float64) * e.view(np.float32)
    ref = np.exp(x.astype(np.float64))
    core = slice(0, 200_001)
    rel = np.abs(got[core] - ref[core]) / ref[core]
    assert rel.max() < 1e-5  # the float32 rounding of x * log2(e) for |x| up to 88: 2**-24 * |x| at most
    near = np.abs(x[core]) <= 1  # where that rounding is small, the polynomial's own error shows
    assert rel[near].max() < 5e-7
    assert list(got[200_001:200_006]) == [0.0, 0.0, np.inf, np.inf, 0.0] and np.isnan(got[-1])


def test_softplus_rows_matches_log1p_exp_relatively_also_for_tiny_values_and_gives_its_slope():
    x = np.concatenate([np.linspace(-80, 40, 100_001), [0.0, -1e-8, 1e-8, np.nan]]).astype(np.float32)
    v, p, e = _rows(len(x))
    out, sig = np.empty_like(x), np.empty_like(x)
    softplus_rows(x, out, sig, v, p, e, len(x))
    ref_sig = 1 / (1 + np.exp(-x[:-1].astype(np.float64)))
    np.testing.assert_allclose(sig[:-1], ref_sig, rtol=1e-5, atol=0)
    with np.errstate(invalid="ignore"):
        ref = np.logaddexp(0.0, x.astype(np.float64))
    ok = ~np.isnan(ref)
    rel = np.abs(out[ok] - ref[ok]) / ref[ok]
    assert rel.max() < 1e-5  # exp's argument rounding (see above) for very negative x, where softplus ~ exp
    near = np.abs(x[ok]) <= 2
    assert rel[near].max() < 5e-7
    assert np.isnan(out[-1])


def test_sigmoid_rows():
    x = np.concatenate([np.linspace(-100, 100, 100_001), [np.inf, -np.inf]]).astype(np.float32)
    v, p, e = _rows(len(x))
    sig = np.empty_like(x)
    sigmoid_rows(x, sig, v, p, e, len(x))
    with np.errstate(over="ignore"):
        ref = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(sig, ref, rtol=1e-5, atol=1.2e-38)  # 0 where exp(-x) overflows (x < -88)
