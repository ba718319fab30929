"""ssc_node: camera image + registered depth in, semantic voxel grid (and a semantic map) out.

Subscribes ``image`` (sensor_msgs/Image, or ``<resolved image topic>/compressed`` with
image_transport:=compressed), ``depth`` (32FC1 metres or 16UC1 millimetres) and ``camera_info``
with the ``input_qos`` profile; pairs image and depth by stamp (:mod:`ssc_ros.pairing`); looks up
the camera's pose in ``grid_frame`` at the image's stamp from tf2 (:mod:`ssc_ros.transforms`; or
``cam_from_grid`` with use_tf false); predicts on a worker thread, latest pair wins
(:mod:`ssc_ros.worker`); publishes ``voxels`` (PointCloud2), ``voxel_markers`` (MarkerArray, rate
limited, built on their own thread), ``occupancy`` (OccupancyGrid), optionally ``voxel_grid``
(Image), in ``grid_frame`` with the image's stamp, serialized from numpy
(:class:`ssc_ros.conversions.OutputMessages`), and ``/diagnostics`` (:mod:`ssc_ros.health`;
problem kinds: :mod:`ssc_ros.kinds`). With ``map_frame`` set, each frame is fused into a semantic
map there (:mod:`ssc_ros.live_map`), published latched on ``map_voxels``, ``map_markers`` and
``map_occupancy`` from its own thread, with the services ``~/reset_map`` and ``~/save_map``.
Parameters: :mod:`ssc_ros.parameters`.
"""
import os
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from stereo_msgs.msg import DisparityImage
from visualization_msgs.msg import MarkerArray

from ssc_core.checkpoint import BUILTIN_CHECKPOINT, CheckpointError
from ssc_core.mapping import UNKNOWN, MapError, SemanticMap, load_map
from ssc_core.predictor import NonFiniteOutput, Predictor
from ssc_core.presets import base_from_grid

from . import camera_checks, conversions
from .conversions import MessageError, OutputMessages, diagnostics_array
from .health import Health
from .kinds import outcome
from .live_map import LiveMap, default_save_path
from .pairing import StampPairer
from .parameters import BUILTIN, PARAMETERS, check, class_filter_ids, pose_parameter, type_mismatch, unknown
from .qos import LATCHED, input_qos
from .signals import stop_on_signals
from .transforms import TF2_IMPORT_ERROR, FrameTransforms, TransformError, tf2_ros
from .worker import LatestSlot, Worker

SHUTDOWN_GRACE_S = 2.0   # how long shutdown waits for an inference in progress before abandoning it
LOG_EVERY_S = 5.0        # each kind of problem is logged at most this often
WORKER_NICE = 5          # inference and markers yield the CPU to the threads taking inputs (executor, DDS)


class StartupError(RuntimeError):
    """A parameter or checkpoint that makes the node unable to start."""


def stamp_seconds(header: Header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def stamp_nanoseconds(header: Header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def off_when_zero(value: float) -> float | None:
    """A map setting's parameter value: 0 = off (None)."""
    return value or None


class SSCNode(Node):

    def __init__(self, **kwargs):
        super().__init__('ssc_node', **kwargs)
        self.params = self._declare_parameters()
        self.transforms = self._transforms()   # before the weights: a TF set-up that cannot work stops first
        self.predictor = self._load_predictor()
        preset = self.predictor.preset
        self._set_poses()
        try:
            self.keep = class_filter_ids(self.params['class_filter'], preset.class_names)
        except ValueError as e:
            raise StartupError(f'parameter class_filter: {e}') from None
        self.outputs = OutputMessages(preset.class_names, preset.model.voxel_size, preset.voxel_origin,
                                      self.grid_pose)
        self.live_map = self._live_map()
        self.pairer = StampPairer(self.params['slop'], self.params['queue_size'])
        self.lock = threading.RLock()   # pairer and health: executor thread vs workers
        self.last_logged = {}
        self.camera_info = None
        self.view = None   # the last frame's fraction of the grid in view (logged when it changes)

        image_type, image_topic = Image, self.resolve_topic_name('image')
        if self.params['image_transport'] == 'compressed':  # image_transport's topic naming
            image_type, image_topic = CompressedImage, image_topic + '/compressed'
        depth_type, depth_topic = ((DisparityImage, 'disparity') if self.params['depth_input'] == 'disparity'
                                   else (Image, 'depth'))
        self.topics = {'image': image_topic, 'depth': self.resolve_topic_name(depth_topic),
                       'camera_info': self.resolve_topic_name('camera_info')}
        self.health = Health(self.topics, stall_timeout=self.params['stall_timeout'])
        qos = input_qos(self.params['input_qos'], self.params['queue_size'])
        inputs = MutuallyExclusiveCallbackGroup()   # apart from the diagnostics timer's (graph queries)
        for kind, msg_type in (('image', image_type), ('depth', depth_type), ('camera_info', CameraInfo)):
            self.create_subscription(msg_type, self.topics[kind],
                                     lambda msg, info, kind=kind: self._on_input(kind, msg, info), qos,
                                     callback_group=inputs)
        reliable = QoSProfile(depth=2)
        self.cloud_pub = self.create_publisher(PointCloud2, 'voxels', reliable)
        self.marker_pub = self.create_publisher(MarkerArray, 'voxel_markers', reliable)
        self.occupancy_pub = self.create_publisher(OccupancyGrid, 'occupancy', reliable)
        self.grid_pub = self.create_publisher(Image, 'voxel_grid', reliable)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.diag_timer = self._diagnostics_timer()

        self.inference = Worker('ssc_inference', LatestSlot(), self._infer, nice=WORKER_NICE)
        self.markers = Worker('ssc_markers', LatestSlot(), self._publish_markers, nice=WORKER_NICE)
        self.last_markers = 0.0
        self.map_worker = Worker('ssc_map', LatestSlot(), self._publish_map, nice=WORKER_NICE)
        self.inference.start()
        self.markers.start()
        if self.live_map is not None:
            self._start_map_outputs()
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.get_logger().info(
            f'ready: preset {preset.name}, {self.predictor.backend.describe()}, frame '
            f'{self.params["grid_frame"]}, image {self.topics["image"]} ({self.params["input_qos"]})')
        self.get_logger().info(self._pose_source())

    # ------------------------------------------------------------------ poses and the map
    def _set_poses(self) -> None:
        """grid_pose and cam_from_grid (checked) from their parameters; empty = the preset's: its grid
        frame above a ground-level grid_frame, and its camera mounted on that frame."""
        preset = self.predictor.preset
        base = base_from_grid(preset)
        self.grid_pose = pose_parameter(self.params['grid_pose'], base)
        self.cam_from_grid = pose_parameter(self.params['cam_from_grid'],
                                            np.array(preset.cam_from_grid) @ np.linalg.inv(base))

    def _transforms(self) -> FrameTransforms | None:
        """tf2's buffer and listener (use_tf), or None; StartupError when asked for without tf2."""
        if not self.params['use_tf']:
            if self.params['map_frame']:
                raise StartupError(f'parameter map_frame: {self.params["map_frame"]!r} needs the robot\'s '
                                   'poses from tf2: set use_tf:=true (or map_frame:="")')
            return None
        if tf2_ros is None:
            raise StartupError(f'parameter use_tf: true, but tf2_ros does not import ({TF2_IMPORT_ERROR}); '
                               'install tf2 (a ROS distro, or ../shared/ros2-tools/tf2) or set use_tf:=false')
        buffer = tf2_ros.Buffer(node=self)
        # kept referenced: a TransformListener unsubscribes when collected; spun by this node's executor
        self.tf_listener = tf2_ros.TransformListener(buffer, self, spin_thread=False)
        return FrameTransforms(buffer, self.params['tf_timeout'], self.params['tf_tolerance'])

    def _pose_source(self) -> str:
        """The start-up line that says where the camera's pose comes from."""
        grid = self.params['grid_frame']
        if self.transforms is not None:
            line = (f'use_tf: the camera\'s pose in {grid} from tf2 at each image\'s stamp (its frame_id; '
                    f'tf_timeout {self.params["tf_timeout"]:g} s)')
            if self.live_map is not None:
                line += f'; semantic map in {self.params["map_frame"]} ({self.live_map.map.kernels})'
            return line
        why = (f'tf2_ros does not import ({TF2_IMPORT_ERROR})' if TF2_IMPORT_ERROR
               else 'use_tf:=false')
        return f'no TF ({why}): the camera\'s pose in {grid} is the cam_from_grid parameter'

    def _live_map(self) -> LiveMap | None:
        """The semantic map (map_frame set): new, or from map_file (StartupError when refused)."""
        if not self.params['map_frame']:
            if self.params['map_file']:
                raise StartupError(f'parameter map_file: {self.params["map_file"]!r} needs a map_frame '
                                   '(the frame the map was made in, e.g. map_frame:=odom)')
            return None
        preset = self.predictor.preset
        policies = {'radius': off_when_zero(self.params['map_radius']),
                    'half_life': off_when_zero(self.params['map_half_life'])}
        if self.params['map_file']:
            try:
                semantic_map = load_map(self.params['map_file'], preset.model.voxel_size, preset.class_names,
                                        **policies)
            except MapError as e:
                raise StartupError(f'parameter map_file: {e}') from None
            self.get_logger().info(f'map from {self.params["map_file"]}: {semantic_map.frames} frames, '
                                   f'{semantic_map.num_blocks} blocks')
        else:
            semantic_map = SemanticMap(preset.model.voxel_size, preset.class_names, preset.voxel_origin,
                                       change_after=self.params['map_change_after'], **policies)
        return LiveMap(semantic_map, 1.0 / self.params['map_publish_rate'],
                       off_when_zero(self.params['map_max_speed']))

    def _start_map_outputs(self) -> None:
        """Latched map publishers, the reset/save services, the map thread (and the map, once)."""
        self.map_cloud_pub = self.create_publisher(PointCloud2, 'map_voxels', LATCHED)
        self.map_marker_pub = self.create_publisher(MarkerArray, 'map_markers', LATCHED)
        self.map_occupancy_pub = self.create_publisher(OccupancyGrid, 'map_occupancy', LATCHED)
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, '~/reset_map', self._reset_map, callback_group=services)
        self.create_service(Trigger, '~/save_map', self._save_map, callback_group=services)
        self.map_worker.start()
        self.map_worker.slot.put(True)   # a late subscriber gets a map (empty, or map_file's) at once

    def _integrate(self, prediction, header: Header, grid_pose: np.ndarray) -> None:
        """Fuse a frame into the map at T(map_frame <- grid_frame) at its stamp; a missing transform
        or a refused frame is counted, the map untouched."""
        try:
            map_from_frame = self.transforms.lookup(self.params['map_frame'], self.params['grid_frame'],
                                                    stamp_nanoseconds(header))
            self.live_map.integrate(prediction.labels, prediction.fov_mask, map_from_frame @ grid_pose,
                                    stamp_seconds(header))
        except TransformError as e:
            self._warn(e.kind, f'map: {e}')
            return
        except MapError as e:
            self._warn('map_refused', str(e))
            return
        self.map_worker.slot.put(True)

    def _publish_map(self, _) -> None:
        """Map thread: the map's three messages, at most map_publish_rate times per second."""
        wait = self.live_map.wait_time()
        if wait > 0 and self.map_worker.slot.wait_closed(wait):
            return
        try:
            snapshot = self.live_map.snapshot()
            stamp = (Time(nanoseconds=round(snapshot.stamp * 1e9)) if snapshot.stamp is not None
                     else self.get_clock().now()).to_msg()
            header = Header(stamp=stamp, frame_id=self.params['map_frame'])
            preset = self.predictor.preset
            out = OutputMessages(preset.class_names, preset.model.voxel_size, snapshot.origin)
            labels, surface_only = snapshot.labels, self.params['cloud_surface_only']
            self.map_cloud_pub.publish(out.cloud(labels, header, self.keep, surface_only))
            self.map_occupancy_pub.publish(out.occupancy(labels, labels != UNKNOWN, header))
            self.map_marker_pub.publish(out.markers(labels, header, self.keep))
        except Exception as e:
            self._warn('map_failed', f'{type(e).__name__}: {e}')

    def _reset_map(self, request, response):
        self.live_map.reset()
        self.map_worker.slot.put(True)
        response.success, response.message = True, 'map cleared'
        self.get_logger().info('~/reset_map: map cleared')
        return response

    def _save_map(self, request, response):
        stem = self.params['map_save_path'] or str(default_save_path())
        try:
            npz, ply = self.live_map.save(stem)
        except (OSError, ValueError) as e:
            response.success, response.message = False, f'cannot save the map to {stem}: {e}'
            self.get_logger().error(f'~/save_map: {response.message}')
            return response
        frames = self.live_map.map.frames
        response.success, response.message = True, f'saved {npz} and {ply} ({frames} frames)'
        self.get_logger().info(f'~/save_map: {response.message}')
        return response

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
            elif p.name in ('grid_pose', 'cam_from_grid'):
                self._set_poses()
                self.outputs.pose = self.grid_pose
            elif p.name in ('tf_timeout', 'tf_tolerance') and self.transforms is not None:
                setattr(self.transforms, p.name[3:], value)
            elif p.name == 'map_publish_rate' and self.live_map is not None:
                self.live_map.period = 1.0 / value
            elif p.name in ('map_radius', 'map_half_life') and self.live_map is not None:
                self.live_map.set_policy(**{p.name[4:]: off_when_zero(value)})
            elif p.name == 'map_max_speed' and self.live_map is not None:
                self.live_map.max_speed = off_when_zero(value)
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
    def _warn(self, kind: str, text: str) -> None:
        """Count a problem and log it, at most once per LOG_EVERY_S for each kind."""
        with self.lock:
            count = self.health.on_error(kind)
        now = time.monotonic()
        if now - self.last_logged.get(kind, -1e9) >= LOG_EVERY_S and self.context.ok():
            self.last_logged[kind] = now
            self.get_logger().warning(f'{text} ({outcome(kind)}; {count} of this kind so far)')

    def _on_input(self, kind: str, msg, info) -> None:
        """Executor thread: count the message, keep camera_info, pair images with depths."""
        taken = time.time()
        arrival = info['received_timestamp'] * 1e-9 or taken  # the middleware's reception time
        with self.lock:
            self.health.on_input(kind, taken - arrival)
            if kind == 'camera_info':
                self.camera_info = msg
                return
            result = self.pairer.add(kind, stamp_seconds(msg.header), msg, arrival, taken)
        for notice in result.notices:
            self._warn(notice.kind, notice.text)
        if result.pair is not None:
            self.inference.slot.put((result.pair, time.monotonic()))

    # ------------------------------------------------------------------ inference (worker thread)
    def _infer(self, item) -> None:
        pair, received = item
        try:
            if not self._process(pair.image, pair.depth, self.camera_info):
                return
        except (MessageError, NonFiniteOutput, TransformError) as e:
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

    def _process(self, image_msg, depth_msg, info) -> bool:
        """Predict and publish one frame; False when it was skipped (no camera_info yet, shutdown)."""
        if info is None:
            if self.health.camera_info_overdue():
                raise MessageError('no_camera_info', f'no camera_info on {self.topics["camera_info"]} '
                                   f'{self.params["stall_timeout"]:g} s after the first frame')
            return False  # start-up: camera_info has not arrived yet
        if isinstance(image_msg, CompressedImage):
            image = conversions.compressed_to_rgb(image_msg)
        else:
            image = conversions.image_to_rgb(image_msg)
        K = camera_checks.intrinsics_for_image(info, image.shape[:2])
        for kind, text in camera_checks.frame_warnings(info, image_msg.header, depth_msg.header).items():
            self._warn(kind, text)
        depth = (conversions.disparity_to_metres(depth_msg) if isinstance(depth_msg, DisparityImage)
                 else conversions.depth_to_metres(depth_msg))
        if depth.shape != image.shape[:2]:
            raise MessageError('size_mismatch',
                               f'depth {depth.shape[1]}x{depth.shape[0]} does not match image '
                               f'{image.shape[1]}x{image.shape[0]} (depth must be registered to the image)')
        grid_pose = self.grid_pose
        prediction = self.predictor.predict(image, depth, K, self._camera_pose(image_msg.header) @ grid_pose)
        if self.inference.slot.closed:
            return False
        if prediction.view != self.view:  # once per calibration and image size
            self.view = prediction.view
            self.get_logger().info(self.view.describe())
        for kind, text in prediction.warnings.items():
            self._warn(kind, text)
        header = Header(stamp=image_msg.header.stamp, frame_id=self.params['grid_frame'])
        labels, fov_mask = prediction.labels, prediction.fov_mask
        if self.params['publish_cloud']:
            surface_only = self.params['cloud_surface_only']
            self.cloud_pub.publish(self.outputs.cloud(labels, header, self.keep, surface_only))
        if self.params['publish_occupancy']:
            self.occupancy_pub.publish(self.outputs.occupancy(labels, fov_mask, header))
        if self.params['publish_voxel_grid']:
            self.grid_pub.publish(self.outputs.voxel_grid(labels, fov_mask, header))
        if self.params['publish_markers']:
            self.markers.slot.put((prediction.labels, header))
        if self.live_map is not None:
            self._integrate(prediction, header, grid_pose)
        return True

    def _camera_pose(self, image_header: Header) -> np.ndarray:
        """T(camera <- grid_frame) at the image's stamp: from tf2, or the cam_from_grid parameter."""
        if self.transforms is None:
            return self.cam_from_grid
        return self.transforms.lookup(image_header.frame_id, self.params['grid_frame'],
                                      stamp_nanoseconds(image_header))

    def _publish_markers(self, item) -> None:
        """Marker thread: at most marker_rate MarkerArrays per second."""
        labels, header = item
        wait = self.last_markers + 1.0 / self.params['marker_rate'] - time.monotonic()
        if wait > 0 and self.markers.slot.wait_closed(wait):
            return
        try:
            self.marker_pub.publish(self.outputs.markers(labels, header, self.keep))
        except Exception as e:
            self._warn('markers_failed', f'{type(e).__name__}: {e}')
        self.last_markers = time.monotonic()

    # ------------------------------------------------------------------ diagnostics
    def _diagnostics_timer(self):
        """On the steady clock: /diagnostics keeps coming with use_sim_time and no /clock."""
        return self.create_timer(self.params['diagnostics_period'], self._publish_diagnostics,
                                 clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _publish_diagnostics(self) -> None:
        publishers = {kind: self.count_publishers(topic) for kind, topic in self.topics.items()}
        with self.lock:
            report = self.health.report(self.inference.slot.dropped, dict(self.pairer.unpaired), publishers)
        view = self.view
        report.values['fraction_in_view'] = f'{view.fraction_in_view:.3f}' if view else 'unknown'
        if self.live_map is not None:
            report.values['map_frames'] = str(self.live_map.map.frames)
        self.diag_pub.publish(diagnostics_array(report, f'{self.get_name()}: semantic scene completion',
                                                self.predictor.backend.describe(),
                                                self.get_clock().now().to_msg()))

    def stop_workers(self) -> list[str]:
        """Stop the threads; what is still running after SHUTDOWN_GRACE_S ('inference', 'markers', 'map')."""
        self.markers.slot.close()
        self.map_worker.slot.close()
        busy = [] if self.inference.stop(SHUTDOWN_GRACE_S) else ['inference']
        busy += [] if self.markers.stop(SHUTDOWN_GRACE_S) else ['markers']
        return busy + ([] if self.map_worker.stop(SHUTDOWN_GRACE_S) else ['map'])


def main(args=None):
    """Run until SIGINT/SIGTERM (once or repeatedly) or the context ends; exit 0.

    Inputs are taken on a two-thread executor (the diagnostics timer and parameter services apart
    from the input callbacks). An inference (or marker building) in progress at shutdown is waited
    for SHUTDOWN_GRACE_S, then abandoned, and so is an executor callback: after the node and rclpy
    are shut down and the logs flushed, the process ends with ``os._exit(0)``. Letting Python
    finalize instead would abort (``terminate called without an active exception``) when a daemon
    thread, still inside PyTorch or ONNX Runtime, is torn down, or wait on the executor's threads.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = stop_on_signals()
    try:
        node = SSCNode()
    except StartupError as e:
        rclpy.try_shutdown()
        sys.exit(f'ssc_node: {e}')
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    while not stop.is_set() and rclpy.ok():
        executor.spin_once(timeout_sec=0.1)
    busy = node.stop_workers()
    if busy:
        node.get_logger().info(f'shutting down: abandoning the {" and ".join(busy)} in progress')
    executor.shutdown(timeout_sec=SHUTDOWN_GRACE_S, wait_for_threads=False)
    node.destroy_node()
    rclpy.try_shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
