"""Helpers for tests that run real ROS 2 nodes over DDS on this host only."""
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(10, 200)))

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor


def write_kitti_sequence(seq_dir, depth_dir, frames, size=(1241, 376), hz=10.0):
    """A KITTI odometry sequence of ``frames`` plain frames (image_2 PNGs, calib.txt, times.txt) and
    their depth .npy (10 m everywhere), at ``size`` = (width, height); fast to write at full size."""
    from PIL import Image as PILImage

    from ssc_core.presets import SEMANTIC_KITTI

    seq_dir, depth_dir = Path(seq_dir), Path(depth_dir)
    (seq_dir / 'image_2').mkdir(parents=True)
    depth_dir.mkdir(parents=True)
    width, height = size
    K = np.array(SEMANTIC_KITTI.cam_K)
    tr = np.array(SEMANTIC_KITTI.cam_from_grid)[:3]
    (seq_dir / 'calib.txt').write_text(
        'P2: ' + ' '.join(map(str, np.hstack([K, np.zeros((3, 1))]).ravel())) + '\n'
        'Tr: ' + ' '.join(map(str, tr.ravel())) + '\n')
    (seq_dir / 'times.txt').write_text(''.join(f'{i / hz:.6f}\n' for i in range(frames)))
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    for i in range(frames):
        rgb = np.stack(np.broadcast_arrays(ramp[None, :], np.uint8(i * 20 % 256), ramp[::-1][None, :]), -1)
        PILImage.fromarray(np.ascontiguousarray(np.broadcast_to(rgb, (height, width, 3)))).save(
            seq_dir / 'image_2' / f'{i:06d}.png', compress_level=1)
        np.save(depth_dir / f'{i:06d}.npy', np.full((height, width), 10.0, np.float32))
    return seq_dir, depth_dir


def node_command(*ros_args, module='ssc_ros.node', tf=False):
    """``python -m MODULE --ros-args ...``; without ``tf`` the node runs with use_tf:=false (the
    tests that publish frames themselves have no TF tree: the camera pose is cam_from_grid)."""
    return [sys.executable, '-m', module, '--ros-args', *([] if tf else ['-p', 'use_tf:=false']), *ros_args]


STARTED = []  # processes started by start(); conftest kills those still running after each test


def start(cmd, log_path):
    log = open(log_path, 'w')
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    STARTED.append(process)
    return process


class Probe:
    """An in-process rclpy node that records messages and publishes test inputs."""

    def __init__(self, name='probe'):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received = {}
        self.subscriptions = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.running = True
        self.thread.start()

    def _spin(self):
        while self.running:
            self.executor.spin_once(timeout_sec=0.05)

    def record(self, msg_type, topic, qos=10):
        self.received[topic] = []

        def callback(msg):
            with self.lock:
                self.received[topic].append((time.monotonic(), msg))
        self.subscriptions[topic] = self.node.create_subscription(msg_type, topic, callback, qos)

    def wait_connected(self, *topics, timeout=60.0):
        """Until each recorded topic's subscription has matched a publisher (outputs published
        before that are not delivered: the node's publishers are volatile)."""
        self.wait_for(lambda: all(self.subscriptions[t].get_publisher_count() > 0 for t in topics),
                      timeout, f'publishers of {", ".join(topics)}')

    def messages(self, topic):
        with self.lock:
            return [m for _, m in self.received[topic]]

    def wait_for(self, condition, timeout=60.0, what=''):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        raise TimeoutError(f'timed out after {timeout} s waiting for {what}')

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def diagnostics_values(msg):
    return {kv.key: kv.value for status in msg.status for kv in status.values}


def rss_mib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


__all__ = ['Probe', 'diagnostics_values', 'node_command', 'np', 'rss_mib', 'start',
           'write_kitti_sequence']
