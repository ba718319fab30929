"""Depth from disparity and from a rectified stereo pair (OpenCV SGBM)."""
import cv2
import numpy as np
import pytest

from ssc_core.stereo import disparity_to_depth, sgbm_disparity, stereo_depth


def textured_pair(disparities, height=120, width=320, seed=0):
    """A left image of random texture and the right image a rectified camera sees when the column
    band [u0, u1) of the left image lies at disparity d: right[:, u - d] = left[:, u]."""
    rng = np.random.default_rng(seed)
    left = cv2.GaussianBlur(rng.integers(0, 256, (height, width), dtype=np.uint8), (3, 3), 0)
    right = np.zeros_like(left)
    for (u0, u1), d in disparities:
        right[:, u0 - d:u1 - d] = left[:, u0:u1]
    return np.repeat(left[..., None], 3, 2), np.repeat(right[..., None], 3, 2)


def test_disparity_to_depth():
    d = np.array([[35.0, 70.0, 0.0, -1.0, np.nan, 300.0]], np.float32)
    depth = disparity_to_depth(d, 700.0, 0.5, 1.0, 256.0)
    np.testing.assert_allclose(depth, [[10.0, 5.0, np.nan, np.nan, np.nan, np.nan]], rtol=1e-6)
    with pytest.raises(ValueError, match='baseline t=-0.5 must be positive'):
        disparity_to_depth(d, 700.0, -0.5)


def test_sgbm_recovers_two_planes():
    left, right = textured_pair([((64, 200), 16), ((200, 320), 40)])
    disparity = sgbm_disparity(left, right, max_disparity=64)
    near, far = disparity[10:-10, 215:310], disparity[10:-10, 80:185]
    for band, d in ((far, 16), (near, 40)):
        valid = np.isfinite(band)
        assert valid.mean() > 0.8
        assert np.mean(np.abs(band[valid] - d) <= 1.0) > 0.95
    depth = stereo_depth(left, right, focal=700.0, baseline=0.5, max_disparity=64)
    assert np.nanmedian(depth[10:-10, 80:185]) == pytest.approx(700 * 0.5 / 16, rel=0.03)
    with pytest.raises(ValueError, match='differ in size'):
        sgbm_disparity(left, right[:, :100])
