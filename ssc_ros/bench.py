"""Benchmarks of the ROS side (figures printed, nothing asserted).

    python -m ssc_ros.bench convert [--runs 5]          # one 256x256x32 prediction -> the three messages
    python -m ssc_ros.bench load [--seconds 60] [--hz 30] [--checkpoint builtin]

``load`` starts ssc_node, feeds it image + depth + camera_info at --hz, and reports what it
received, processed and dropped, its output rate and its resident memory at start and end.
Run it with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (set here when absent).
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

from ssc_core.labels import IGNORE_LABEL


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


def bench_load(seconds: float, hz: float, checkpoint: str) -> None:
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header

    from ssc_core.checkpoint import BUILTIN_CHECKPOINT, load_model
    from ssc_core.data.sample import street_frame

    from . import conversions as conv

    path = BUILTIN_CHECKPOINT if checkpoint == 'builtin' else checkpoint
    _, preset = load_model(path)
    frame = street_frame(preset)
    node = subprocess.Popen([sys.executable, '-m', 'ssc_ros.node', '--ros-args', '-p', f'checkpoint:={path}',
                             '-p', 'diagnostics_period:=0.5'], stderr=subprocess.PIPE, text=True)
    rclpy.init()
    probe = rclpy.create_node('ssc_load_probe')
    diagnostics, clouds = [], []
    probe.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    probe.create_subscription(PointCloud2, 'voxels', lambda m: clouds.append(time.monotonic()), 10)
    pubs = [probe.create_publisher(t, n, 10) for t, n in ((Image, 'image'), (Image, 'depth'),
                                                          (CameraInfo, 'camera_info'))]
    deadline = time.monotonic() + 120
    while not diagnostics and time.monotonic() < deadline:
        rclpy.spin_once(probe, timeout_sec=0.1)
    rss_start = _rss_mib(node.pid)
    info = CameraInfo(k=list(np.asarray(frame.K).ravel()), width=frame.image.shape[1],
                      height=frame.image.shape[0])
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        header = Header(frame_id='camera')
        header.stamp = probe.get_clock().now().to_msg()
        pubs[0].publish(conv.rgb_image_msg(frame.image, header))
        pubs[1].publish(conv.depth_image_msg(frame.depth, header))
        pubs[2].publish(info)
        sent += 1
        next_time = start + sent / hz
        while time.monotonic() < next_time:
            rclpy.spin_once(probe, timeout_sec=max(0.0, next_time - time.monotonic()))
    end = time.monotonic() + 3
    while time.monotonic() < end:
        rclpy.spin_once(probe, timeout_sec=0.1)
    rss_end = _rss_mib(node.pid)
    values = {kv.key: kv.value for s in diagnostics[-1].status for kv in s.values}
    alive = node.poll() is None
    node.terminate()
    node.wait(timeout=20)
    window = [t for t in clouds if t >= start]
    rate = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
    print(f'preset {preset.name}: sent {sent} frames in {seconds:.0f} s ({sent / seconds:.1f} Hz)')
    print(f'node: received {values.get("received_image")} images, processed {values.get("processed")}, '
          f'dropped stale {values.get("dropped_stale")}, output rate {rate:.2f} Hz, '
          f'latency p50 {values.get("latency_p50_s")} s / p95 {values.get("latency_p95_s")} s')
    print(f'node RSS: {rss_start:.0f} MiB at start, {rss_end:.0f} MiB at end; still running: {alive}')
    probe.destroy_node()
    rclpy.try_shutdown()


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
    args = parser.parse_args(argv)
    if args.command == 'convert':
        bench_convert(args.runs)
    else:
        bench_load(args.seconds, args.hz, args.checkpoint)


if __name__ == '__main__':
    main()
