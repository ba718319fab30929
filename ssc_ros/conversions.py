"""sensor_msgs ↔ numpy, and predictions → output messages. No numerics beyond packing.

cv_bridge and sensor_msgs_py are not needed: the conversions below give the same results, with
cv_bridge's meaning of each encoding (OpenCV does the colour conversions, as in cv_bridge).
"""
import io

import cv2
import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose
from nav_msgs.msg import MapMetaData, OccupancyGrid
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ssc_core.geometry import quaternion_from_pose, transform_points
from ssc_core.labels import IGNORE_LABEL, class_colors
from ssc_core.outputs import bird_eye_occupancy, occupied_indices, packed_rgb, voxel_centres
from ssc_core.stereo import disparity_to_depth

from .serialized import serialize

COLOR_ENCODINGS = {  # encoding: (channels, bytes per channel, OpenCV conversion to RGB or None)
    'rgb8': (3, 1, None), 'bgr8': (3, 1, cv2.COLOR_BGR2RGB),
    'rgba8': (4, 1, cv2.COLOR_RGBA2RGB), 'bgra8': (4, 1, cv2.COLOR_BGRA2RGB),
    'mono8': (1, 1, cv2.COLOR_GRAY2RGB), 'mono16': (1, 2, cv2.COLOR_GRAY2RGB),
    'rgb16': (3, 2, None), 'bgr16': (3, 2, cv2.COLOR_BGR2RGB),
    'rgba16': (4, 2, cv2.COLOR_RGBA2RGB), 'bgra16': (4, 2, cv2.COLOR_BGRA2RGB),
    # OpenCV names a Bayer pattern by its second row: ROS's bayer_rggb8 is OpenCV's BayerBG
    'bayer_rggb8': (1, 1, cv2.COLOR_BayerBG2RGB), 'bayer_bggr8': (1, 1, cv2.COLOR_BayerRG2RGB),
    'bayer_gbrg8': (1, 1, cv2.COLOR_BayerGR2RGB), 'bayer_grbg8': (1, 1, cv2.COLOR_BayerGB2RGB),
    'yuv422': (2, 1, cv2.COLOR_YUV2RGB_UYVY), 'uyvy': (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    'yuv422_yuy2': (2, 1, cv2.COLOR_YUV2RGB_YUY2), 'yuyv': (2, 1, cv2.COLOR_YUV2RGB_YUY2),
}
MAX_DECODED_PIXELS = 50_000_000
"""Largest compressed image decoded (pixels, read from its header first): 8K is 33 MP."""
DEPTH_ENCODINGS = {'32FC1': np.dtype('<f4'), '16UC1': np.dtype('<u2')}


class MessageError(ValueError):
    """A message that cannot be used; the text names the field, expected and actual values.

    ``kind`` groups errors for counting and log throttling (encoding, truncated, size, ...).
    """

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind


def _pixels(msg: Image, channels: int, dtype: np.dtype) -> np.ndarray:
    row = msg.width * channels * dtype.itemsize
    if msg.height == 0 or msg.width == 0:
        raise MessageError('size', f'{msg.encoding} image: empty ({msg.width}x{msg.height})')
    if msg.step < row:
        raise MessageError('truncated',
                           f'{msg.encoding} image: step {msg.step} < width*bytes per pixel {row}')
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray, memoryview))
                         else msg.data, np.uint8)
    if data.size < msg.step * msg.height:
        raise MessageError('truncated', f'{msg.encoding} image: data has {data.size} bytes, expected '
                           f'step*height = {msg.step * msg.height} (truncated)')
    rows = data[:msg.step * msg.height].reshape(msg.height, msg.step)[:, :row]
    dt = dtype.newbyteorder('>' if msg.is_bigendian else '<')
    return rows.copy().view(dt).reshape(msg.height, msg.width, channels)


def image_to_rgb(msg: Image) -> np.ndarray:
    """Any encoding of :data:`COLOR_ENCODINGS` → (H, W, 3) uint8 RGB, as cv_bridge's
    ``imgmsg_to_cv2(msg, 'rgb8')``: 16-bit values scaled by 255/65535, Bayer demosaiced
    (bilinear), YUV 4:2:2 (UYVY, YUY2) converted with BT.601."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise MessageError('encoding', f'image encoding {msg.encoding!r} not supported; expected one of '
                           f'{", ".join(COLOR_ENCODINGS)}')
    channels, size, code = COLOR_ENCODINGS[msg.encoding]
    pixels = _pixels(msg, channels, np.dtype(f'u{size}'))
    return _to_rgb8(pixels[..., 0] if channels == 1 else pixels, code)


def _to_rgb8(pixels: np.ndarray, code: int | None) -> np.ndarray:
    """(H, W[, C]) uint8/uint16 pixels → (H, W, 3) uint8 RGB: 16 bits scaled to 8 as cv_bridge
    does (x * 255 / 65535, rounded), then OpenCV's conversion ``code`` (None: already RGB)."""
    if pixels.dtype.itemsize == 2:  # uint16 of either byte order
        pixels = np.rint(pixels * (255.0 / 65535.0)).astype(np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(pixels, code) if code is not None else pixels)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """JPEG/PNG CompressedImage (8 or 16 bits, grey, colour or with alpha) → (H, W, 3) uint8 RGB.

    The size is read from the header first: images over :data:`MAX_DECODED_PIXELS` are refused
    (``image_too_large``) before any pixel is decoded.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError
    data = bytes(msg.data)
    try:
        with PILImage.open(io.BytesIO(data)) as header:  # reads the header only
            width, height = header.size
    except PILImage.DecompressionBombError as e:
        raise MessageError('image_too_large', f'compressed image ({msg.format!r}): {e}') from None
    except (UnidentifiedImageError, OSError) as e:
        raise MessageError('decode', f'compressed image ({msg.format!r}): cannot decode ({e})') from None
    if width * height > MAX_DECODED_PIXELS:
        raise MessageError('image_too_large', f'compressed image ({msg.format!r}): {width}x{height} is over '
                           f'{MAX_DECODED_PIXELS:,} pixels; not decoded')
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise MessageError('decode',
                           f'compressed image ({msg.format!r}): cannot decode its {width}x{height} pixels')
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    code = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}[channels]
    return _to_rgb8(pixels, code)


def depth_to_metres(msg: Image) -> np.ndarray:
    """32FC1 metres or 16UC1 millimetres → (H, W) float32 metres; 0 and invalid → NaN."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise MessageError('encoding', f'depth encoding {msg.encoding!r} not supported; expected 32FC1 (m) '
                           'or 16UC1 (mm)')
    depth = _pixels(msg, 1, DEPTH_ENCODINGS[msg.encoding])[..., 0]
    if msg.encoding == '16UC1':
        depth = np.where(depth == 0, np.nan, depth.astype(np.float32) / 1000.0)
    return depth.astype(np.float32)


def disparity_to_metres(msg) -> np.ndarray:
    """stereo_msgs/DisparityImage → (H, W) float32 depth in metres, Z = f·T / d.

    Disparities that are not finite, ≤ 0 or outside [min_disparity, max_disparity] (where
    stereo_image_proc puts invalid matches) become NaN ("no depth").
    """
    if msg.image.encoding != '32FC1':
        raise MessageError('encoding', f'disparity image encoding {msg.image.encoding!r} not supported; '
                           'expected 32FC1 (pixels)')
    disparity = _pixels(msg.image, 1, np.dtype('<f4'))[..., 0]
    limits = (msg.min_disparity, msg.max_disparity) if msg.max_disparity > msg.min_disparity else ()
    try:
        return disparity_to_depth(disparity, msg.f, msg.t, *limits)
    except ValueError as e:
        raise MessageError('bad_disparity', str(e)) from None


def rgb_image_msg(image: np.ndarray, header: Header) -> Image:
    """(H, W, 3) uint8 → rgb8 Image."""
    return Image(header=header, height=image.shape[0], width=image.shape[1], encoding='rgb8',
                 is_bigendian=0, step=image.shape[1] * 3, data=np.ascontiguousarray(image).tobytes())


def depth_image_msg(depth: np.ndarray, header: Header) -> Image:
    """(H, W) float32 metres → 32FC1 Image."""
    return Image(header=header, height=depth.shape[0], width=depth.shape[1], encoding='32FC1',
                 is_bigendian=0, step=depth.shape[1] * 4,
                 data=np.ascontiguousarray(depth, '<f4').tobytes())


CLOUD_FIELDS = [PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=1),
                PointField(name='y', offset=4, datatype=PointField.FLOAT32, count=1),
                PointField(name='z', offset=8, datatype=PointField.FLOAT32, count=1),
                PointField(name='rgb', offset=12, datatype=PointField.FLOAT32, count=1),
                PointField(name='label', offset=16, datatype=PointField.UINT8, count=1)]
CLOUD_DTYPE = np.dtype({'names': ['x', 'y', 'z', 'rgb', 'label'],
                        'formats': ['<f4', '<f4', '<f4', '<f4', 'u1'],
                        'offsets': [0, 4, 8, 12, 16], 'itemsize': 20})
"""One point of ``voxels``: 17 bytes of fields and 3 padding bytes, always zero."""


class OutputMessages:
    """Label grids → output messages, serialized (``bytes`` for ``Publisher.publish``;
    :func:`rclpy.serialization.deserialize_message` reads them back).

    A grid's voxel (0, 0, 0) has its corner at ``origin`` in the grid's frame, which lies at
    ``pose`` (4, 4; None: identity) in the messages' frame: the node's grids at ``grid_pose`` in
    ``grid_frame``, the map's box at the identity in ``map_frame``. Arrays go into the messages as
    numpy buffers (:func:`ssc_ros.serialized.serialize`), never as a Python object per point;
    padding bytes are zero, so a grid always gives the same bytes.
    """

    def __init__(self, class_names, voxel_size: float, origin, pose=None):
        self.class_names = list(class_names)
        self.voxel_size = float(voxel_size)
        self.origin = np.asarray(origin, np.float64)
        self.pose = None if pose is None else np.asarray(pose, np.float64)
        self.rgb_bits = packed_rgb(class_names).view(np.uint32)
        self.colors = class_colors(class_names) / 255.0

    def cloud(self, labels, header: Header, keep=None, surface_only: bool = False) -> bytes:
        """PointCloud2 of the occupied voxel centres: x, y, z, rgb (benchmark colours), label
        (:data:`CLOUD_DTYPE`); ``surface_only``: only voxels with a free 6-neighbour."""
        indices = occupied_indices(labels, keep, surface_only)
        classes = labels.ravel()[indices]
        words = np.empty((len(indices), 5), np.uint32)   # x, y, z, rgb, label + zeroed padding
        xyz = words[:, :3].view(np.float32)
        pose = self.pose
        if pose is None or np.array_equal(pose[:3, :3], np.eye(3)):   # a translation: folded in the origin
            origin = self.origin if pose is None else self.origin + pose[:3, 3]
            voxel_centres(indices, labels.shape, self.voxel_size, origin, out=xyz)
        else:
            centres = voxel_centres(indices, labels.shape, self.voxel_size, self.origin)
            xyz[:] = transform_points(pose, centres)
        np.take(self.rgb_bits, classes, out=words[:, 3])
        words[:, 4] = classes
        msg = PointCloud2(header=header, height=1, width=len(indices), fields=CLOUD_FIELDS,
                          is_bigendian=False, point_step=CLOUD_DTYPE.itemsize,
                          row_step=CLOUD_DTYPE.itemsize * len(indices), is_dense=True)
        return serialize(msg, [(msg, 'data', words.view(np.uint8).reshape(-1))])

    def markers(self, labels, header: Header, keep=None, lifetime_s: float = 0.0) -> bytes:
        """MarkerArray: one CUBE_LIST per class (namespace = class name, so RViz can toggle
        classes) of the visible (surface) voxels; classes absent from this grid get a DELETE so
        stale cubes vanish."""
        indices = occupied_indices(labels, keep, surface_only=True)
        classes = labels.ravel()[indices]
        order = np.argsort(classes, kind='stable')
        centres = voxel_centres(indices[order], labels.shape, self.voxel_size, self.origin).astype(np.float64)
        bounds = np.searchsorted(classes[order], np.arange(len(self.class_names) + 1))
        wanted = range(1, len(self.class_names)) if keep is None else keep
        lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
        markers, arrays = [], []
        for c in wanted:
            marker = Marker(header=header, ns=self.class_names[c], id=int(c), type=Marker.CUBE_LIST,
                            lifetime=lifetime)
            block = centres[bounds[c]:bounds[c + 1]]
            if not len(block):
                marker.action = Marker.DELETE
            else:
                marker.action = Marker.ADD
                marker.pose = self._pose_msg(np.zeros(3))
                marker.scale.x = marker.scale.y = marker.scale.z = self.voxel_size
                r, g, b = self.colors[c]
                marker.color = ColorRGBA(r=float(r), g=float(g), b=float(b), a=1.0)
                arrays.append((marker, 'points', block))   # Point = 3 float64, 24 bytes
            markers.append(marker)
        return serialize(MarkerArray(markers=markers), arrays)

    def occupancy(self, labels, fov_mask, header: Header) -> bytes:
        """Bird's-eye OccupancyGrid of the grid's x-y plane at the grid's origin (see
        :func:`ssc_core.outputs.bird_eye_occupancy`)."""
        cells = bird_eye_occupancy(labels, fov_mask, self.class_names).reshape(-1)
        msg = OccupancyGrid(header=header, info=self._map_info(labels.shape, header))
        return serialize(msg, [(msg, 'data', cells)])

    def voxel_grid(self, labels, fov_mask, header: Header) -> bytes:
        """The whole (X, Y, Z) label volume as an Image of encoding ``8UC<Z>``: row = x index,
        column = y index, channel = z index; voxels out of the camera's view are IGNORE_LABEL
        (255, unknown). ``np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, -1)``
        gives the grid back; its geometry is the ``occupancy`` map's (:meth:`occupancy`)."""
        volume = np.where(fov_mask, labels, np.uint8(IGNORE_LABEL)).astype(np.uint8).reshape(-1)
        x, y, z = labels.shape
        msg = Image(header=header, height=x, width=y, encoding=f'8UC{z}', is_bigendian=0, step=y * z)
        return serialize(msg, [(msg, 'data', volume)])

    def _map_info(self, shape, header: Header) -> MapMetaData:
        return MapMetaData(map_load_time=header.stamp, resolution=self.voxel_size, width=shape[0],
                           height=shape[1], origin=self._pose_msg(self.origin))

    def _pose_msg(self, offset) -> Pose:
        """The grid's point ``offset`` (3,) (grid frame, metres) with the grid's axes, as a Pose in
        the messages' frame: where markers' points and the occupancy map's cells start."""
        pose = np.eye(4) if self.pose is None else self.pose
        x, y, z = pose[:3, :3] @ offset + pose[:3, 3]
        qx, qy, qz, qw = quaternion_from_pose(pose)[1]
        msg = Pose()
        msg.position.x, msg.position.y, msg.position.z = float(x), float(y), float(z)
        o = msg.orientation
        o.x, o.y, o.z, o.w = float(qx), float(qy), float(qz), float(qw)
        return msg


def diagnostics_array(report, name: str, hardware_id: str, stamp: Time) -> DiagnosticArray:
    """A :class:`ssc_ros.health.Report` as the one status of a DiagnosticArray (OK or WARN)."""
    level = DiagnosticStatus.OK if report.level == 'OK' else DiagnosticStatus.WARN
    status = DiagnosticStatus(level=level, name=name, hardware_id=hardware_id, message=report.message,
                              values=[KeyValue(key=k, value=v) for k, v in report.values.items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
