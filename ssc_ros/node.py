"""ssc_node: camera image + registered depth in, semantic voxel grid out.

Subscribes ``image`` (sensor_msgs/Image, or ``image/compressed`` with image_transport:=compressed),
``depth`` (32FC1 metres or 16UC1 millimetres) and ``camera_info``; pairs image and depth by
stamp within ``slop`` seconds; predicts on a worker thread, latest pair wins (stale pairs are
dropped and counted); publishes ``voxels`` (PointCloud2), ``voxel_markers`` (MarkerArray, rate
limited, built on their own thread), ``occupancy`` (OccupancyGrid) stamped with the image's stamp,
and ``/diagnostics``.
"""
import collections
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage
from visualization_msgs.msg import MarkerArray

from ssc_core.backends import BACKENDS
from ssc_core.checkpoint import BUILTIN_CHECKPOINT, CheckpointError
from ssc_core.frame_inputs import FIT_POLICIES
from ssc_core.outputs import class_ids
from ssc_core.predictor import PRECISIONS, Predictor

from . import camera_checks, conversions
from .conversions import MessageError

BUILTIN = 'builtin'


@dataclass
class Parameter:
    default: object
    description: str
    choices: tuple = ()


PARAMETERS = {
    'checkpoint': Parameter(BUILTIN, 'weights file (ours, a training run\'s or the authors\'); '
                            '"builtin" = the built-in small model'),
    'preset': Parameter('', 'preset of the weights (empty: from the checkpoint)'),
    'backend': Parameter('torch', 'inference backend; torch_compile compiles on the first frame '
                         '(minutes on a CPU); onnxruntime takes an .onnx file from '
                         'ssc_core.tools.export as checkpoint', BACKENDS),
    'device': Parameter('cpu', 'cpu, cuda or cuda:N (onnxruntime: TensorRT, then CUDA)'),
    'allow_cpu_fallback': Parameter(False, 'onnxruntime: run on the CPU when no GPU provider is usable '
                                    '(logged) instead of failing'),
    'precision': Parameter('fp32', 'fp32, or fp16/bf16 autocast', tuple(PRECISIONS)),
    'fit': Parameter('auto', 'how images of another size than the network\'s become its input: crop '
                     '(the authors\' top-left crop), scale (keep the view the grid needs, K scaled), '
                     'auto (crop for KITTI-sized images, else scale)', FIT_POLICIES),
    'image_transport': Parameter('raw', 'raw: sensor_msgs/Image on "image"; compressed: '
                                 'sensor_msgs/CompressedImage on "image/compressed"', ('raw', 'compressed')),
    'depth_input': Parameter('depth', 'depth: sensor_msgs/Image on "depth" (32FC1 m, 16UC1 mm); '
                             'disparity: stereo_msgs/DisparityImage on "disparity" (depth = f*T/d)',
                             ('depth', 'disparity')),
    'slop': Parameter(0.05, 'largest stamp difference (s) between paired image and depth'),
    'queue_size': Parameter(10, 'messages kept per input for pairing'),
    'frame_id': Parameter('velodyne', 'frame of the voxel grid, for every output'),
    'cam_from_grid': Parameter(None, 'row-major 4x4 pose of the grid frame in the camera frame '
                               '(empty: the preset\'s, KITTI velodyne->camera)'),
    'publish_cloud': Parameter(True, 'publish voxels (PointCloud2)'),
    'publish_markers': Parameter(True, 'publish voxel_markers (MarkerArray)'),
    'publish_occupancy': Parameter(True, 'publish occupancy (OccupancyGrid)'),
    'marker_rate': Parameter(1.0, 'largest marker publishing rate (Hz)'),
    'class_filter': Parameter(None, 'class names to publish (empty: all non-empty classes)'),
    'diagnostics_period': Parameter(1.0, 'seconds between /diagnostics messages'),
}
_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


class StartupError(RuntimeError):
    """A parameter or checkpoint that makes the node unable to start."""


@dataclass
class Stats:
    received: collections.Counter = field(default_factory=collections.Counter)
    processed: int = 0
    dropped_stale: int = 0
    errors: collections.Counter = field(default_factory=collections.Counter)
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))
    done_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))


def stamp_seconds(header: Header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


class SSCNode(Node):

    def __init__(self, **kwargs):
        super().__init__('ssc_node', **kwargs)
        self.params = self._declare_parameters()
        self.predictor = self._load_predictor()
        preset = self.predictor.preset
        self.cam_from_grid = self._grid_pose(preset)
        self.keep = self._class_filter(preset)
        self.stats = Stats()
        self.last_logged = {}
        self.lock = threading.Condition()
        self.pending = None
        self.images = collections.deque(maxlen=self.params['queue_size'])
        self.depths = collections.deque(maxlen=self.params['queue_size'])
        self.camera_info = None
        self.view = None
        self.last_stamp = None
        self.running = True

        qos = qos_profile_sensor_data
        if self.params['image_transport'] == 'compressed':
            self.create_subscription(CompressedImage, 'image/compressed', self._on_image, qos)
        else:
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
        self.create_timer(self.params['diagnostics_period'], self._publish_diagnostics)

        self.marker_slot = None
        self.marker_lock = threading.Condition()
        self.worker = threading.Thread(target=self._work, name='ssc_inference', daemon=True)
        self.marker_worker = threading.Thread(target=self._markers, name='ssc_markers', daemon=True)
        self.worker.start()
        self.marker_worker.start()
        self.get_logger().info(
            f'ready: preset {preset.name}, {self.predictor.backend.describe()}, frame '
            f'{self.params["frame_id"]}, image transport {self.params["image_transport"]}')

    # ------------------------------------------------------------------ start-up
    def _declare_parameters(self) -> dict:
        values = {}
        for name, spec in PARAMETERS.items():
            description = spec.description + (f' (one of {", ".join(spec.choices)})' if spec.choices else '')
            if spec.default is None:  # an array without default: declared by type
                kind = (rclpy.Parameter.Type.DOUBLE_ARRAY if name == 'cam_from_grid'
                        else rclpy.Parameter.Type.STRING_ARRAY)
                value = self.declare_parameter(name, kind, ParameterDescriptor(description=description)).value
                value = list(value) if value is not None else []
            else:
                value = self.declare_parameter(name, spec.default, ParameterDescriptor(
                    type=_TYPES[type(spec.default)], description=description)).value
            if spec.choices and value not in spec.choices:
                raise StartupError(f'parameter {name}: {value!r} is not one of {", ".join(spec.choices)}')
            values[name] = value
        for name in ('slop', 'marker_rate', 'diagnostics_period'):
            if not values[name] > 0:
                raise StartupError(f'parameter {name}: must be > 0, got {values[name]}')
        if values['queue_size'] < 1:
            raise StartupError(f'parameter queue_size: must be >= 1, got {values["queue_size"]}')
        return values

    def _load_predictor(self) -> Predictor:
        path = BUILTIN_CHECKPOINT if self.params['checkpoint'] == BUILTIN else self.params['checkpoint']
        try:
            return Predictor.from_checkpoint(path, self.params['preset'] or None, self.params['device'],
                                             self.params['precision'], self.params['backend'],
                                             self.params['allow_cpu_fallback'], self.params['fit'])
        except (CheckpointError, ValueError, RuntimeError) as e:
            raise StartupError(f'parameter checkpoint: cannot load {path}: {e}') from None

    def _grid_pose(self, preset) -> np.ndarray:
        values = self.params['cam_from_grid']
        if not len(values):
            return np.array(preset.cam_from_grid)
        pose = np.asarray(values, np.float64)
        if pose.size != 16 or not np.all(np.isfinite(pose)):
            raise StartupError(f'parameter cam_from_grid: expected 16 finite numbers, got {list(values)}')
        pose = pose.reshape(4, 4)
        if not np.allclose(pose[3], (0, 0, 0, 1)):
            raise StartupError(f'parameter cam_from_grid: last row must be 0 0 0 1, got {pose[3].tolist()}')
        return pose

    def _class_filter(self, preset):
        names = [n for n in self.params['class_filter'] if n]
        try:
            return class_ids(preset.class_names, names) if names else None
        except ValueError as e:
            raise StartupError(f'parameter class_filter: {e}') from None

    # ------------------------------------------------------------------ inputs
    def _warn(self, kind: str, text: str, outcome: str = 'dropped') -> None:
        """Count a problem and log it, at most once per 5 s for each kind."""
        self.stats.errors[kind] += 1
        now = time.monotonic()
        if now - self.last_logged.get(kind, -1e9) >= 5.0 and self.context.ok():
            self.last_logged[kind] = now
            count = self.stats.errors[kind]
            self.get_logger().warning(f'{text} ({outcome}; {count} of this kind so far)')

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.stats.received['camera_info'] += 1
        self.camera_info = msg

    def _on_image(self, msg) -> None:
        self.stats.received['image'] += 1
        self._add(self.images, msg)

    def _on_depth(self, msg: Image | DisparityImage) -> None:
        self.stats.received['depth'] += 1
        self._add(self.depths, msg)

    def _add(self, queue, msg) -> None:
        stamp = stamp_seconds(msg.header)
        with self.lock:
            if self.last_stamp is not None and stamp < self.last_stamp - self.params['slop']:
                self._warn('stamp_backwards', f'stamp {stamp:.3f} is older than the last paired frame '
                           f'{self.last_stamp:.3f}: time jumped back, pairing restarts')
                self.images.clear()
                self.depths.clear()
                self.last_stamp = None
            queue.append((stamp, msg))
            self._pair()

    def _pair(self) -> None:
        """Newest image with its closest depth within slop; older inputs are discarded."""
        for i in range(len(self.images) - 1, -1, -1):
            stamp, image = self.images[i]
            best = min(self.depths, key=lambda d: abs(d[0] - stamp), default=None)
            if best is None or abs(best[0] - stamp) > self.params['slop']:
                continue
            for _ in range(i + 1):
                self.images.popleft()
            while self.depths and self.depths[0][0] <= best[0]:
                self.depths.popleft()
            if self.pending is not None:
                self.stats.dropped_stale += 1
            self.pending = (image, best[1], time.monotonic())
            self.last_stamp = stamp
            self.lock.notify()
            return

    # ------------------------------------------------------------------ inference
    def _work(self) -> None:
        while self.running:
            with self.lock:
                while self.pending is None and self.running:
                    self.lock.wait(timeout=0.5)
                if not self.running:
                    return
                image_msg, depth_msg, received = self.pending
                self.pending = None
            try:
                self._process(image_msg, depth_msg, self.camera_info, received)
            except MessageError as e:
                self._warn(e.kind, str(e))
            except ValueError as e:
                self._warn('bad_input', str(e))
            except Exception as e:  # keep the node alive, say what happened
                self._warn('inference_failed', f'{type(e).__name__}: {e}')

    def _process(self, image_msg, depth_msg, info, received) -> None:
        if info is None:
            self._warn('no_camera_info', 'no camera_info received yet')
            return
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
            with self.marker_lock:
                self.marker_slot = (prediction.labels, header)
                self.marker_lock.notify()
        self.stats.processed += 1
        now = time.monotonic()
        self.stats.latencies.append(now - received)
        self.stats.done_times.append(now)

    def _markers(self) -> None:
        preset = self.predictor.preset
        last = 0.0
        while self.running:
            with self.marker_lock:
                while self.marker_slot is None and self.running:
                    self.marker_lock.wait(timeout=0.5)
                if not self.running:
                    return
                labels, header = self.marker_slot
                self.marker_slot = None
            wait = last + 1.0 / self.params['marker_rate'] - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                self.marker_pub.publish(conversions.labels_to_markers(
                    labels, preset.class_names, preset.model.voxel_size, preset.voxel_origin, header,
                    self.keep))
            except Exception as e:
                self._warn('markers_failed', f'{type(e).__name__}: {e}')
            last = time.monotonic()

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        s = self.stats
        done = list(s.done_times)
        rate = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
        latency = np.percentile(list(s.latencies), [50, 95]) if s.latencies else (float('nan'),) * 2
        values = {'rate_hz': f'{rate:.3f}', 'latency_p50_s': f'{latency[0]:.3f}',
                  'latency_p95_s': f'{latency[1]:.3f}', 'processed': str(s.processed),
                  'dropped_stale': str(s.dropped_stale),
                  'fraction_in_view': f'{self.view.fraction_in_view:.3f}' if self.view else 'unknown',
                  **{f'received_{k}': str(v) for k, v in s.received.items()},
                  **{f'error_{k}': str(v) for k, v in s.errors.items()}}
        level = DiagnosticStatus.WARN if s.errors else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name=f'{self.get_name()}: semantic scene completion',
                                  hardware_id=self.predictor.backend.describe(),
                                  message=f'{rate:.2f} Hz, {s.dropped_stale} stale frames dropped',
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                              status=[status]))

    def destroy_node(self):
        self.running = False
        for name in ('lock', 'marker_lock'):  # absent when start-up failed half-way
            if hasattr(self, name):
                with getattr(self, name):
                    getattr(self, name).notify_all()
        for name in ('worker', 'marker_worker'):
            if hasattr(self, name):
                getattr(self, name).join(timeout=5)
        return super().destroy_node()


def main(args=None):
    rclpy.init(args=args)
    try:
        node = SSCNode()
    except StartupError as e:
        rclpy.logging.get_logger('ssc_node').fatal(str(e))
        rclpy.try_shutdown()
        sys.exit(f'ssc_node: {e}')
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
