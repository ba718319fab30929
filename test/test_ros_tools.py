"""What a ROS 2 user runs, with the real tools: colcon build, ros2 launch, ros2 run, ros2 param,
and sensor_msgs_py.point_cloud2.read_points on the output (upstream wheels in ../shared/ros2-tools).

The package is built once per session into a temporary workspace; every command runs with that
workspace's install/setup.bash sourced, the way a user's shell has it.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ros_helpers import start, write_kitti_sequence
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from sensor_msgs_py.point_cloud2 import read_points
from std_msgs.msg import Header

from ssc_core.frame_inputs import project_grids
from ssc_core.geometry import pose_from_quaternion, transform_points
from ssc_core.presets import SMALL, base_from_grid
from ssc_ros import conversions as conv
from ssc_ros.bag import convert
from ssc_ros.parameters import PARAMETERS
from ssc_ros.qos import LATCHED

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLI = ('--no-daemon', '--spin-time', '5')  # no ros2 daemon left behind; time for discovery


@pytest.fixture(scope='session')
def workspace(tmp_path_factory) -> dict:
    """``colcon build`` of this repository into a fresh workspace; the environment of a shell that
    sourced its install/setup.bash (on top of this Python environment's ROS 2 packages)."""
    ws = tmp_path_factory.mktemp('colcon_ws')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'AMENT_PREFIX_PATH')}
    env.update(PATH=f'{BIN}:{env["PATH"]}', AMENT_PREFIX_PATH=sys.prefix)
    build = subprocess.run([BIN / 'colcon', 'build', '--base-paths', REPO, '--build-base', ws / 'build',
                            '--install-base', ws / 'install'], cwd=ws, env=env, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    sourced = subprocess.run(['bash', '-c', f'source {ws}/install/setup.bash && env -0'], env=env,
                             capture_output=True, check=True, timeout=60).stdout
    return dict(item.split('=', 1) for item in sourced.decode().split('\0') if '=' in item)


def ros2(env, *args, timeout=60) -> subprocess.CompletedProcess:
    """``ros2 ARGS``; run once more if it hangs (see ros2_all)."""
    try:
        return subprocess.run(['ros2', *args], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.run(['ros2', *args], env=env, capture_output=True, text=True, timeout=timeout)


def ros2_all(env, calls: dict, timeout=45) -> dict:
    """The ``ros2`` commands of ``calls`` at once; their output by key. A command that hangs is
    killed and run again alone: ``ros2 param`` waits for a service reply without a timeout, and
    DDS drops a reply sent before the server has discovered the client's reader (an upstream race
    that seven CLIs discovering at once on two cores can hit)."""
    running = {k: subprocess.Popen(['ros2', *args], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True) for k, args in calls.items()}
    out = {}
    for key, process in running.items():
        try:
            out[key] = process.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            again = ros2(env, *calls[key])
            out[key] = again.stdout + again.stderr
    return out


def launch(env, log, *args) -> subprocess.Popen:
    """``ros2 launch ssc_ros ssc.launch.py ARGS`` in its own process group, like a terminal's job."""
    return subprocess.Popen(['ros2', 'launch', 'ssc_ros', 'ssc.launch.py', *args], env=env,
                            stdout=open(log, 'w'), stderr=subprocess.STDOUT, start_new_session=True)


def ctrl_c(process, log) -> str:
    """Ctrl-C in the terminal: SIGINT to the whole process group (ros2 launch forwards one more)."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return Path(log).read_text()


def node_pid(log) -> int:
    for line in Path(log).read_text().splitlines():
        if '[ssc_node-1]: process started with pid [' in line:
            return int(line.split('[')[-1].rstrip(']'))
    raise AssertionError(Path(log).read_text())


class Camera:
    """Publishes small frames (rgb8 image, 32FC1 depth, camera_info) on the given topics, 2 per second,
    stamped 10 s, 11 s, ... or, with ``now``, with the time they are sent (to meet live TF)."""

    def __init__(self, probe, image, depth, camera_info, now=False):
        self.probe = probe
        self.pubs = [probe.node.create_publisher(t, name, 10)
                     for t, name in ((Image, image), (Image, depth), (CameraInfo, camera_info))]
        self.stamp = 10
        self.now = now

    def send(self) -> None:
        header = Header(frame_id='camera')
        header.stamp.sec = self.stamp
        if self.now:
            header.stamp = self.probe.node.get_clock().now().to_msg()
        self.stamp += 1
        self.pubs[2].publish(CameraInfo(k=list(np.ravel(SMALL.cam_K)), width=320, height=96))
        self.pubs[0].publish(conv.rgb_image_msg(np.full((96, 320, 3), 120, np.uint8), header))
        self.pubs[1].publish(conv.depth_image_msg(np.full((96, 320), 8.0, np.float32), header))
        time.sleep(0.5)

    def until(self, condition, what, timeout=60) -> None:
        self.probe.wait_for(lambda: condition() or self.send(), timeout, what)


def test_ros2_launch_with_params_file_namespace_remaps_and_ros2_param(workspace, checkpoint, probe, tmp_path):
    params = tmp_path / 'robot.yaml'
    params.write_text(yaml.safe_dump({'/**/ssc_node': {'ros__parameters': {
        'checkpoint': checkpoint, 'grid_frame': 'grid_from_file', 'diagnostics_period': 0.5,
        'publish_markers': False, 'use_tf': False, 'not_a_parameter': 3}}}))
    probe.record(PointCloud2, '/robot1/voxels')
    log = tmp_path / 'launch.log'
    process = launch(workspace, log, 'namespace:=robot1', f'params_file:={params}', 'image:=/cam/img',
                     'depth:=/cam/depth', 'camera_info:=/cam/info')
    try:
        probe.wait_for(lambda: 'ready:' in log.read_text(), 60, 'the node to start')
        camera = Camera(probe, '/cam/img', '/cam/depth', '/cam/info')
        camera.until(lambda: probe.messages('/robot1/voxels'), 'a cloud on /robot1/voxels')
        cloud = probe.messages('/robot1/voxels')[-1]
        assert cloud.header.frame_id == 'grid_from_file'
        points = read_points(cloud, field_names=['x', 'y', 'z', 'rgb', 'label'])
        assert len(points) == cloud.width > 0
        assert set(np.unique(points['label'])) <= set(range(1, len(SMALL.class_names)))
        height = base_from_grid(SMALL)[2, 3]   # the grid above a ground-level grid_frame (grid_pose)
        assert points['x'].min() >= SMALL.voxel_origin[0]
        assert SMALL.voxel_origin[2] + height <= points['z'].min() <= points['z'].max() <= \
            SMALL.voxel_origin[2] + 6.4 + height
        assert points['z'].min() >= SMALL.voxel_origin[2] + height

        node = '/robot1/ssc_node'
        calls = {'list': ('param', 'list', node), 'dump': ('param', 'dump', node),
                 'get': ('param', 'get', node, 'grid_frame'), 'describe': ('param', 'describe', node, 'slop'),
                 'read_only': ('param', 'set', node, 'checkpoint', '/other.safetensors'),
                 'bad_value': ('param', 'set', node, 'slop', '-5.0'),
                 'bad_class': ('param', 'set', node, 'class_filter', '[car, spaceship]')}
        out = ros2_all(workspace, {k: (*args, *CLI) for k, args in calls.items()})
        assert set(out['list'].split()) >= set(PARAMETERS) | {'use_sim_time'}, out['list']
        dumped = yaml.safe_load(out['dump'])[node]['ros__parameters']
        assert set(dumped) >= set(PARAMETERS) and dumped['grid_frame'] == 'grid_from_file'
        assert dumped['checkpoint'] == checkpoint and dumped['class_filter'] == []
        assert out['get'].strip() == 'String value is: grid_from_file'
        assert 'Type: double' in out['describe'] and 'can change at run time' in out['describe']
        assert 'Setting parameter failed: Trying to set a read-only parameter: checkpoint' in out['read_only']
        assert 'Setting parameter failed: parameter slop: expected >= 1e-06, got -5.0' in out['bad_value']
        assert "unknown classes ['spaceship']" in out['bad_class']
        result = ros2(workspace, 'param', 'set', node, 'grid_frame', 'base_link', *CLI)
        assert result.stdout.strip() == 'Set parameter successful', result.stdout + result.stderr
        count = len(probe.messages('/robot1/voxels'))
        camera.until(lambda: len(probe.messages('/robot1/voxels')) > count + 1, 'clouds after the set')
        assert probe.messages('/robot1/voxels')[-1].header.frame_id == 'base_link'
    finally:
        text = ctrl_c(process, log)
    assert process.returncode == 0, text
    assert '[ssc_node-1]: process has finished cleanly' in text, text
    assert 'Traceback' not in text
    assert 'unknown parameters ignored: not_a_parameter' in text


def test_ros2_launch_bag_with_sim_time_uses_the_installed_config(workspace, probe, tmp_path):
    """bag:= use_sim_time:=true: the built-in player (with /clock) feeds the node started with the
    installed config/ssc.yaml (found through the ament index), and the built-in model answers."""
    # 16 frames at half speed (3.2 s): outputs keep coming while the probe discovers the node
    # (its publishers are volatile; the player waits for the node, not for the probe)
    seq, depth = write_kitti_sequence(tmp_path / 'seq', tmp_path / 'depth', 16, size=(320, 96))
    bag = convert(seq, depth, tmp_path / 'bag', progress=False)
    probe.record(PointCloud2, '/voxels')
    log = tmp_path / 'launch.log'
    process = launch(workspace, log, f'bag:={bag}', 'use_sim_time:=true', 'rate:=0.5')
    try:
        probe.wait_for(lambda: probe.messages('/voxels'), 90, 'a cloud from the bag')
        probe.wait_for(lambda: '[ssc_bag-2]: process has finished cleanly' in log.read_text(), 30,
                       'the player to finish')
        cmdline = Path(f'/proc/{node_pid(log)}/cmdline').read_bytes().split(b'\0')
        installed = Path(workspace['COLCON_PREFIX_PATH']) / 'ssc_ros/share/ssc_ros/config/ssc.yaml'
        assert str(installed).encode() in cmdline, cmdline
        assert 1_700_000_000 <= probe.messages('/voxels')[0].header.stamp.sec <= 1_700_000_001  # bag time
    finally:
        text = ctrl_c(process, log)
    assert process.returncode == 0, text
    assert 'published 48 messages' in text
    assert '[ssc_node-1]: process has finished cleanly' in text and 'Traceback' not in text, text


def test_ros2_run(workspace, checkpoint, probe, tmp_path):
    probe.record(PointCloud2, '/cam/voxels_out')
    log = tmp_path / 'run.log'
    process = subprocess.Popen(['ros2', 'run', 'ssc_ros', 'ssc_node', '--ros-args', '-p', 'use_tf:=false',
                                '-p', f'checkpoint:={checkpoint}', '-r', 'image:=/cam/image',
                                '-r', 'depth:=/cam/depth', '-r', 'camera_info:=/cam/camera_info',
                                '-r', 'voxels:=/cam/voxels_out'],
                               env=workspace, stdout=open(log, 'w'), stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        Camera(probe, '/cam/image', '/cam/depth', '/cam/camera_info').until(
            lambda: probe.messages('/cam/voxels_out'), 'a cloud on /cam/voxels_out')
    finally:
        text = ctrl_c(process, log)
    assert process.returncode == 0 and 'Traceback' not in text, text
    bad = ros2(workspace, 'run', 'ssc_ros', 'ssc_node', '--ros-args', '-p', 'queue_size:=10.0', timeout=120)
    assert bad.returncode == 1, bad.stderr
    assert bad.stderr == 'ssc_node: parameter queue_size: expected integer, got double 10.0\n'


def test_ros2_launch_show_args_lists_the_node_parameters(workspace):
    """`ros2 launch ssc_ros ssc.launch.py --show-args` names every launch argument, the node
    parameters among them with their descriptions from ssc_ros.parameters."""
    from ssc_ros.parameters import LAUNCH_PARAMETERS
    out = ros2(workspace, 'launch', 'ssc_ros', 'ssc.launch.py', '--show-args')
    assert out.returncode == 0, out.stderr
    for name in ('image', 'depth', 'disparity', 'camera_info', 'params_file', 'rviz', *LAUNCH_PARAMETERS):
        assert f"'{name}':" in out.stdout, name
    flat = ' '.join(out.stdout.split())
    for name in LAUNCH_PARAMETERS:
        assert ' '.join(PARAMETERS[name].description.split()) in flat, name


def test_ros2_launch_node_parameters_and_refusals(workspace, checkpoint, tmp_path):
    """Node parameters given on the launch line reach the node (image_transport, input_qos,
    grid_frame); a malformed frame id stops the node with one line and ends the launch, the bag
    player with it (it would wait 30 s for the node, then play)."""
    log = tmp_path / 'launch.log'
    process = launch(workspace, log, f'checkpoint:={checkpoint}', 'image:=/cam/img',
                     'grid_frame:=from_launch', 'image_transport:=compressed', 'input_qos:=sensor_data')
    try:
        assert_eventually(lambda: 'ready:' in log.read_text(), 90, log)
    finally:
        text = ctrl_c(process, log)
    assert 'frame from_launch, image /cam/img/compressed (sensor_data)' in text, text
    seq, depth = write_kitti_sequence(tmp_path / 'seq', tmp_path / 'depth', 2, size=(320, 96))
    bag = convert(seq, depth, tmp_path / 'bag', progress=False)
    bad = tmp_path / 'bad.log'
    process = launch(workspace, bad, f'checkpoint:={checkpoint}', 'grid_frame:=/map', f'bag:={bag}')
    try:
        process.wait(timeout=90)
    finally:
        if process.poll() is None:
            ctrl_c(process, bad)
    text = bad.read_text()
    assert '[ssc_bag-2]: process started' in text and 'published 0 messages' in text, text
    assert ("ssc_node: parameter grid_frame: expected a frame id (letters, digits, _ . / -, not starting "
            "with / or .), got '/map'") in text, text
    assert 'Traceback' not in text


def test_ros2_launch_without_rviz2_starts_nothing(workspace, tmp_path):
    """rviz:=true where rviz2 is not installed: the launch fails at once with one line and no
    process was started (nothing is left running)."""
    log = tmp_path / 'launch.log'
    process = launch(workspace, log, 'rviz:=true', 'bag:=/nonexistent')
    try:
        assert process.wait(timeout=60) != 0
    finally:
        if process.poll() is None:
            ctrl_c(process, log)
    text = log.read_text()
    assert "rviz:=true, but package 'rviz2' is not installed" in text, text
    assert 'process started' not in text, text


def rigid(yaw=0.0, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    return pose_from_quaternion(t, (0, 0, np.sin(yaw / 2), np.cos(yaw / 2)))


def cloud_points(msg) -> np.ndarray:
    """(N, 4) x, y, z, label of a cloud (read by sensor_msgs_py)."""
    p = read_points(msg, field_names=['x', 'y', 'z', 'label'])
    return np.stack([p['x'], p['y'], p['z'], p['label']], 1).astype(np.float64)


def as_set(points: np.ndarray) -> np.ndarray:
    """Rows sorted (on millimetres): two clouds of the same points compare equal."""
    return points[np.lexsort(np.round(points, 3).T[::-1])]


def test_ros2_launch_on_a_tf_tree_from_another_process(workspace, checkpoint, probe, tmp_path):
    """A robot's TF tree from another process (tf_tree.py: StaticTransformBroadcaster for the camera
    mount, TransformBroadcaster for odom -> base_link at 20 Hz) and ssc_node under ros2 launch with
    map_frame:=odom: the camera's pose comes from TF (the grid's field of view in voxel_grid is
    exactly the one of that mount, 0.4 m above KITTI's), the frame outputs are in base_link, the
    map in odom, and the map's cloud is the frame's cloud (in view) moved by exactly odom -> base_link."""
    tr, mount = np.array(SMALL.cam_from_grid), base_from_grid(SMALL)
    lift = rigid(t=(0, 0, 0.4))
    base_from_camera = lift @ mount @ np.linalg.inv(tr)
    odom_from_base = rigid(np.pi / 2, (2.0, -1.2, -1.33))   # with the grid's 1.73 m: whole voxels
    tree = start([sys.executable, str(REPO / 'test' / 'tf_tree.py'), json.dumps({
        'static': [['base_link', 'camera', base_from_camera.ravel().tolist()]],
        'moving': [['odom', 'base_link', odom_from_base.ravel().tolist()]], 'hz': 20})], tmp_path / 'tf.log')
    probe.record(Image, '/voxel_grid')
    probe.record(PointCloud2, '/voxels')
    probe.record(PointCloud2, '/map_voxels', LATCHED)
    log = tmp_path / 'launch.log'
    process = launch(workspace, log, f'checkpoint:={checkpoint}', 'map_frame:=odom',
                     'publish_voxel_grid:=true', 'publish_markers:=false')
    try:
        probe.wait_for(lambda: 'ready:' in log.read_text(), 90, 'the node to start')
        camera = Camera(probe, '/camera/image', '/camera/depth', '/camera/camera_info', now=True)
        camera.until(lambda: probe.messages('/voxel_grid') and probe.messages('/voxels') and any(
            m.width for m in probe.messages('/map_voxels')), 'frame outputs and a map', timeout=90)
    finally:
        text = ctrl_c(process, log)
        tree.terminate()
    assert process.returncode == 0 and 'Traceback' not in text, text
    assert 'use_tf: the camera\'s pose in base_link from tf2' in text and 'error_tf' not in text, text
    grid_msg = probe.messages('/voxel_grid')[-1]
    grid = np.frombuffer(bytes(grid_msg.data), np.uint8).reshape(grid_msg.height, grid_msg.width, -1)
    _, output = project_grids(SMALL, np.array(SMALL.cam_K), tr @ np.linalg.inv(lift))
    np.testing.assert_array_equal(grid != 255, output.fov_mask.reshape(grid.shape))
    cloud = probe.messages('/voxels')[-1]
    map_cloud = next(m for m in probe.messages('/map_voxels') if m.width)
    assert (cloud.header.frame_id, grid_msg.header.frame_id, map_cloud.header.frame_id) == \
        ('base_link', 'base_link', 'odom')
    frame = cloud_points(cloud)   # every voxel predicted occupied; the map takes those in view
    index = np.floor((frame[:, :3] - mount[:3, 3] - SMALL.voxel_origin) / 0.4).astype(int)
    seen = frame[output.fov_mask.reshape(grid.shape)[tuple(index.T)]]
    moved = np.column_stack([transform_points(odom_from_base, seen[:, :3]), seen[:, 3]])
    assert len(seen) > 100
    np.testing.assert_allclose(as_set(cloud_points(map_cloud)), as_set(moved), atol=1e-4)


def late_map(probe, topic='/map_voxels', qos=LATCHED, wait=10.0):
    """The message a subscriber that joins now gets on a map topic within ``wait`` s (None: none)."""
    name = f'{topic}#{time.monotonic()}'
    probe.received[name] = []
    sub = probe.node.create_subscription(
        PointCloud2, topic, lambda msg: probe.received[name].append((time.monotonic(), msg)), qos)
    try:
        probe.wait_for(lambda: probe.received[name], wait, f'a late message on {topic}')
    except TimeoutError:
        return None
    finally:
        probe.node.destroy_subscription(sub)
    return probe.received[name][0][1]


def test_ros2_launch_bag_replays_into_a_latched_map_saved_reset_and_loaded(workspace, probe, tmp_path):
    """`ros2 launch ssc_ros ssc.launch.py bag:=... map_frame:=odom` on a synthetic sequence (1 m per
    frame, /tf and /tf_static from the converter): the map grows; subscribers that join after the
    bag ended get it whole with transient_local durability (`ros2 topic echo --qos-durability
    transient_local`, rclpy), nothing with volatile; `ros2 service call` ~/save_map writes npz + PLY,
    the latched cloud is exactly the saved map's occupied voxels; ~/reset_map empties it; a node
    started with map_file:= publishes the same cloud and saves the same npz again."""
    from rclpy.qos import QoSProfile

    from ssc_core.data.synthetic import write_sequence
    from ssc_core.mapping import load_map, occupied_points

    seq = write_sequence(tmp_path / 'kitti', '08', 10, image_size=(320, 96), label_every=100)
    bag = convert(seq, tmp_path / 'kitti' / 'depth' / 'sequences' / '08', tmp_path / 'bag', progress=False)
    first, again = tmp_path / 'maps' / 'first', tmp_path / 'maps' / 'again'
    first.parent.mkdir()
    log = tmp_path / 'launch.log'
    process = launch(workspace, log, f'bag:={bag}', 'map_frame:=odom', 'rate:=0.3', f'map_save_path:={first}')
    try:
        assert_eventually(lambda: '[ssc_bag-2]: process has finished cleanly' in log.read_text(), 120, log)
        time.sleep(2.0)   # the last frame's inference, then a map publication (1 Hz)
        echo = ros2(workspace, 'topic', 'echo', '/map_occupancy', 'nav_msgs/msg/OccupancyGrid',
                    '--qos-durability', 'transient_local', '--qos-reliability', 'reliable', '--once',
                    '--no-arr', *CLI[:1], '--timeout', '20')
        assert "frame_id: odom" in echo.stdout and 'resolution: 0.4' in echo.stdout, echo.stdout + echo.stderr
        saved = ros2(workspace, 'service', 'call', '/ssc_node/save_map', 'std_srvs/srv/Trigger')
        assert 'success=True' in saved.stdout, saved.stdout + saved.stderr
        latched = late_map(probe)
        assert late_map(probe, qos=QoSProfile(depth=1), wait=3.0) is None   # volatile: nothing
        semantic_map = load_map(first.with_suffix('.npz'), voxel_size=0.4, class_names=SMALL.class_names)
        assert semantic_map.frames >= 2 and latched.header.frame_id == 'odom'
        centres, classes = occupied_points(semantic_map)
        np.testing.assert_allclose(as_set(cloud_points(latched)), as_set(np.column_stack([centres, classes])),
                                   atol=1e-5)
        extent = np.ptp(centres[:, 0])
        assert extent > 51.2 + 1.0, extent   # longer than one frame's grid: frames at several poses
        assert first.with_suffix('.ply').read_bytes().startswith(b'ply\n')
        reset = ros2(workspace, 'service', 'call', '/ssc_node/reset_map', 'std_srvs/srv/Trigger')
        assert 'success=True' in reset.stdout, reset.stdout + reset.stderr
        probe.wait_for(lambda: late_map(probe).width == 0, 10, 'the empty map after the reset')
    finally:
        text = ctrl_c(process, log)
    assert process.returncode == 0 and 'Traceback' not in text and 'error_tf' not in text, text
    assert 'semantic map in odom (kernels native)' in text   # the installed package builds its C pass

    log = tmp_path / 'again.log'
    process = launch(workspace, log, 'map_frame:=odom', f'map_file:={first}.npz', f'map_save_path:={again}')
    try:
        assert_eventually(lambda: 'ready:' in log.read_text(), 90, log)
        loaded = late_map(probe, wait=20.0)
        saved = ros2(workspace, 'service', 'call', '/ssc_node/save_map', 'std_srvs/srv/Trigger')
        assert 'success=True' in saved.stdout, saved.stdout + saved.stderr
    finally:
        text = ctrl_c(process, log)
    assert process.returncode == 0 and 'Traceback' not in text, text
    np.testing.assert_array_equal(as_set(cloud_points(loaded)), as_set(cloud_points(latched)))
    with np.load(f'{first}.npz') as a, np.load(f'{again}.npz') as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def assert_eventually(condition, timeout, log):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, Path(log).read_text()
        time.sleep(0.2)
