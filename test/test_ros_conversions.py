"""Message conversions (real sensor_msgs types, serialized through rclpy)."""
import io

import numpy as np
import pytest
from nav_msgs.msg import OccupancyGrid
from PIL import Image as PILImage
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ssc_core.labels import SEMANTIC_KITTI_CLASSES as CLASSES
from ssc_core.labels import class_colors
from ssc_ros import conversions as conv

HEADER = Header(frame_id='velodyne')


def image_msg(array, encoding, step=None, width=None):
    h, w = array.shape[0], width or array.shape[1]
    data = np.ascontiguousarray(array).tobytes()
    step = step or len(data) // h
    return Image(height=h, width=w, encoding=encoding, step=step, data=data)


def roundtrip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def test_colour_encodings():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    assert np.array_equal(conv.image_to_rgb(roundtrip(image_msg(rgb, 'rgb8'))), rgb)
    assert np.array_equal(conv.image_to_rgb(image_msg(rgb[..., ::-1], 'bgr8')), rgb)
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 7, np.uint8)], 2)
    assert np.array_equal(conv.image_to_rgb(image_msg(rgba, 'rgba8')), rgb)
    grey = conv.image_to_rgb(image_msg(rgb[..., 0], 'mono8'))
    assert np.array_equal(grey[..., 2], rgb[..., 0])
    padded = np.zeros((4, 20), np.uint8)
    padded[:, :15] = rgb.reshape(4, 15)
    assert np.array_equal(conv.image_to_rgb(image_msg(padded, 'rgb8', step=20, width=5)), rgb)


def test_image_errors_name_the_problem():
    rgb = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(conv.MessageError, match="encoding 'yuv422' not supported"):
        conv.image_to_rgb(image_msg(rgb, 'yuv422'))
    msg = image_msg(rgb, 'rgb8')
    msg.data = msg.data[:30]
    with pytest.raises(conv.MessageError,
                       match=r'data has 30 bytes, expected step\*height = 60 \(truncated\)'):
        conv.image_to_rgb(msg)
    with pytest.raises(conv.MessageError, match='step 10 < width'):
        conv.image_to_rgb(image_msg(rgb, 'rgb8', step=10))


def test_depth_encodings():
    metres = np.array([[1.5, np.nan], [np.inf, -2.0]], np.float32)
    np.testing.assert_array_equal(conv.depth_to_metres(image_msg(metres, '32FC1')), metres)
    mm = np.array([[1500, 0], [65535, 20]], np.uint16)
    out = conv.depth_to_metres(roundtrip(image_msg(mm, '16UC1')))
    np.testing.assert_allclose(out, [[1.5, np.nan], [65.535, 0.02]], rtol=1e-6)
    with pytest.raises(conv.MessageError, match="depth encoding 'rgb8' not supported"):
        conv.depth_to_metres(image_msg(np.zeros((2, 2, 3), np.uint8), 'rgb8'))


def test_compressed_and_camera_info():
    rgb = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format='PNG')
    assert np.array_equal(conv.compressed_to_rgb(CompressedImage(format='png', data=buf.getvalue())), rgb)
    with pytest.raises(conv.MessageError, match='cannot decode'):
        conv.compressed_to_rgb(CompressedImage(format='jpeg', data=b'garbage'))
    info = CameraInfo(k=[700.0, 0, 600, 0, 700, 180, 0, 0, 1])
    np.testing.assert_array_equal(conv.camera_matrix(info)[0], [700, 0, 600])
    with pytest.raises(conv.MessageError, match='camera_info: K must be finite'):
        conv.camera_matrix(CameraInfo())


@pytest.fixture(scope='module')
def grid():
    labels = np.zeros((8, 6, 4), np.uint8)
    labels[:, :, 0] = CLASSES.index('road')
    labels[2:4, 1:3, 1:3] = CLASSES.index('car')
    labels[6, 5, :] = CLASSES.index('pole')
    labels[0, 0, 3] = 255
    return labels


def test_cloud(grid):
    msg = roundtrip(conv.labels_to_cloud(grid, CLASSES, 0.5, (0.0, -1.5, -1.0), HEADER))
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'rgb', 'label']
    assert msg.header.frame_id == 'velodyne'
    points = np.frombuffer(bytes(msg.data), conv.CLOUD_DTYPE)
    assert msg.width == len(points) == np.count_nonzero((grid != 0) & (grid != 255))
    car = points[points['label'] == CLASSES.index('car')]
    assert len(car) == 8
    np.testing.assert_allclose(car['x'].min(), 2 * 0.5 + 0.25)
    np.testing.assert_allclose(car['y'].min(), -1.5 + 0.5 + 0.25)
    r, g, b = class_colors(CLASSES)[CLASSES.index('car')]
    packed = car['rgb'][:1].view(np.uint32)[0]
    assert ((packed >> 16) & 255, (packed >> 8) & 255, packed & 255) == (r, g, b)
    keep = [CLASSES.index('pole')]
    only_pole = conv.labels_to_cloud(grid, CLASSES, 0.5, (0.0, -1.5, -1.0), HEADER, keep)
    assert only_pole.width == 4


def test_markers(grid):
    msg = roundtrip(conv.labels_to_markers(grid, CLASSES, 0.5, (0, 0, 0), HEADER))
    by_ns = {m.ns: m for m in msg.markers}
    assert set(by_ns) == set(CLASSES[1:])
    car = by_ns['car']
    assert car.type == Marker.CUBE_LIST and car.action == Marker.ADD and len(car.points) == 8
    assert car.scale.x == 0.5 and round(car.color.b * 255) == class_colors(CLASSES)[1][2]
    assert by_ns['building'].action == Marker.DELETE
    assert len(by_ns['road'].points) == 8 * 6 - 1  # every road voxel (one is the pole's) is visible
    assert isinstance(msg, MarkerArray)


def test_occupancy(grid):
    fov = np.ones(grid.shape, bool)
    fov[7] = False
    msg = roundtrip(conv.labels_to_occupancy(grid, fov, CLASSES, 0.5, (0.0, -1.5, -1.0), HEADER))
    assert isinstance(msg, OccupancyGrid)
    assert (msg.info.width, msg.info.height, msg.info.resolution) == (8, 6, 0.5)
    cells = np.array(msg.data, np.int8).reshape(6, 8)  # row = y, column = x
    assert cells[1, 2] == 100 and cells[5, 6] == 100   # car, pole
    assert cells[0, 1] == 0                             # road only
    assert (cells[:, 7] == -1).all()                    # outside the camera view
    assert msg.info.origin.position.y == -1.5


def test_cloud_matches_sensor_msgs_py_layout():
    """The PointCloud2 layout reads back with the standard field offsets (as read_points does)."""
    labels = np.zeros((2, 2, 2), np.uint8)
    labels[1, 0, 1] = 13
    msg = conv.labels_to_cloud(labels, CLASSES, 1.0, (0, 0, 0), HEADER)
    assert msg.point_step == 20 and msg.row_step == 20 and isinstance(msg, PointCloud2)
    offsets = {f.name: f.offset for f in msg.fields}
    raw = bytes(msg.data)
    x = np.frombuffer(raw[offsets['x']:offsets['x'] + 4], '<f4')[0]
    z = np.frombuffer(raw[offsets['z']:offsets['z'] + 4], '<f4')[0]
    assert (x, z, raw[offsets['label']]) == (1.5, 1.5, 13)
