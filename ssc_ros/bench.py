"""Benchmarks of the ROS side (figures printed, nothing asserted).

    python -m ssc_ros.bench convert [--runs 20]         # one 256x256x32 prediction -> the messages
    python -m ssc_ros.bench load [--seconds 60] [--hz 30] [--checkpoint builtin]
    python -m ssc_ros.bench transport [--seconds 60] [--hz 10] [--input-qos reliable] [--cpu-load N]
    python -m ssc_ros.bench map [--frames 100] [--publish-every 10]

``load`` starts ssc_node, feeds it image + depth + camera_info at --hz, and reports what it
received, processed and dropped, its output rate and its resident memory at start and end.
``transport`` feeds it full-size KITTI frames (1242x375 bgr8 + 32FC1 + camera_info) from reliable
publishers, as ``ros2 bag play`` and camera drivers (best-effort ones with ``--input-qos
best_effort``), optionally beside N busy processes, and reports frames published vs received vs
processed, how long inputs waited before the node took them, and image stamp -> cloud received.
Run it with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (set here when absent).
``map`` drives a full-size grid 1 m per frame through what the node does per frame with
map_frame set: two TF lookups in a tf2 Buffer (camera <- base_link, odom <- base_link at the
frame's stamp), the map's integration, and every ``--publish-every`` frames the map's three
latched messages built and published; with their sizes, and a baseline in the same run (the map's
cloud through ``occupied_points``, one coordinate triple per voxel, instead of the dense box).
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

from ssc_core.labels import IGNORE_LABEL

from .qos import INPUT_QOS


def _percentiles(values):
    return np.percentile(values, 50), np.percentile(values, 95)


def bench_convert(runs: int) -> None:
    """What the node spends per frame on its outputs: a full-size prediction → serialized messages
    (the bytes the node hands to ``Publisher.publish``)."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from ssc_core.data.sample import street_frame
    from ssc_core.presets import SEMANTIC_KITTI

    from .conversions import OutputMessages, diagnostics_array
    from .health import Health

    frame = street_frame(SEMANTIC_KITTI)
    labels = frame.labels
    fov = np.ones(labels.shape, bool)
    preset = SEMANTIC_KITTI
    out = OutputMessages(preset.class_names, preset.model.voxel_size, preset.voxel_origin)
    header = Header(frame_id='velodyne')
    health = Health({'image': '/camera/image'})
    health.on_processed(0.3)
    jobs = {'PointCloud2': lambda: out.cloud(labels, header),
            'OccupancyGrid': lambda: out.occupancy(labels, fov, header),
            'DiagnosticArray': lambda: serialize_message(diagnostics_array(
                health.report(0, {}), 'ssc_node: semantic scene completion', 'torch cpu', header.stamp)),
            'MarkerArray': lambda: out.markers(labels, header),
            'PointCloud2 surface': lambda: out.cloud(labels, header, surface_only=True),
            'Image voxel_grid': lambda: out.voxel_grid(labels, fov, header)}
    per_frame = ('PointCloud2', 'OccupancyGrid', 'DiagnosticArray')
    baseline = _python_object_messages(out, labels, fov, header)
    occupied = int(np.count_nonzero((labels != 0) & (labels != IGNORE_LABEL)))
    print(f'prediction 256x256x32 (synthetic street), {occupied} occupied voxels; {runs} runs each; '
          'time = numpy arrays -> serialized message bytes')
    print(f'{"message":<20} {"p50 ms":>8} {"p95 ms":>8} {"bytes":>11}   baseline: rclpy message objects '
          '(p50 ms, same run) and speed-up')
    totals = np.zeros(runs)
    for name, job in jobs.items():
        times, data = _timed(job, runs)
        p50, p95 = _percentiles(times)
        line = f'{name:<20} {p50:>8.1f} {p95:>8.1f} {len(data):>11,}'
        if name in baseline:
            before, _ = _timed(baseline[name], min(runs, 3))
            line += f'   {np.median(before):8.1f}  {np.median(before) / p50:6.1f}x'
        print(line)
        if name in per_frame:
            totals += times
        if name == per_frame[-1]:
            p50, p95 = _percentiles(totals)
            print(f'{"per frame (sum)":<20} {p50:>8.1f} {p95:>8.1f}   (cloud + occupancy + diagnostics)')


def _timed(job, runs: int) -> tuple[list, object]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = job()
        times.append((time.perf_counter() - start) * 1e3)
    return times, result


def _python_object_messages(out, labels, fov, header) -> dict:
    """The baseline: the same arrays put into rclpy message objects (a ``Point`` per cube, arrays
    assigned to message fields) and serialized by rclpy, as the node did before this package's
    serializer (the numpy work is today's in both)."""
    from geometry_msgs.msg import Point
    from nav_msgs.msg import OccupancyGrid
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import MarkerArray

    from ssc_core.outputs import bird_eye_occupancy, occupied_voxels

    from .conversions import CLOUD_DTYPE

    def cloud():
        msg = deserialize_message(out.cloud(labels[:1, :1, :1], header), PointCloud2)  # fields, header
        centres, classes = occupied_voxels(labels, out.voxel_size, out.origin)
        points = np.zeros(len(classes), CLOUD_DTYPE)
        points['x'], points['y'], points['z'] = centres.T
        points['rgb'], points['label'] = out.rgb_bits[classes].view(np.float32), classes
        msg.width, msg.row_step, msg.data = len(points), points.nbytes, points.tobytes()
        return serialize_message(msg)

    def markers():
        msg = deserialize_message(out.markers(labels[:1, :1, :1], header), MarkerArray)  # the markers' fields
        centres, classes = occupied_voxels(labels, out.voxel_size, out.origin, surface_only=True)
        for marker in msg.markers:
            block = centres[classes == marker.id].astype(np.float64)
            marker.points = [Point(x=x, y=y, z=z) for x, y, z in block.tolist()]
        return serialize_message(msg)

    def occupancy():
        msg = deserialize_message(out.occupancy(labels[:1, :1], fov[:1, :1], header), OccupancyGrid)
        msg.info.width, msg.info.height = labels.shape[:2]
        msg.data = bird_eye_occupancy(labels, fov, out.class_names).ravel().tobytes()
        return serialize_message(msg)
    return {'PointCloud2': cloud, 'MarkerArray': markers, 'OccupancyGrid': occupancy}


def _rss_mib(pid: int) -> float:
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def _drive_node(image, depth, K, seconds: float, hz: float, node_args: list, qos, encoding='rgb8',
                cpu_load: int = 0) -> dict:
    """Start ssc_node with ``node_args``, publish (image, depth, camera_info) at ``hz`` for ``seconds``
    with ``qos`` (``cpu_load`` busy processes running meanwhile), and return what was sent, what the
    node reported on /diagnostics and when its clouds arrived (image stamp -> received, seconds)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header

    from . import conversions as conv

    node = subprocess.Popen([sys.executable, '-m', 'ssc_ros.node', '--ros-args', '-p', 'use_tf:=false',
                             '-p', 'diagnostics_period:=0.5', *node_args], stderr=subprocess.PIPE, text=True)
    rclpy.init()
    probe = rclpy.create_node('ssc_bench_probe')
    diagnostics, cloud_delays = [], []

    def on_cloud(msg):
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        cloud_delays.append(time.time() - stamp)
    probe.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    probe.create_subscription(PointCloud2, 'voxels', on_cloud, 10)
    pubs = [probe.create_publisher(t, n, qos) for t, n in ((Image, 'image'), (Image, 'depth'),
                                                           (CameraInfo, 'camera_info'))]
    deadline = time.monotonic() + 120
    def ready():
        return diagnostics and all(p.get_subscription_count() > 0 for p in pubs)
    while not ready() and time.monotonic() < deadline:
        rclpy.spin_once(probe, timeout_sec=0.1)
    rss_start = _rss_mib(node.pid)
    info = CameraInfo(k=list(np.asarray(K).ravel()), width=image.shape[1], height=image.shape[0])
    pixels = image[..., ::-1] if encoding == 'bgr8' else image
    hogs = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(cpu_load)]
    start, sent = time.monotonic(), 0
    try:
        while time.monotonic() - start < seconds:
            header = Header(frame_id='camera')
            header.stamp = probe.get_clock().now().to_msg()
            msg = conv.rgb_image_msg(pixels, header)
            msg.encoding = encoding
            pubs[0].publish(msg)
            pubs[1].publish(conv.depth_image_msg(depth, header))
            info.header = header
            pubs[2].publish(info)
            sent += 1
            next_time = start + sent / hz
            while time.monotonic() < next_time:
                rclpy.spin_once(probe, timeout_sec=max(0.0, next_time - time.monotonic()))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    end = time.monotonic() + 3
    while time.monotonic() < end:
        rclpy.spin_once(probe, timeout_sec=0.1)
    result = {'sent': sent, 'values': {kv.key: kv.value for s in diagnostics[-1].status for kv in s.values},
              'rss_start': rss_start, 'rss_end': _rss_mib(node.pid), 'alive': node.poll() is None,
              'cloud_delays': cloud_delays, 'output_hz': len(cloud_delays) / seconds}
    node.terminate()
    node.wait(timeout=20)
    probe.destroy_node()
    rclpy.try_shutdown()
    return result


def bench_load(seconds: float, hz: float, checkpoint: str) -> None:
    from rclpy.qos import QoSProfile

    from ssc_core.checkpoint import BUILTIN_CHECKPOINT, load_model
    from ssc_core.data.sample import street_frame

    path = BUILTIN_CHECKPOINT if checkpoint == 'builtin' else checkpoint
    _, preset = load_model(path)
    frame = street_frame(preset)
    r = _drive_node(frame.image, frame.depth, frame.K, seconds, hz, ['-p', f'checkpoint:={path}'],
                    QoSProfile(depth=10))
    values = r['values']
    print(f'preset {preset.name}: sent {r["sent"]} frames in {seconds:.0f} s ({r["sent"] / seconds:.1f} Hz)')
    print(f'node: received {values.get("received_image")} images, processed {values.get("processed")}, '
          f'dropped stale {values.get("dropped_stale")}, output rate {r["output_hz"]:.2f} Hz, '
          f'latency p50 {values.get("latency_p50_s")} s / p95 {values.get("latency_p95_s")} s')
    print(f'node RSS: {r["rss_start"]:.0f} MiB at start, {r["rss_end"]:.0f} MiB at end; '
          f'still running: {r["alive"]}')


def bench_transport(seconds: float, hz: float, qos_name: str, checkpoint: str, cpu_load: int) -> None:
    """Full-size KITTI frames (1242x375 bgr8 + 32FC1 + camera_info) at ``hz``: published vs received
    vs processed, how long inputs waited to be taken, image stamp -> cloud received."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from ssc_core.checkpoint import BUILTIN_CHECKPOINT
    from ssc_core.presets import SEMANTIC_KITTI

    from .bag import PLAYER_QOS

    width, height = 1242, 375
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    image = np.ascontiguousarray(np.broadcast_to(np.stack([ramp, ramp[::-1], ramp], -1), (height, width, 3)))
    depth = np.full((height, width), 10.0, np.float32)
    best_effort = qos_name in ('best_effort', 'sensor_data')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT) if best_effort else PLAYER_QOS
    path = BUILTIN_CHECKPOINT if checkpoint == 'builtin' else checkpoint
    r = _drive_node(image, depth, SEMANTIC_KITTI.cam_K, seconds, hz,
                    ['-p', f'checkpoint:={path}', '-p', f'input_qos:={qos_name}'], qos, 'bgr8', cpu_load)
    values, sent = r['values'], r['sent']

    def share(key):
        got = int(values.get(key, 0))
        return f'{got} ({100 * got / sent:.1f} %)'
    errors = ', '.join(f'{k[6:]} {v}' for k, v in values.items() if k.startswith('error_')) or 'none'
    print(f'{width}x{height} bgr8 + 32FC1 + camera_info at {hz:g} Hz for {seconds:.0f} s, '
          f'input_qos {qos_name}, publishers {"best effort" if best_effort else "reliable"}, '
          f'{cpu_load} busy processes beside, {os.cpu_count()} CPUs, '
          f'FASTDDS_BUILTIN_TRANSPORTS={os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "(default)")}')
    print(f'published {sent} frames; node received {share("received_image")} images, '
          f'{share("received_depth")} depths, {share("received_camera_info")} camera_infos; '
          f'inputs taken within {values.get("input_delay_p95_s")} s of arrival (p95, last 10 s)')
    print(f'processed {values.get("processed")} (dropped stale {values.get("dropped_stale")}, unpaired '
          f'images {values.get("unpaired_image")}, depths {values.get("unpaired_depth")}); '
          f'problems: {errors}')
    delays = r['cloud_delays']
    latency = 'p50 {:.2f} s, p95 {:.2f} s'.format(*_percentiles(delays)) if delays else 'no clouds'
    print(f'image stamp -> cloud received: {latency} ({len(delays)} clouds, {r["output_hz"]:.2f} Hz); '
          f'still running: {r["alive"]}')


def bench_map(frames: int, publish_every: int) -> None:
    """Per frame: TF lookups, map integration; per publication: the map's messages, built and
    published on latched publishers (no subscriber); full-size SemanticKITTI grid, 1 m per frame."""
    import rclpy
    from nav_msgs.msg import OccupancyGrid
    from rclpy.time import Time
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header
    from tf2_ros import Buffer
    from visualization_msgs.msg import MarkerArray

    from ssc_core.data.poses import base_poses
    from ssc_core.data.sample import street_frame
    from ssc_core.frame_inputs import project_grids
    from ssc_core.mapping import UNKNOWN, SemanticMap, occupied_points
    from ssc_core.presets import SEMANTIC_KITTI, base_from_grid
    from ssc_core.tools.bench_map import drive

    from .conversions import OutputMessages
    from .live_map import LiveMap
    from .qos import LATCHED
    from .transforms import FrameTransforms, transform_stamped

    preset = SEMANTIC_KITTI
    street = street_frame(preset)
    labels = np.where(street.labels == IGNORE_LABEL, 0, street.labels).astype(np.uint8)
    observed = project_grids(preset, street.K, street.cam_from_grid)[1].fov_mask.reshape(labels.shape)
    mount = base_from_grid(preset)

    def stamped(parent, child, pose, stamp_ns):
        return transform_stamped(parent, child, pose, Time(nanoseconds=stamp_ns).to_msg())
    buffer = Buffer()
    base_from_camera = mount @ np.linalg.inv(street.cam_from_grid)
    buffer.set_transform_static(stamped('base_link', 'camera', base_from_camera, 0), 'bench')
    transforms = FrameTransforms(buffer, timeout=0.0)
    live = LiveMap(SemanticMap(preset.model.voxel_size, preset.class_names, preset.voxel_origin, radius=80.0),
                   period=0.0, max_speed=40.0)
    rclpy.init()
    node = rclpy.create_node('ssc_bench_map')
    publishers = {'map_voxels': node.create_publisher(PointCloud2, 'map_voxels', LATCHED),
                  'map_markers': node.create_publisher(MarkerArray, 'map_markers', LATCHED),
                  'map_occupancy': node.create_publisher(OccupancyGrid, 'map_occupancy', LATCHED)}
    lookup, integrate, publish, baseline, sizes = [], [], [], [], {}
    rng = np.random.default_rng(1)
    for i, motion in enumerate(base_poses(drive(frames), mount)):
        stamp = 10**9 * (1 + i) // 10   # 10 Hz
        buffer.set_transform(stamped('odom', 'base_link', motion, stamp), 'bench')
        noisy = labels.copy()
        flip = rng.random(labels.shape) < 0.03
        noisy[flip] = rng.integers(0, len(preset.class_names), int(flip.sum()))
        start = time.perf_counter()
        camera_from_base = transforms.lookup('camera', 'base_link', stamp)
        odom_from_base = transforms.lookup('odom', 'base_link', stamp)
        lookup.append(time.perf_counter() - start)
        assert np.allclose(camera_from_base @ mount, street.cam_from_grid, atol=1e-6)
        start = time.perf_counter()
        live.integrate(noisy, observed, odom_from_base @ mount, stamp * 1e-9)
        integrate.append(time.perf_counter() - start)
        if (i + 1) % publish_every:
            continue
        start = time.perf_counter()
        snapshot = live.snapshot()
        out = OutputMessages(preset.class_names, preset.model.voxel_size, snapshot.origin)
        header = Header(frame_id='odom')
        messages = {'map_voxels': out.cloud(snapshot.labels, header),
                    'map_occupancy': out.occupancy(snapshot.labels, snapshot.labels != UNKNOWN, header),
                    'map_markers': out.markers(snapshot.labels, header)}
        for topic, data in messages.items():
            publishers[topic].publish(data)
        publish.append(time.perf_counter() - start)
        sizes = {topic: len(data) for topic, data in messages.items()}
        start = time.perf_counter()
        centres, classes = occupied_points(live.map)
        words = np.zeros((len(classes), 5), np.uint32)
        words[:, :3] = centres.view(np.uint32)
        words[:, 3], words[:, 4] = out.rgb_bits[classes], classes
        baseline.append(time.perf_counter() - start)
    node.destroy_node()
    rclpy.try_shutdown()
    m = live.map
    voxels = int(np.count_nonzero(snapshot.labels != UNKNOWN))

    def ms(times, q):
        return f'{np.percentile(times, q) * 1e3:8.1f}'
    print(f'{preset.name} full-size grid {preset.model.scene_shape} of {preset.model.voxel_size} m, {frames} '
          f'frames at 1 m per frame (10 Hz stamps), map radius 80 m; {os.cpu_count()} CPUs')
    print(f'{"per frame":<38} {"p50 ms":>8} {"p95 ms":>8}')
    print(f'{"TF lookups (camera, odom; tf2 Buffer)":<38} {ms(lookup, 50)} {ms(lookup, 95)}')
    print(f'{"map integration":<38} {ms(integrate[5:], 50)} {ms(integrate[5:], 95)}   (after 5 frames)')
    print(f'{"per publication (every " + str(publish_every) + " frames)":<38}')
    print(f'{"snapshot + 3 messages + publish":<38} {ms(publish, 50)} {ms(publish, 95)}')
    print(f'{"baseline: cloud via occupied_points":<38} {ms(baseline, 50)} {ms(baseline, 95)}   '
          f'({np.median(baseline) / np.median(publish):.1f}x the three messages\' time for one)')
    print(f'map at the end: {m.frames} frames, {m.num_blocks} blocks, {voxels:,} known voxels, '
          f'{m.nbytes / 2**20:.0f} MiB of evidence')
    total = sum(sizes.values())
    print('message sizes: ' + ', '.join(f'{topic} {size / 2**20:.2f} MiB' for topic, size in sizes.items())
          + f'; at map_publish_rate 1 Hz: {total / 2**20:.1f} MiB/s')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    c = sub.add_parser('convert')
    c.add_argument('--runs', type=int, default=20)
    load = sub.add_parser('load')
    load.add_argument('--seconds', type=float, default=60)
    load.add_argument('--hz', type=float, default=30)
    load.add_argument('--checkpoint', default='builtin')
    transport = sub.add_parser('transport')
    transport.add_argument('--seconds', type=float, default=60)
    transport.add_argument('--hz', type=float, default=10)
    transport.add_argument('--input-qos', default='reliable', choices=INPUT_QOS)
    transport.add_argument('--checkpoint', default='builtin')
    transport.add_argument('--cpu-load', type=int, default=0, metavar='N',
                           help='N busy processes beside the node (other programs on the robot)')
    mapping = sub.add_parser('map')
    mapping.add_argument('--frames', type=int, default=100)
    mapping.add_argument('--publish-every', type=int, default=10, metavar='N')
    args = parser.parse_args(argv)
    if args.command == 'convert':
        bench_convert(args.runs)
    elif args.command == 'map':
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        bench_map(args.frames, args.publish_every)
    elif args.command == 'load':
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        bench_load(args.seconds, args.hz, args.checkpoint)
    else:
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        bench_transport(args.seconds, args.hz, args.input_qos, args.checkpoint, args.cpu_load)


if __name__ == '__main__':
    main()
