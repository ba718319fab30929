"""ssc_node's parameters: what each one is, which can change at run time, and their checks.

Start-up parameters (weights, backend, inputs, TF and map set-up) are declared read-only:
``ros2 param set`` is refused with rclpy's reason. Run-time parameters are checked by :func:`check`
(and, for class_filter and the poses, by :func:`class_filter_ids` / :func:`pose_parameter`) both at
start-up and in the node's set-parameters callback, so a value start-up would refuse is refused
later too.
"""
import re
from dataclasses import dataclass

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, ParameterType

from ssc_core.backends import BACKENDS
from ssc_core.frame_inputs import FIT_POLICIES
from ssc_core.geometry import check_rotation
from ssc_core.outputs import class_ids
from ssc_core.predictor import PRECISIONS

from .qos import INPUT_QOS
from .transforms import TF2_IMPORT_ERROR

BUILTIN = 'builtin'
IMAGE_TRANSPORTS = ('raw', 'compressed')
TYPE_NAMES = {ParameterType.PARAMETER_BOOL: 'bool', ParameterType.PARAMETER_INTEGER: 'integer',
              ParameterType.PARAMETER_DOUBLE: 'double', ParameterType.PARAMETER_STRING: 'string',
              ParameterType.PARAMETER_DOUBLE_ARRAY: 'double array',
              ParameterType.PARAMETER_STRING_ARRAY: 'string array'}
_TYPE_OF = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


@dataclass(frozen=True)
class Spec:
    default: object                   # a list for arrays (their type is ``array_type``)
    description: str
    read_only: bool = True            # False: may change at run time (checked, then applied)
    choices: tuple = ()
    minimum: float | None = None      # smallest allowed value (inclusive)
    array_type: int = ParameterType.PARAMETER_NOT_SET
    launch: bool = False              # also a launch argument of ssc.launch.py

    @property
    def type(self) -> int:
        return self.array_type if isinstance(self.default, list) else _TYPE_OF[type(self.default)]

    def text(self) -> str:
        """The description with the allowed values and whether it can change at run time."""
        text = self.description
        if self.choices:
            text += f' (one of {", ".join(self.choices)})'
        if self.minimum is not None:
            text += f' (>= {self.minimum:g})'
        if not self.read_only:
            text += ' [can change at run time]'
        return text

    def descriptor(self) -> ParameterDescriptor:
        return ParameterDescriptor(type=self.type, description=self.text(), read_only=self.read_only)

    def parse(self, text: str):
        """A launch argument's text as this parameter's value; ValueError names expected and got."""
        kind = type(self.default)
        if kind is bool:
            if text.lower() not in ('true', 'false'):
                raise ValueError(f'expected true or false, got {text!r}')
            return text.lower() == 'true'
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f'expected {TYPE_NAMES[self.type]}, got {text!r}') from None


FRAME_ID = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_./-]*')
"""A tf2 frame id: not empty, no leading slash (tf2 refuses those), no spaces or other characters."""

PARAMETERS = {
    'checkpoint': Spec(BUILTIN, 'weights file (ours, a training run\'s or the authors\'); '
                       '"builtin" = the built-in small model', launch=True),
    'preset': Spec('', 'preset of the weights (empty: from the checkpoint)', launch=True),
    'backend': Spec('torch', 'inference backend; torch_compile compiles on the first frame (minutes on '
                    'a CPU); torch_cudagraph replays the forward as a CUDA graph (device cuda); '
                    'onnxruntime takes an .onnx file from ssc_core.tools.export as checkpoint',
                    choices=BACKENDS, launch=True),
    'device': Spec('cpu', 'cpu, cuda or cuda:N (onnxruntime: TensorRT, then CUDA)', launch=True),
    'allow_cpu_fallback': Spec(False, 'onnxruntime: run on the CPU when no GPU provider is usable '
                               '(logged) instead of failing', launch=True),
    'precision': Spec('fp32', 'fp32, or fp16/bf16 autocast', choices=tuple(PRECISIONS), launch=True),
    'fit': Spec('auto', 'how images of another size than the network\'s become its input: crop '
                '(the authors\' top-left crop), scale (keep the view the grid needs, K scaled), '
                'auto (crop for KITTI-sized images, else scale)', choices=FIT_POLICIES, launch=True),
    'image_transport': Spec('raw', 'raw: sensor_msgs/Image on "image"; compressed: '
                            'sensor_msgs/CompressedImage on "<resolved image topic>/compressed"',
                            choices=IMAGE_TRANSPORTS, launch=True),
    'depth_input': Spec('depth', 'depth: sensor_msgs/Image on "depth" (32FC1 m, 16UC1 mm); '
                        'disparity: stereo_msgs/DisparityImage on "disparity" (depth = f*T/d)',
                        choices=('depth', 'disparity'), launch=True),
    'input_qos': Spec('reliable', 'QoS of the image, depth and camera_info subscriptions: reliable '
                      'connects to reliable publishers (drivers, ros2 bag play) and receives full-size '
                      'frames; best_effort or sensor_data for best-effort drivers', choices=INPUT_QOS,
                      launch=True),
    'queue_size': Spec(10, 'messages kept per input for pairing (and subscription depth)', minimum=1),
    'slop': Spec(0.05, 'largest stamp difference (s) between paired image and depth', False,
                 minimum=1e-6),
    'grid_frame': Spec('base_link', 'frame the per-frame outputs are in and the grid is placed in by '
                       'grid_pose (a tf2 frame id: no leading slash, letters, digits, _ . / -)', False,
                       launch=True),
    'grid_pose': Spec([], 'row-major 4x4 pose of the network\'s grid (its voxel_origin frame) in grid_frame '
                      '(empty: the preset\'s, for a ground-level grid_frame: KITTI\'s lidar frame, 1.73 m '
                      'up)', False, array_type=ParameterType.PARAMETER_DOUBLE_ARRAY),
    'use_tf': Spec(TF2_IMPORT_ERROR is None, 'look up the camera\'s pose in grid_frame (the image\'s '
                   'frame_id, at its stamp) from tf2; false: cam_from_grid (default: true where tf2_ros '
                   'imports)', launch=True),
    'tf_timeout': Spec(0.5, 'seconds a frame waits for its transforms before it is dropped (counted by '
                       'kind: tf_timeout, tf_extrapolation, tf_unknown_frame, tf_not_connected)', False,
                       minimum=0.0),
    'tf_tolerance': Spec(0.0, 'seconds an image may be newer than the latest transform and still use it '
                         '(as Nav2\'s transform_tolerance); 0: only transforms at the image\'s stamp',
                         False, minimum=0.0),
    'cam_from_grid': Spec([], 'with use_tf false: row-major 4x4 pose of grid_frame in the camera frame '
                          '(empty: the preset\'s camera mount on a ground-level grid_frame: KITTI\'s)', False,
                          array_type=ParameterType.PARAMETER_DOUBLE_ARRAY),
    'publish_cloud': Spec(True, 'publish voxels (PointCloud2)', False, launch=True),
    'cloud_surface_only': Spec(False, 'voxels (and map_voxels) hold only voxels with a free 6-neighbour '
                               '(what can be seen: about 3/4 of the occupied ones)', False, launch=True),
    'publish_markers': Spec(True, 'publish voxel_markers (MarkerArray)', False, launch=True),
    'publish_occupancy': Spec(True, 'publish occupancy (OccupancyGrid)', False, launch=True),
    'publish_voxel_grid': Spec(False, 'publish voxel_grid (sensor_msgs/Image 8UC<Z>: the whole label volume, '
                               'row = x, column = y, channel = z; 255 = out of view)', False, launch=True),
    'marker_rate': Spec(1.0, 'largest marker publishing rate (Hz)', False, minimum=0.01),
    'class_filter': Spec([], 'class names to publish (empty: all non-empty classes)', False,
                         array_type=ParameterType.PARAMETER_STRING_ARRAY),
    'diagnostics_period': Spec(1.0, 'seconds between /diagnostics messages', False, minimum=0.05),
    'stall_timeout': Spec(5.0, 'seconds with inputs arriving but nothing processed before /diagnostics '
                          'says WARN', False, minimum=0.1),
    'map_frame': Spec('', 'fixed frame of the semantic map (e.g. odom or map; needs use_tf): each '
                      'processed frame is fused into it at the transform at its stamp; empty: no map',
                      launch=True),
    'map_file': Spec('', 'saved map (.npz from ~/save_map or ssc_core.tools.map) to start from; refused '
                     'when made for another network; empty: start empty', launch=True),
    'map_save_path': Spec('', 'where ~/save_map writes PATH.npz and PATH.ply; empty: '
                          'ssc_map_<date>_<time> in the working directory', False, launch=True),
    'map_publish_rate': Spec(1.0, 'largest rate (Hz) of map_voxels, map_markers and map_occupancy',
                             False, minimum=0.01),
    'map_radius': Spec(80.0, 'metres around the latest pose beyond which the map forgets (0: keeps '
                       'everything; more than the grid\'s reach, 57 m for 51.2 m grids)', False,
                       minimum=0.0, launch=True),
    'map_half_life': Spec(0.0, 'seconds for the map\'s evidence to halve (0: it never fades)', False,
                          minimum=0.0),
    'map_max_speed': Spec(40.0, 'm/s between the poses of consecutive integrated frames beyond which a '
                          'frame is refused as a relocalisation (map_refused; reset the map); 0: no check',
                          False, minimum=0.0),
    'map_change_after': Spec(4.0, 'contrary observations that change the class of a map voxel whose '
                             'evidence is at its clamp', minimum=1.0),
}
LAUNCH_PARAMETERS = tuple(name for name, spec in PARAMETERS.items() if spec.launch)
"""The parameters ssc.launch.py also takes as launch arguments (the others: its params_file)."""
# Declared by rclpy itself, or read by it from the same parameters file.
ROS_PARAMETERS = ('use_sim_time', 'start_type_description_service')


def check(name: str, value) -> str | None:
    """What is wrong with ``value`` for parameter ``name`` (None: nothing); types are rclpy's job."""
    spec = PARAMETERS[name]
    if spec.choices and value not in spec.choices:
        return f'expected one of {", ".join(spec.choices)}, got {value!r}'
    if spec.minimum is not None and not value >= spec.minimum:
        return f'expected >= {spec.minimum:g}, got {value!r}'
    if name in FRAME_PARAMETERS and (value or name == 'grid_frame') and not FRAME_ID.fullmatch(value):
        return (f'expected a frame id (letters, digits, _ . / -, not starting with / or .), got {value!r}')
    if name in POSE_PARAMETERS:
        try:
            pose_parameter(value, np.eye(4))
        except ValueError as e:
            return str(e)
    return None


FRAME_PARAMETERS = ('grid_frame', 'map_frame')   # map_frame may be empty (no map)
POSE_PARAMETERS = ('grid_pose', 'cam_from_grid')


def pose_parameter(values, default: np.ndarray) -> np.ndarray:
    """A pose parameter's 16 row-major numbers → (4, 4); empty → ``default``; ValueError names the problem."""
    if not len(values):
        return np.array(default, np.float64)
    pose = np.asarray(values, np.float64)
    if pose.size != 16 or not np.all(np.isfinite(pose)):
        raise ValueError(f'expected 16 finite numbers, got {list(values)}')
    pose = pose.reshape(4, 4)
    if not np.allclose(pose[3], (0, 0, 0, 1)):
        raise ValueError(f'last row must be 0 0 0 1, got {pose[3].tolist()}')
    check_rotation(pose)
    return pose


def class_filter_ids(names, class_names) -> np.ndarray | None:
    """class_filter's names → class ids (None: every class); ValueError names unknown classes."""
    names = [n for n in names if n]
    return class_ids(class_names, names) if names else None


def type_mismatch(name: str, got_type: int, got_value) -> str:
    """The one line for a value of the wrong type (from a parameters file or -p)."""
    expected = TYPE_NAMES[PARAMETERS[name].type]
    got = TYPE_NAMES.get(got_type, 'unset')
    hint = f' (write {float(got_value)!r})' if (expected, got) == ('double', 'integer') else ''
    return f'parameter {name}: expected {expected}, got {got} {got_value!r}{hint}'


def unknown(names) -> list[str]:
    """The names that are neither ours nor rclpy's (qos_overrides.* are rclpy's too)."""
    return sorted(n for n in names if n not in PARAMETERS and n not in ROS_PARAMETERS
                  and not n.startswith('qos_overrides.'))
