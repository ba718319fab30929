"""The node on a TF tree over real DDS: gaps in TF and unknown frames are counted by kind while the
node goes on; without tf2 installed, the node and the player run with cam_from_grid."""
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import diagnostics_values, node_command, start
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from tf2_ros import StaticTransformBroadcaster, TransformBroadcaster

from ssc_core.presets import SMALL, base_from_grid
from ssc_ros import conversions as conv
from ssc_ros.transforms import transform_stamped

pytestmark = pytest.mark.ros

REMAP = ['-r', 'image:=/camera/image', '-r', 'depth:=/camera/depth', '-r', 'camera_info:=/camera/camera_info']
BLOCK_TF2 = ("import sys, runpy; sys.modules.update(dict.fromkeys(('tf2_ros', 'tf2_py', 'tf2_msgs'))); "
             "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")
"""python -c BLOCK_TF2 MODULE ARGS: runs MODULE as if tf2 were not installed (its imports fail)."""


class Robot:
    """The probe as a robot: a camera (frames stamped now) with its mount on /tf_static and odom ->
    base_link on /tf at each frame's stamp (unless ``odom=False``: a gap in TF)."""

    def __init__(self, probe):
        self.probe = probe
        topics = ((Image, '/camera/image'), (Image, '/camera/depth'), (CameraInfo, '/camera/camera_info'))
        self.pubs = [probe.node.create_publisher(t, name, 10) for t, name in topics]
        mount = base_from_grid(SMALL) @ np.linalg.inv(np.array(SMALL.cam_from_grid))   # KITTI's, on a base
        self.static = StaticTransformBroadcaster(probe.node)
        now = probe.node.get_clock().now().to_msg()
        self.static.sendTransform(transform_stamped('base_link', 'camera', mount, now))
        self.moving = TransformBroadcaster(probe.node)
        self.x = 0.0

    def send(self, frame_id='camera', odom=True) -> None:
        header = Header(frame_id=frame_id, stamp=self.probe.node.get_clock().now().to_msg())
        if odom:
            self.x += 0.4
            pose = np.eye(4)
            pose[0, 3] = self.x
            self.moving.sendTransform(transform_stamped('odom', 'base_link', pose, header.stamp))
        self.pubs[2].publish(CameraInfo(header=header, k=list(np.ravel(SMALL.cam_K)), width=320, height=96))
        self.pubs[0].publish(conv.rgb_image_msg(np.full((96, 320, 3), 120, np.uint8), header))
        self.pubs[1].publish(conv.depth_image_msg(np.full((96, 320), 8.0, np.float32), header))

    def until(self, condition, what, timeout=60, **frame) -> None:
        def step():
            if condition():
                return True
            self.send(**frame)
            time.sleep(0.5)
            return False
        self.probe.wait_for(step, timeout, what)


def test_tf_gaps_and_unknown_frames_are_counted_and_the_node_goes_on(checkpoint, probe, tmp_path):
    """With map_frame:=odom: frames with TF are fused into the map; while odom -> base_link stops (a
    gap) frames are still published but not fused (tf_timeout, naming the frames); images from an
    unknown camera frame are dropped (tf_unknown_frame); when TF comes back the map grows again."""
    probe.record(PointCloud2, '/voxels')
    probe.record(DiagnosticArray, '/diagnostics')
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'map_frame:=odom', '-p',
                              'tf_timeout:=0.3', '-p', 'diagnostics_period:=0.2', *REMAP, tf=True),
                 tmp_path / 'node.log')
    robot = Robot(probe)

    def value(key) -> int:
        msgs = probe.messages('/diagnostics')
        return int(diagnostics_values(msgs[-1]).get(key, 0)) if msgs else 0
    robot.until(lambda: value('map_frames') >= 1, 'a frame in the map', timeout=90)
    robot.until(lambda: value('error_tf_timeout') >= 1, 'a frame not fused', odom=False)
    fused, clouds, gaps = value('map_frames'), len(probe.messages('/voxels')), value('error_tf_timeout')
    robot.until(lambda: value('error_tf_timeout') > gaps and len(probe.messages('/voxels')) > clouds,
                'more frames published but not fused', odom=False)
    assert value('map_frames') == fused
    robot.until(lambda: value('error_tf_unknown_frame') >= 1, 'a frame from an unknown camera frame',
                frame_id='camera_typo')
    robot.until(lambda: value('map_frames') > fused, 'the map growing again after the gap')
    node.send_signal(2)
    assert node.wait(timeout=20) == 0
    log = (tmp_path / 'node.log').read_text()
    assert 'map: no transform base_link -> odom at ' in log and 'the latest is ' in log, log
    assert 'no transform base_link -> camera_typo at ' in log, log
    assert '"camera_typo" passed to lookupTransform' in log
    assert 'Traceback' not in log


def test_without_tf2_the_node_and_the_player_run_with_cam_from_grid(checkpoint, probe, tmp_path):
    """tf2 not importable (its imports fail: python -c BLOCK_TF2): the node says so at start-up and
    runs with cam_from_grid, the player plays the bag's images but not its /tf; use_tf:=true or a
    map_frame stop the node with one line."""
    from ssc_core.data.synthetic import write_sequence
    from ssc_ros.bag import convert

    seq = write_sequence(tmp_path / 'kitti', '08', 4, image_size=(320, 96), label_every=100)
    bag = convert(seq, tmp_path / 'kitti' / 'depth' / 'sequences' / '08', tmp_path / 'bag', progress=False)
    probe.record(PointCloud2, '/voxels')
    without_tf2 = [sys.executable, '-c', BLOCK_TF2]
    node = start([*without_tf2, 'ssc_ros.node', '--ros-args', '-p', f'checkpoint:={checkpoint}', *REMAP],
                 tmp_path / 'node.log')
    # the player waits for the node's subscriptions, not for the probe to match its volatile
    # /voxels: without this, the 4 frames' clouds could all go out before the probe hears them
    probe.wait_for(lambda: probe.node.count_publishers('/voxels') > 0, 60, "the node's /voxels")
    player = subprocess.run([*without_tf2, 'ssc_ros.bag', 'play', str(bag), '--rate', '0.5'],
                            capture_output=True, text=True, timeout=120)
    assert player.returncode == 0, player.stderr
    assert 'not played: /tf, /tf_static (tf2_msgs does not import: ' in player.stderr, player.stderr
    probe.wait_for(lambda: probe.messages('/voxels'), 60, 'a cloud')
    node.send_signal(2)
    assert node.wait(timeout=20) == 0
    log = (tmp_path / 'node.log').read_text()
    assert ('no TF (tf2_ros does not import (ModuleNotFoundError: import of tf2_ros halted; None in '
            "sys.modules)): the camera's pose in base_link is the cam_from_grid parameter") in log, log
    assert probe.messages('/voxels')[0].header.frame_id == 'base_link'
    refusals = {'use_tf:=true': 'ssc_node: parameter use_tf: true, but tf2_ros does not import',
                'map_frame:=odom': "ssc_node: parameter map_frame: 'odom' needs the robot's"}
    for given, message in refusals.items():
        refused = subprocess.run([*without_tf2, 'ssc_ros.node', '--ros-args', '-p',
                                  f'checkpoint:={checkpoint}', '-p', given],
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1 and refused.stderr.startswith(message), refused.stderr


def test_static_transforms_from_many_messages_reach_a_late_listener_whole(probe, tmp_path):
    """A bag whose /tf_static came from two broadcasters (two messages, as rosbag2 records them):
    the player publishes them latched as one message holding both, so a listener that starts later
    gets the whole tree (a latched topic keeps only its last message)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rosbags.rosbag2 import Writer
    from tf2_msgs.msg import TFMessage

    from ssc_ros.bag import TF_MSGTYPE, TYPESTORE, tf_message

    bag = tmp_path / 'bag'
    with Writer(bag, version=9) as writer:
        image = writer.add_connection('/camera/image', 'sensor_msgs/msg/Image', typestore=TYPESTORE)
        static = writer.add_connection('/tf_static', TF_MSGTYPE, typestore=TYPESTORE)
        for i, child in enumerate(('velodyne', 'camera')):
            message = tf_message([('base_link', child, np.eye(4))], 10**9)
            writer.write(static, 10**9 + i, TYPESTORE.serialize_cdr(message, TF_MSGTYPE))
        header = TYPESTORE.types['std_msgs/msg/Header'](
            stamp=TYPESTORE.types['builtin_interfaces/msg/Time'](sec=1, nanosec=5), frame_id='camera')
        msg = TYPESTORE.types['sensor_msgs/msg/Image'](header=header, height=1, width=1, encoding='rgb8',
                                                      is_bigendian=0, step=3, data=np.zeros(3, np.uint8))
        writer.write(image, 10 * 10**9, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))   # 9 s later
    player = start([sys.executable, '-m', 'ssc_ros.bag', 'play', str(bag), '--wait-for-subscribers', '0'],
                   tmp_path / 'player.log')
    try:
        probe.wait_for(lambda: 'image: /camera/image' in (tmp_path / 'player.log').read_text(), 30,
                       'the player to start')   # it logs its roles, then plays
        time.sleep(2.0)   # both /tf_static messages are out, the image not yet
        listener = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL)   # tf2's static QoS
        probe.record(TFMessage, '/tf_static', listener)
        probe.wait_for(lambda: probe.messages('/tf_static'), 5, 'the latched /tf_static')
    finally:
        player.send_signal(2)
        player.wait(timeout=20)
    children = sorted(t.child_frame_id for t in probe.messages('/tf_static')[0].transforms)
    assert children == ['camera', 'velodyne'] and len(probe.messages('/tf_static')) == 1
