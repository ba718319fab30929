"""ros2 launch ssc_ros ssc.launch.py [namespace:=…] [params_file:=…] [image:=…] [depth:=…]
[camera_info:=…] [use_sim_time:=true] [bag:=PATH rate:=1.0 loop:=false bag_topics:=ROLE=TOPIC,…
baseline:=METRES] [rviz:=true]

A thin adapter over ssc_ros.launch_description, which holds what is started.
"""
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from ssc_ros.launch_description import describe

ARGUMENTS = {
    'namespace': ('', 'namespace of the node (and player)'),
    'params_file': ('', 'parameters file (default: the installed config/ssc.yaml)'),
    'image': ('/camera/image', 'camera image topic'),
    'depth': ('/camera/depth', 'depth image topic, registered to the camera image'),
    'camera_info': ('/camera/camera_info', 'camera info topic'),
    'use_sim_time': ('false', 'use /clock (with bag:=, the player publishes it)'),
    'bag': ('', 'rosbag2 folder to play with the built-in player'),
    'rate': ('1.0', 'playback rate'),
    'loop': ('false', 'loop the bag'),
    'bag_topics': ('', "the bag's topic per role, ROLE=TOPIC,... (image, depth, camera_info, right, "
                   "right_camera_info; default: ours, else kitti2bag's)"),
    'baseline': ('', 'stereo baseline in metres for bags without depth (default: from the camera_info pair)'),
    'rviz': ('false', 'start RViz with config/ssc.rviz'),
}


def _actions(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    d = describe(params_file=value['params_file'] or None, namespace=value['namespace'],
                 image=value['image'], depth=value['depth'], camera_info=value['camera_info'],
                 use_sim_time=value['use_sim_time'].lower() == 'true', bag=value['bag'],
                 rate=float(value['rate']), loop=value['loop'].lower() == 'true',
                 rviz=value['rviz'].lower() == 'true', bag_topics=value['bag_topics'],
                 baseline=float(value['baseline']) if value['baseline'] else None)
    actions = [Node(package=d.node.package, executable=d.node.executable, name=d.node.name,
                    namespace=d.node.namespace, parameters=d.node.parameters,
                    remappings=d.node.remappings, output='screen')]
    if d.player:
        actions.append(Node(package=d.player.package, executable=d.player.executable, name=d.player.name,
                            namespace=d.player.namespace, arguments=d.player.arguments, output='screen'))
    if d.rviz:
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', arguments=d.rviz.arguments,
                            parameters=d.rviz.parameters))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()] + [OpaqueFunction(function=_actions)])
