"""Depth from stereo: disparity → metres, and a rectified stereo pair → depth with OpenCV's
semi-global matching (SGBM).

SGBM is a stand-in for the depth the authors used (MobileStereoNet, a learned stereo network):
coarser and with more holes, for cameras and bags that carry a stereo pair but no depth.
"""
import cv2
import numpy as np


def projection_baseline(p_left, p_right) -> float:
    """Baseline (m) of a rectified pair from its (3, 4) projection matrices: (P_left[0, 3] -
    P_right[0, 3]) / fx (ROS's and KITTI's convention, ``P_right[0, 3] = -fx B`` for the left at 0);
    NaN when fx is not positive. The right camera is this far along the left camera's x axis."""
    p_left, p_right = np.asarray(p_left, np.float64), np.asarray(p_right, np.float64)
    fx = p_right[0, 0]
    return float((p_left[0, 3] - p_right[0, 3]) / fx) if fx > 0 else float('nan')


def disparity_to_depth(disparity: np.ndarray, focal: float, baseline: float,
                       min_disparity: float = 0.0, max_disparity: float = np.inf) -> np.ndarray:
    """(H, W) disparity in pixels → (H, W) float32 depth in metres, Z = focal · baseline / d.

    Disparities not finite, ≤ 0 or outside [min_disparity, max_disparity] become NaN (no depth).
    focal: pixels; baseline: metres.
    """
    if not (np.isfinite(focal) and np.isfinite(baseline) and focal > 0 and baseline > 0):
        raise ValueError(f'disparity: focal length f={focal} and baseline t={baseline} must be positive')
    disparity = np.asarray(disparity, np.float32)
    valid = (np.isfinite(disparity) & (disparity > 0) & (disparity >= min_disparity)
             & (disparity <= max_disparity))
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(valid, np.float32(focal * baseline) / disparity, np.nan).astype(np.float32)


def sgbm_disparity(left: np.ndarray, right: np.ndarray, max_disparity: int = 128,
                   block_size: int = 5) -> np.ndarray:
    """Rectified (H, W, 3) RGB or (H, W) grey uint8 pair → (H, W) float32 disparity of the left
    image in pixels; NaN where SGBM finds no match. max_disparity: searched range (rounded up to 16)."""
    grey = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.ndim == 3 else x for x in (left, right)]
    if grey[0].shape != grey[1].shape:
        raise ValueError(f'stereo: left {grey[0].shape} and right {grey[1].shape} images differ in size')
    num = int(np.ceil(max_disparity / 16)) * 16
    matcher = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num, blockSize=block_size,
                                    P1=8 * block_size ** 2, P2=32 * block_size ** 2,
                                    uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                    mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    fixed = matcher.compute(grey[0], grey[1])  # int16, 4 fractional bits; < 0: no match
    return np.where(fixed > 0, fixed.astype(np.float32) / 16.0, np.nan).astype(np.float32)


def stereo_depth(left: np.ndarray, right: np.ndarray, focal: float, baseline: float,
                 max_disparity: int = 128) -> np.ndarray:
    """Rectified stereo pair → (H, W) float32 depth in metres registered to the left image."""
    return disparity_to_depth(sgbm_disparity(left, right, max_disparity), focal, baseline)
