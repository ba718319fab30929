"""Bags with a stereo pair and no depth. A KITTI-style bag written by a third-party tool
(rosbags; kitti2bag's topic names, bgr8 stereo pair, camera_info with a baseline, no depth topic,
kitti2bag's /tf world -> base_link and /tf_static written with every frame), as rosbag2 and as
ROS 1 .bag, replays through the built-in player to the running node: depth from the stereo pair,
the camera's pose and the map's from the bag's TF, outputs stamped as the images. Our converter
writes such bags from KITTI odometry stereo pairs (image_2 + image_3, P2/P3)."""
import signal
import subprocess
import sys

import numpy as np
import pytest
from ros_helpers import Probe, node_command, start
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import Writer as Writer2
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image, PointCloud2

from ssc_core.geometry import quaternion_from_pose
from ssc_core.presets import SMALL, base_from_grid
from ssc_ros.bag import KITTI2BAG_TOPICS, TOPICS, bag_roles, main, message_class, parse_topic_mapping
from ssc_ros.qos import LATCHED
from ssc_ros.stereo_source import StereoDepthSource

HEIGHT, WIDTH = SMALL.model.image_shape
DISPARITY = 8  # pixels: the right image is the scene shifted left by this much
BASELINE = 0.54  # metres, KITTI's
START_NS = 1_317_000_000 * 10**9
FRAMES = 3
TF = 'tf2_msgs/msg/TFMessage'
REMAP = ['-r', 'image:=/camera/image', '-r', 'depth:=/camera/depth', '-r', 'camera_info:=/camera/camera_info']


def stereo_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) bgr8 left and right images of a textured plane at disparity DISPARITY."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (HEIGHT // 2, (WIDTH + DISPARITY) // 2 + 1, 3), dtype=np.uint8)
    texture = texture.repeat(2, 0).repeat(2, 1)[:HEIGHT, :WIDTH + DISPARITY]
    return (np.ascontiguousarray(texture[:, :WIDTH]),
            np.ascontiguousarray(texture[:, DISPARITY:DISPARITY + WIDTH]))


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def tf_message(types, transforms, stamp: int, ros1: bool):
    """[(parent, child, pose 4x4)] → a rosbags TFMessage stamped ``stamp`` (ns)."""
    stamped = []
    for parent, child, pose in transforms:
        (x, y, z), (qx, qy, qz, qw) = quaternion_from_pose(pose)
        header = types['std_msgs/msg/Header'](stamp=types['builtin_interfaces/msg/Time'](
            sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=parent, **({'seq': 0} if ros1 else {}))
        stamped.append(types['geometry_msgs/msg/TransformStamped'](
            header=header, child_frame_id=child, transform=types['geometry_msgs/msg/Transform'](
                translation=types['geometry_msgs/msg/Vector3'](x=x, y=y, z=z),
                rotation=types['geometry_msgs/msg/Quaternion'](x=qx, y=qy, z=qz, w=qw))))
    return types['tf2_msgs/msg/TFMessage'](transforms=stamped)


def write_kitti2bag_style(path, ros1: bool):
    """Write the bag as kitti2bag does (its topics and frame ids, its TF: world -> base_link at each
    frame, /tf_static rewritten with every frame), with rosbags; returns left stamps."""
    typestore = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    if ros1:   # the Noetic store lacks tf2_msgs; its definition is ROS 2's
        typestore.register({TF: get_typestore(Stores.ROS2_KILTED).fielddefs[TF]})
    types = typestore.types
    left_mount = base_from_grid(SMALL) @ np.linalg.inv(np.array(SMALL.cam_from_grid))   # on the ground
    right_mount = left_mount.copy()
    right_mount[:3, 3] += left_mount[:3, 0] * BASELINE   # along the left camera's x
    K = np.array(SMALL.cam_K, float)
    fx = K[0, 0]
    infos, stamps = {}, []
    for side, tx in (('left', 0.0), ('right', -fx * BASELINE)):
        P = np.hstack([K, [[tx], [0], [0]]])
        fields = dict(height=HEIGHT, width=WIDTH, distortion_model='plumb_bob', binning_x=0, binning_y=0,
                      roi=types['sensor_msgs/msg/RegionOfInterest'](
                          x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
        arrays = dict(d=np.zeros(5), k=K.ravel(), r=np.eye(3).ravel(), p=P.ravel())
        infos[side] = fields | ({k.upper(): v for k, v in arrays.items()} if ros1 else arrays)
    msgtypes = {'image': 'Image', 'camera_info': 'CameraInfo',
                'right': 'Image', 'right_camera_info': 'CameraInfo'}
    roles = {'left': ('image', 'camera_info'), 'right': ('right', 'right_camera_info')}
    serialize = typestore.serialize_ros1 if ros1 else typestore.serialize_cdr
    writer = Writer1(path) if ros1 else Writer2(path, version=8)
    with writer:
        conns = {key: writer.add_connection(topic, f'sensor_msgs/msg/{msgtypes[key]}', typestore=typestore)
                 for key, topic in KITTI2BAG_TOPICS.items()}
        tf_conns = {topic: writer.add_connection(topic, TF, typestore=typestore)
                    for topic in ('/tf', '/tf_static')}
        for i in range(FRAMES):
            left, right = stereo_scene(i)
            stamp = START_NS + i * 100_000_000
            stamps.append(stamp)
            drive = np.eye(4)
            drive[0, 3] = 1.0 * i
            for topic, transforms in (('/tf_static', [('base_link', 'camera_color_left', left_mount),
                                                       ('base_link', 'camera_color_right', right_mount)]),
                                      ('/tf', [('world', 'base_link', drive)])):
                message = tf_message(types, transforms, stamp, ros1)
                writer.write(tf_conns[topic], stamp, serialize(message, TF))
            # The right camera's stamps differ slightly from the left's, as in KITTI raw.
            for side, image, t in (('left', left, stamp), ('right', right, stamp + 200_000)):
                time_msg = types['builtin_interfaces/msg/Time'](sec=t // 10**9, nanosec=t % 10**9)
                header = types['std_msgs/msg/Header'](
                    stamp=time_msg, frame_id=f'camera_color_{side}', **({'seq': i} if ros1 else {}))
                image_msg = types['sensor_msgs/msg/Image'](
                    header=header, height=HEIGHT, width=WIDTH, encoding='bgr8', is_bigendian=0,
                    step=WIDTH * 3, data=image.reshape(-1))
                info_msg = types['sensor_msgs/msg/CameraInfo'](header=header, **infos[side])
                for key, msg in zip(roles[side], (image_msg, info_msg)):
                    writer.write(conns[key], t, serialize(msg, msg.__msgtype__))
    return stamps


def test_topic_mapping_and_kitti2bag_detection():
    assert parse_topic_mapping('image=/a,right=/b') == {'image': '/a', 'right': '/b'}
    with pytest.raises(ValueError, match="'left=/a': expected ROLE=TOPIC"):
        parse_topic_mapping('left=/a')
    kitti = set(KITTI2BAG_TOPICS.values()) | {'/kitti/velo/pointcloud'}
    assert bag_roles(kitti) == KITTI2BAG_TOPICS
    assert bag_roles({'/cam/l', '/cam/r'}, {'image': '/cam/l', 'right': '/cam/r'}) == {
        'image': '/cam/l', 'right': '/cam/r'}
    with pytest.raises(ValueError, match=r'no topic /x \(right\) in the bag'):
        bag_roles(kitti, {'right': '/x'})


@pytest.mark.ros
@pytest.mark.parametrize('ros1', [False, True], ids=['rosbag2', 'ros1'])
def test_third_party_stereo_bag_replays_through_the_node(ros1, checkpoint, tmp_path):
    bag = tmp_path / ('kitti.bag' if ros1 else 'kitti')
    stamps = write_kitti2bag_style(bag, ros1)
    probe = Probe()
    try:
        probe.record(PointCloud2, '/voxels')
        probe.record(Image, '/camera/depth')
        probe.record(PointCloud2, '/map_voxels', LATCHED)
        node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'map_frame:=world', *REMAP,
                                  tf=True), tmp_path / 'node.log')
        probe.wait_connected('/voxels', timeout=30)
        # Looped, so that the probe (matched a moment after the node) sees every frame's depth too.
        player = subprocess.Popen([sys.executable, '-m', 'ssc_ros.bag', 'play', str(bag), '--rate', '0.5',
                                   '--loop'], stderr=subprocess.PIPE, text=True)
        try:
            probe.wait_for(lambda: probe.messages('/voxels')
                           and any(m.width for m in probe.messages('/map_voxels'))
                           and {stamp_ns(m) for m in probe.messages('/camera/depth')} == set(stamps),
                           30, "every frame's depth, the node's voxels and its map")
            player.send_signal(signal.SIGINT)
            _, err = player.communicate(timeout=20)
        finally:
            player.kill()
        assert player.returncode == 0, err
        assert 'depth: from the stereo pair' in err and 'Traceback' not in err
        assert ' TF messages (/tf, /tf_static)' in err and 'not played' not in err, err
        assert {stamp_ns(m) for m in probe.messages('/voxels')} <= set(stamps)
        assert {m.header.frame_id for m in probe.messages('/voxels')} == {'base_link'}
        assert {m.header.frame_id for m in probe.messages('/map_voxels')} == {'world'}
        depths = probe.messages('/camera/depth')
        assert {stamp_ns(m) for m in depths} == set(stamps)
        assert {m.header.frame_id for m in depths} == {'camera_color_left'}
        depth = np.frombuffer(bytes(depths[0].data), '<f4').reshape(HEIGHT, WIDTH)
        expected = SMALL.cam_K[0][0] * BASELINE / DISPARITY
        assert np.nanmedian(depth) == pytest.approx(expected, rel=0.05)
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=20) == 0
    finally:
        probe.close()


def test_convert_writes_kitti_stereo_pairs_whose_depth_the_player_computes(tmp_path, capsys):
    """image_2 + image_3 and calib.txt P2/P3 (KITTI's: cameras 2 and 3 offset from camera 0) →
    left/right images and camera_info, no depth; the player's stereo source gets the depth back.
    Without Tr in calib.txt the bag has no TF, and the converter says so."""
    from PIL import Image as PILImage
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader

    seq = tmp_path / 'sequences' / '00'
    K = np.array(SMALL.cam_K, float)
    fx = K[0, 0]
    P2, P3 = np.hstack([K, [[fx * 0.06], [0], [0]]]), np.hstack([K, [[fx * (0.06 - BASELINE)], [0], [0]]])
    for folder in ('image_2', 'image_3'):
        (seq / folder).mkdir(parents=True)
    (seq / 'calib.txt').write_text(''.join(f'{k}: {" ".join(map(str, P.ravel()))}\n'
                                           for k, P in (('P2', P2), ('P3', P3))))
    (seq / 'times.txt').write_text(''.join(f'{i / 10:.6f}\n' for i in range(FRAMES)))
    for i in range(FRAMES):
        for folder, image in zip(('image_2', 'image_3'), stereo_scene(i)):
            PILImage.fromarray(image).save(seq / folder / f'{i:06d}.png')
    main(['convert', str(seq), str(tmp_path / 'bag')])  # no depth folder: the stereo pair
    assert 'calib.txt has no Tr: no /tf_static or /tf written' in capsys.readouterr().err

    source, depths = StereoDepthSource(), []
    with AnyReader([tmp_path / 'bag']) as reader:
        assert {c.topic for c in reader.connections} == {TOPICS[r] for r in (
            'image', 'camera_info', 'right', 'right_camera_info')}
        role = {topic: r for r, topic in TOPICS.items()}
        for conn, _, raw in reader.messages():
            msg = deserialize_message(bytes(raw), message_class(conn.msgtype))
            depths += source.add(role[conn.topic], msg)
    assert len(depths) == FRAMES
    depth = np.frombuffer(bytes(depths[0].data), '<f4').reshape(HEIGHT, WIDTH)
    assert np.nanmedian(depth) == pytest.approx(fx * BASELINE / DISPARITY, rel=0.05)


@pytest.mark.ros
def test_player_refuses_bad_topics_types_and_baseline_in_one_line(tmp_path):
    bag = tmp_path / 'kitti'
    write_kitti2bag_style(bag, ros1=False)

    def play(*args):
        out = subprocess.run([sys.executable, '-m', 'ssc_ros.bag', 'play', str(bag), *args,
                              '--wait-for-subscribers', '0'], capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and 'Traceback' not in out.stderr
        return out.stderr.strip()
    assert play('--topics', 'left=/x') == ("bag play: --topics: 'left=/x': expected ROLE=TOPIC with ROLE "
                                           'one of image, depth, camera_info, right, right_camera_info')
    assert 'no topic /nope (right) in the bag; it has /kitti/camera_color_left/camera_info' in play(
        '--topics', 'right=/nope')
    assert 'stereo: --baseline -1 m, expected > 0' in play('--baseline', '-1')
    assert ('topic /kitti/camera_color_left/camera_info given to two roles: image, camera_info'
            in play('--topics', 'image=/kitti/camera_color_left/camera_info'))
    crossed = ('right_camera_info=/kitti/camera_color_left/image_raw,'
               'image=/kitti/camera_color_right/camera_info')
    assert ('/kitti/camera_color_left/image_raw (right_camera_info): sensor_msgs/msg/Image, expected '
            'sensor_msgs/msg/CameraInfo') in play('--topics', crossed)
