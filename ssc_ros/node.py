"""ssc_node: camera image + registered depth in, semantic voxel grid out.

Subscribes ``image`` (sensor_msgs/Image, or ``<resolved image topic>/compressed`` with
image_transport:=compressed), ``depth`` (32FC1 metres or 16UC1 millimetres) and ``camera_info``
with the ``input_qos`` profile; pairs image and depth by stamp (:mod:`ssc_ros.pairing`); predicts
on a worker thread, latest pair wins (:mod:`ssc_ros.worker`); publishes ``voxels`` (PointCloud2),
``voxel_markers`` (MarkerArray, rate limited, built on their own thread), ``occupancy``
(OccupancyGrid) stamped with the image's stamp, and ``/diagnostics`` (:mod:`ssc_ros.health`).
Parameters: :mod:`ssc_ros.parameters`.
"""
import os
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage
from visualization_msgs.msg import MarkerArray

from ssc_core.checkpoint import BUILTIN_CHECKPOINT, CheckpointError
from ssc_core.predictor import NonFiniteOutput, Predictor

from . import camera_checks, conversions
from .conversions import MessageError
from .health import OK, Health
from .pairing import StampPairer
from .parameters import BUILTIN, PARAMETERS, check, class_filter_ids, grid_pose, type_mismatch, unknown
from .qos import input_qos
from .signals import stop_on_signals
from .worker import LatestSlot, Worker

SHUTDOWN_GRACE_S = 2.0   # how long shutdown waits for an inference in progress before abandoning it
LOG_EVERY_S = 5.0        # each kind of problem is logged at most this often


class StartupError(RuntimeError):
    """A parameter or checkpoint that makes the node unable to start."""


def stamp_seconds(header: Header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


class SSCNode(Node):

    def __init__(self, **kwargs):
        super().__init__('ssc_node', **kwargs)
        self.params = self._declare_parameters()
        self.predictor = self._load_predictor()
        preset = self.predictor.preset
        self.cam_from_grid = grid_pose(self.params['cam_from_grid'], preset.cam_from_grid)  # checked
        try:
            self.keep = class_filter_ids(self.params['class_filter'], preset.class_names)
        except ValueError as e:
            raise StartupError(f'parameter class_filter: {e}') from None
        self.health = Health(stall_timeout=self.params['stall_timeout'])
        self.pairer = StampPairer(self.params['slop'], self.params['queue_size'])
        self.lock = threading.RLock()   # pairer and health: executor thread vs workers
        self.last_logged = {}
        self.camera_info = None
        self.view = None   # the last frame's fraction of the grid in view (logged when it changes)

        qos = input_qos(self.params['input_qos'], self.params['queue_size'])
        if self.params['image_transport'] == 'compressed':  # image_transport's topic naming
            self.image_topic = self.resolve_topic_name('image') + '/compressed'
            self.create_subscription(CompressedImage, self.image_topic, self._on_image, qos)
        else:
            self.image_topic = self.resolve_topic_name('image')
            self.create_subscription(Image, 'image', self._on_image, qos)
        if self.params['depth_input'] == 'disparity':
            self.create_subscription(DisparityImage, 'disparity', self._on_depth, qos)
        else:
            self.create_subscription(Image, 'depth', self._on_depth, qos)
        self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, qos)
        reliable = QoSProfile(depth=2)
        self.cloud_pub = self.create_publisher(PointCloud2, 'voxels', reliable)
        self.marker_pub = self.create_publisher(MarkerArray, 'voxel_markers', reliable)
        self.occupancy_pub = self.create_publisher(OccupancyGrid, 'occupancy', reliable)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.diag_timer = self._diagnostics_timer()

        self.inference = Worker('ssc_inference', LatestSlot(), self._infer)
        self.markers = Worker('ssc_markers', LatestSlot(), self._publish_markers)
        self.last_markers = 0.0
        self.inference.start()
        self.markers.start()
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.get_logger().info(
            f'ready: preset {preset.name}, {self.predictor.backend.describe()}, frame '
            f'{self.params["frame_id"]}, image {self.image_topic} ({self.params["input_qos"]})')

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> dict:
        overrides = self._parameter_overrides  # what the command line and parameters files gave
        values = {}
        for name, spec in PARAMETERS.items():
            default = Parameter.Type(spec.type) if isinstance(spec.default, list) else spec.default
            try:
                value = self.declare_parameter(name, default, spec.descriptor()).value
            except InvalidParameterTypeException:
                given = overrides[name]
                raise StartupError(type_mismatch(name, given.type_.value, given.value)) from None
            if value is None:  # an array left at its default: set it, so that it is listed and dumped
                self.set_parameters([Parameter(name, Parameter.Type(spec.type), [])])
                value = []
            problem = check(name, value)
            if problem:
                raise StartupError(f'parameter {name}: {problem}')
            values[name] = list(value) if isinstance(spec.default, list) else value
        strangers = unknown(overrides)
        if strangers:
            self.get_logger().warning(f'unknown parameters ignored: {", ".join(strangers)} (known: '
                                      f'{", ".join(PARAMETERS)})')
        return values

    def _check_parameters(self, params) -> SetParametersResult:
        """Refuse a run-time value that start-up would refuse (read-only ones rclpy refuses itself)."""
        for p in params:
            if p.name not in PARAMETERS:
                continue
            problem = check(p.name, p.value)
            if problem is None and p.name == 'class_filter':
                try:
                    class_filter_ids(p.value, self.predictor.preset.class_names)
                except ValueError as e:
                    problem = str(e)
            if problem:
                return SetParametersResult(successful=False, reason=f'parameter {p.name}: {problem}')
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params) -> None:
        preset = self.predictor.preset
        for p in params:
            if p.name not in PARAMETERS:
                continue
            value = list(p.value) if isinstance(PARAMETERS[p.name].default, list) else p.value
            self.params[p.name] = value
            if p.name == 'slop':
                with self.lock:
                    self.pairer.slop = value
            elif p.name == 'cam_from_grid':
                self.cam_from_grid = grid_pose(value, preset.cam_from_grid)
            elif p.name == 'class_filter':
                self.keep = class_filter_ids(value, preset.class_names)
            elif p.name == 'stall_timeout':
                self.health.stall_timeout = value
            elif p.name == 'diagnostics_period':
                self.destroy_timer(self.diag_timer)
                self.diag_timer = self._diagnostics_timer()
            self.get_logger().info(f'parameter {p.name} set to {value!r}')

    def _load_predictor(self) -> Predictor:
        path = BUILTIN_CHECKPOINT if self.params['checkpoint'] == BUILTIN else self.params['checkpoint']
        try:
            return Predictor.from_checkpoint(path, self.params['preset'] or None, self.params['device'],
                                             self.params['precision'], self.params['backend'],
                                             self.params['allow_cpu_fallback'], self.params['fit'])
        except (CheckpointError, ValueError, RuntimeError) as e:
            raise StartupError(f'parameter checkpoint: cannot load {path}: {e}') from None

    # ------------------------------------------------------------------ inputs
    def _warn(self, kind: str, text: str, outcome: str = 'dropped') -> None:
        """Count a problem and log it, at most once per LOG_EVERY_S for each kind."""
        with self.lock:
            count = self.health.on_error(kind)
        now = time.monotonic()
        if now - self.last_logged.get(kind, -1e9) >= LOG_EVERY_S and self.context.ok():
            self.last_logged[kind] = now
            self.get_logger().warning(f'{text} ({outcome}; {count} of this kind so far)')

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.health.on_input('camera_info')
        self.camera_info = msg

    def _on_image(self, msg) -> None:
        self._add('image', msg)

    def _on_depth(self, msg: Image | DisparityImage) -> None:
        self._add('depth', msg)

    def _add(self, kind: str, msg) -> None:
        with self.lock:
            self.health.on_input(kind)
            outcome = self.pairer.add(kind, stamp_seconds(msg.header), msg)
            for notice in outcome.notices:
                self._warn(notice.kind, notice.text)
        if outcome.pair is not None:
            self.inference.slot.put((outcome.pair, time.monotonic()))

    # ------------------------------------------------------------------ inference (worker thread)
    def _infer(self, item) -> None:
        pair, received = item
        try:
            self._process(pair.image, pair.depth, self.camera_info)
        except (MessageError, NonFiniteOutput) as e:
            self._warn(e.kind, str(e))
            return
        except ValueError as e:
            self._warn('bad_input', str(e))
            return
        except Exception as e:  # keep the node alive, say what happened
            self._warn('inference_failed', f'{type(e).__name__}: {e}')
            return
        with self.lock:
            self.health.on_processed(time.monotonic() - received)

    def _process(self, image_msg, depth_msg, info) -> None:
        if info is None:
            raise MessageError('no_camera_info', 'no camera_info received yet')
        if isinstance(image_msg, CompressedImage):
            image = conversions.compressed_to_rgb(image_msg)
        else:
            image = conversions.image_to_rgb(image_msg)
        K = camera_checks.intrinsics_for_image(info, image.shape[:2])
        for kind, text in camera_checks.frame_warnings(info, image_msg.header, depth_msg.header).items():
            self._warn(kind, text, outcome='used')
        depth = (conversions.disparity_to_metres(depth_msg) if isinstance(depth_msg, DisparityImage)
                 else conversions.depth_to_metres(depth_msg))
        if depth.shape != image.shape[:2]:
            raise MessageError('size_mismatch',
                               f'depth {depth.shape[1]}x{depth.shape[0]} does not match image '
                               f'{image.shape[1]}x{image.shape[0]} (depth must be registered to the image)')
        prediction = self.predictor.predict(image, depth, K, self.cam_from_grid)
        if self.inference.slot.closed:
            return
        if prediction.view != self.view:  # once per calibration and image size
            self.view = prediction.view
            self.get_logger().info(self.view.describe())
        for kind, text in prediction.warnings.items():
            self._warn(kind, text, outcome='published')
        header = Header(stamp=image_msg.header.stamp, frame_id=self.params['frame_id'])
        preset = self.predictor.preset
        args = (preset.class_names, preset.model.voxel_size, preset.voxel_origin)
        if self.params['publish_cloud']:
            self.cloud_pub.publish(conversions.labels_to_cloud(prediction.labels, *args, header, self.keep))
        if self.params['publish_occupancy']:
            self.occupancy_pub.publish(conversions.labels_to_occupancy(
                prediction.labels, prediction.fov_mask, *args, header))
        if self.params['publish_markers']:
            self.markers.slot.put((prediction.labels, header))

    def _publish_markers(self, item) -> None:
        """Marker thread: at most marker_rate MarkerArrays per second."""
        labels, header = item
        wait = self.last_markers + 1.0 / self.params['marker_rate'] - time.monotonic()
        if wait > 0 and self.markers.slot.wait_closed(wait):
            return
        preset = self.predictor.preset
        try:
            self.marker_pub.publish(conversions.labels_to_markers(
                labels, preset.class_names, preset.model.voxel_size, preset.voxel_origin, header, self.keep))
        except Exception as e:
            self._warn('markers_failed', f'{type(e).__name__}: {e}')
        self.last_markers = time.monotonic()

    # ------------------------------------------------------------------ diagnostics
    def _diagnostics_timer(self):
        """On the steady clock: /diagnostics keeps coming with use_sim_time and no /clock."""
        return self.create_timer(self.params['diagnostics_period'], self._publish_diagnostics,
                                 clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _publish_diagnostics(self) -> None:
        with self.lock:
            report = self.health.report(self.inference.slot.dropped, dict(self.pairer.unpaired))
        view = self.view
        values = {**report.values,
                  'fraction_in_view': f'{view.fraction_in_view:.3f}' if view else 'unknown'}
        status = DiagnosticStatus(level=DiagnosticStatus.OK if report.level == OK else DiagnosticStatus.WARN,
                                  name=f'{self.get_name()}: semantic scene completion',
                                  hardware_id=self.predictor.backend.describe(), message=report.message,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                              status=[status]))

    def stop_workers(self) -> list[str]:
        """Stop both threads; what is still running after SHUTDOWN_GRACE_S ('inference', 'markers')."""
        self.markers.slot.close()
        busy = [] if self.inference.stop(SHUTDOWN_GRACE_S) else ['inference']
        return busy + ([] if self.markers.stop(SHUTDOWN_GRACE_S) else ['markers'])


def main(args=None):
    """Run until SIGINT/SIGTERM (once or repeatedly) or the context ends; exit 0.

    An inference (or marker building) in progress at shutdown is waited for SHUTDOWN_GRACE_S, then
    abandoned: after the node and rclpy are shut down and the logs flushed, the process ends with
    ``os._exit(0)``. Letting Python finalize instead would abort (``terminate called without an
    active exception``) when the daemon thread, still inside PyTorch or ONNX Runtime, is torn down.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = stop_on_signals()
    try:
        node = SSCNode()
    except StartupError as e:
        rclpy.try_shutdown()
        sys.exit(f'ssc_node: {e}')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    while not stop.is_set() and rclpy.ok():
        executor.spin_once(timeout_sec=0.1)
    busy = node.stop_workers()
    if busy:
        node.get_logger().info(f'shutting down: abandoning the {" and ".join(busy)} in progress')
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    if busy:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == '__main__':
    main()
