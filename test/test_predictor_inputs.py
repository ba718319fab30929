"""The predictor's input handling: sizes, missing depth, clear errors (small config)."""
import numpy as np
import pytest
import torch

from ssc_core.predictor import Predictor

from small_model import SMALL_PRESET, small_frame


@pytest.fixture(scope='module')
def predictor():
    torch.manual_seed(0)
    return Predictor(SMALL_PRESET.model.build(), SMALL_PRESET)


def test_larger_image_is_cropped_at_bottom_right(predictor):
    image, depth, K, pose = small_frame(3)
    big_image = np.pad(image, ((0, 10), (0, 30), (0, 0)), constant_values=255)
    big_depth = np.pad(depth, ((0, 10), (0, 30)), constant_values=1.0)
    a = predictor.prepare([image], [depth], [K], [pose])
    b = predictor.prepare([big_image], [big_depth], [K], [pose])
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_smaller_image_is_padded_with_no_depth(predictor):
    image, depth, K, pose = small_frame(4)
    inputs = predictor.prepare([image[:50, :180]], [depth[:50, :180]], [K], [pose])
    assert inputs['img'].shape[-2:] == SMALL_PRESET.image_shape
    assert torch.isnan(inputs['depth'][0, 50:]).all() and torch.isnan(inputs['depth'][0, :, 180:]).all()
    assert (inputs['img'][0, :, 50:] == 0).all()
    labels = predictor.predict(image[:50, :180], depth[:50, :180], K, pose).labels
    assert labels.shape == SMALL_PRESET.model.scene_shape


def test_invalid_depth_pixels_count_as_no_depth(predictor):
    image, depth, K, pose = small_frame(5)
    ref = depth.copy()
    ref[:20] = 0.0
    reference = predictor.logits(predictor.prepare([image], [ref], [K], [pose]))
    for bad in (np.nan, np.inf, -np.inf, -3.0):
        holes = depth.copy()
        holes[:20] = bad
        logits = predictor.logits(predictor.prepare([image], [holes], [K], [pose]))
        assert torch.isfinite(logits).all()
        torch.testing.assert_close(logits, reference, rtol=0, atol=0)
    full = predictor.logits(predictor.prepare([image], [depth], [K], [pose]))
    assert not torch.equal(full, reference)


@pytest.mark.parametrize('case, message', [
    ('image_shape', r'image: expected \(H, W, 3\) RGB or \(H, W\) grey, got shape \(64, 200, 4\)'),
    ('image_nan', 'image: contains NaN or inf'),
    ('image_dtype', 'image: expected uint8 or float pixels, got int64'),
    ('depth_size', r'depth: size \(60, 200\) differs from image size \(64, 200\)'),
    ('depth_ndim', r'depth: expected \(H, W\) numbers in metres, got shape \(64, 200, 1\)'),
    ('K_shape', r'K: expected shape \(3, 3\), got \(3, 4\)'),
    ('K_nan', 'K: contains NaN or inf'),
    ('K_focal', 'K: focal lengths must be positive'),
    ('pose_row', r'T_cam_from_grid: last row must be \(0, 0, 0, 1\)'),
])
def test_bad_input_is_named(predictor, case, message):
    image, depth, K, pose = small_frame(6)
    if case == 'image_shape':
        image = np.zeros((64, 200, 4), np.uint8)
    elif case == 'image_nan':
        image = image.astype(np.float32) / 255
        image[3, 4, 1] = np.nan
    elif case == 'image_dtype':
        image = image.astype(np.int64)
    elif case == 'depth_size':
        depth = depth[:60]
    elif case == 'depth_ndim':
        depth = depth[..., None]
    elif case == 'K_shape':
        K = np.zeros((3, 4))
    elif case == 'K_nan':
        K = K.copy()
        K[0, 2] = np.nan
    elif case == 'K_focal':
        K = K.copy()
        K[0, 0] = 0
    elif case == 'pose_row':
        pose = pose.copy()
        pose[3, 0] = 1
    with pytest.raises(ValueError, match=message):
        predictor.predict(image, depth, K, pose)


def test_grey_and_float_images(predictor):
    image, depth, K, pose = small_frame(7)
    as_float = predictor.prepare([image.astype(np.float32) / 255], [depth], [K], [pose])['img']
    as_uint8 = predictor.prepare([image], [depth], [K], [pose])['img']
    torch.testing.assert_close(as_float, as_uint8)
    grey = predictor.prepare([image[..., 0]], [depth], [K], [pose])['img'][0]
    torch.testing.assert_close(grey[0] * 0.229 + 0.485, grey[1] * 0.224 + 0.456)
