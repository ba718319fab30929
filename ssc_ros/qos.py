"""Quality of service of the camera inputs, chosen by name (the node's ``input_qos`` parameter).

``reliable`` (the default) matches reliable publishers, as camera drivers and ``ros2 bag play``
use, and delivers full-size frames that best-effort DDS drops when they span many fragments;
a reliable subscription does not connect to a best-effort publisher, so best-effort drivers need
``best_effort`` or ``sensor_data`` (best effort, depth 5), as with nvblox and similar nodes.
"""
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data, qos_profile_system_default

INPUT_QOS = ('reliable', 'best_effort', 'sensor_data', 'system_default')


def input_qos(name: str, depth: int) -> QoSProfile:
    """The subscription profile called ``name`` (one of INPUT_QOS); ``depth`` = history kept."""
    if name == 'reliable':
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    if name == 'best_effort':
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)
    if name == 'sensor_data':
        return qos_profile_sensor_data
    if name == 'system_default':
        return qos_profile_system_default
    raise ValueError(f'input_qos: {name!r} is not one of {", ".join(INPUT_QOS)}')
