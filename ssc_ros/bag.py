"""KITTI odometry sequences → rosbag2, and a rosbag2 player that needs no ``ros2`` CLI.

    python -m ssc_ros.bag convert SEQ_DIR DEPTH_DIR OUT_BAG [--storage mcap|sqlite3]
    python -m ssc_ros.bag play OUT_BAG [--rate 1.0] [--loop]

The bag holds ``/camera/image`` (rgb8), ``/camera/depth`` (32FC1 metres) and
``/camera/camera_info`` at the recorded times (times.txt), frame ``camera``.
"""
import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from ssc_core.data.semantic_kitti import read_calib

TOPICS = {'image': '/camera/image', 'depth': '/camera/depth', 'camera_info': '/camera/camera_info'}
START_TIME_NS = 1_700_000_000 * 10**9  # recorded times are offsets from this instant
TYPESTORE = get_typestore(Stores.ROS2_KILTED)


def _header(stamp_ns: int, frame_id: str):
    types = TYPESTORE.types
    stamp = types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def convert(sequence_dir, depth_dir, out, storage: str = 'mcap', frame_id: str = 'camera',
            limit: int | None = None, progress: bool = True) -> Path:
    """Write a KITTI odometry sequence (image_2, calib.txt, times.txt + stereo depth .npy) as a bag."""
    sequence_dir, depth_dir, out = Path(sequence_dir), Path(depth_dir), Path(out)
    if out.exists():
        raise FileExistsError(f'{out}: already exists (not overwritten)')
    K, _ = read_calib(sequence_dir / 'calib.txt')
    times_path = sequence_dir / 'times.txt'
    if not times_path.is_file():
        raise FileNotFoundError(f'{times_path}: missing (one time in seconds per frame)')
    times = [float(line) for line in times_path.read_text().split()]
    images = sorted((sequence_dir / 'image_2').glob('*.png'))[:limit]
    if not images:
        raise FileNotFoundError(f'{sequence_dir / "image_2"}: no PNG images')
    if len(times) < len(images):
        raise ValueError(f'{times_path}: {len(times)} times for {len(images)} images')
    types = TYPESTORE.types
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    with Writer(out, version=9, storage_plugin=plugin) as writer:
        conns = {key: writer.add_connection(topic, msgtype, typestore=TYPESTORE) for key, topic, msgtype in (
            ('image', TOPICS['image'], 'sensor_msgs/msg/Image'),
            ('depth', TOPICS['depth'], 'sensor_msgs/msg/Image'),
            ('camera_info', TOPICS['camera_info'], 'sensor_msgs/msg/CameraInfo'))}
        for path in tqdm(images, desc='frames', unit='frame', disable=not progress):
            frame = int(path.stem)
            depth_path = depth_dir / f'{path.stem}.npy'
            if not depth_path.is_file():
                raise FileNotFoundError(f'{depth_path}: depth missing for frame {path.stem}')
            rgb = np.asarray(PILImage.open(path).convert('RGB'))
            depth = np.load(depth_path).astype('<f4')
            stamp = START_TIME_NS + round(times[frame] * 1e9)
            header = _header(stamp, frame_id)
            height, width = rgb.shape[:2]
            messages = {
                'image': types['sensor_msgs/msg/Image'](
                    header=header, height=height, width=width, encoding='rgb8', is_bigendian=0,
                    step=width * 3, data=rgb.reshape(-1)),
                'depth': types['sensor_msgs/msg/Image'](
                    header=header, height=depth.shape[0], width=depth.shape[1], encoding='32FC1',
                    is_bigendian=0, step=depth.shape[1] * 4, data=depth.view(np.uint8).reshape(-1)),
                'camera_info': types['sensor_msgs/msg/CameraInfo'](
                    header=header, height=height, width=width, distortion_model='plumb_bob',
                    d=np.zeros(5), k=K.reshape(-1), r=np.eye(3).reshape(-1),
                    p=np.hstack([K, np.zeros((3, 1))]).reshape(-1), binning_x=0, binning_y=0,
                    roi=types['sensor_msgs/msg/RegionOfInterest'](
                        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)),
            }
            for key, msg in messages.items():
                writer.write(conns[key], stamp, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    return out


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' → the rclpy message class."""
    package, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def play(node, bag, rate: float = 1.0, loop: bool = False, topics=None, should_stop=lambda: False) -> int:
    """Publish a bag's messages (raw CDR, not deserialized) at their recorded times ÷ rate.

    Returns the number of messages published.
    """
    from rclpy.qos import QoSProfile
    from rosbags.highlevel import AnyReader

    count = 0
    with AnyReader([Path(bag)], default_typestore=TYPESTORE) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        publishers = {c.topic: node.create_publisher(message_class(c.msgtype), c.topic, QoSProfile(depth=10))
                      for c in conns}
        while True:
            start_wall, start_bag = time.monotonic(), None
            for conn, stamp, raw in reader.messages(connections=conns):
                start_bag = stamp if start_bag is None else start_bag
                delay = (stamp - start_bag) / 1e9 / rate - (time.monotonic() - start_wall)
                if delay > 0:
                    time.sleep(delay)
                if should_stop():
                    return count
                publishers[conn.topic].publish(bytes(raw))
                count += 1
            if not loop:
                return count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    c = sub.add_parser('convert', help='KITTI sequence -> rosbag2')
    c.add_argument('sequence_dir', help='.../dataset/sequences/XX')
    c.add_argument('depth_dir', help='folder of FRAME.npy depth maps (metres)')
    c.add_argument('out', help='bag folder to create')
    c.add_argument('--storage', default='mcap', choices=('mcap', 'sqlite3'))
    c.add_argument('--frame-id', default='camera')
    c.add_argument('--limit', type=int, help='first N frames only')
    p = sub.add_parser('play', help='publish a rosbag2 with rclpy')
    p.add_argument('bag')
    p.add_argument('--rate', type=float, default=1.0)
    p.add_argument('--loop', action='store_true')
    p.add_argument('--topics', nargs='*')
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
    import rclpy
    rclpy.init(args=ros_args)
    node = rclpy.create_node('ssc_bag_player')
    try:
        count = play(node, args.bag, args.rate, args.loop, args.topics)
        node.get_logger().info(f'published {count} messages from {args.bag}')
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
