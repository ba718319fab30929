"""Cross-checks of image, depth and camera_info (real sensor_msgs messages, no node)."""
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from ssc_ros.camera_checks import frame_warnings, intrinsics_for_image
from ssc_ros.conversions import MessageError

K = [700.0, 0, 620, 0, 700, 188, 0, 0, 1]


def info(k=K, width=1241, height=376, d=(), frame='camera'):
    return CameraInfo(header=Header(frame_id=frame), k=list(k), width=width, height=height, d=list(d))


def test_same_size_and_exact_resize():
    np.testing.assert_array_equal(intrinsics_for_image(info(), (376, 1241)), np.reshape(K, (3, 3)))
    np.testing.assert_array_equal(intrinsics_for_image(info(width=0, height=0), (376, 1241)),
                                  np.reshape(K, (3, 3)))  # size unset: K as is
    half = intrinsics_for_image(info(width=1240, height=376), (188, 620))  # image_proc resize 0.5
    np.testing.assert_allclose(half, [[350, 0, 310], [0, 350, 94], [0, 0, 1]])


@pytest.mark.parametrize('k, image_size, kind, message', [
    (K, (376, 1000), 'camera_info_size', 'camera_info is for 1241x376, the image is 1000x376: not a uniform'),
    (np.zeros(9), (376, 1241), 'bad_camera_info', 'K must be set and finite'),
    ([np.nan, *K[1:]], (376, 1241), 'bad_camera_info', 'K must be set and finite'),
    ([1e+300, *K[1:]], (376, 1241), 'bad_camera_info', 'focal lengths fx=1e.300'),
    ([1e-300, *K[1:]], (376, 1241), 'bad_camera_info', 'focal lengths fx=1e-300'),
    ([*K[:8], 0], (376, 1241), 'bad_camera_info', r'last row must be \(0, 0, 1\)'),
    (K, (1, 1), 'image_too_small', 'image: 1x1 is too small'),
])
def test_refused(k, image_size, kind, message):
    width = 1241 if image_size != (1, 1) else 0
    with pytest.raises(MessageError, match=message) as error:
        intrinsics_for_image(info(k, width=width, height=376 if width else 0), image_size)
    assert error.value.kind == kind


def test_warnings_for_usable_frames():
    camera = Header(frame_id='camera')
    assert frame_warnings(info(), camera, camera) == {}
    assert frame_warnings(info(d=(0.0,) * 5, frame=''), camera, camera) == {}
    distorted = frame_warnings(info(d=(-0.3, 0.1, 0, 0, 0)), camera, camera)
    assert list(distorted) == ['distorted_image'] and 'rectified' in distorted['distorted_image']
    mixed = frame_warnings(info(frame='camera_optical'), camera, Header(frame_id='depth'))
    assert list(mixed) == ['frame_id_mismatch']
    assert "image 'camera', depth 'depth', camera_info 'camera_optical'" in mixed['frame_id_mismatch']
