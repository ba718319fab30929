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


@pytest.fixture(scope='module')
def cropping(predictor):
    """The same network, fitting images by the authors' crop."""
    return Predictor(predictor.backend, SMALL_PRESET, fit='crop')


def test_larger_image_is_cropped_at_bottom_right(cropping):
    predictor = cropping
    image, depth, K, pose = small_frame(3)
    big_image = np.pad(image, ((0, 10), (0, 30), (0, 0)), constant_values=255)
    big_depth = np.pad(depth, ((0, 10), (0, 30)), constant_values=1.0)
    a = predictor.prepare([image], [depth], [K], [pose])
    b = predictor.prepare([big_image], [big_depth], [K], [pose])
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_smaller_image_is_padded_with_no_depth(cropping):
    predictor = cropping
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
    ('pose_row', r'cam_from_grid: last row must be \(0, 0, 0, 1\)'),
    ('pose_scaled', r'cam_from_grid: its 3x3 part is not a rotation \(RᵀR − I up to 0.0201.*, det 1.03'),
    ('pose_mirrored', r'cam_from_grid: its 3x3 part is not a rotation \(RᵀR − I up to .*, det -1'),
    ('pose_vanishing', r'cam_from_grid: its 3x3 part is not a rotation \(RᵀR − I up to 1, det 0'),
    ('K_huge', 'K: focal lengths fx=1e.300, fy=.* are implausible for a 200x64 image'),
    ('K_tiny', 'K: focal lengths fx=1e-300'),
    ('K_last_row', r'K: last row must be \(0, 0, 1\), got \[0.0, 0.0, 0.0\]'),
    ('K_aspect', 'pixels far from square'),
    ('K_centre', r'principal point \(5000, .*\) is far outside the 200x64 image'),
    ('image_tiny', r'image: 1x1 is too small \(each side must be >= 32 pixels\)'),
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
    elif case.startswith('pose_'):
        pose = pose.copy()
        pose[:3, :3] *= {'pose_scaled': 1.01, 'pose_vanishing': 5e-324}.get(case, 1.0)
        if case == 'pose_mirrored':
            pose[:3, 0] *= -1
    elif case.startswith('K_'):
        K = K.copy()
        index, value = {'K_huge': ((0, 0), 1e300), 'K_tiny': ((0, 0), 1e-300), 'K_last_row': ((2, 2), 0),
                        'K_aspect': ((1, 1), K[0, 0] * 10), 'K_centre': ((0, 2), 5000)}[case]
        K[index] = value
    elif case == 'image_tiny':
        image, depth = image[:1, :1], depth[:1, :1]
    with pytest.raises(ValueError, match=message):
        predictor.predict(image, depth, K, pose)


def test_grey_and_float_images(predictor):
    image, depth, K, pose = small_frame(7)
    as_float = predictor.prepare([image.astype(np.float32) / 255], [depth], [K], [pose])['img']
    as_uint8 = predictor.prepare([image], [depth], [K], [pose])['img']
    torch.testing.assert_close(as_float, as_uint8)
    grey = predictor.prepare([image[..., 0]], [depth], [K], [pose])['img'][0]
    torch.testing.assert_close(grey[0] * 0.229 + 0.485, grey[1] * 0.224 + 0.456)


@pytest.mark.parametrize('fill', [np.nan, 0.0, -2.0, np.inf])
def test_frame_without_depth_runs_and_warns(predictor, fill):
    image, depth, K, pose = small_frame(6)
    pred = predictor.predict(image, np.full_like(depth, fill), K, pose)
    assert pred.labels.shape == SMALL_PRESET.model.scene_shape
    assert list(pred.warnings) == ['no_depth_in_grid']
    assert predictor.predict(image, depth, K, pose).warnings == {}


def test_depth_outside_the_grid_warns(predictor):
    image, depth, K, pose = small_frame(7)
    behind_the_grid = np.full_like(depth, 120.0)  # metres, beyond the 51.2 m grid
    pred = predictor.predict(image, behind_the_grid, K, pose)
    assert 'no_depth_in_grid' in pred.warnings and 'valid pixels' in pred.warnings['no_depth_in_grid']
    millimetres = depth * 1000.0
    warnings = predictor.predict(image, millimetres, K, pose).warnings
    assert set(warnings) == {'depth_in_millimetres', 'no_depth_in_grid'}
    assert 'looks like millimetres' in warnings['depth_in_millimetres']


def test_depth_count_matches_the_network_proposals(predictor):
    from ssc_core.frame_inputs import count_depth_in_grid
    decoder = predictor.backend.model.decoder
    image, depth, K, pose = small_frame(8)
    depth[:, :100] = 70.0  # the left half beyond the grid
    inputs = predictor.prepare([image], [depth], [K], [pose])
    with torch.no_grad():
        vol_pts, has_depth = decoder.depth_to_voxels(inputs['depth'], inputs['cam_K'], inputs['cam_pose'],
                                                     inputs['voxel_origin'])
    bounds = torch.tensor(decoder.scene_shape)
    network = int((((vol_pts >= 0) & (vol_pts < bounds)).all(-1) & has_depth).sum())
    fitted = inputs['depth'][0].numpy()
    ours = count_depth_in_grid(fitted, np.isfinite(fitted) & (fitted > 0), K, pose, SMALL_PRESET)
    assert 0 < network < depth.size
    assert abs(ours - network) <= network * 1e-3


def test_batch_mixing_frames_with_and_without_depth(predictor):
    image, depth, K, pose = small_frame(9)
    no_depth = np.full_like(depth, np.nan)
    with_depth = predictor.logits(predictor.prepare([image], [depth], [K], [pose]))
    without = predictor.logits(predictor.prepare([image], [no_depth], [K], [pose]))
    assert not torch.allclose(with_depth, without, atol=1e-3)
    for order in ((depth, no_depth), (no_depth, depth)):
        batched = predictor.logits(predictor.prepare([image, image], list(order), [K, K], [pose, pose]))
        for i, d in enumerate(order):
            single = with_depth if d is depth else without
            torch.testing.assert_close(batched[i:i + 1], single, atol=2e-5, rtol=1e-5)
    preds = predictor.predict_batch([image, image], [depth, no_depth], [K, K], [pose, pose])
    assert preds[0].warnings == {} and list(preds[1].warnings) == ['no_depth_in_grid']


def test_weights_that_compute_nan_give_no_labels(non_finite_checkpoint):
    """Weights that load but compute NaN logits: the predictor returns no labels for such
    frames (they would say "empty" nearly everywhere)."""
    from ssc_core.predictor import NonFiniteOutput
    predictor = Predictor.from_checkpoint(non_finite_checkpoint)
    image, depth = small_frame(1)[:2]
    preset = predictor.preset
    K, pose = np.array(preset.cam_K), np.array(preset.cam_from_grid)
    with pytest.raises(NonFiniteOutput, match=r'NaN or inf logits for frame 0, 1 of 2') as error:
        predictor.predict_batch([image, image], [depth, depth], [K, K], [pose, pose])
    assert error.value.kind == 'non_finite_output'
