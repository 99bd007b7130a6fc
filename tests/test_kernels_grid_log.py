"""The vectorisable logarithm of the grid kernels (mfpde.kernels.grid.log_simd / log_floor)
against the C library's (``np.log``): within 1 ulp over the whole positive range, subnormals
included, and the special values."""
import numpy as np

from mfpde.kernels.grid import log_floor


def _ulps(x):
    out = np.empty_like(x)
    log_floor(x, 0.0, out)
    ref = np.log(x)
    err = np.abs(out - ref)
    return np.where(ref == 0, err / np.spacing(1.0), err / np.spacing(np.abs(ref))), out, ref


def test_log_within_one_ulp_of_the_library():
    rng = np.random.default_rng(7)
    x = np.concatenate([
        np.exp(rng.uniform(-700.0, 709.0, 400_000)),          # every binade of the normals
        rng.uniform(0.5, 2.0, 200_000),                        # the reduction's boundaries
        1.0 + rng.uniform(-1e-7, 1e-7, 50_000),                # log near 0: relative accuracy
        np.exp(rng.uniform(-744.0, -708.5, 50_000)),           # subnormals
        [1.0, 2.0, 0.5, np.sqrt(2.0), np.sqrt(0.5), np.nextafter(np.sqrt(2.0), 0.0), 5e-324,
         2.2250738585072014e-308, np.nextafter(2.2250738585072014e-308, 0.0),
         1.7976931348623157e308]])
    ulp, out, ref = _ulps(x)
    assert ulp.max() <= 1.0, (ulp.max(), x[np.argmax(ulp)])
    assert np.mean(out == ref) > 0.95                          # mostly correctly rounded
    assert out[np.flatnonzero(x == 1.0)[0]] == 0.0


def test_log_special_values_and_floor():
    x = np.array([0.0, np.inf, np.nan, 1e-320, 3.0])
    out = np.empty_like(x)
    log_floor(x, 0.0, out)
    assert out[0] == -np.inf and out[1] == np.inf and np.isnan(out[2])
    log_floor(x, 1e-300, out)                                  # max(x, floor) first
    assert out[0] == out[3] == np.log(1e-300) and out[1] == np.inf
    assert abs(out[4] - np.log(3.0)) <= np.spacing(np.log(3.0))
    y = x.copy()
    log_floor(y, 1e-300, y)                                    # in place
    np.testing.assert_array_equal(y, out)
