"""The ROS 2 node with real DDS on this host: bag → player → node → subscriber, bad input, load."""
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from ros_helpers import Probe, diagnostics_values, node_command, rss_mib, start
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ssc_core.checkpoint import save_checkpoint
from ssc_core.labels import class_colors
from ssc_core.presets import SMALL
from ssc_ros import conversions as conv
from ssc_ros.bag import convert
from ssc_ros.launch_description import describe

REMAP = ['-r', 'image:=/camera/image', '-r', 'depth:=/camera/depth', '-r', 'camera_info:=/camera/camera_info']


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(SMALL.model.build(), SMALL, tmp_path_factory.mktemp('ckpt') / 'small.safetensors')


@pytest.fixture(scope='module')
def sequence(tmp_path_factory):
    from ssc_core.data.synthetic import write_sequence
    root = tmp_path_factory.mktemp('kitti')
    seq = write_sequence(root, '08', 8, image_size=(320, 96), label_every=100)
    return seq, root / 'depth' / 'sequences' / '08'


@pytest.fixture()
def probe():
    p = Probe()
    yield p
    p.close()


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
    # Started the way launch/ssc.launch.py starts them: the installed parameters file, remappings
    # to the bag's topics, and the built-in player.
    launch = describe(bag=str(bag), rate=0.5, extra_parameters={'checkpoint': checkpoint, 'frame_id': 'grid'})
    node = start(launch.node.command(), tmp_path / 'node.log')
    time.sleep(3)
    player = subprocess.run(launch.player.command(), capture_output=True, text=True, timeout=120)
    assert player.returncode == 0, player.stderr
    assert 'published 24 messages' in player.stdout + player.stderr
    probe.wait_for(lambda: probe.messages('/voxels') and probe.messages('/occupancy')
                   and probe.messages('/voxel_markers'), 60, 'the three outputs')
    assert stop(node) == 0
    clouds = probe.messages('/voxels')
    for cloud in clouds:
        assert cloud.header.frame_id == 'grid'
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


def test_bad_input_is_reported_and_survived(checkpoint, probe, tmp_path):
    pub_image, pub_depth, pub_info = feed(probe)
    log = tmp_path / 'node.log'
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'diagnostics_period:=0.2', *REMAP),
                 log)
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
    expect('error_no_camera_info', 'missing camera_info')
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
    assert node.poll() is None
    assert stop(node) == 0
    text = log.read_text()
    for phrase in ('no camera_info received yet', "encoding 'nv12' not supported", '(truncated)',
                   'does not match image', 'time jumped back', 'no valid pixel (all NaN',
                   'camera 320x96, fit crop: 68.3 % of the output grid in view',
                   'camera_info: K: focal lengths fx=1e+300', 'not a uniform resize',
                   'expects a rectified image'):
        assert phrase in text, phrase
    assert 'Traceback' not in text


@pytest.mark.parametrize('args, message', [
    (['-p', 'checkpoint:=/nonexistent/weights.ckpt'],
     'parameter checkpoint: cannot load /nonexistent/weights.ckpt'),
    (['-p', 'precision:=fp64'], "parameter precision: 'fp64' is not one of fp32, fp16, bf16"),
    (['-p', 'cam_from_grid:=[1.0, 2.0]'], 'parameter cam_from_grid: expected 16 finite numbers'),
    (['-p', 'class_filter:=[car, spaceship]'], "parameter class_filter: unknown classes ['spaceship']"),
])
def test_startup_errors_exit_with_one_clear_message(checkpoint, args, message):
    if 'checkpoint:=' not in args[1]:
        args = ['-p', f'checkpoint:={checkpoint}', *args]
    out = subprocess.run(node_command(*args), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    assert 'Traceback' not in out.stderr


def test_under_load_stale_frames_are_dropped_and_counted(checkpoint, probe, tmp_path):
    pub_image, pub_depth, pub_info = feed(probe)
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'diagnostics_period:=0.5', *REMAP),
                 tmp_path / 'node.log')
    probe.wait_for(lambda: probe.messages('/diagnostics'), 60, 'the node to start')
    rss_start = rss_mib(node.pid)
    stamp, start_time = 3_000_000_000, time.monotonic()
    while time.monotonic() - start_time < 10:  # 30 Hz for 10 s
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


def test_compressed_images(checkpoint, probe, tmp_path):
    """image_transport:=compressed reads sensor_msgs/CompressedImage (PNG/JPEG) on image/compressed."""
    import io

    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage

    pub_image = probe.node.create_publisher(CompressedImage, '/camera/image/compressed', 10)
    _, pub_depth, pub_info = feed(probe)
    node = start(node_command('-p', f'checkpoint:={checkpoint}', '-p', 'image_transport:=compressed',
                              '-r', 'image/compressed:=/camera/image/compressed', *REMAP[2:]),
                 tmp_path / 'node.log')
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
    assert probe.messages('/voxels'), (tmp_path / 'node.log').read_text()
    assert probe.messages('/voxels')[0].header.stamp.sec >= 5
    assert stop(node) == 0


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
