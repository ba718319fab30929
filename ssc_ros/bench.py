"""Benchmarks of the ROS side (figures printed, nothing asserted).

    python -m ssc_ros.bench convert [--runs 5]          # one 256x256x32 prediction -> the three messages
    python -m ssc_ros.bench load [--seconds 60] [--hz 30] [--checkpoint builtin]
    python -m ssc_ros.bench transport [--seconds 60] [--hz 10] [--input-qos reliable]

``load`` starts ssc_node, feeds it image + depth + camera_info at --hz, and reports what it
received, processed and dropped, its output rate and its resident memory at start and end.
``transport`` feeds it full-size KITTI frames (1241x376 rgb8 + 32FC1) from reliable publishers, as
``ros2 bag play`` and camera drivers (best-effort ones with ``--input-qos best_effort``), and reports
frames published vs received vs processed.
Run it with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (set here when absent).
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
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from ssc_core.data.sample import street_frame
    from ssc_core.presets import SEMANTIC_KITTI

    from . import conversions as conv

    frame = street_frame(SEMANTIC_KITTI)
    labels = frame.labels
    fov = np.ones(labels.shape, bool)
    args = (SEMANTIC_KITTI.class_names, SEMANTIC_KITTI.model.voxel_size, SEMANTIC_KITTI.voxel_origin)
    header = Header(frame_id='velodyne')
    jobs = {'PointCloud2': lambda: conv.labels_to_cloud(labels, *args, header),
            'MarkerArray': lambda: conv.labels_to_markers(labels, *args, header),
            'OccupancyGrid': lambda: conv.labels_to_occupancy(labels, fov, *args, header)}
    occupied = int(np.count_nonzero((labels != 0) & (labels != IGNORE_LABEL)))
    print(f'prediction 256x256x32 (synthetic street), {occupied} occupied voxels; {runs} runs each')
    print(f'{"message":<14} {"build p50 ms":>13} {"build p95 ms":>13} {"serialize ms":>13} {"bytes":>11}')
    for name, job in jobs.items():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            msg = job()
            times.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        data = serialize_message(msg)
        ser = (time.perf_counter() - start) * 1e3
        p50, p95 = _percentiles(times)
        print(f'{name:<14} {p50:>13.1f} {p95:>13.1f} {ser:>13.1f} {len(data):>11,}')


def _rss_mib(pid: int) -> float:
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def _drive_node(image, depth, K, seconds: float, hz: float, node_args: list, qos) -> dict:
    """Start ssc_node with ``node_args``, publish (image, depth, camera_info) at ``hz`` for ``seconds``
    with ``qos``, and return what was sent and what the node reported on /diagnostics."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header

    from . import conversions as conv

    node = subprocess.Popen([sys.executable, '-m', 'ssc_ros.node', '--ros-args',
                             '-p', 'diagnostics_period:=0.5', *node_args], stderr=subprocess.PIPE, text=True)
    rclpy.init()
    probe = rclpy.create_node('ssc_bench_probe')
    diagnostics, clouds = [], []
    probe.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    probe.create_subscription(PointCloud2, 'voxels', lambda m: clouds.append(time.monotonic()), 10)
    pubs = [probe.create_publisher(t, n, qos) for t, n in ((Image, 'image'), (Image, 'depth'),
                                                           (CameraInfo, 'camera_info'))]
    deadline = time.monotonic() + 120
    def ready():
        return diagnostics and all(p.get_subscription_count() > 0 for p in pubs)
    while not ready() and time.monotonic() < deadline:
        rclpy.spin_once(probe, timeout_sec=0.1)
    rss_start = _rss_mib(node.pid)
    info = CameraInfo(k=list(np.asarray(K).ravel()), width=image.shape[1], height=image.shape[0])
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        header = Header(frame_id='camera')
        header.stamp = probe.get_clock().now().to_msg()
        pubs[0].publish(conv.rgb_image_msg(image, header))
        pubs[1].publish(conv.depth_image_msg(depth, header))
        pubs[2].publish(info)
        sent += 1
        next_time = start + sent / hz
        while time.monotonic() < next_time:
            rclpy.spin_once(probe, timeout_sec=max(0.0, next_time - time.monotonic()))
    end = time.monotonic() + 3
    while time.monotonic() < end:
        rclpy.spin_once(probe, timeout_sec=0.1)
    result = {'sent': sent, 'values': {kv.key: kv.value for s in diagnostics[-1].status for kv in s.values},
              'rss_start': rss_start, 'rss_end': _rss_mib(node.pid), 'alive': node.poll() is None}
    node.terminate()
    node.wait(timeout=20)
    window = [t for t in clouds if t >= start]
    result['output_hz'] = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
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


def bench_transport(seconds: float, hz: float, qos_name: str, checkpoint: str) -> None:
    """Full-size KITTI frames (1241x376 rgb8 + 32FC1) at ``hz``: published vs received vs processed."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from ssc_core.checkpoint import BUILTIN_CHECKPOINT
    from ssc_core.presets import SEMANTIC_KITTI

    from .bag import PLAYER_QOS

    width, height = 1241, 376
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    image = np.ascontiguousarray(np.broadcast_to(np.stack([ramp, ramp[::-1], ramp], -1), (height, width, 3)))
    depth = np.full((height, width), 10.0, np.float32)
    best_effort = qos_name in ('best_effort', 'sensor_data')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT) if best_effort else PLAYER_QOS
    path = BUILTIN_CHECKPOINT if checkpoint == 'builtin' else checkpoint
    r = _drive_node(image, depth, SEMANTIC_KITTI.cam_K, seconds, hz,
                    ['-p', f'checkpoint:={path}', '-p', f'input_qos:={qos_name}'], qos)
    values, sent = r['values'], r['sent']

    def share(key):
        got = int(values.get(key, 0))
        return f'{got} ({100 * got / sent:.1f} %)'
    print(f'{width}x{height} rgb8 + 32FC1 + camera_info at {hz:g} Hz for {seconds:.0f} s, '
          f'input_qos {qos_name}, publishers {"best effort" if best_effort else "reliable"}, '
          f'FASTDDS_BUILTIN_TRANSPORTS={os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "(default)")}')
    print(f'published {sent} frames; node received {share("received_image")} images, '
          f'{share("received_depth")} depths; processed {values.get("processed")} '
          f'(dropped stale {values.get("dropped_stale")}); output rate {r["output_hz"]:.2f} Hz; '
          f'still running: {r["alive"]}')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    c = sub.add_parser('convert')
    c.add_argument('--runs', type=int, default=5)
    load = sub.add_parser('load')
    load.add_argument('--seconds', type=float, default=60)
    load.add_argument('--hz', type=float, default=30)
    load.add_argument('--checkpoint', default='builtin')
    transport = sub.add_parser('transport')
    transport.add_argument('--seconds', type=float, default=60)
    transport.add_argument('--hz', type=float, default=10)
    transport.add_argument('--input-qos', default='reliable', choices=INPUT_QOS)
    transport.add_argument('--checkpoint', default='builtin')
    args = parser.parse_args(argv)
    if args.command == 'convert':
        bench_convert(args.runs)
    elif args.command == 'load':
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        bench_load(args.seconds, args.hz, args.checkpoint)
    else:
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        bench_transport(args.seconds, args.hz, args.input_qos, args.checkpoint)


if __name__ == '__main__':
    main()
