"""The built-in rosbag2 player with real DDS: full-size frames reach the node, /clock, clean exits."""
import signal
import subprocess
import sys
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import diagnostics_values, node_command, start, write_kitti_sequence
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from ssc_ros.bag import convert

pytestmark = pytest.mark.ros

REMAP = ['-r', 'image:=/camera/image', '-r', 'depth:=/camera/depth', '-r', 'camera_info:=/camera/camera_info']


def player_command(bag, *args):
    return [sys.executable, '-m', 'ssc_ros.bag', 'play', str(bag), *args]


@pytest.fixture(scope='module')
def small_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp('small_bag')
    seq, depth = write_kitti_sequence(root / 'seq', root / 'depth', 5, size=(320, 96))
    return convert(seq, depth, root / 'bag', progress=False)


def test_full_size_frames_from_the_player_reach_the_node(checkpoint, probe, tmp_path):
    """10 KITTI-size frames (1241x376 rgb8 + 32FC1) at 10 Hz: every image and depth is received."""
    seq, depth = write_kitti_sequence(tmp_path / 'seq', tmp_path / 'depth', 10)
    bag = convert(seq, depth, tmp_path / 'bag', progress=False)
    probe.record(DiagnosticArray, '/diagnostics')
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'diagnostics_period:=0.2', *REMAP,
                              tf=True), tmp_path / 'node.log')   # the camera's pose from the bag's /tf_static
    # Started together, as under ros2 launch: the player waits for the node's subscriptions.
    player = subprocess.run(player_command(bag), capture_output=True, text=True, timeout=120)
    assert player.returncode == 0, player.stderr
    assert 'published 30 messages' in player.stderr

    def values():
        msgs = probe.messages('/diagnostics')
        return diagnostics_values(msgs[-1]) if msgs else {}
    try:
        probe.wait_for(lambda: values().get('received_image') == values().get('received_depth') == '10'
                       and int(values().get('processed', 0)) >= 1, 60, 'all 10 frames received')
    except TimeoutError as e:
        raise AssertionError(f'{e}; the node\'s last diagnostics: {values()}') from None
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=20) == 0


def test_player_publishes_clock_and_stops_cleanly_on_signals(small_bag, probe):
    probe.record(Clock, '/clock', QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    probe.record(Image, '/camera/image')
    for signum in (signal.SIGINT, signal.SIGTERM):
        player = subprocess.Popen(player_command(small_bag, '--loop', '--clock', '50', '--rate', '2',
                                                 '--topics', 'image=/camera/image',
                                                 '--wait-for-subscribers', '0'),
                                  stderr=subprocess.PIPE, text=True)
        try:
            probe.wait_for(lambda: len(probe.messages('/camera/image')) >= 7, 30, 'a second loop of the bag')
            player.send_signal(signum)
            time.sleep(0.05)
            player.send_signal(signum)  # a second one, as a terminal plus ros2 launch send
            _, err = player.communicate(timeout=20)
        finally:
            player.kill()
        assert player.returncode == 0, err
        assert 'Traceback' not in err and 'published' in err
        probe.received['/camera/image'].clear()
    clocks = [c.clock.sec + c.clock.nanosec * 1e-9 for c in probe.messages('/clock')]
    assert len(clocks) > 20
    start_time = 1_700_000_000
    assert all(start_time <= c < start_time + 1 for c in clocks)  # bag time: 5 frames at 10 Hz


def test_player_missing_bag_is_one_line(tmp_path):
    out = subprocess.run(player_command(tmp_path / 'nothing'), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert out.stderr.strip() == (f'bag play: {tmp_path / "nothing"}: not a rosbag2 folder '
                                  '(no metadata.yaml) or ROS 1 .bag file')


def test_player_lists_the_topics_it_does_not_play(tmp_path):
    """A kitti2bag-style bag whose depth topic is none of the known names: the player says which
    topics it leaves out, with their types, and how to map the depth."""
    import numpy as np
    from rosbags.rosbag2 import Writer

    from ssc_core.presets import SMALL
    from ssc_ros.bag import KITTI2BAG_TOPICS, TYPESTORE, _camera_info_msg, _header, _image_msg

    bag = tmp_path / 'kitti2bag'
    header = _header(10**9, 'camera')
    messages = {KITTI2BAG_TOPICS['image']: _image_msg(np.zeros((96, 320, 3), np.uint8), 'rgb8', header),
                KITTI2BAG_TOPICS['camera_info']: _camera_info_msg(
                    np.hstack([np.array(SMALL.cam_K), np.zeros((3, 1))]), 96, 320, header),
                '/kitti/camera_color_left/depth': _image_msg(np.ones((96, 320), np.float32), '32FC1', header)}
    with Writer(bag, version=9) as writer:
        for topic, msg in messages.items():
            conn = writer.add_connection(topic, msg.__msgtype__, typestore=TYPESTORE)
            writer.write(conn, 10**9, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    out = subprocess.run(player_command(bag, '--wait-for-subscribers', '0'), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert ('not played: /kitti/camera_color_left/depth (sensor_msgs/msg/Image); to play one, give its role: '
            '--topics depth=/kitti/camera_color_left/depth (ros2 launch: '
            'bag_topics:=depth=/kitti/camera_color_left/depth;') in out.stderr, out.stderr
    mapped = subprocess.run(player_command(bag, '--wait-for-subscribers', '0', '--topics',
                                           'depth=/kitti/camera_color_left/depth'),
                            capture_output=True, text=True, timeout=60)
    assert 'not played' not in mapped.stderr and 'published 3 messages' in mapped.stderr, mapped.stderr
