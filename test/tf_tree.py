"""A robot's TF tree from its own process: static transforms once (StaticTransformBroadcaster) and
moving ones at a rate, stamped now (TransformBroadcaster), until SIGINT/SIGTERM.

    python test/tf_tree.py '{"static": [[PARENT, CHILD, POSE16]], "moving": [[...]], "hz": 20}'

POSE16: the child's pose in the parent, 16 numbers row-major.
"""
import json
import os
import signal
import sys
import threading

import numpy as np
import rclpy
from geometry_msgs.msg import TransformStamped
from tf2_ros import StaticTransformBroadcaster, TransformBroadcaster

from ssc_core.geometry import quaternion_from_pose


def transform(parent, child, pose, stamp) -> TransformStamped:
    (x, y, z), (qx, qy, qz, qw) = quaternion_from_pose(np.reshape(pose, (4, 4)))
    msg = TransformStamped()
    msg.header.frame_id, msg.header.stamp, msg.child_frame_id = parent, stamp, child
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z, q.x, q.y, q.z, q.w = map(float, (x, y, z, qx, qy, qz, qw))
    return msg


def main():
    spec = json.loads(sys.argv[1])
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    rclpy.init()
    node = rclpy.create_node('tf_tree')
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    static = StaticTransformBroadcaster(node)
    static.sendTransform([transform(*t, node.get_clock().now().to_msg()) for t in spec.get('static', [])])
    moving = TransformBroadcaster(node)
    while not stop.wait(1.0 / spec.get('hz', 20)):
        stamp = node.get_clock().now().to_msg()
        if spec.get('moving'):
            moving.sendTransform([transform(*t, stamp) for t in spec['moving']])
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    main()
