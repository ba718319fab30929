"""Fitting camera images of any size to the network: the authors' crop for KITTI-sized frames,
uniform scaling with K scaled otherwise, and the fraction of the grid in view."""
import numpy as np
import pytest
import torch

from ssc_core.frame_inputs import apply_fit, normalize_image, plan_fit, project_grids, view_report
from ssc_core.predictor import Predictor
from ssc_core.presets import SEMANTIC_KITTI, SMALL

from small_model import SMALL_PRESET, small_frame

KITTI_K = np.array(SEMANTIC_KITTI.cam_K)
CAMERAS = {  # (h, w) and intrinsics of a ~55-70 degree colour camera at three sizes, and KITTI
    '640x480': ((480, 640), np.array([[615.0, 0, 320], [0, 615, 240], [0, 0, 1]])),
    '1280x720': ((720, 1280), np.array([[920.0, 0, 640], [0, 920, 360], [0, 0, 1]])),
    '1920x1080': ((1080, 1920), np.array([[1380.0, 0, 960], [0, 1380, 540], [0, 0, 1]])),
    'KITTI 1241x376': ((376, 1241), KITTI_K),
}


def view(preset, size, K, policy):
    pose = np.array(preset.cam_from_grid)
    fit = plan_fit(size, K, pose, preset, policy)
    return fit, view_report(fit, project_grids(preset, fit.K, pose)[1], size, K, pose, preset)


def test_kitti_sized_frames_keep_the_authors_crop_bit_for_bit():
    rng = np.random.default_rng(0)
    for h, w in ((376, 1241), (375, 1242), (370, 1226)):
        fit, report = view(SEMANTIC_KITTI, (h, w), KITTI_K, 'auto')
        assert fit.policy == 'crop' and fit.box == (0, 0, 1220, 370) and fit.size == (370, 1220)
        np.testing.assert_array_equal(fit.K, KITTI_K)
        image = normalize_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        depth = rng.uniform(1, 80, (h, w)).astype(np.float32)
        fitted, fitted_depth = apply_fit(image, depth, fit, (370, 1220))
        np.testing.assert_array_equal(fitted, image[:, :370, :1220])
        np.testing.assert_array_equal(fitted_depth, depth[:370, :1220])
        assert report.fraction_in_view > 0.99 * report.camera_fraction


@pytest.mark.parametrize('camera', list(CAMERAS))
def test_any_camera_keeps_the_view_of_the_grid(camera):
    size, K = CAMERAS[camera]
    fit, fitted = view(SMALL, size, K, 'auto')
    _, cropped = view(SMALL, size, K, 'crop')
    assert fit.policy == 'scale'
    assert fitted.camera_fraction > 0.45  # these cameras see half the grid or more
    assert fitted.fraction_in_view >= 0.99 * fitted.camera_fraction, fitted
    assert cropped.fraction_in_view < 0.05 and cropped.small and not fitted.small
    assert max(fit.size[0] / SMALL.image_shape[0], fit.size[1] / SMALL.image_shape[1]) == 1.0


def test_640x480_on_the_kitti_preset_keeps_its_bottom_rows():
    size, K = CAMERAS['640x480']
    fit, fitted = view(SEMANTIC_KITTI, size, K, 'auto')
    crop, cropped = view(SEMANTIC_KITTI, size, K, 'crop')
    assert crop.box == (0, 0, 640, 370)  # the authors' rule drops rows 370..479
    assert fit.box[1] == 0 and fit.box[3] == 480 and fit.size[0] == 370
    assert fitted.fraction_in_view >= 0.99 * fitted.camera_fraction
    assert fitted.fraction_in_view > cropped.fraction_in_view


def test_scaled_intrinsics_follow_the_pixels():
    size, K = CAMERAS['1280x720']
    fit, _ = view(SMALL, size, K, 'scale')
    x0, y0, x1, y1 = fit.box
    sx, sy = fit.size[1] / (x1 - x0), fit.size[0] / (y1 - y0)
    points = np.array([[-3.0, 1.0, 12.0], [5.0, -0.5, 30.0], [0.2, 0.3, 4.0]]).T
    src, dst = K @ points, fit.K @ points
    src, dst = src[:2] / src[2], dst[:2] / dst[2]
    np.testing.assert_allclose(dst[0], (src[0] - x0 + 0.5) * sx - 0.5)
    np.testing.assert_allclose(dst[1], (src[1] - y0 + 0.5) * sy - 0.5)
    # the image moves the same way: each fitted pixel holds the source column and row it shows
    v, u = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    _, columns = apply_fit(np.zeros((3, *size), np.float32), u, fit, SMALL.image_shape)
    _, rows = apply_fit(np.zeros((3, *size), np.float32), v, fit, SMALL.image_shape)
    fv, fu = np.mgrid[0:fit.size[0], 0:fit.size[1]]
    assert np.abs(columns[:fit.size[0], :fit.size[1]] - ((fu + 0.5) / sx - 0.5 + x0)).max() <= 0.5 / sx + 0.5
    assert np.abs(rows[:fit.size[0], :fit.size[1]] - ((fv + 0.5) / sy - 0.5 + y0)).max() <= 0.5 / sy + 0.5
    assert np.isnan(columns[fit.size[0]:]).all() and np.isnan(columns[:, fit.size[1]:]).all()


def test_predictor_fits_reports_and_warns():
    torch.manual_seed(0)
    model = SMALL_PRESET.model.build()
    image, depth, K, pose = small_frame(1)
    big = np.repeat(np.repeat(image, 4, 0), 4, 1)  # the same view at 4x the resolution
    big_depth = np.repeat(np.repeat(depth, 4, 0), 4, 1)
    big_K = K * np.array([[4], [4], [1]])
    big_K[:2, 2] += 1.5  # pixel centres: (u + 0.5) * 4 - 0.5
    fitted = Predictor(model, SMALL_PRESET).predict(big, big_depth, big_K, pose)
    native = Predictor(model, SMALL_PRESET).predict(image, depth, K, pose)
    assert fitted.view.policy == 'scale' and 'small_view' not in fitted.warnings
    assert fitted.view.fraction_in_view == pytest.approx(native.view.fraction_in_view, abs=2e-3)
    assert (fitted.labels == native.labels).mean() > 0.9
    cropped = Predictor(model, SMALL_PRESET, fit='crop').predict(big, big_depth, big_K, pose)
    assert 'small_view' in cropped.warnings and cropped.view.fraction_in_view < 0.2
    assert 'fit crop' in cropped.warnings['small_view']
    with pytest.raises(ValueError, match="fit: expected one of auto, crop, scale, got 'stretch'"):
        Predictor(model, SMALL_PRESET, fit='stretch')
