"""The launch description (plain data) and the launch file that adapts it."""
from pathlib import Path

import pytest
import yaml

from ssc_ros.launch_description import describe, find_rviz, node_parameters, share_dir
from ssc_ros.parameters import LAUNCH_PARAMETERS, PARAMETERS

REPO = Path(__file__).resolve().parents[1]


def test_description():
    d = describe(namespace='robot1', image='/cam/left', use_sim_time=True, bag='/bags/kitti', rate=2.0,
                 loop=True, rviz=True)
    assert d.node.namespace == 'robot1' and ('image', '/cam/left') in d.node.remappings
    assert d.node.parameters[0].endswith('config/ssc.yaml') and d.node.parameters[1]['use_sim_time'] is True
    cmd = d.node.command()
    assert cmd[1:3] == ['-m', 'ssc_ros.node'] and '__ns:=/robot1' in cmd and 'use_sim_time:=true' in cmd
    assert d.player.command()[3:] == ['play', '/bags/kitti', '--rate', '2.0', '--loop', '--clock',
                                      '--ros-args', '-r', '__node:=ssc_bag_player', '-r', '__ns:=/robot1']
    assert d.rviz.arguments[-1].endswith('config/ssc.rviz')
    with pytest.raises(ValueError, match='rviz2: not one of ours'):
        d.rviz.command()
    assert describe().player is None and describe().rviz is None
    other = describe(bag='/bags/kitti2bag', bag_topics='image=/kitti/camera_color_left/image_raw',
                     baseline=0.54)
    assert other.player.arguments[-4:] == ['--topics', 'image=/kitti/camera_color_left/image_raw',
                                           '--baseline', '0.54']


def test_launch_file_loads_under_the_launch_system():
    """The launch package reads launch/ssc.launch.py and sees its arguments, the node parameters'
    with their descriptions from ssc_ros.parameters (running it: test_ros_tools)."""
    from launch.launch_description_sources import get_launch_description_from_python_launch_file

    description = get_launch_description_from_python_launch_file(str(REPO / 'launch' / 'ssc.launch.py'))
    arguments = {a.name: a for a in description.get_launch_arguments()}
    assert list(arguments) == ['namespace', 'params_file', 'image', 'depth', 'disparity', 'camera_info',
                               'use_sim_time', 'bag', 'rate', 'loop', 'bag_topics', 'baseline', 'rviz',
                               *LAUNCH_PARAMETERS]
    assert {'image_transport', 'input_qos', 'depth_input', 'fit', 'device', 'backend', 'checkpoint',
            'grid_frame', 'use_tf', 'map_frame', 'map_file', 'map_save_path'} <= set(LAUNCH_PARAMETERS)
    for name in LAUNCH_PARAMETERS:
        assert PARAMETERS[name].text() in arguments[name].description, name
        assert arguments[name].default_value[0].text == ''   # not given: the parameters file's value


def test_launch_arguments_become_typed_node_parameters(tmp_path, monkeypatch):
    assert node_parameters({'grid_frame': 'base_link', 'publish_markers': 'False', 'image_transport': '',
                            'bag': 'x'}) == {'grid_frame': 'base_link', 'publish_markers': False}
    with pytest.raises(ValueError, match="publish_markers: expected true or false, got 'yes'"):
        node_parameters({'publish_markers': 'yes'})
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))   # an ament index without rviz2
    with pytest.raises(RuntimeError, match="rviz:=true, but package 'rviz2' is not installed"):
        find_rviz()


def test_parameters_file_documents_every_parameter():
    text = (share_dir() / 'config' / 'ssc.yaml').read_text()
    params = yaml.safe_load(text)['/**/ssc_node']['ros__parameters']
    for name, spec in PARAMETERS.items():
        assert name in text, name
        if name in params:
            assert params[name] == spec.default, name
    assert yaml.safe_load((share_dir() / 'config' / 'ssc.rviz').read_text())['Visualization Manager']


def test_rviz_cloud_boxes_are_the_builtin_models_voxels():
    """The RViz cloud display draws each point as a box of the default (built-in) model's voxel size."""
    from ssc_core.checkpoint import BUILTIN_CHECKPOINT, read_state_dict
    _, preset = read_state_dict(BUILTIN_CHECKPOINT)
    config = yaml.safe_load((share_dir() / 'config' / 'ssc.rviz').read_text())
    displays = config['Visualization Manager']['Displays']
    cloud = next(d for d in displays if d['Class'] == 'rviz_default_plugins/PointCloud2')
    assert cloud['Style'] == 'Boxes' and cloud['Size (m)'] == pytest.approx(preset.model.voxel_size)
