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

import rclpy
from tf2_ros import StaticTransformBroadcaster, TransformBroadcaster

from ssc_ros.transforms import transform_stamped


def main():
    spec = json.loads(sys.argv[1])
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    rclpy.init()
    node = rclpy.create_node('tf_tree')
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    static = StaticTransformBroadcaster(node)
    now = node.get_clock().now().to_msg()
    static.sendTransform([transform_stamped(*t, now) for t in spec.get('static', [])])
    moving = TransformBroadcaster(node)
    while not stop.wait(1.0 / spec.get('hz', 20)):
        stamp = node.get_clock().now().to_msg()
        if spec.get('moving'):
            moving.sendTransform([transform_stamped(*t, stamp) for t in spec['moving']])
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    main()
