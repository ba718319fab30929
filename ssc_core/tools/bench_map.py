"""Benchmark the semantic map on full-size frames: integration and crop time, memory over a drive.

    python -m ssc_core.tools.bench_map [--preset semantic_kitti] [--frames 1000] [--radius 60]
        [--device cpu,cuda] [--kernels native,torch,torch_compile] [--threads 2]

A frame is the synthetic street's ground truth on the preset's grid (unobserved voxels as empty),
with 3 % of its voxels given a random class each frame (so that the map meets disagreement),
integrated where the preset's camera sees, at poses that drive 1 m per frame on a circle of
150 m radius with 0.5 degree of roll and pitch noise (every rotation axis in use). Prints per
device and kernels (native: the C pass, CPU only; torch: eager; torch_compile): integrate and
crop p50/p95 (ms, after the first 5 frames), and the map's memory after 50, 200, ... frames with
and without --radius.
"""
import argparse
import time

import numpy as np
import torch

from ..data.sample import street_frame
from ..frame_inputs import project_grids
from ..mapping import SemanticMap
from ..mapping.kernels import KINDS
from ..presets import PRESETS, get_preset
from .bench import hardware

CHECKPOINTS = (50, 200, 1000)
WARMUP = 5


def drive(frames: int, seed: int = 0):
    """(frames, 4, 4) poses: 1 m per frame around a 150 m circle, small roll and pitch."""
    rng = np.random.default_rng(seed)
    poses = []
    for i in range(frames):
        yaw = i / 150.0
        roll, pitch = np.radians(rng.normal(0, 0.5, 2))
        c, s = np.cos(yaw), np.sin(yaw)
        rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(roll), -np.sin(roll)], [0, np.sin(roll), np.cos(roll)]])
        ry = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]])
        pose = np.eye(4)
        pose[:3, :3] = rz @ ry @ rx
        pose[:3, 3] = (150 * s, 150 * (1 - c), 0)
        poses.append(pose)
    return np.stack(poses)


def run_drive(preset, device: str, kernels: str, radius, frames: int, crop_every: int = 10) -> dict:
    """Integrate ``frames`` frames; times (s) and the map's bytes at CHECKPOINTS."""
    street = street_frame(preset)
    labels = np.where(street.labels == 255, 0, street.labels).astype(np.uint8)
    _, output = project_grids(preset, street.K, street.cam_from_grid)
    observed = output.fov_mask.reshape(labels.shape)
    rng = np.random.default_rng(1)
    semantic_map = SemanticMap(preset.model.voxel_size, preset.class_names, preset.voxel_origin,
                               radius=radius, device=device, kernels=kernels)
    integrate, crop, memory = [], [], {}
    mask = torch.from_numpy(observed).to(device)
    for i, pose in enumerate(drive(frames)):
        noisy = labels.copy()
        flip = rng.random(labels.shape) < 0.03
        noisy[flip] = rng.integers(0, len(preset.class_names), int(flip.sum()))
        frame = torch.from_numpy(noisy).to(device)
        integrate.append(timed(device, semantic_map.integrate, frame, mask, pose, 0.1 * i))
        if i % crop_every == 0:
            crop.append(timed(device, semantic_map.crop, pose, labels.shape))
        if i + 1 in CHECKPOINTS:
            memory[i + 1] = (semantic_map.nbytes, semantic_map.num_blocks)
    return {'integrate': integrate[WARMUP:], 'crop': crop[1:], 'memory': memory}


def timed(device: str, call, *args) -> float:
    """Seconds ``call(*args)`` takes (with the GPU's work finished)."""
    cuda = device.startswith('cuda')
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call(*args)
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def ms(times, q) -> str:
    return f'{np.percentile(times, q) * 1000:8.1f}' if len(times) else '       -'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', default='semantic_kitti', choices=sorted(PRESETS))
    parser.add_argument('--frames', type=int, default=1000)
    parser.add_argument('--radius', type=float, default=60.0, help='metres (the bounded map)')
    parser.add_argument('--device', default='cpu,cuda')
    parser.add_argument('--kernels', default='native,torch',
                        help=f'comma-separated, of {", ".join(k for k in KINDS if k != "auto")}')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    devices = [d for d in args.device.split(',') if not d.startswith('cuda') or torch.cuda.is_available()]
    print(f'preset {preset.name}: grid {preset.model.scene_shape} of {preset.model.voxel_size} m, '
          f'{args.frames} frames; torch {torch.__version__}')
    print(f'{"device":<8} {"kernels":<13} {"radius":>7} {"integrate p50":>14} {"p95":>8} {"crop p50":>9} '
          f'{"p95":>8}  ' + '  '.join(f'MiB@{n}' for n in CHECKPOINTS if n <= args.frames))
    for device in devices:
        print(f'  {device}: {hardware(torch.device(device))}')
        for kernels in args.kernels.split(','):
            if kernels == 'native' and not device.startswith('cpu'):
                continue
            for radius in (args.radius, None):
                figures = run_drive(preset, device, kernels, radius, args.frames)
                memory = '  '.join(f'{figures["memory"][n][0] / 2**20:8.1f}' for n in CHECKPOINTS
                                   if n in figures['memory'])
                bound = '-' if radius is None else f'{radius:g} m'
                print(f'{device:<8} {kernels:<13} {bound:>7} '
                      f'{ms(figures["integrate"], 50):>14} {ms(figures["integrate"], 95)} '
                      f'{ms(figures["crop"], 50):>9} {ms(figures["crop"], 95)}  {memory}', flush=True)


if __name__ == '__main__':
    main()
