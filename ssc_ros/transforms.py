"""Poses from tf2: where a frame is in another at an image's stamp, with a bounded wait.

tf2_ros is optional (the node then runs with its ``cam_from_grid`` parameter):
:data:`TF2_IMPORT_ERROR` says why it did not import (None when it did). :class:`FrameTransforms`
looks transforms up in a ``tf2_ros.Buffer`` — filled by a ``TransformListener`` in the node, by
hand in tests — and turns each failure into one problem kind of :mod:`ssc_ros.kinds` whose text
names the frames, the stamp and tf2's own message.
"""
import numpy as np
from geometry_msgs.msg import TransformStamped

from ssc_core.geometry import pose_from_quaternion, quaternion_from_pose

try:
    import tf2_ros
    from rclpy.duration import Duration
    from rclpy.time import Time
    TF2_IMPORT_ERROR = None
except ImportError as e:   # no ROS distro and no tf2 wheels: the node runs with cam_from_grid
    tf2_ros = None
    TF2_IMPORT_ERROR = f'{type(e).__name__}: {e}'


class TransformError(Exception):
    """A transform that is not available; ``kind`` is one of the ``tf_*`` kinds of ssc_ros.kinds."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind


def transform_matrix(transform) -> np.ndarray:
    """A ``geometry_msgs/Transform`` → (4, 4) float64 pose (the child frame in the parent frame)."""
    t, q = transform.translation, transform.rotation
    return pose_from_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))


def transform_stamped(parent: str, child: str, pose: np.ndarray, stamp) -> TransformStamped:
    """A rigid (4, 4) pose of ``child`` in ``parent`` at ``stamp`` (a ``builtin_interfaces/Time``)
    → a ``geometry_msgs/TransformStamped`` (:func:`transform_matrix` inverts its transform)."""
    (x, y, z), (qx, qy, qz, qw) = quaternion_from_pose(np.reshape(pose, (4, 4)))
    msg = TransformStamped()
    msg.header.frame_id, msg.header.stamp, msg.child_frame_id = parent, stamp, child
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z, q.x, q.y, q.z, q.w = map(float, (x, y, z, qx, qy, qz, qw))
    return msg


class FrameTransforms:
    """T(target ← source) at a stamp from a tf2 ``buffer``.

    A lookup waits up to ``timeout`` seconds for the transform at the stamp (tf2 interpolates
    between the transforms it holds). When it is still missing: a stamp newer than the latest
    transform by at most ``tolerance`` seconds takes the latest one (as Nav2's
    ``transform_tolerance``); otherwise TransformError of kind ``tf_timeout`` (the transforms end
    before the stamp: late or stopped), ``tf_extrapolation`` (the stamp is before the transforms
    held), ``tf_unknown_frame`` (a frame tf2 has never heard of, or an empty frame id) or
    ``tf_not_connected`` (both frames known, in separate trees).
    """

    def __init__(self, buffer, timeout: float, tolerance: float = 0.0):
        self.buffer = buffer
        self.timeout = timeout
        self.tolerance = tolerance

    def lookup(self, target: str, source: str, stamp_ns: int, timeout: float | None = None) -> np.ndarray:
        """(4, 4) pose of ``source`` in ``target`` at ``stamp_ns`` (nanoseconds); ``timeout``
        overrides the wait (seconds, e.g. what is left of a frame's)."""
        wait = self.timeout if timeout is None else max(timeout, 0.0)
        what = f'transform {source} -> {target} at {stamp_ns * 1e-9:.3f} s'
        for role, frame in (('target', target), ('source', source)):
            if not frame:
                raise TransformError('tf_unknown_frame', f'no {what}: the {role} frame id is empty')
        try:
            found = self.buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns),
                                                 Duration(nanoseconds=int(wait * 1e9)))
        except tf2_ros.ExtrapolationException as e:
            found = self._within_tolerance(target, source, stamp_ns, what, wait, e)
        except tf2_ros.LookupException as e:
            raise TransformError('tf_unknown_frame', f'no {what} after {wait:g} s: a frame is unknown to '
                                 f'tf2 ({_text(e)})') from None
        except tf2_ros.ConnectivityException as e:
            raise TransformError('tf_not_connected', f'no {what} after {wait:g} s: the frames are in '
                                 f'separate TF trees ({_text(e)})') from None
        except tf2_ros.TransformException as e:
            raise TransformError('tf_unknown_frame', f'no {what}: {_text(e)}') from None
        return transform_matrix(found.transform)

    def _within_tolerance(self, target, source, stamp_ns, what, wait, error):
        latest = self.buffer.get_latest_common_time(target, source).nanoseconds
        newer = (stamp_ns - latest) * 1e-9
        if 0 < newer <= self.tolerance:
            return self.buffer.lookup_transform(target, source, Time())
        if newer > 0:
            raise TransformError('tf_timeout', f'no {what} within {wait:g} s: the latest is {newer:.3f} s '
                                 f'older (tf_tolerance {self.tolerance:g} s; is it still published?) '
                                 f'({_text(error)})') from None
        raise TransformError('tf_extrapolation', f'no {what}: the stamp is outside the transforms tf2 '
                             f'holds ({_text(error)})') from None


def _text(error: Exception) -> str:
    return ' '.join(str(error).split())
