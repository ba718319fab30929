"""The ROS 2 node with real DDS on this host: bag → player → node → subscriber, bad input, load."""
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from nav_msgs.msg import OccupancyGrid
from ros_helpers import diagnostics_values, node_command, rss_mib, start
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ssc_core.labels import class_colors
from ssc_core.presets import SMALL
from ssc_ros import conversions as conv
from ssc_ros.bag import convert
from ssc_ros.launch_description import describe

pytestmark = pytest.mark.ros

REMAP = ['-r', 'image:=/camera/image', '-r', 'depth:=/camera/depth', '-r', 'camera_info:=/camera/camera_info']


@pytest.fixture(scope='module')
def sequence(tmp_path_factory):
    from ssc_core.data.synthetic import write_sequence
    root = tmp_path_factory.mktemp('kitti')
    seq = write_sequence(root, '08', 8, image_size=(320, 96), label_every=100)
    return seq, root / 'depth' / 'sequences' / '08'


def stop(process):
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_bag_player_node_subscriber(sequence, checkpoint, probe, tmp_path):
    seq, depth = sequence
    bag = convert(seq, depth, tmp_path / 'bag', storage='mcap', progress=False)
    with AnyReader([bag]) as reader:
        image_stamps = {t for c, t, _ in reader.messages() if c.topic == '/camera/image'}
    for msg_type, topic in ((PointCloud2, '/voxels'), (OccupancyGrid, '/occupancy'),
                            (MarkerArray, '/voxel_markers')):
        probe.record(msg_type, topic)
    # Started the way launch/ssc.launch.py starts them: the parameters file, remappings to the bag's
    # topics, and the built-in player, which waits for the node's subscriptions.
    launch = describe(bag=str(bag), rate=0.5, extra_parameters={'checkpoint': checkpoint})
    node = start(launch.node.command(), tmp_path / 'node.log')
    probe.wait_connected('/voxels', '/occupancy', '/voxel_markers')
    player = subprocess.run(launch.player.command(), capture_output=True, text=True, timeout=120)
    assert player.returncode == 0, player.stderr
    assert 'published 24 messages' in player.stdout + player.stderr
    probe.wait_for(lambda: probe.messages('/voxels') and probe.messages('/occupancy')
                   and probe.messages('/voxel_markers'), 60, 'the three outputs')
    assert stop(node) == 0
    clouds = probe.messages('/voxels')
    for cloud in clouds:
        assert cloud.header.frame_id == 'base_link'   # grid_frame, its camera pose from the bag's /tf_static
        assert cloud.header.stamp.sec * 10**9 + cloud.header.stamp.nanosec in image_stamps
        assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb', 'label']
    points = np.frombuffer(bytes(clouds[-1].data), conv.CLOUD_DTYPE)
    colours = class_colors(SMALL.class_names)[points['label']]
    packed = points['rgb'].view(np.uint32)
    assert np.array_equal(np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], 1), colours)
    grid = probe.messages('/occupancy')[-1]
    assert (grid.info.width, grid.info.height, grid.info.resolution) == (128, 128, pytest.approx(0.4))
    markers = probe.messages('/voxel_markers')[-1]
    assert {m.ns for m in markers.markers} == set(SMALL.class_names[1:])


def frame(stamp_ns, width=320, height=96, encoding='rgb8', depth_value=10.0):
    header = Header(frame_id='camera')
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)
    rgb = np.full((height, width, 3), 128, np.uint8)
    image = conv.rgb_image_msg(rgb, header)
    image.encoding = encoding
    depth = conv.depth_image_msg(np.full((height, width), depth_value, np.float32), header)
    return image, depth


def camera_info():
    return CameraInfo(k=list(np.array(SMALL.cam_K).ravel()), width=320, height=96)


def feed(probe):
    """Record the node's voxels and diagnostics; publishers of its three inputs."""
    probe.record(PointCloud2, '/voxels')
    probe.record(DiagnosticArray, '/diagnostics')
    return (probe.node.create_publisher(Image, '/camera/image', 10),
            probe.node.create_publisher(Image, '/camera/depth', 10),
            probe.node.create_publisher(CameraInfo, '/camera/camera_info', 10))


def test_nothing_arrives_warns_naming_the_topics(checkpoint, probe, tmp_path):
    """Inputs not remapped (the camera publishes on /camera/*, the node in namespace /robot reads
    /robot/image, ...) and a best-effort image publisher on /robot/image: within stall_timeout
    /diagnostics says WARN, naming each resolved topic, its publishers and what to check."""
    from rclpy.qos import qos_profile_sensor_data

    pub_image, pub_depth, pub_info = feed(probe)
    best_effort = probe.node.create_publisher(Image, '/robot/image', qos_profile_sensor_data)
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'diagnostics_period:=0.2',
                              '-p', 'stall_timeout:=1.0', '-r', '__ns:=/robot'), tmp_path / 'node.log')
    probe.wait_for(lambda: probe.messages('/diagnostics'), 60, 'the node to start')
    first = probe.received['/diagnostics'][0][0]
    stamp = 10**9

    def warned():
        nonlocal stamp
        image, depth = frame(stamp)
        stamp += 10**8
        for pub, msg in ((pub_image, image), (pub_depth, depth), (pub_info, camera_info()),
                         (best_effort, image)):
            pub.publish(msg)
        time.sleep(0.1)
        with probe.lock:
            return [(t, m.status[0]) for t, m in probe.received['/diagnostics']
                    if m.status[0].level == DiagnosticStatus.WARN]
    warnings = probe.wait_for(warned, 30, 'a WARN') and warned()
    when, status = warnings[0]
    assert when - first < 1.0 + 1.0, when - first     # stall_timeout, plus a diagnostics period and slack
    assert status.message.startswith('waiting for image on /robot/image (') and ', 1 publisher), depth on ' \
        '/robot/depth (' in status.message and '/robot/camera_info (' in status.message, status.message
    assert status.message.endswith(': check the topic names and remappings, and that the QoS matches the '
                                   'publishers (input_qos)')
    assert diagnostics_values(probe.messages('/diagnostics')[-1])['received_image'] == '0'
    assert stop(node) == 0


def test_bad_input_is_reported_and_survived(checkpoint, probe, tmp_path):
    pub_image, pub_depth, pub_info = feed(probe)
    log = tmp_path / 'node.log'
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'diagnostics_period:=0.2',
                              '-p', 'stall_timeout:=1.0', *REMAP), log)
    probe.wait_for(lambda: probe.messages('/diagnostics'), 60, 'the node to start')
    t = [2_000_000_000]

    def send(image, depth):
        t[0] += 100_000_000
        pub_image.publish(image)
        pub_depth.publish(depth)

    def errors():
        msgs = probe.messages('/diagnostics')
        return diagnostics_values(msgs[-1]) if msgs else {}

    def expect(key, what):
        probe.wait_for(lambda: int(errors().get(key, 0)) > 0, 30, what)

    send(*frame(t[0]))
    time.sleep(0.5)   # within stall_timeout of the first frame: start-up, not a fault
    assert 'error_no_camera_info' not in errors() and errors()['processed'] == '0', errors()
    probe.wait_for(lambda: send(*frame(t[0])) or time.sleep(0.2) or errors().get('error_no_camera_info'),
                   30, 'camera_info overdue')
    pub_info.publish(camera_info())
    time.sleep(0.5)
    send(*frame(t[0], encoding='nv12'))
    expect('error_encoding', 'unsupported encoding')
    image, depth = frame(t[0])
    image.data = bytes(image.data)[:1000]
    send(image, depth)
    expect('error_truncated', 'truncated data')
    image, _ = frame(t[0])
    _, small_depth = frame(t[0], width=100, height=50)
    send(image, small_depth)
    expect('error_size_mismatch', 'size mismatch')
    image, depth = frame(t[0])
    values = np.full((96, 320), 12.0, np.float32)
    values[:10], values[10:20], values[20:30] = np.nan, np.inf, -4.0
    depth = conv.depth_image_msg(values, depth.header)
    send(image, depth)
    probe.wait_for(lambda: probe.messages('/voxels'), 60, 'an output from NaN/inf/negative depth')
    probe.wait_for(lambda: errors().get('fraction_in_view') == '0.683', 10, 'the fraction in view')
    count = len(probe.messages('/voxels'))
    send(*frame(t[0], depth_value=float('nan')))
    expect('error_no_depth_in_grid', 'a frame without depth')
    probe.wait_for(lambda: len(probe.messages('/voxels')) > count, 60, 'an output without depth')
    absurd = CameraInfo(k=[1e300, 0, 160, 0, 1e300, 48, 0, 0, 1], width=320, height=96)
    other_size = CameraInfo(k=list(np.array(SMALL.cam_K).ravel()), width=300, height=96)
    for info, key in ((absurd, 'error_bad_camera_info'), (other_size, 'error_camera_info_size')):
        pub_info.publish(info)
        time.sleep(0.5)
        send(*frame(t[0]))
        expect(key, key)
    distorted = camera_info()
    distorted.d = [-0.3, 0.1, 0.0, 0.0, 0.0]
    pub_info.publish(distorted)
    time.sleep(0.5)
    count = len(probe.messages('/voxels'))
    send(*frame(t[0]))
    expect('error_distorted_image', 'a distorted image')
    probe.wait_for(lambda: len(probe.messages('/voxels')) > count, 60, 'an output from a distorted image')
    pub_info.publish(camera_info())
    time.sleep(0.5)
    t[0] -= 10**9
    send(*frame(t[0]))
    expect('error_stamp_backwards', 'stamps going backwards')
    count = len(probe.messages('/voxels'))
    send(*frame(t[0]))
    probe.wait_for(lambda: len(probe.messages('/voxels')) > count, 60, 'an output after the bad input')
    # Depth stamped 1 s before its image: reported as such (not as time going back), images and
    # depths counted unpaired, WARN once inputs keep arriving with nothing processed (stall_timeout 1 s).
    for _ in range(60):
        image, _ = frame(t[0])
        _, depth = frame(t[0] - 10**9)
        send(image, depth)
        time.sleep(0.1)
        status = probe.messages('/diagnostics')[-1].status[0]
        values = diagnostics_values(probe.messages('/diagnostics')[-1])
        if status.level == DiagnosticStatus.WARN and 'nothing processed' in status.message \
                and 'error_depth_too_far' in values and 'images without a depth' in status.message:
            break
    assert 'images without a depth' in status.message, (status.message, values)
    assert int(values['unpaired_image']) > 0 and int(values['unpaired_depth']) > 0
    assert node.poll() is None
    assert stop(node) == 0
    text = log.read_text()
    for phrase in ('no camera_info on /camera/camera_info 1 s after the first frame',
                   "encoding 'nv12' not supported", '(truncated)', 'does not match image', 'time jumped back',
                   's behind the images arriving with them (', 'discarded unpaired; check the stamps',
                   'no valid pixel (all NaN', 'camera 320x96, fit crop: 68.3 % of the output grid in view',
                   'camera_info: K: focal lengths fx=1e+300', 'not a uniform resize',
                   'expects a rectified image'):
        assert phrase in text, phrase
    assert 'Traceback' not in text


STARTUP_ERRORS = [  # (arguments or parameters-file text, the one line expected)
    (['-p', 'checkpoint:=/nonexistent/weights.ckpt'],
     'parameter checkpoint: cannot load /nonexistent/weights.ckpt'),
    (['-p', 'precision:=fp64'], "parameter precision: expected one of fp32, fp16, bf16, got 'fp64'"),
    (['-p', 'cam_from_grid:=[1.0, 2.0]'], 'parameter cam_from_grid: expected 16 finite numbers'),
    (['-p', 'class_filter:=[car, spaceship]'], "parameter class_filter: unknown classes ['spaceship']"),
    ('slop: "fast"', "parameter slop: expected double, got string 'fast'"),
    ('queue_size: 10.0', 'parameter queue_size: expected integer, got double 10.0'),
    ('slop: -5.0', 'parameter slop: expected >= 1e-06, got -5.0'),
    ('slop: -5', 'parameter slop: expected double, got integer -5 (write -5.0)'),
    ('diagnostics_period: 1.0e-9', 'parameter diagnostics_period: expected >= 0.05, got 1e-09'),
    ('input_qos: fastest', 'parameter input_qos: expected one of reliable, best_effort, sensor_data, '
                           "system_default, got 'fastest'"),
    ('grid_frame: ""', "parameter grid_frame: expected a frame id (letters, digits, _ . / -, not starting "
                       "with / or .), got ''"),
    (['-p', 'grid_frame:=/map'], "parameter grid_frame: expected a frame id"),
    (['-p', 'map_frame:=/odom'], "parameter map_frame: expected a frame id"),
    (['-p', 'grid_pose:=[1.0, 0.0]'], 'parameter grid_pose: expected 16 finite numbers'),
    (['-p', 'map_frame:=odom', '-p', 'map_file:=/nonexistent/map.npz'],
     'parameter map_file: /nonexistent/map.npz: cannot read a semantic map (FileNotFoundError'),
    ('other network', 'parameter map_file: {map}: class_names is '),
    (['-p', 'map_file:=/maps/run1.npz'], "parameter map_file: '/maps/run1.npz' needs a map_frame"),
]


def startup_error(given, checkpoint, tmp_path) -> str:
    """The StartupError of an ssc_node created here with -p arguments or a parameters-file line."""
    from ssc_ros.node import SSCNode, StartupError

    if given == 'other network':   # a map saved for the KITTI-360 classes
        from ssc_core.mapping import SemanticMap, save_map
        from ssc_core.presets import KITTI_360
        path = save_map(SemanticMap(0.4, KITTI_360.class_names, (0, 0, 0)), tmp_path / 'other.npz')
        given = ['-p', 'map_frame:=odom', '-p', f'map_file:={path}']
    elif isinstance(given, str):
        path = tmp_path / 'params.yaml'
        path.write_text(f'/**/ssc_node:\n  ros__parameters:\n    {given}\n')
        given = ['--params-file', str(path)]
    args = given if 'checkpoint:=' in given[-1] else ['-p', f'checkpoint:={checkpoint}', *given]
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = SSCNode(context=context, cli_args=['--ros-args', *args])
        node.stop_workers()
        node.destroy_node()
        return ''
    except StartupError as e:
        return str(e)
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize('given, message', STARTUP_ERRORS)
def test_startup_errors_name_parameter_expected_and_got(checkpoint, tmp_path, given, message):
    assert message.format(map=tmp_path / 'other.npz') in startup_error(given, checkpoint, tmp_path)


def test_under_load_stale_frames_are_dropped_and_counted(checkpoint, probe, tmp_path):
    pub_image, pub_depth, pub_info = feed(probe)
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'diagnostics_period:=0.5', *REMAP),
                 tmp_path / 'node.log')
    probe.wait_for(lambda: probe.messages('/diagnostics'), 60, 'the node to start')
    rss_start = rss_mib(node.pid)
    stamp, start_time = 3_000_000_000, time.monotonic()
    while time.monotonic() - start_time < 6:  # 30 Hz for 6 s
        image, depth = frame(stamp)
        pub_info.publish(camera_info())
        pub_image.publish(image)
        pub_depth.publish(depth)
        stamp += 33_333_333
        time.sleep(1 / 30)
    def processed():
        return int(diagnostics_values(probe.messages('/diagnostics')[-1]).get('processed', 0))
    probe.wait_for(lambda: processed() > 0, 30, 'processed frames')
    time.sleep(1.5)
    values = diagnostics_values(probe.messages('/diagnostics')[-1])
    rss_end = rss_mib(node.pid)
    print(f'under load: received {values.get("received_image")} images, processed {values["processed"]}, '
          f'dropped {values["dropped_stale"]}; RSS {rss_start:.0f} -> {rss_end:.0f} MiB')
    assert int(values['dropped_stale']) > 0
    assert int(values['processed']) >= 2 and len(probe.messages('/voxels')) >= 2
    assert int(values['received_image']) > int(values['processed']) + int(values['dropped_stale']) - 5
    assert node.poll() is None
    assert stop(node) == 0


def test_compressed_images_from_a_best_effort_driver(checkpoint, probe, tmp_path):
    """image_transport:=compressed follows image_transport's naming: with image remapped to
    /camera/image the node reads CompressedImage (PNG) on /camera/image/compressed; input_qos:=
    sensor_data connects to best-effort publishers (a reliable subscription would not)."""
    import io

    from PIL import Image as PILImage
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    probe.record(PointCloud2, '/voxels')
    best_effort = qos_profile_sensor_data
    pub_image = probe.node.create_publisher(CompressedImage, '/camera/image/compressed', best_effort)
    pub_depth = probe.node.create_publisher(Image, '/camera/depth', best_effort)
    pub_info = probe.node.create_publisher(CameraInfo, '/camera/camera_info', best_effort)
    log = tmp_path / 'node.log'
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'image_transport:=compressed',
                              '-p', 'input_qos:=sensor_data', *REMAP), log)
    buffer = io.BytesIO()
    PILImage.fromarray(np.full((96, 320, 3), 90, np.uint8)).save(buffer, format='PNG')
    stamp = 5_000_000_000
    while not probe.messages('/voxels') and stamp < 5_000_000_000 + 60 * 10**9:
        image, depth = frame(stamp)
        pub_info.publish(camera_info())
        pub_image.publish(CompressedImage(header=image.header, format='png', data=buffer.getvalue()))
        pub_depth.publish(depth)
        stamp += 10**9
        time.sleep(1.0)
    assert probe.messages('/voxels'), log.read_text()
    assert probe.messages('/voxels')[0].header.stamp.sec >= 5
    assert stop(node) == 0
    assert 'image /camera/image/compressed (sensor_data)' in log.read_text()


@pytest.fixture(scope='module')
def slow_checkpoint(tmp_path_factory):
    """Random weights of the SemanticKITTI network (ResNet-50 trunk as the authors'): ~7 s per
    frame on 2 cores, well beyond the node's shutdown grace (SHUTDOWN_GRACE_S)."""
    import dataclasses

    import torch

    from ssc_core.checkpoint import save_checkpoint
    from ssc_core.presets import SEMANTIC_KITTI
    model = SEMANTIC_KITTI.model
    torch.manual_seed(0)
    return save_checkpoint(model.build(), dataclasses.replace(SEMANTIC_KITTI, name='slow_test', model=model),
                           tmp_path_factory.mktemp('slow') / 'slow.safetensors')


@pytest.mark.parametrize('signals', [(signal.SIGINT,), (signal.SIGTERM, signal.SIGINT)])
def test_signals_during_inference_exit_0_quickly(slow_checkpoint, probe, tmp_path, signals):
    """SIGINT or SIGTERM, once or twice, while a full-size inference runs: exit 0 within seconds,
    the inference abandoned, no traceback, no abort."""
    from ssc_core.presets import SEMANTIC_KITTI

    pub_image, pub_depth, pub_info = feed(probe)
    log = tmp_path / 'node.log'
    node = start(node_command('-p', f'checkpoint:={slow_checkpoint}', '-p', 'diagnostics_period:=0.2',
                              *REMAP), log)
    probe.wait_for(lambda: probe.messages('/diagnostics'), 60, 'the node to start')
    header = Header(frame_id='camera')
    header.stamp.sec = 7
    image = conv.rgb_image_msg(np.full((376, 1241, 3), 100, np.uint8), header)
    depth = conv.depth_image_msg(np.full((376, 1241), 10.0, np.float32), header)
    info = CameraInfo(k=list(np.ravel(SEMANTIC_KITTI.cam_K)), width=1241, height=376)

    def received(key):
        return diagnostics_values(probe.messages('/diagnostics')[-1]).get(key)

    def info_arrived():
        pub_info.publish(info)
        return received('received_camera_info') is not None
    probe.wait_for(info_arrived, 20, 'camera_info to arrive')

    def frame_arrived():  # until both publishers have matched the node: then it has a pair
        if received('received_image') and received('received_depth'):
            return True
        header.stamp.sec += 1
        pub_image.publish(image)
        pub_depth.publish(depth)
        time.sleep(0.3)
        return False
    probe.wait_for(frame_arrived, 20, 'a frame to arrive')
    stop = threading.Event()

    def keep_feeding():  # a new frame always waits: the next inference starts as one ends
        while not stop.is_set():
            header.stamp.sec += 1
            pub_image.publish(image)
            pub_depth.publish(depth)
            stop.wait(0.25)
    feeder = threading.Thread(target=keep_feeding, daemon=True)
    feeder.start()
    # a first frame done: the next inference has just begun and runs longer than the grace
    probe.wait_for(lambda: int(received('processed') or 0) >= 1, 180, 'a first frame processed')
    began = time.monotonic()
    try:
        for signum in signals:
            node.send_signal(signum)
            time.sleep(0.2)
        assert node.wait(timeout=15) == 0
    finally:
        stop.set()
        feeder.join()
    assert time.monotonic() - began < 6
    text = log.read_text()
    assert 'abandoning the inference in progress' in text
    assert 'Traceback' not in text and 'terminate called' not in text, text


@pytest.mark.slow
def test_a_slow_node_with_right_stamps_is_not_told_to_fix_them(slow_checkpoint, probe, tmp_path):
    """The authors' full-size network (seconds per frame: flat out on the CPU the whole time) fed
    full-size frames at 10 Hz with right stamps (image, depth and camera_info stamped alike) for
    20 s: no depth_too_far, nothing said about the stamps, and the inputs are received."""
    from ssc_core.presets import SEMANTIC_KITTI

    pub_image, pub_depth, pub_info = feed(probe)
    log = tmp_path / 'node.log'
    node = start(node_command('-p', f'checkpoint:={slow_checkpoint}', '-p', 'diagnostics_period:=0.5',
                              *REMAP), log)
    probe.wait_for(lambda: probe.messages('/diagnostics') and pub_image.get_subscription_count(), 120,
                   'the node to start')
    rgb = np.full((376, 1241, 3), 100, np.uint8)
    depth = np.full((376, 1241), 10.0, np.float32)
    info = CameraInfo(k=list(np.ravel(SEMANTIC_KITTI.cam_K)), width=1241, height=376)
    start_time, sent = time.monotonic(), 0
    while time.monotonic() - start_time < 20:
        header = Header(frame_id='camera', stamp=probe.node.get_clock().now().to_msg())
        info.header = header
        pub_image.publish(conv.rgb_image_msg(rgb, header))
        pub_depth.publish(conv.depth_image_msg(depth, header))
        pub_info.publish(info)
        sent += 1
        time.sleep(max(0.0, start_time + sent / 10 - time.monotonic()))
    time.sleep(2)
    values = diagnostics_values(probe.messages('/diagnostics')[-1])
    assert stop(node) == 0
    print(f'slow node: sent {sent}, received {values["received_image"]} images, {values["received_depth"]} '
          f'depths, processed {values["processed"]}, dropped stale {values["dropped_stale"]}, problems ' +
          str({k: v for k, v in values.items() if k.startswith('error_')}))
    assert 'error_depth_too_far' not in values and 'check the stamps' not in log.read_text()
    assert int(values['dropped_stale']) > 0    # frames superseded while the network ran: it was busy
    assert int(values['received_image']) >= 0.95 * sent and int(values['received_depth']) >= 0.95 * sent


def test_parameters_at_run_time(checkpoint):
    """Read-only start-up parameters refuse a set with the reason; run-time ones are checked like at
    start-up, then applied; every parameter has a value (so ros2 param dump lists them all)."""
    from rclpy.parameter import Parameter

    from ssc_ros.node import SSCNode
    from ssc_ros.parameters import PARAMETERS

    context = rclpy.Context()
    rclpy.init(context=context)
    node = SSCNode(context=context, cli_args=['--ros-args', '-p', f'checkpoint:={checkpoint}'])
    try:
        values = node.get_parameters(list(PARAMETERS))
        assert all(p.type_ != Parameter.Type.NOT_SET for p in values)
        # the defaults give the network the preset's camera pose, the grid 1.73 m above base_link
        np.testing.assert_allclose(node.cam_from_grid @ node.grid_pose, SMALL.cam_from_grid, atol=1e-12)
        assert node.grid_pose[2, 3] == 1.73 and node.outputs.pose is node.grid_pose
        assert node.get_parameter('class_filter').type_ == Parameter.Type.STRING_ARRAY

        def set_one(name, value):
            return node.set_parameters([Parameter(name, value=value)])[0]
        result = set_one('checkpoint', '/other.safetensors')
        assert not result.successful and 'read-only' in result.reason
        result = set_one('slop', -5.0)
        assert not result.successful and result.reason == 'parameter slop: expected >= 1e-06, got -5.0'
        result = set_one('class_filter', ['car', 'spaceship'])
        assert not result.successful and "unknown classes ['spaceship']" in result.reason
        assert not set_one('diagnostics_period', 1e-9).successful
        assert not set_one('cam_from_grid', [1.0, 2.0]).successful
        assert node.pairer.slop == 0.05 and node.keep is None
        assert set_one('slop', 0.2).successful and node.pairer.slop == 0.2
        assert set_one('class_filter', ['car', 'road']).successful and list(node.keep) == [1, 9]
        assert set_one('grid_frame', 'base_link').successful and node.params['grid_frame'] == 'base_link'
        for bad in ('', '/base_link', 'base link'):
            result = set_one('grid_frame', bad)
            assert not result.successful
            assert result.reason.startswith('parameter grid_frame: expected a frame id'), result.reason
        assert node.params['grid_frame'] == 'base_link'
        assert set_one('diagnostics_period', 0.5).successful
        assert node.diag_timer.timer_period_ns == 500_000_000
        pose = np.eye(4)
        pose[:3, 3] = (1, 2, 3)
        assert set_one('cam_from_grid', pose.ravel().tolist()).successful
        assert np.array_equal(node.cam_from_grid, pose)
        assert set_one('grid_pose', pose.ravel().tolist()).successful
        assert np.array_equal(node.grid_pose, pose) and np.array_equal(node.outputs.pose, pose)
        assert set_one('tf_timeout', 0.1).successful and node.transforms.timeout == 0.1
        assert set_one('stall_timeout', 2.0).successful and node.health.stall_timeout == 2.0
    finally:
        node.stop_workers()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_hostile_checkpoint_stops_startup_with_one_line(tmp_path):
    """A weights file whose preset names a hub backbone stops the start-up with one message
    (the loader refuses it before anything is built or fetched)."""
    import json

    import torch
    from safetensors.torch import save_file

    from ssc_core.checkpoint import FORMAT
    preset = SMALL.to_dict()
    preset['model']['backbone'] = 'hf-hub:someone/evil-backbone'
    path = tmp_path / 'evil.safetensors'
    save_file({'x': torch.zeros(1)}, str(path), metadata={'format': FORMAT, 'preset': json.dumps(preset)})
    out = subprocess.run(node_command('-p', f'checkpoint:={path}'), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    assert f'parameter checkpoint: cannot load {path}: {path}: stored preset: model.backbone' in out.stderr
    assert 'Traceback' not in out.stderr, out.stderr


def test_disparity_input_and_camera_encodings(checkpoint, probe, tmp_path):
    """depth_input:=disparity reads stereo_msgs/DisparityImage; a bayer_rggb8 camera is accepted."""
    from stereo_msgs.msg import DisparityImage

    pub_image, _, pub_info = feed(probe)
    pub_disparity = probe.node.create_publisher(DisparityImage, '/camera/disparity', 10)
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'depth_input:=disparity',
                              '-r', 'disparity:=/camera/disparity', *REMAP[:2], *REMAP[4:]),
                 tmp_path / 'node.log')
    stamp = 7_000_000_000
    while not probe.messages('/voxels') and stamp < 7_000_000_000 + 60 * 10**9:
        header = Header(frame_id='camera')
        header.stamp.sec, header.stamp.nanosec = divmod(stamp, 10**9)
        bayer = Image(header=header, height=96, width=320, encoding='bayer_rggb8', step=320,
                      data=np.full((96, 320), 100, np.uint8).tobytes())
        disparity = conv.depth_image_msg(np.full((96, 320), 20.0, np.float32), header)  # 32FC1 pixels
        pub_info.publish(camera_info())
        pub_image.publish(bayer)
        pub_disparity.publish(DisparityImage(header=header, image=disparity, f=185.0, t=0.54,
                                             min_disparity=1.0, max_disparity=128.0))
        stamp += 10**9
        time.sleep(1.0)
    assert probe.messages('/voxels'), (tmp_path / 'node.log').read_text()
    assert node.poll() is None
    assert stop(node) == 0
    assert 'Traceback' not in (tmp_path / 'node.log').read_text()


def test_frames_with_non_finite_output_are_counted_not_published(non_finite_checkpoint, probe,
                                                                  tmp_path):
    """Weights that load but compute NaN: each frame is one `non_finite_output` warning,
    nothing is published (its labels would tell the robot the scene is empty), and the node
    keeps running."""
    checkpoint = non_finite_checkpoint
    pub_image, pub_depth, pub_info = feed(probe)
    log = tmp_path / 'node.log'
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'diagnostics_period:=0.2',
                              *REMAP), log)
    probe.wait_for(lambda: probe.messages('/diagnostics'), 60, 'the node to start')
    pub_info.publish(camera_info())
    stamp = [2_000_000_000]

    def refused():
        stamp[0] += 100_000_000
        pub_image.publish(frame(stamp[0])[0])
        pub_depth.publish(frame(stamp[0])[1])
        time.sleep(0.3)
        values = diagnostics_values(probe.messages('/diagnostics')[-1])
        return int(values.get('error_non_finite_output', 0)) >= 2
    probe.wait_for(refused, 90, 'two frames refused as non_finite_output')
    assert probe.messages('/voxels') == [] and node.poll() is None
    assert stop(node) == 0
    text = log.read_text()
    assert 'the network computed NaN or inf logits for frame 0 of 1' in text and 'Traceback' not in text
