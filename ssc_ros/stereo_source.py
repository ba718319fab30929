"""Depth for bags that carry a rectified stereo pair but no depth: left + right images (and their
camera_info) → a 32FC1 depth image stamped as the left image, by ``ssc_core.stereo.stereo_depth``
(OpenCV SGBM, a stand-in for the authors' MobileStereoNet depth).

Focal length: the left camera_info's projection ``P[0]`` (the rectified camera), ``K[0]`` when P is
unset. Baseline: ``(P_left[0,3] - P_right[0,3]) / fx_right`` — ROS's ``P_right[0,3] = -fx·B`` with
``P_left[0,3] = 0``, and KITTI's P2/P3 alike — or given.
"""
import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from ssc_core.stereo import projection_baseline, stereo_depth

from .conversions import depth_image_msg, image_to_rgb

STEREO_SLOP_NS = 10_000_000
"""Left and right images at most this far apart (ns) form a pair (synchronised stereo cameras)."""
PENDING = 4
"""Unpaired images kept per side."""


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def focal_length(info: CameraInfo) -> float:
    """Rectified focal length in pixels: P[0] when set, else K[0]."""
    return float(info.p[0]) if info.p[0] > 0 else float(info.k[0])


def stereo_baseline(left: CameraInfo, right: CameraInfo) -> float:
    """Baseline in metres from the two projection matrices; ValueError when it is not positive."""
    baseline = projection_baseline(np.reshape(left.p, (3, 4)), np.reshape(right.p, (3, 4)))
    if not baseline > 0:
        raise ValueError(f'stereo: baseline from camera_info P: (P_left[0,3] {left.p[3]:g} - '
                         f'P_right[0,3] {right.p[3]:g}) / fx {right.p[0]:g} = {baseline:g} m, expected > 0 '
                         '(give --baseline)')
    return baseline


class StereoDepthSource:
    """Feed it the bag's left/right images and camera_info; it returns depth images when pairs match.

    baseline: metres, or None to read it from the camera_info pair. max_disparity: pixels searched.
    """

    def __init__(self, baseline: float | None = None, max_disparity: int = 128):
        if baseline is not None and not baseline > 0:
            raise ValueError(f'stereo: --baseline {baseline:g} m, expected > 0')
        self.baseline = baseline
        self.max_disparity = max_disparity
        self.info = {'camera_info': None, 'right_camera_info': None}
        self.pending = {'image': [], 'right': []}

    def add(self, role: str, msg) -> list[Image]:
        """role: image, right, camera_info or right_camera_info. Returns the depth images now ready."""
        if role in self.info:
            self.info[role] = msg
        else:
            self.pending[role] = (self.pending[role] + [msg])[-PENDING:]
        return self._ready()

    def _ready(self) -> list[Image]:
        left_info = self.info['camera_info']
        if left_info is None or (self.baseline is None and self.info['right_camera_info'] is None):
            return []
        out = []
        for left in list(self.pending['image']):
            right = min(self.pending['right'], default=None,
                        key=lambda r: abs(_stamp_ns(r) - _stamp_ns(left)))
            if right is None or abs(_stamp_ns(right) - _stamp_ns(left)) > STEREO_SLOP_NS:
                continue
            self.pending['image'].remove(left)
            self.pending['right'].remove(right)
            baseline = self.baseline or stereo_baseline(left_info, self.info['right_camera_info'])
            depth = stereo_depth(image_to_rgb(left), image_to_rgb(right), focal_length(left_info),
                                 baseline, self.max_disparity)
            out.append(depth_image_msg(depth, left.header))
        return out
