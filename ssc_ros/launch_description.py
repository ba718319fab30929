"""What ``ssc.launch.py`` starts, as plain data: usable without the ``launch`` package.

``describe(...)`` gives the node (parameters file, remappings, namespace, sim time), and
optionally the bag player and RViz; each part knows its equivalent command line for machines
with only the pip-installed ROS 2 wheels.
"""
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = 'ssc_ros'


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
             baseline: float | None = None) -> Description:
    """The launch as data. Topics name what the node's ``image``/``depth``/``camera_info`` read;
    ``bag_topics`` (ROLE=TOPIC,...) and ``baseline`` (metres) go to the player for others' bags."""
    share = share_dir()
    params = [str(params_file or share / 'config' / 'ssc.yaml'), {'use_sim_time': use_sim_time,
                                                                  **(extra_parameters or {})}]
    node = NodeSpec(PACKAGE, 'ssc_node', 'ssc_node', namespace, params,
                    [('image', image), ('depth', depth), ('camera_info', camera_info)],
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
