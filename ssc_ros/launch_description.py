"""What ``ssc.launch.py`` starts, as plain data: usable without the ``launch`` package.

``describe(...)`` gives the node (parameters file, remappings, namespace, sim time), and
optionally the bag player and RViz; each part knows its equivalent command line for machines
with only the pip-installed ROS 2 wheels. :data:`ARGUMENTS` and :func:`launch_arguments` are the
launch file's arguments: its own, then the node parameters of
:data:`ssc_ros.parameters.LAUNCH_PARAMETERS` with their descriptions from there.
"""
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .parameters import LAUNCH_PARAMETERS, PARAMETERS

PACKAGE = 'ssc_ros'
ARGUMENTS = {  # name: (default, description)
    'namespace': ('', 'namespace of the node (and player)'),
    'params_file': ('', 'parameters file (default: the installed config/ssc.yaml); holds every node '
                    'parameter, also those that are not launch arguments'),
    'image': ('/camera/image', 'camera image topic'),
    'depth': ('/camera/depth', 'depth image topic, registered to the camera image'),
    'disparity': ('/camera/disparity', 'stereo_msgs/DisparityImage topic (with depth_input:=disparity)'),
    'camera_info': ('/camera/camera_info', 'camera info topic'),
    'use_sim_time': ('false', 'use /clock (with bag:=, the player publishes it)'),
    'bag': ('', 'rosbag2 folder to play with the built-in player'),
    'rate': ('1.0', 'playback rate'),
    'loop': ('false', 'loop the bag'),
    'bag_topics': ('', "the bag's topic per role, ROLE=TOPIC,... (image, depth, camera_info, right, "
                   "right_camera_info; default: ours, else kitti2bag's)"),
    'baseline': ('', 'stereo baseline in metres for bags without depth (default: from the camera_info pair)'),
    'rviz': ('false', 'start RViz with config/ssc.rviz (ends the launch when closed)'),
}


def launch_arguments() -> dict[str, tuple[str, str]]:
    """Every launch argument: name -> (default, description); node parameters default to '' =
    the parameters file's value."""
    def text(spec):
        default = str(spec.default).lower() if isinstance(spec.default, bool) else spec.default
        return f'node parameter: {spec.text()}; empty: the parameters file\'s value (default {default!r})'
    return {**ARGUMENTS, **{name: ('', text(PARAMETERS[name])) for name in LAUNCH_PARAMETERS}}


def node_parameters(given: dict[str, str]) -> dict:
    """Launch arguments' text -> typed node parameters, for those given (not empty); ValueError
    names the argument, expected and got."""
    values = {}
    for name in LAUNCH_PARAMETERS:
        if given.get(name):
            try:
                values[name] = PARAMETERS[name].parse(given[name])
            except ValueError as e:
                raise ValueError(f'launch argument {name}: {e}') from None
    return values


def find_rviz() -> None:
    """Raise RuntimeError (one line) when RViz (package rviz2) is not installed."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix('rviz2')
    except (PackageNotFoundError, OSError, ValueError):
        raise RuntimeError("rviz:=true, but package 'rviz2' is not installed (install ros-<distro>-rviz2 "
                           'and source it, or leave rviz:=false); nothing was started') from None


def share_dir() -> Path:
    """The package's share folder (launch/, config/): from the ament index where the package is
    installed (a colcon workspace, AMENT_PREFIX_PATH), else the source tree (the pip-wheels way)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, OSError):  # not installed there, or no AMENT_PREFIX_PATH
        return Path(__file__).resolve().parents[1]


@dataclass
class NodeSpec:
    package: str
    executable: str
    name: str
    namespace: str = ''
    parameters: list = field(default_factory=list)   # params files (str) and dicts
    remappings: list = field(default_factory=list)   # (from, to)
    arguments: list = field(default_factory=list)
    module: str = ''                                  # python -m entry for pip installs

    def command(self) -> list[str]:
        """The equivalent command line (``python -m MODULE ARGS --ros-args ...``)."""
        if not self.module:
            raise ValueError(f'{self.executable}: not one of ours, it has no python -m command')
        cmd = [sys.executable, '-m', self.module, *self.arguments, '--ros-args', '-r', f'__node:={self.name}']
        if self.namespace:
            cmd += ['-r', f'__ns:=/{self.namespace.strip("/")}']
        for p in self.parameters:
            if isinstance(p, dict):
                for k, v in p.items():
                    cmd += ['-p', f'{k}:={str(v).lower() if isinstance(v, bool) else v}']
            else:
                cmd += ['--params-file', str(p)]
        for src, dst in self.remappings:
            cmd += ['-r', f'{src}:={dst}']
        return cmd


@dataclass
class Description:
    node: NodeSpec
    player: NodeSpec | None = None
    rviz: NodeSpec | None = None


def describe(params_file: str | None = None, namespace: str = '', image: str = '/camera/image',
             depth: str = '/camera/depth', camera_info: str = '/camera/camera_info',
             use_sim_time: bool = False, bag: str = '', rate: float = 1.0, loop: bool = False,
             rviz: bool = False, extra_parameters: dict | None = None, bag_topics: str = '',
             baseline: float | None = None, disparity: str = '/camera/disparity') -> Description:
    """The launch as data. Topics name what the node's ``image``/``depth``/``camera_info`` read;
    ``bag_topics`` (ROLE=TOPIC,...) and ``baseline`` (metres) go to the player for others' bags."""
    share = share_dir()
    params = [str(params_file or share / 'config' / 'ssc.yaml'), {'use_sim_time': use_sim_time,
                                                                  **(extra_parameters or {})}]
    node = NodeSpec(PACKAGE, 'ssc_node', 'ssc_node', namespace, params,
                    [('image', image), ('depth', depth), ('disparity', disparity),
                     ('camera_info', camera_info)],
                    module='ssc_ros.node')
    player = None
    if bag:
        args = ['play', bag, '--rate', str(rate)] + (['--loop'] if loop else []) + \
            (['--clock'] if use_sim_time else []) + (['--topics', bag_topics] if bag_topics else []) + \
            (['--baseline', str(baseline)] if baseline is not None else [])
        player = NodeSpec(PACKAGE, 'ssc_bag', 'ssc_bag_player', namespace, arguments=args,
                          module='ssc_ros.bag')
    viewer = None
    if rviz:
        viewer = NodeSpec('rviz2', 'rviz2', 'rviz2', arguments=['-d', str(share / 'config' / 'ssc.rviz')],
                          parameters=[{'use_sim_time': use_sim_time}])
    return Description(node, player, viewer)
