"""Cross-checks of one frame's image, depth and camera_info messages, before the network.

Each check either gives the intrinsics to use, raises :class:`~ssc_ros.conversions.MessageError`
with one kind (the frame is dropped), or returns warnings {kind: text} (the frame is used).
The numeric checks of K and the image size are ssc_core's (:mod:`ssc_core.frame_inputs`).
"""
import numpy as np
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from ssc_core.frame_inputs import check_image_size, check_intrinsics

from .conversions import MessageError

RESIZE_TOLERANCE = 1.0
"""Pixels of rounding allowed when an image is taken for a uniform resize of camera_info's size."""


def intrinsics_for_image(info: CameraInfo, image_size: tuple[int, int]) -> np.ndarray:
    """K (3, 3) for an (h, w) image from its camera_info.

    An image of another size than camera_info's is accepted when it is a uniform resize of it
    (image_proc's resize): K's rows are scaled as image_proc scales them. Raises MessageError:
    ``image_too_small``; ``camera_info_size`` (another size, not a resize); ``bad_camera_info``
    (K unset, not finite, degenerate or absurd for the image).
    """
    h, w = image_size
    try:
        check_image_size(image_size)
    except ValueError as e:
        raise MessageError('image_too_small', str(e)) from None
    K = np.asarray(info.k, np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or not K.any():
        raise MessageError('bad_camera_info', f'camera_info: K must be set and finite, got {K.tolist()}')
    if info.width and info.height and (info.width, info.height) != (w, h):
        sx, sy = w / info.width, h / info.height
        if abs(info.width * sy - w) > RESIZE_TOLERANCE or abs(info.height * sx - h) > RESIZE_TOLERANCE:
            raise MessageError('camera_info_size',
                               f'camera_info is for {info.width}x{info.height}, the image is {w}x{h}: '
                               'not a uniform resize; publish the camera_info of this image')
        K = K * np.array([[sx], [sy], [1.0]])
    try:
        check_intrinsics(K, image_size)
    except ValueError as e:
        raise MessageError('bad_camera_info', f'camera_info: {e}') from None
    return K


def frame_warnings(info: CameraInfo, image: Header, depth: Header) -> dict[str, str]:
    """Warnings about a usable frame: ``distorted_image`` (camera_info has distortion: the image
    must be rectified) and ``frame_id_mismatch`` (image, depth and camera_info frames differ)."""
    warnings = {}
    if np.any(np.asarray(info.d, np.float64) != 0):
        warnings['distorted_image'] = (
            f'camera_info has distortion {info.distortion_model or "?"} D={list(info.d)}: the network '
            'expects a rectified image; subscribe to the rectified topic (image_rect) and its camera_info')
    frames = {'image': image.frame_id, 'depth': depth.frame_id, 'camera_info': info.header.frame_id}
    named = {name: frame for name, frame in frames.items() if frame}
    if len(set(named.values())) > 1:
        listed = ', '.join(f'{name} {frame!r}' for name, frame in named.items())
        warnings['frame_id_mismatch'] = (f'frame ids differ: {listed}; depth and camera_info must '
                                         'belong to the image')
    return warnings
