"""Quality of service: the camera inputs', chosen by name (the node's ``input_qos`` parameter),
and the latched profile of the map's outputs (:data:`LATCHED`).

``reliable`` (the default) matches reliable publishers, as camera drivers and ``ros2 bag play``
use, and delivers full-size frames that best-effort DDS drops when they span many fragments;
a reliable subscription does not connect to a best-effort publisher, so best-effort drivers need
``best_effort`` or ``sensor_data`` (best effort, depth 5), as with nvblox and similar nodes.
"""
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)

INPUT_QOS = ('reliable', 'best_effort', 'sensor_data', 'system_default')
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Nav2's map QoS (map_server, costmaps' map subscription): the last message is kept for
subscribers that join later, which must ask for transient_local durability to get it."""


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
