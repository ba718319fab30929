"""The node's frame tree and live map without DDS: transforms from a real tf2 Buffer filled by hand,
the live map's lock, rate and files, outputs placed by a pose, and the TF a converted bag holds."""
import time

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from tf2_ros import Buffer
from visualization_msgs.msg import MarkerArray

from ssc_core.geometry import pose_from_quaternion, quaternion_from_pose, transform_points
from ssc_core.mapping import MapError, SemanticMap, load_map
from ssc_core.outputs import occupied_voxels
from ssc_core.presets import SEMANTIC_KITTI, SMALL, base_from_grid
from ssc_ros.conversions import CLOUD_DTYPE, OutputMessages
from ssc_ros.live_map import LiveMap
from ssc_ros.transforms import FrameTransforms, TransformError

S = 10**9   # nanoseconds per second


def stamped(parent, child, sec, x=0.0, yaw=0.0):
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    t.header.stamp.sec = sec
    t.transform.translation.x = x
    t.transform.rotation.z, t.transform.rotation.w = np.sin(yaw / 2), np.cos(yaw / 2)
    return t


@pytest.fixture()
def tree():
    """base_link -> camera (static, 1 m ahead, turned 90 degrees), odom -> base_link at 10 s (x 0)
    and 11 s (x 1), and an unconnected frame pair a -> b."""
    buffer = Buffer()
    buffer.set_transform_static(stamped('base_link', 'camera', 0, 1.0, np.pi / 2), 'test')
    buffer.set_transform(stamped('odom', 'base_link', 10, 0.0), 'test')
    buffer.set_transform(stamped('odom', 'base_link', 11, 1.0), 'test')
    buffer.set_transform(stamped('a', 'b', 11), 'test')
    return buffer


def test_transforms_at_the_stamp_interpolated_and_static(tree):
    tf = FrameTransforms(tree, timeout=0.0)
    camera_from_base = tf.lookup('camera', 'base_link', 100 * S)       # static: any stamp
    np.testing.assert_allclose(camera_from_base @ [1, 0, 0, 1], [0, 0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(camera_from_base @ [1, 1, 0, 1], [1, 0, 0, 1], atol=1e-12)
    odom_from_base = tf.lookup('odom', 'base_link', 10 * S + S // 4)      # 1/4 of the way
    np.testing.assert_allclose(odom_from_base[:3, 3], [0.25, 0, 0], atol=1e-12)


@pytest.mark.parametrize('target, source, stamp, kind, words', [
    ('odom', 'base_link', 12 * S, 'tf_timeout',
     ['base_link -> odom at 12.000 s', 'extrapolation into the future', 'the latest is 1.000 s older']),
    ('odom', 'base_link', 5 * S, 'tf_extrapolation', ['base_link -> odom at 5.000 s', 'into the past']),
    ('odom', 'wheel', 10 * S, 'tf_unknown_frame', ['wheel -> odom', '"wheel" passed to lookupTransform']),
    ('', 'base_link', 10 * S, 'tf_unknown_frame', ['the target frame id is empty']),
    ('odom', 'b', 11 * S, 'tf_not_connected', ['b -> odom', 'not part of the same tree']),
])
def test_missing_transforms_are_one_kind_each_naming_the_frames(tree, target, source, stamp, kind, words):
    tf = FrameTransforms(tree, timeout=0.1)
    start = time.monotonic()
    with pytest.raises(TransformError) as error:
        tf.lookup(target, source, stamp)
    assert error.value.kind == kind
    for word in words:
        assert word in str(error.value), str(error.value)
    if target:
        assert time.monotonic() - start >= 0.1   # it waited for the transform to come


def test_tolerance_takes_the_latest_transform_for_slightly_newer_images(tree):
    tf = FrameTransforms(tree, timeout=0.0, tolerance=0.5)
    np.testing.assert_allclose(tf.lookup('odom', 'base_link', 11 * S + S // 2)[:3, 3], [1, 0, 0])
    with pytest.raises(TransformError, match='tf_tolerance 0.5 s') as error:
        tf.lookup('odom', 'base_link', 11 * S + 6 * S // 10)
    assert error.value.kind == 'tf_timeout'


def test_a_transform_arriving_during_the_wait_is_used(tree):
    """A lookup waits for TF that is late (published by another thread meanwhile), within tf_timeout."""
    import threading
    tf = FrameTransforms(tree, timeout=2.0)
    late = threading.Timer(0.2, lambda: tree.set_transform(stamped('odom', 'base_link', 13, 3.0), 'test'))
    late.start()
    np.testing.assert_allclose(tf.lookup('odom', 'base_link', 12 * S)[:3, 3], [2, 0, 0])
    late.join()


def small_map():
    return SemanticMap(SMALL.model.voxel_size, SMALL.class_names, SMALL.voxel_origin)


def frame(seed=0, shape=(16, 16, 4)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, len(SMALL.class_names), shape).astype(np.uint8), np.ones(shape, bool)


def test_live_map_rate_snapshot_and_reset():
    now = [0.0]
    live = LiveMap(small_map(), period=2.0, clock=lambda: now[0])
    assert live.wait_time() == 0.0
    labels, observed = frame()
    behind = np.eye(4)
    behind[:3, 3] = (-5.0, 2.0, 0.0)   # blocks at negative coordinates: the box's corner is not 0
    live.integrate(labels, observed, behind, 1.0)
    snapshot = live.snapshot()
    box, corner = live.map.labels_box()
    assert corner[0] < 0
    np.testing.assert_array_equal(snapshot.labels, box)
    np.testing.assert_allclose(snapshot.origin, np.array(SMALL.voxel_origin) + corner * 0.4)
    assert (snapshot.stamp, snapshot.frames) == (1.0, 1)
    now[0] = 0.5
    assert live.wait_time() == 1.5   # the next one is due 2 s after the last
    live.reset()
    assert live.snapshot().labels.size == 0 and live.map.frames == 0


def test_live_map_refuses_a_relocalisation_by_speed_and_keeps_the_map():
    live = LiveMap(small_map(), period=1.0, max_speed=10.0)
    labels, observed = frame()
    live.integrate(labels, observed, np.eye(4), 0.0)
    before = live.map.labels_box()[0].copy()
    jump = np.eye(4)
    jump[0, 3] = 4.0   # 4 m in 0.1 s: 40 m/s
    with pytest.raises(MapError, match=r'jumped 4.00 m .*faster than map_max_speed 10 m/s over 0.10 s'):
        live.integrate(labels, observed, jump, 0.1)
    np.testing.assert_array_equal(live.map.labels_box()[0], before)
    live.integrate(labels, observed, jump, 1.0)   # 4 m in 1 s: fine
    assert live.map.frames == 2


def test_live_map_saves_npz_and_ply_that_load_back_exactly(tmp_path):
    live = LiveMap(small_map(), period=1.0)
    for i in range(3):
        live.integrate(*frame(i), pose_from_quaternion((0.4 * i, 0, 0), (0, 0, 0, 1)), float(i))
    (tmp_path / 'maps').mkdir()
    npz, ply = live.save(tmp_path / 'maps' / 'run1.npz')   # the suffix is dropped: run1.npz and run1.ply
    assert (npz.name, ply.name) == ('run1.npz', 'run1.ply')
    back = load_map(npz, voxel_size=SMALL.model.voxel_size, class_names=SMALL.class_names)
    for x, y in zip(back.labels_box(), live.map.labels_box(), strict=True):
        np.testing.assert_array_equal(x, y)
    header = ply.read_bytes().split(b'end_header\n')[0].decode()
    assert f'element vertex {np.count_nonzero((back.labels_box()[0] != 0) & (back.labels_box()[0] != 255))}' \
        in header


def test_outputs_placed_by_a_pose():
    """With a grid pose, the cloud's points are the grid's voxel centres moved by it, the markers
    carry it as their pose and the occupancy map's origin is the grid's corner moved by it."""
    labels = np.zeros((8, 8, 4), np.uint8)
    labels[2, 3, 1], labels[5, 0, 2] = 1, 9
    pose = pose_from_quaternion((1.0, -2.0, 1.73), (0, 0, np.sin(0.3), np.cos(0.3)))
    out = OutputMessages(SMALL.class_names, 0.4, SMALL.voxel_origin, pose)
    header = Header(frame_id='base_link')
    points = np.frombuffer(deserialize_message(out.cloud(labels, header), PointCloud2).data, CLOUD_DTYPE)
    centres, _ = occupied_voxels(labels, 0.4, SMALL.voxel_origin)
    np.testing.assert_allclose(np.stack([points['x'], points['y'], points['z']], 1),
                               transform_points(pose, centres), atol=1e-5)
    shifted = base_from_grid(SMALL)   # a translation: folded into the origin, the same numbers
    moved = OutputMessages(SMALL.class_names, 0.4, SMALL.voxel_origin, shifted).cloud(labels, header)
    moved = np.frombuffer(deserialize_message(moved, PointCloud2).data, CLOUD_DTYPE)
    np.testing.assert_allclose(moved['z'], centres[:, 2] + 1.73, atol=1e-6)
    markers = deserialize_message(out.markers(labels, header), MarkerArray).markers
    car = next(m for m in markers if m.id == 1)
    q = car.pose.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], quaternion_from_pose(pose)[1], atol=1e-12)
    np.testing.assert_allclose([car.points[0].x, car.points[0].y, car.points[0].z], centres[0], atol=1e-6)
    from nav_msgs.msg import OccupancyGrid
    grid = deserialize_message(out.occupancy(labels, np.ones(labels.shape, bool), header), OccupancyGrid)
    p = grid.info.origin.position
    np.testing.assert_allclose([p.x, p.y, p.z], transform_points(pose, [SMALL.voxel_origin])[0], atol=1e-5)


def test_converted_bags_hold_the_kitti_mount_and_the_motion(tmp_path):
    """/tf_static: base_link -> velodyne (the KITTI lidar 1.73 m up) -> camera (Tr); /tf: odom ->
    base_link at each image's stamp, written before the image, such that the camera's pose in odom
    is the grid's pose from poses.txt seen through the mount."""
    from rosbags.highlevel import AnyReader

    from ssc_core.data.poses import grid_poses, read_poses
    from ssc_core.data.synthetic import write_sequence
    from ssc_ros.bag import convert

    seq = write_sequence(tmp_path / 'kitti', '08', 3, image_size=(64, 32), label_every=100)
    turning = [pose_from_quaternion((0.1 * i, 0, float(i)), (0, np.sin(0.1 * i), 0, np.cos(0.1 * i)))
               for i in range(3)]   # the camera turns about its y axis (down): the car turns left
    (seq / 'poses.txt').write_text(''.join(' '.join(map(str, p[:3].ravel())) + '\n' for p in turning))
    bag = convert(seq, tmp_path / 'kitti' / 'depth' / 'sequences' / '08', tmp_path / 'bag', progress=False)
    buffer, order = Buffer(), []
    with AnyReader([bag]) as reader:
        for conn, _, raw in reader.messages():
            order.append(conn.topic)
            if 'tf' in conn.topic:
                add = buffer.set_transform_static if conn.topic == '/tf_static' else buffer.set_transform
                for transform in deserialize_message(bytes(raw), TFMessage).transforms:
                    add(transform, 'bag')
        stamps = sorted({s for c, s, _ in reader.messages() if c.topic == '/camera/image'})
    assert order[:2] == ['/tf_static', '/tf'] and order.count('/tf_static') == 1 and order.count('/tf') == 3
    tr = np.array(SEMANTIC_KITTI.cam_from_grid)
    mount = base_from_grid(SEMANTIC_KITTI)
    tf = FrameTransforms(buffer, timeout=0.0)
    camera_from_base = tf.lookup('camera', 'base_link', stamps[0])
    np.testing.assert_allclose(camera_from_base, tr @ np.linalg.inv(mount), atol=1e-6)
    world = grid_poses(read_poses(seq / 'poses.txt', 3), tr)
    for stamp, grid in zip(stamps, world, strict=True):
        odom_from_grid = tf.lookup('odom', 'velodyne', stamp)
        np.testing.assert_allclose(odom_from_grid, mount @ grid, atol=1e-6)
