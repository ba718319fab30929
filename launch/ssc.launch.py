"""ros2 launch ssc_ros ssc.launch.py [namespace:=…] [params_file:=…] [image:=…] [depth:=…]
[camera_info:=…] [use_sim_time:=true] [bag:=PATH rate:=1.0 loop:=false bag_topics:=ROLE=TOPIC,…
baseline:=METRES] [rviz:=true] [NODE_PARAMETER:=VALUE …]; ``--show-args`` lists them all.

A thin adapter over ssc_ros.launch_description, which holds what is started and the arguments
(node parameters' names and descriptions come from ssc_ros.parameters). The node and RViz end the
launch when they exit; RViz is looked for before anything starts.
"""
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from ssc_ros.launch_description import describe, find_rviz, launch_arguments, node_parameters


def _actions(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in launch_arguments()}
    rviz = value['rviz'].lower() == 'true'
    if rviz:
        find_rviz()
    d = describe(params_file=value['params_file'] or None, namespace=value['namespace'],
                 image=value['image'], depth=value['depth'], camera_info=value['camera_info'],
                 disparity=value['disparity'], use_sim_time=value['use_sim_time'].lower() == 'true',
                 bag=value['bag'], rate=float(value['rate']), loop=value['loop'].lower() == 'true',
                 rviz=rviz, bag_topics=value['bag_topics'],
                 baseline=float(value['baseline']) if value['baseline'] else None,
                 extra_parameters=node_parameters(value))
    actions = [Node(package=d.node.package, executable=d.node.executable, name=d.node.name,
                    namespace=d.node.namespace, parameters=d.node.parameters,
                    remappings=d.node.remappings, output='screen',
                    on_exit=Shutdown(reason='ssc_node ended'))]
    if d.player:
        actions.append(Node(package=d.player.package, executable=d.player.executable, name=d.player.name,
                            namespace=d.player.namespace, arguments=d.player.arguments, output='screen'))
    if d.rviz:
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', arguments=d.rviz.arguments,
                            parameters=d.rviz.parameters, on_exit=Shutdown(reason='rviz2 ended')))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in launch_arguments().items()] + [OpaqueFunction(function=_actions)])
