"""Message conversions (real sensor_msgs types, serialized through rclpy)."""
import io

import numpy as np
import pytest
from nav_msgs.msg import OccupancyGrid
from PIL import Image as PILImage
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
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
    with pytest.raises(conv.MessageError, match="encoding 'nv12' not supported"):
        conv.image_to_rgb(image_msg(rgb, 'nv12'))
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


def test_compressed():
    rgb = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format='PNG')
    assert np.array_equal(conv.compressed_to_rgb(CompressedImage(format='png', data=buf.getvalue())), rgb)
    with pytest.raises(conv.MessageError, match='cannot decode'):
        conv.compressed_to_rgb(CompressedImage(format='jpeg', data=b'garbage'))


@pytest.fixture(scope='module')
def grid():
    labels = np.zeros((8, 6, 4), np.uint8)
    labels[:, :, 0] = CLASSES.index('road')
    labels[2:4, 1:3, 1:3] = CLASSES.index('car')
    labels[6, 5, :] = CLASSES.index('pole')
    labels[0, 0, 3] = 255
    return labels


def outputs(class_names=CLASSES, voxel_size=0.5, origin=(0.0, -1.5, -1.0)):
    return conv.OutputMessages(class_names, voxel_size, origin)


def test_cloud(grid):
    msg = deserialize_message(outputs().cloud(grid, HEADER), PointCloud2)
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
    only_pole = deserialize_message(outputs().cloud(grid, HEADER, keep), PointCloud2)
    assert only_pole.width == 4


def test_cloud_padding_is_zero_and_bytes_repeat(grid):
    """The 3 padding bytes of each 20-byte point are zero: the same grid gives the same bytes,
    whatever the heap held before (garbage is left in freed memory between the two calls)."""
    first = outputs().cloud(grid, HEADER)
    garbage = [np.full(len(first) // 4 + 1024, 0xDEADBEEF, np.uint32) for _ in range(4)]
    del garbage
    second = outputs().cloud(grid, HEADER)
    assert first == second
    data = np.frombuffer(bytes(deserialize_message(first, PointCloud2).data), np.uint8).reshape(-1, 20)
    assert not data[:, 17:].any()


def test_cloud_surface_only():
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[1:4, 1:4, 1:4] = CLASSES.index('building')   # a 3x3x3 block: all but its centre is surface
    msg = deserialize_message(outputs().cloud(labels, HEADER, surface_only=True), PointCloud2)
    points = np.frombuffer(bytes(msg.data), conv.CLOUD_DTYPE)
    assert msg.width == 26
    assert not np.any((points['x'] == 1.25) & (points['y'] == -0.25) & (points['z'] == 0.25))  # the centre


def slow_markers(labels, class_names, voxel_size, origin, header):
    """The MarkerArray as rclpy builds it: a Point object per cube (the reference)."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA

    from ssc_core.outputs import occupied_voxels
    centres, classes = occupied_voxels(labels, voxel_size, origin, surface_only=True)
    markers = []
    for c in range(1, len(class_names)):
        marker = Marker(header=header, ns=class_names[c], id=c, type=Marker.CUBE_LIST, action=Marker.DELETE)
        block = centres[classes == c].astype(np.float64)
        if len(block):
            marker.action = Marker.ADD
            marker.pose.orientation.w = 1.0
            marker.scale.x = marker.scale.y = marker.scale.z = float(voxel_size)
            r, g, b = class_colors(class_names)[c] / 255.0
            marker.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
            marker.points = [Point(x=x, y=y, z=z) for x, y, z in block.tolist()]
        markers.append(marker)
    return serialize_message(MarkerArray(markers=markers))


@pytest.mark.parametrize('frame_id', ['velodyne', 'grid_frame_of_odd_length'])
def test_markers_bytes_equal_rclpys_serialization(grid, frame_id):
    """Point bytes written from numpy = rclpy's own serialization of Point objects, for frame ids
    that shift the points' 8-byte alignment, and read back by rclpy into the real type."""
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 12, 345
    fast = outputs(origin=(0, 0, 0)).markers(grid, header)
    assert deserialize_message(fast, MarkerArray) == deserialize_message(
        slow_markers(grid, CLASSES, 0.5, (0, 0, 0), header), MarkerArray)
    msg = deserialize_message(fast, MarkerArray)
    by_ns = {m.ns: m for m in msg.markers}
    assert set(by_ns) == set(CLASSES[1:])
    car = by_ns['car']
    assert car.type == Marker.CUBE_LIST and car.action == Marker.ADD and len(car.points) == 8
    assert car.scale.x == 0.5 and round(car.color.b * 255) == class_colors(CLASSES)[1][2]
    assert by_ns['building'].action == Marker.DELETE
    assert len(by_ns['road'].points) == 8 * 6 - 1  # every road voxel (one is the pole's) is visible


def test_occupancy(grid):
    fov = np.ones(grid.shape, bool)
    fov[7] = False
    msg = deserialize_message(outputs().occupancy(grid, fov, HEADER), OccupancyGrid)
    assert (msg.info.width, msg.info.height, msg.info.resolution) == (8, 6, 0.5)
    cells = np.array(msg.data, np.int8).reshape(6, 8)  # row = y, column = x
    assert cells[1, 2] == 100 and cells[5, 6] == 100   # car, pole
    assert cells[0, 1] == 0                             # road only
    assert (cells[:, 7] == -1).all()                    # outside the camera view
    assert msg.info.origin.position.y == -1.5


def test_voxel_grid(grid):
    fov = np.ones(grid.shape, bool)
    fov[7] = False
    msg = deserialize_message(outputs().voxel_grid(grid, fov, HEADER), Image)
    assert (msg.height, msg.width, msg.encoding, msg.step) == (8, 6, '8UC4', 24)
    volume = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, -1)
    assert np.array_equal(volume[:7], grid[:7]) and (volume[7] == 255).all()


def test_cloud_matches_sensor_msgs_py_layout():
    """The PointCloud2 layout reads back with the standard field offsets (as read_points does)."""
    labels = np.zeros((2, 2, 2), np.uint8)
    labels[1, 0, 1] = 13
    msg = deserialize_message(outputs(origin=(0, 0, 0), voxel_size=1.0).cloud(labels, HEADER), PointCloud2)
    assert msg.point_step == 20 and msg.row_step == 20
    offsets = {f.name: f.offset for f in msg.fields}
    raw = bytes(msg.data)
    x = np.frombuffer(raw[offsets['x']:offsets['x'] + 4], '<f4')[0]
    z = np.frombuffer(raw[offsets['z']:offsets['z'] + 4], '<f4')[0]
    assert (x, z, raw[offsets['label']]) == (1.5, 1.5, 13)


def test_empty_grid_gives_empty_messages():
    empty = np.zeros((4, 4, 2), np.uint8)
    cloud = deserialize_message(outputs().cloud(empty, HEADER), PointCloud2)
    assert cloud.width == 0 and len(cloud.data) == 0
    markers = deserialize_message(outputs().markers(empty, HEADER), MarkerArray)
    assert {m.action for m in markers.markers} == {Marker.DELETE}


def test_16_bit_encodings_scale_as_cv_bridge():
    rgb16 = np.random.default_rng(2).integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    reference = np.rint(rgb16 * (255 / 65535)).astype(np.uint8)  # cv_bridge: convertTo(CV_8U, 255/65535)
    assert np.array_equal(conv.image_to_rgb(roundtrip(image_msg(rgb16, 'rgb16'))), reference)
    assert np.array_equal(conv.image_to_rgb(image_msg(rgb16[..., ::-1], 'bgr16')), reference)
    rgba16 = np.concatenate([rgb16, np.zeros((6, 7, 1), np.uint16)], 2)
    assert np.array_equal(conv.image_to_rgb(image_msg(rgba16[..., [2, 1, 0, 3]], 'bgra16')), reference)
    big_endian = image_msg(rgb16[..., 0].astype('>u2'), 'mono16')
    big_endian.is_bigendian = 1
    grey = conv.image_to_rgb(big_endian)
    assert np.array_equal(grey, np.repeat(reference[..., :1], 3, 2))


def mosaic(rgb, pattern):
    """Reference Bayer sampling: ``pattern`` (e.g. 'rggb') names the 2x2 cell's colours row by row."""
    out = np.zeros(rgb.shape[:2], np.uint8)
    for i, colour in enumerate(pattern):
        out[i // 2::2, i % 2::2] = rgb[i // 2::2, i % 2::2, 'rgb'.index(colour)]
    return out


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_patterns(pattern):
    rgb = np.empty((12, 16, 3), np.uint8)
    rgb[:, :8], rgb[:, 8:] = (200, 100, 30), (20, 150, 240)  # two flat colours
    out = conv.image_to_rgb(image_msg(mosaic(rgb, pattern), f'bayer_{pattern}8'))
    inner = np.s_[2:-2, 2:6], np.s_[2:-2, 10:14]  # away from the borders and the colour edge
    for part in inner:
        np.testing.assert_array_equal(out[part], rgb[part])


def reference_yuv(y, u, v):
    """BT.601 studio range (OpenCV's and so cv_bridge's YUV 4:2:2 meaning) → RGB float."""
    c, d, e = np.maximum(y - 16.0, 0) * 1.164, u - 128.0, v - 128.0
    return np.stack([c + 1.596 * e, c - 0.391 * d - 0.813 * e, c + 2.018 * d], -1).clip(0, 255)


@pytest.mark.parametrize('encoding', ['yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'])
def test_yuv422(encoding):
    rng = np.random.default_rng(3)
    y = rng.integers(16, 236, (4, 8)).astype(np.uint8)
    u, v = (rng.integers(16, 241, (4, 4)).astype(np.uint8) for _ in range(2))
    packed = np.zeros((4, 8, 2), np.uint8)
    if encoding in ('yuv422', 'uyvy'):  # U0 Y0 V0 Y1
        packed[..., 1], packed[:, ::2, 0], packed[:, 1::2, 0] = y, u, v
    else:  # Y0 U0 Y1 V0
        packed[..., 0], packed[:, ::2, 1], packed[:, 1::2, 1] = y, u, v
    out = conv.image_to_rgb(image_msg(packed, encoding))
    reference = reference_yuv(y.astype(float), np.repeat(u, 2, 1), np.repeat(v, 2, 1))
    assert np.abs(out - reference).max() <= 1.0


def png_header_only(width, height):
    """A PNG whose header says width x height (8-bit grey) followed by one tiny data chunk."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 100)) + chunk(b'IEND', b''))


def test_compressed_16_bit_and_decompression_bombs():
    rng = np.random.default_rng(4)
    grey16 = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    buf = io.BytesIO()
    PILImage.fromarray(grey16).save(buf, format='PNG')  # Pillow writes a 16-bit grey PNG
    out = conv.compressed_to_rgb(CompressedImage(format='mono16; png compressed', data=buf.getvalue()))
    assert np.array_equal(out[..., 1], np.rint(grey16 * (255 / 65535)).astype(np.uint8))
    import cv2
    rgb16 = rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    _, png = cv2.imencode('.png', rgb16[..., ::-1])
    out = conv.compressed_to_rgb(CompressedImage(format='bgr16; png compressed', data=png.tobytes()))
    assert np.array_equal(out, np.rint(rgb16 * (255 / 65535)).astype(np.uint8))
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format='JPEG', quality=95)
    reference = np.asarray(PILImage.open(io.BytesIO(buf.getvalue())).convert('RGB')).astype(int)
    out = conv.compressed_to_rgb(CompressedImage(format='jpeg', data=buf.getvalue()))
    assert np.abs(out.astype(int) - reference).max() <= 2
    for side in (9000, 30000):
        data = png_header_only(side, side)
        assert len(data) < 200
        with pytest.raises(conv.MessageError, match=f'{side}x{side} is over|exceeds limit') as error:
            conv.compressed_to_rgb(CompressedImage(format='png', data=data))
        assert error.value.kind == 'image_too_large'


def test_disparity_to_depth():
    from stereo_msgs.msg import DisparityImage
    disparity = np.array([[35.0, 70.0, 0.0], [-1.0, np.nan, 300.0]], np.float32)
    msg = DisparityImage(image=image_msg(disparity, '32FC1'), f=700.0, t=0.5, min_disparity=1.0,
                         max_disparity=256.0)
    depth = conv.disparity_to_metres(roundtrip(msg))
    reference = np.array([[700 * 0.5 / 35, 700 * 0.5 / 70, np.nan], [np.nan, np.nan, np.nan]])
    np.testing.assert_allclose(depth, reference, rtol=1e-6)  # 300 px is over max_disparity
    msg.t = 0.0
    with pytest.raises(conv.MessageError, match='baseline t=0.0 must be positive'):
        conv.disparity_to_metres(msg)


def test_serialize_reads_back_as_rclpy_writes():
    """ssc_ros.serialized.serialize: the bytes rclpy reads back into the real types, the same
    length as rclpy's own serialization (same layout), for strings of every length mod 4 before
    8-byte fields, nested and fixed arrays, octets; arrays given as numpy."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from geometry_msgs.msg import Point
    from sensor_msgs.msg import CameraInfo, PointField

    from ssc_ros.serialized import serialize
    messages = [CameraInfo(header=Header(frame_id='cam'), k=list(range(9)), d=[0.1, -0.2], width=3),
                PointCloud2(header=Header(frame_id='velodyn'), data=b'12345', is_dense=True,
                            fields=[PointField(name='x', offset=0, datatype=7, count=1)]),
                DiagnosticArray(status=[DiagnosticStatus(level=b'\x01', name='n',
                                                         values=[KeyValue(key='a', value='bc')])]),
                OccupancyGrid(data=[1, -1, 100]), Image(encoding='8UC4', data=b'xyz')]
    for n in range(4):
        messages.append(MarkerArray(markers=[Marker(ns='a' * n, points=[Point(x=1.0, y=2.0, z=3.0)]),
                                             Marker(ns='b' * (n + 1), text='hi', points=[Point(x=4.0)] * 3)]))
    for msg in messages:
        data = serialize(msg)
        assert len(data) == len(serialize_message(msg)), type(msg)
        assert deserialize_message(data, type(msg)) == roundtrip(msg), type(msg)
    marker = Marker(header=Header(frame_id='xy'), ns='c')
    centres = np.arange(12, dtype=np.float64).reshape(4, 3)
    back = deserialize_message(serialize(marker, [(marker, 'points', centres)]), Marker)
    assert [(p.x, p.y, p.z) for p in back.points] == [tuple(row) for row in centres.tolist()]
