"""KITTI odometry sequences → rosbag2, and a bag player (rosbag2 or ROS 1) that needs no ``ros2`` CLI.

    python -m ssc_ros.bag convert SEQ_DIR [DEPTH_DIR] OUT_BAG [--storage mcap|sqlite3]
    python -m ssc_ros.bag play BAG [--topics ROLE=TOPIC,...] [--baseline M] [--rate 1.0] [--loop]
                               [--clock [HZ]] [--wait-for-subscribers S]

The converter's bag holds ``/camera/image`` (rgb8), ``/camera/depth`` (32FC1 metres) and
``/camera/camera_info`` at the recorded times (times.txt), frame ``camera``; without DEPTH_DIR,
the stereo pair instead of the depth (``/camera/right/image`` and ``/camera/right/camera_info``).
Beside them, as kitti2bag writes odometry sequences: ``/tf_static`` (base_link → velodyne, the
KITTI lidar above a ground-level base; velodyne → camera, calib.txt's Tr; camera →
camera_right) and, from poses.txt, ``/tf`` (odom → base_link at each image's stamp).
The player reads the roles image, depth, camera_info, right and right_camera_info from the bag's
topics (our names, kitti2bag's, or a mapping), publishes image, camera_info and depth under our
names, and computes the depth from the stereo pair when the bag has none (``ssc_ros.stereo_source``);
it plays the bag's ``/tf`` and ``/tf_static`` (tf2_msgs/TFMessage; the static transforms latched).
"""
import argparse
import importlib
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from .signals import stop_on_signals

TOPICS = {'image': '/camera/image', 'depth': '/camera/depth', 'camera_info': '/camera/camera_info',
          'right': '/camera/right/image', 'right_camera_info': '/camera/right/camera_info'}
"""Our topic for each role; the player publishes PUBLISHED_ROLES under these names."""
MSGTYPES = {role: 'sensor_msgs/msg/CameraInfo' if role.endswith('camera_info') else 'sensor_msgs/msg/Image'
            for role in TOPICS}
PUBLISHED_ROLES = ('image', 'depth', 'camera_info')
KITTI2BAG_TOPICS = {'image': '/kitti/camera_color_left/image_raw',
                    'camera_info': '/kitti/camera_color_left/camera_info',
                    'right': '/kitti/camera_color_right/image_raw',
                    'right_camera_info': '/kitti/camera_color_right/camera_info'}
"""The topics kitti2bag writes (KITTI raw and odometry; colour cameras 2 and 3, bgr8)."""
TF_TOPIC, TF_STATIC_TOPIC = '/tf', '/tf_static'
TF_MSGTYPE = 'tf2_msgs/msg/TFMessage'
ODOM_FRAME, BASE_FRAME, LIDAR_FRAME = 'odom', 'base_link', 'velodyne'
"""Frames of the converter's TF tree: odom -> base_link (poses.txt) -> velodyne -> camera (Tr)."""
START_TIME_NS = 1_700_000_000 * 10**9  # recorded times are offsets from this instant
TYPESTORE = get_typestore(Stores.ROS2_KILTED)

# As ros2 bag play's publishers: reliable, so subscribers get full-size images (reliable or best effort).
PLAYER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# As tf2_ros's broadcasters: /tf reliable with depth 100, /tf_static latched (a late listener gets it).
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
_LATCHED = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
"""/tf_static's offered QoS in the bag's metadata, so that ``ros2 bag play`` latches it too."""


def _header(stamp_ns: int, frame_id: str):
    types = TYPESTORE.types
    stamp = types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def _image_msg(pixels: np.ndarray, encoding: str, header):
    """(H, W, 3) uint8 rgb8 or (H, W) float32 32FC1 → a rosbags Image."""
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    return TYPESTORE.types['sensor_msgs/msg/Image'](
        header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
        step=pixels[0].nbytes, data=pixels.view(np.uint8).reshape(-1))


def _camera_info_msg(P: np.ndarray, height: int, width: int, header):
    """(3, 4) rectified projection (K = P[:, :3], no distortion) → a rosbags CameraInfo."""
    types = TYPESTORE.types
    return types['sensor_msgs/msg/CameraInfo'](
        header=header, height=height, width=width, distortion_model='plumb_bob', d=np.zeros(5),
        k=P[:, :3].reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0,
        roi=types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                      do_rectify=False))


def tf_message(transforms, stamp_ns: int):
    """[(parent, child, pose (4, 4) of child in parent), ...] → a rosbags TFMessage at ``stamp_ns``."""
    from ssc_core.geometry import quaternion_from_pose
    types = TYPESTORE.types
    stamped = []
    for parent, child, pose in transforms:
        (x, y, z), (qx, qy, qz, qw) = quaternion_from_pose(pose)
        transform = types['geometry_msgs/msg/Transform'](
            translation=types['geometry_msgs/msg/Vector3'](x=x, y=y, z=z),
            rotation=types['geometry_msgs/msg/Quaternion'](x=qx, y=qy, z=qz, w=qw))
        stamped.append(types['geometry_msgs/msg/TransformStamped'](
            header=_header(stamp_ns, parent), child_frame_id=child, transform=transform))
    return types[TF_MSGTYPE](transforms=stamped)


def _mount(calib: dict, tr: np.ndarray, calib_path: Path, frame_id: str, stereo: bool) -> list:
    """The static transforms (parent, child, pose): base_link -> velodyne (the KITTI lidar above a
    ground-level base), velodyne -> camera (inverse of Tr), camera -> camera_right (the baseline)."""
    from ssc_core.presets import SEMANTIC_KITTI, base_from_grid
    from ssc_core.stereo import projection_baseline
    static = [(BASE_FRAME, LIDAR_FRAME, base_from_grid(SEMANTIC_KITTI)),
              (LIDAR_FRAME, frame_id, np.linalg.inv(tr))]
    if stereo:
        right = np.eye(4)
        right[0, 3] = projection_baseline(*(_projection(calib, key, calib_path) for key in ('P2', 'P3')))
        static.append((frame_id, f'{frame_id}_right', right))
    return static


def _velodyne_to_camera(calib: dict, path: Path) -> np.ndarray | None:
    """calib.txt's Tr (4, 4), checked rigid; None when the file has none."""
    from ssc_core.geometry import check_rigid
    if 'Tr' not in calib:
        return None
    if calib['Tr'].size != 12:
        raise ValueError(f'{path}: Tr has {calib["Tr"].size} numbers, expected 12 (velodyne -> camera)')
    return check_rigid(np.vstack([calib['Tr'].reshape(3, 4), (0, 0, 0, 1)]), f'{path}: Tr')


def _odometry(sequence_dir: Path, tr: np.ndarray, frames: int) -> np.ndarray | None:
    """(frames, 4, 4) odom -> base_link from poses.txt (None without it)."""
    from ssc_core.data.poses import base_poses, grid_poses, read_poses
    from ssc_core.presets import SEMANTIC_KITTI, base_from_grid
    path = sequence_dir / 'poses.txt'
    if not path.is_file():
        return None
    return base_poses(grid_poses(read_poses(path, frames)[:frames], tr), base_from_grid(SEMANTIC_KITTI))


def _projection(calib: dict, key: str, path: Path) -> np.ndarray:
    if key not in calib or calib[key].size != 12:
        raise ValueError(f'{path}: needs {key} with 12 numbers')
    return calib[key].reshape(3, 4)


def convert(sequence_dir, depth_dir, out, storage: str = 'mcap', frame_id: str = 'camera',
            limit: int | None = None, progress: bool = True) -> Path:
    """Write a KITTI odometry sequence (image_2, calib.txt, times.txt, optionally poses.txt) as a bag.

    With ``depth_dir`` (FRAME.npy, metres): image, depth and camera_info. Without (None): the
    stereo pair — image and camera_info (image_2, P2) and right and right_camera_info (image_3,
    P3, frame ``<frame_id>_right``), no depth; the player computes it. With calib.txt's Tr,
    ``/tf_static`` (the mount, once, latched) and, with poses.txt, ``/tf`` (odom -> base_link) at
    each image's stamp; what is left out is said on stderr.
    """
    from ssc_core.data.semantic_kitti import read_calib_matrices

    sequence_dir, out = Path(sequence_dir), Path(out)
    if out.exists():
        raise FileExistsError(f'{out}: already exists (not overwritten)')
    calib_path = sequence_dir / 'calib.txt'
    calib = read_calib_matrices(calib_path)
    cameras = {'image': ('image_2', _projection(calib, 'P2', calib_path), frame_id)}
    if depth_dir is None:
        cameras['right'] = ('image_3', _projection(calib, 'P3', calib_path), f'{frame_id}_right')
    times_path = sequence_dir / 'times.txt'
    if not times_path.is_file():
        raise FileNotFoundError(f'{times_path}: missing (one time in seconds per frame)')
    times = [float(line) for line in times_path.read_text().split()]
    images = sorted((sequence_dir / 'image_2').glob('*.png'))[:limit]
    if not images:
        raise FileNotFoundError(f'{sequence_dir / "image_2"}: no PNG images')
    if len(times) < len(images):
        raise ValueError(f'{times_path}: {len(times)} times for {len(images)} images')
    info_role = {'image': 'camera_info', 'right': 'right_camera_info'}
    roles = [r for c in cameras for r in (c, info_role[c])] + (['depth'] if depth_dir is not None else [])
    tr = _velodyne_to_camera(calib, calib_path)
    static = None if tr is None else _mount(calib, tr, calib_path, frame_id, stereo=depth_dir is None)
    odometry = None if tr is None else _odometry(sequence_dir, tr, max(int(p.stem) for p in images) + 1)
    if tr is None:
        print(f'bag convert: {calib_path} has no Tr: no /tf_static or /tf written', file=sys.stderr)
    elif odometry is None:
        print(f'bag convert: no {sequence_dir / "poses.txt"}: no /tf (odom -> {BASE_FRAME}) written',
              file=sys.stderr)
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    with Writer(out, version=9, storage_plugin=plugin) as writer:
        conns = {role: writer.add_connection(TOPICS[role], MSGTYPES[role], typestore=TYPESTORE)
                 for role in roles}
        tf_static = None if static is None else writer.add_connection(
            TF_STATIC_TOPIC, TF_MSGTYPE, typestore=TYPESTORE, offered_qos_profiles=[_LATCHED])
        tf = None if odometry is None else writer.add_connection(TF_TOPIC, TF_MSGTYPE, typestore=TYPESTORE)

        def write_tf(conn, transforms, stamp):
            writer.write(conn, stamp, TYPESTORE.serialize_cdr(tf_message(transforms, stamp), TF_MSGTYPE))
        for path in tqdm(images, desc='frames', unit='frame', disable=not progress):
            stamp = START_TIME_NS + round(times[int(path.stem)] * 1e9)
            if path == images[0] and tf_static is not None:
                write_tf(tf_static, static, stamp)
            if tf is not None:   # before the frame's images: a listener has it when they arrive
                write_tf(tf, [(ODOM_FRAME, BASE_FRAME, odometry[int(path.stem)])], stamp)
            messages = {}
            for role, (folder, P, frame) in cameras.items():
                image_path = sequence_dir / folder / path.name
                if not image_path.is_file():
                    raise FileNotFoundError(f'{image_path}: {folder} image missing for frame {path.stem}')
                rgb = np.asarray(PILImage.open(image_path).convert('RGB'))
                header = _header(stamp, frame)
                messages[role] = _image_msg(rgb, 'rgb8', header)
                messages[info_role[role]] = _camera_info_msg(P, *rgb.shape[:2], header)
            if depth_dir is not None:
                depth_path = Path(depth_dir) / f'{path.stem}.npy'
                if not depth_path.is_file():
                    raise FileNotFoundError(f'{depth_path}: depth missing for frame {path.stem}')
                messages['depth'] = _image_msg(np.load(depth_path).astype('<f4'), '32FC1',
                                               _header(stamp, frame_id))
            for role, msg in messages.items():
                writer.write(conns[role], stamp, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    return out


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' → the rclpy message class."""
    package, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def _wait_for_subscribers(node, publishers: dict, timeout: float, stop: threading.Event) -> None:
    """Wait until every topic has a subscriber, at most ``timeout`` s (logged either way)."""
    missing = sorted(topic for topic, pub in publishers.items() if pub.get_subscription_count() == 0)
    if not missing or timeout <= 0:
        return
    node.get_logger().info(f'waiting up to {timeout:.0f} s for subscribers of {", ".join(missing)}')
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline and not stop.wait(0.05):
        missing = [topic for topic in missing if publishers[topic].get_subscription_count() == 0]
    if missing:
        node.get_logger().warning(f'no subscriber on {", ".join(missing)}; playing anyway')


def parse_topic_mapping(text: str) -> dict[str, str]:
    """'image=/a,right=/b' → {'image': '/a', 'right': '/b'}; ValueError naming a bad item or role."""
    mapping = {}
    for item in filter(None, text.split(',')):
        role, sep, topic = item.partition('=')
        if not sep or not topic or role not in TOPICS:
            raise ValueError(f'--topics: {item!r}: expected ROLE=TOPIC with ROLE one of {", ".join(TOPICS)}')
        mapping[role] = topic
    return mapping


def bag_roles(bag_topics, mapping: dict[str, str] | None = None) -> dict[str, str]:
    """Role → bag topic: ``mapping`` over the defaults (our names, else kitti2bag's when the bag
    has them); default roles missing in the bag are left out, a mapped topic missing is an error."""
    bag_topics = set(bag_topics)
    mapping = mapping or {}
    missing = sorted(f'{topic} ({role})' for role, topic in mapping.items() if topic not in bag_topics)
    if missing:
        raise ValueError(f'no topic {", ".join(missing)} in the bag; it has {", ".join(sorted(bag_topics))}')
    ours = {r: t for r, t in TOPICS.items() if t in bag_topics}
    kitti = {r: t for r, t in KITTI2BAG_TOPICS.items() if t in bag_topics}
    roles = {**(ours or kitti), **mapping}
    shared = sorted({t for t in roles.values() if list(roles.values()).count(t) > 1})
    if shared:
        raise ValueError(f'topic {", ".join(shared)} given to two roles: '
                         f'{", ".join(r for r, t in roles.items() if t in shared)}')
    if 'image' not in roles:
        raise ValueError(f'no image topic in the bag (give --topics image=TOPIC); it has '
                         f'{", ".join(sorted(bag_topics))}')
    return roles


def unplayed_topics(types: dict[str, str], roles: dict[str, str]) -> str | None:
    """The bag's topics no role plays (``types``: topic -> message type), listed with their types
    and how to map one, or None when every topic is played."""
    unplayed = {topic: msgtype for topic, msgtype in sorted(types.items()) if topic not in roles.values()}
    if not unplayed:
        return None
    listed = ', '.join(f'{topic} ({msgtype})' for topic, msgtype in unplayed.items())
    free = [role for role in TOPICS if role not in roles]
    example = next((f'{role}={topic}' for topic, msgtype in unplayed.items() for role in free
                    if MSGTYPES[role] == msgtype), f'ROLE={next(iter(unplayed))}')
    return (f'not played: {listed}; to play one, give its role: --topics {example} '
            f'(ros2 launch: bag_topics:={example}; roles: {", ".join(TOPICS)})')


def _cdr_converter(reader, conn):
    """Raw bag message → ROS 2 CDR: ROS 1 messages converted by rosbags (the header's ``seq`` dropped;
    Image and CameraInfo are otherwise laid out alike in ROS 1 and ROS 2)."""
    if reader.is2:
        return bytes
    return lambda raw: bytes(TYPESTORE.ros1_to_cdr(raw, conn.msgtype))


def play(node, bag, rate: float = 1.0, loop: bool = False, topics: dict[str, str] | None = None,
         stop: threading.Event | None = None, clock_hz: float = 0.0, wait_for_subscribers: float = 0.0,
         baseline: float | None = None) -> int:
    """Publish a bag's image, camera_info and depth (raw CDR) under our topic names at their recorded
    times ÷ rate; when the bag has a right image and no depth, the depth computed from the stereo
    pair (:class:`~ssc_ros.stereo_source.StereoDepthSource`, ``baseline`` in metres or from the
    camera_info pair) is published as 32FC1 with the left image's header.

    ``topics``: role → bag topic (see :func:`bag_roles`). Publishers are reliable (as ``ros2 bag
    play``'s), so full-size images arrive. The bag's ``/tf`` and ``/tf_static`` (TFMessage) are
    played too, as tf2's broadcasters publish them: the static transforms gathered into one latched
    message (a listener that joins later gets them all). Waits first for a subscriber on every
    camera topic (at most ``wait_for_subscribers`` s); ``clock_hz`` > 0 publishes the bag time on
    /clock at that rate (for ``use_sim_time``); ``stop`` ends playback early. Before returning,
    waits (up to 5 s) until subscribers acknowledged every message. Returns the number of camera
    messages published (TF messages are logged apart).
    """
    from rclpy.duration import Duration
    from rclpy.serialization import deserialize_message
    from rclpy.time import Time
    from rosbags.highlevel import AnyReader
    from rosgraph_msgs.msg import Clock

    from .stereo_source import StereoDepthSource

    stop = stop or threading.Event()
    count = 0
    with AnyReader([Path(bag)], default_typestore=TYPESTORE) as reader:
        roles = bag_roles({c.topic for c in reader.connections}, topics)
        role_of = {topic: role for role, topic in roles.items()}
        tf = _TransformPlayer(node, [c for c in reader.connections if c.topic in (TF_TOPIC, TF_STATIC_TOPIC)
                                     and c.msgtype == TF_MSGTYPE])
        unplayed = unplayed_topics({c.topic: c.msgtype for c in reader.connections
                                    if c not in tf.connections}, roles)
        if unplayed:
            node.get_logger().warning(unplayed)
        conns = [c for c in reader.connections if c.topic in role_of]
        for conn in conns:
            if conn.msgtype != MSGTYPES[role_of[conn.topic]]:
                raise ValueError(f'{conn.topic} ({role_of[conn.topic]}): {conn.msgtype}, expected '
                                 f'{MSGTYPES[role_of[conn.topic]]}')
        to_cdr = {c.id: _cdr_converter(reader, c) for c in conns + tf.connections}
        stereo = StereoDepthSource(baseline) if 'right' in roles and 'depth' not in roles else None
        if stereo is not None and baseline is None and 'right_camera_info' not in roles:
            raise ValueError('stereo: no right camera_info in the bag for the baseline '
                             '(give --topics right_camera_info=TOPIC or --baseline METRES)')
        published = [r for r in PUBLISHED_ROLES if r in roles or (r == 'depth' and stereo is not None)]
        msg_class = {role: message_class(msgtype) for role, msgtype in MSGTYPES.items()}
        publishers = {r: node.create_publisher(msg_class[r], TOPICS[r], PLAYER_QOS) for r in published}
        for role, topic in sorted(roles.items()):
            target = f' -> {TOPICS[role]}' if role in publishers else ' (stereo input)'
            node.get_logger().info(f'{role}: {topic}{target}')
        if stereo is not None:
            node.get_logger().info(f'depth: from the stereo pair (OpenCV SGBM) -> {TOPICS["depth"]}')
        clock = node.create_publisher(Clock, '/clock', QoSProfile(
            depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)) if clock_hz > 0 else None
        _wait_for_subscribers(node, {TOPICS[r]: p for r, p in publishers.items()}, wait_for_subscribers, stop)

        def publish_clock(bag_ns: int) -> None:
            clock.publish(Clock(clock=Time(nanoseconds=bag_ns).to_msg()))

        def wait_until(wall: float, start_wall: float, start_bag: int) -> None:
            """Sleep until the wall time ``wall``, publishing /clock on the way."""
            while not stop.is_set():
                now = time.monotonic()
                if clock is not None:
                    publish_clock(start_bag + round((now - start_wall) * rate * 1e9))
                if now >= wall:
                    return
                stop.wait(min(wall - now, 1.0 / clock_hz) if clock is not None else wall - now)

        while not stop.is_set():
            start_wall, start_bag = time.monotonic(), reader.start_time
            for conn, stamp, raw in reader.messages(connections=conns + tf.connections):
                wait_until(start_wall + (stamp - start_bag) / 1e9 / rate, start_wall, start_bag)
                if stop.is_set():
                    break
                if conn.topic not in role_of:
                    tf.publish(conn.topic, to_cdr[conn.id](raw))
                    continue
                role, cdr = role_of[conn.topic], to_cdr[conn.id](raw)
                if role in publishers:
                    publishers[role].publish(cdr)
                    count += 1
                if stereo is not None and role != 'depth':
                    try:
                        depths = stereo.add(role, deserialize_message(cdr, msg_class[role]))
                    except ValueError as e:  # this pair gets no depth; playback goes on
                        node.get_logger().warning(f'{conn.topic}: no depth: {e}', throttle_duration_sec=5.0)
                        depths = []
                    for depth in depths:
                        publishers['depth'].publish(depth)
                        count += 1
            if not loop:
                break
        for pub in [*publishers.values(), *tf.publishers.values()]:
            pub.wait_for_all_acked(Duration(seconds=5))
        if tf.count:
            node.get_logger().info(f'published {tf.count} TF messages ({", ".join(sorted(tf.publishers))})')
    return count


class _TransformPlayer:
    """Plays a bag's /tf and /tf_static (TFMessage CDR) as tf2's broadcasters publish them: /tf as
    it comes, /tf_static as one latched message holding every static transform seen so far (the
    latest per child frame), so that a listener joining later gets the whole mount."""

    def __init__(self, node, connections):
        self.connections = list(connections)
        self.publishers = {}
        self.static = {}
        self.count = 0
        if not self.connections:
            return
        try:
            self.message_type = message_class(TF_MSGTYPE)
        except ImportError as e:
            node.get_logger().warning(f'not played: {", ".join(sorted({c.topic for c in self.connections}))} '
                                      f'(tf2_msgs does not import: {e})')
            self.connections = []
            return
        for topic in sorted({c.topic for c in self.connections}):
            qos = TF_STATIC_QOS if topic == TF_STATIC_TOPIC else TF_QOS
            self.publishers[topic] = node.create_publisher(self.message_type, topic, qos)

    def publish(self, topic: str, cdr: bytes) -> None:
        from rclpy.serialization import deserialize_message
        if topic == TF_STATIC_TOPIC:
            for transform in deserialize_message(cdr, self.message_type).transforms:
                self.static[transform.child_frame_id] = transform
            self.publishers[topic].publish(self.message_type(transforms=list(self.static.values())))
        else:
            self.publishers[topic].publish(cdr)
        self.count += 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    c = sub.add_parser('convert', help='KITTI sequence -> rosbag2')
    c.add_argument('sequence_dir', help='.../dataset/sequences/XX')
    c.add_argument('depth_dir', nargs='?',
                   help='folder of FRAME.npy depth maps (metres); omitted: the stereo pair image_2 + image_3')
    c.add_argument('out', help='bag folder to create')
    c.add_argument('--storage', default='mcap', choices=('mcap', 'sqlite3'))
    c.add_argument('--frame-id', default='camera')
    c.add_argument('--limit', type=int, help='first N frames only')
    p = sub.add_parser('play', help='publish a rosbag2 or ROS 1 bag with rclpy')
    p.add_argument('bag', help='rosbag2 folder (sqlite3 or mcap) or ROS 1 .bag file')
    p.add_argument('--rate', type=float, default=1.0)
    p.add_argument('--loop', action='store_true')
    p.add_argument('--topics', default='', metavar='ROLE=TOPIC,...',
                   help=f'the bag\'s topic for each role ({", ".join(TOPICS)}); default: ours, '
                        'else kitti2bag\'s')
    p.add_argument('--baseline', type=float, metavar='METRES',
                   help='stereo baseline (default: from the camera_info pair)')
    p.add_argument('--clock', type=float, nargs='?', const=40.0, default=0.0, metavar='HZ',
                   help='publish the bag time on /clock (default 40 Hz), as ros2 bag play --clock')
    p.add_argument('--wait-for-subscribers', type=float, default=30.0, metavar='SECONDS',
                   help='wait until every topic has a subscriber, at most this long (0: do not wait)')
    args, ros_args = parser.parse_known_args(argv)
    if args.command == 'convert':
        try:
            out = convert(args.sequence_dir, args.depth_dir, args.out, args.storage, args.frame_id,
                          args.limit)
        except (OSError, ValueError) as e:
            sys.exit(f'bag convert: {e}')
        print(f'wrote {out}')
        return
    if not args.rate > 0:
        parser.error('--rate must be > 0')
    try:
        mapping = parse_topic_mapping(args.topics)
    except ValueError as e:
        sys.exit(f'bag play: {e}')
    bag = Path(args.bag)
    if not ((bag / 'metadata.yaml').is_file() or (bag.suffix == '.bag' and bag.is_file())):
        sys.exit(f'bag play: {args.bag}: not a rosbag2 folder (no metadata.yaml) or ROS 1 .bag file')
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from rosbags.highlevel import AnyReaderError

    rclpy.init(args=ros_args, signal_handler_options=SignalHandlerOptions.NO)
    stop = stop_on_signals()
    node = rclpy.create_node('ssc_bag_player')
    try:
        count = play(node, args.bag, args.rate, args.loop, mapping, stop, args.clock,
                     args.wait_for_subscribers, args.baseline)
        node.get_logger().info(f'published {count} messages from {args.bag}')
    except (AnyReaderError, OSError, ValueError) as e:
        node.get_logger().error(f'bag play: {args.bag}: {e}')
        sys.exit(1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
