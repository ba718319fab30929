"""Procedural street scenes written in the exact SemanticKITTI on-disk layout.

A straight road with sidewalks, terrain, buildings, poles with signs, trees and cars, seen by a
KITTI-like camera driving forward. Everything is axis-aligned boxes and planes in the velodyne
frame of the first frame, so voxel labels and the rendered image/depth agree exactly.

Written per sequence ``XX``::

    <root>/dataset/sequences/XX/calib.txt, poses.txt, times.txt
    <root>/dataset/sequences/XX/image_2/FFFFFF.png                    every frame
    <root>/dataset/sequences/XX/voxels/FFFFFF.bin|.label|.invalid     every ``label_every`` frames
                                         (only .bin without ground truth, like the test split)
    <root>/depth/sequences/XX/FFFFFF.npy                              float32 metres

The calibration's ``P2`` has no baseline offset, so ``P2[:3, :3]`` with ``Tr`` (what the network
uses) is exactly the camera that rendered the image.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..labels import CLASS_COLORS, SEMANTIC_KITTI_CLASSES, SEMANTIC_KITTI_LEARNING_MAP_INV
from ..presets import KITTI_LIDAR_HEIGHT, SEMANTIC_KITTI

GRID_SHAPE = (256, 256, 32)
VOXEL_SIZE = 0.2
VOXEL_ORIGIN = np.array((0.0, -25.6, -2.0))
GROUND_Z = -KITTI_LIDAR_HEIGHT   # road surface in the velodyne frame
ROAD_HALF_WIDTH = 4.0
SIDEWALK_OUTER = 6.5
SIDEWALK_HEIGHT = 0.15
TERRAIN_HEIGHT = 0.05
SLAB = 0.4                # thickness of the labelled ground layer; below it is unobserved
STEP = 1.0                # metres driven per frame
KITTI_IMAGE_SIZE = (1241, 376)


def _class_id(name: str) -> int:
    return SEMANTIC_KITTI_CLASSES.index(name)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box [lo, hi] in the scene frame with a class and a texture seed."""
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    label: int
    tint: float


def make_scene(length: float, seed: int) -> list[Box]:
    """Objects along ``length`` metres of road, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    boxes = []

    def add(lo, hi, name):
        boxes.append(Box(tuple(map(float, lo)), tuple(map(float, hi)), _class_id(name),
                         float(rng.uniform(0.8, 1.2))))

    ground = GROUND_Z
    for side in (-1, 1):   # kerbs and verges as boxes, so their side faces render
        y0, y1 = sorted((side * ROAD_HALF_WIDTH, side * SIDEWALK_OUTER))
        add((-20, y0, ground), (length + 80, y1, ground + SIDEWALK_HEIGHT), 'sidewalk')
        y0, y1 = sorted((side * SIDEWALK_OUTER, side * 60.0))
        add((-20, y0, ground), (length + 80, y1, ground + TERRAIN_HEIGHT), 'terrain')
    for side in (-1, 1):
        x = -10.0
        while x < length + 60:           # buildings and trees behind the sidewalk
            width = rng.uniform(8, 20)
            if rng.random() < 0.7:
                near = rng.uniform(9, 12)
                y0, y1 = sorted((side * near, side * (near + rng.uniform(6, 10))))
                add((x, y0, ground), (x + width, y1, ground + rng.uniform(5, 12)), 'building')
            else:
                for tx in np.arange(x + 2, x + width - 1, rng.uniform(4, 7)):
                    ty = side * rng.uniform(7.5, 10)
                    add((tx - 0.2, ty - 0.2, ground), (tx + 0.2, ty + 0.2, ground + 2.5), 'trunk')
                    r = rng.uniform(1.2, 2.2)
                    add((tx - r, ty - r, ground + 2.5), (tx + r, ty + r, ground + 2.5 + 2 * r),
                        'vegetation')
            x += width + rng.uniform(1, 6)
        for px in np.arange(rng.uniform(0, 10), length + 60, rng.uniform(12, 20)):
            py = side * (SIDEWALK_OUTER - 0.6)
            add((px - 0.12, py - 0.12, ground), (px + 0.12, py + 0.12, ground + 4.0), 'pole')
            if rng.random() < 0.5:
                add((px - 0.1, py - 0.5, ground + 2.6), (px + 0.1, py + 0.5, ground + 3.4),
                    'traffic-sign')
        for cx in np.arange(rng.uniform(3, 12), length + 60, rng.uniform(7, 16)):
            if rng.random() < 0.6:      # parked cars at the kerb
                cy = side * rng.uniform(2.6, 3.0)
                add((cx, cy - 0.9, ground), (cx + 4.2, cy + 0.9, ground + 1.5), 'car')
    for cx in np.arange(15, length + 60, rng.uniform(25, 40)):   # a car ahead in the lane
        add((cx, -1.9 - 0.9, ground), (cx + 4.4, -1.9 + 0.9, ground + 1.6), 'car')
    return boxes


def ground_height(y: np.ndarray) -> np.ndarray:
    """Surface height of road, sidewalk and terrain at lateral offset y."""
    ay = np.abs(y)
    return np.where(ay < ROAD_HALF_WIDTH, GROUND_Z,
                    np.where(ay < SIDEWALK_OUTER, GROUND_Z + SIDEWALK_HEIGHT, GROUND_Z + TERRAIN_HEIGHT))


def ground_label(y: np.ndarray) -> np.ndarray:
    ay = np.abs(y)
    return np.where(ay < ROAD_HALF_WIDTH, _class_id('road'),
                    np.where(ay < SIDEWALK_OUTER, _class_id('sidewalk'), _class_id('terrain')))


def hidden_from_sensor(labels: np.ndarray, samples: int = 64) -> np.ndarray:
    """(X, Y, Z) bool: voxels the lidar at the grid frame's origin cannot see, as the real data's
    ``.invalid`` marks them: the inside of buildings (under a shell of two voxels), and every
    column behind a building seen from the sensor (a bird's-eye shadow; the building's own
    columns stay visible)."""
    building = labels == _class_id('building')
    inside = building
    for _ in range(2):                               # erode twice: the six neighbours are building
        shell = inside.copy()
        for axis in range(3):
            for shift in (-1, 1):
                shell &= np.roll(inside, shift, axis)
        inside = shell
    walls = building.any(2)                          # (X, Y) columns holding a building
    sensor = -VOXEL_ORIGIN[:2] / VOXEL_SIZE          # sensor position in (x, y) cell units
    cells = np.stack(np.meshgrid(*(np.arange(n) + 0.5 for n in GRID_SHAPE[:2]), indexing='ij'), -1)
    t = np.linspace(0, 1, samples, endpoint=False)[:, None, None, None]
    points = sensor + t * (cells - sensor)           # (samples, X, Y, 2) along each sight line
    idx = np.clip(np.floor(points).astype(int), 0, np.array(GRID_SHAPE[:2]) - 1)
    crossed = walls[idx[..., 0], idx[..., 1]]
    own = (idx[..., 0] == np.arange(GRID_SHAPE[0])[:, None]) & (idx[..., 1] == np.arange(GRID_SHAPE[1]))
    shadow = (crossed & ~own).any(0) & ~walls
    return inside | shadow[:, :, None]


def voxelize(boxes: list[Box], offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (X, Y, Z) uint8 in the 20-class map and the unobserved mask (below the ground
    slab, and :func:`hidden_from_sensor`), for the grid of a velodyne frame whose origin is at
    ``offset`` (3,) in the scene frame."""
    centers = [VOXEL_ORIGIN[a] + VOXEL_SIZE * (np.arange(n) + 0.5) + offset[a]
               for a, n in enumerate(GRID_SHAPE)]
    y = centers[1][None, :, None]
    z = centers[2][None, None, :]
    surface = ground_height(y)
    half = VOXEL_SIZE / 2      # a voxel is labelled when an object overlaps it, as lidar points would mark it
    in_ground = np.broadcast_to((z - half < surface) & (z >= surface - SLAB), GRID_SHAPE)
    labels = np.where(in_ground, np.broadcast_to(ground_label(y), GRID_SHAPE), 0).astype(np.uint8)
    invalid = np.broadcast_to(z < surface - SLAB, GRID_SHAPE).copy()
    for box in boxes:
        ranges = [np.nonzero((c + half > lo) & (c - half < hi))[0]
                  for c, lo, hi in zip(centers, box.lo, box.hi, strict=True)]
        if all(len(r) for r in ranges):
            labels[np.ix_(*ranges)] = box.label
            invalid[np.ix_(*ranges)] = False
    return labels, invalid | hidden_from_sensor(labels)


def render(boxes: list[Box], offset: np.ndarray, K: np.ndarray, cam_from_velo: np.ndarray,
           image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the scene: (H, W, 3) uint8 RGB and (H, W) float32 camera-frame depth.

    Pixel (u, v) is the ray through integer pixel coordinates, as the network lifts depth.
    Pixels that hit nothing (sky) get depth 80 m.
    """
    width, height = image_size
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                       indexing='ij')
    rays_cam = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])  # z = 1
    velo_from_cam = np.linalg.inv(cam_from_velo)
    dirs = (velo_from_cam[:3, :3] @ rays_cam).T                  # (N, 3), t = camera depth
    origin = velo_from_cam[:3, 3] + offset                       # scene frame
    n = dirs.shape[0]
    best_t = np.full(n, np.inf)
    label = np.full(n, -1)
    normal = np.zeros(n, np.int64)
    tint = np.ones(n)
    with np.errstate(divide='ignore', invalid='ignore'):
        t = (GROUND_Z - origin[2]) / dirs[:, 2]        # the road plane (under everything else)
        hit = t > 0
        best_t[hit] = t[hit]
        label[hit] = ground_label(origin[1] + t[hit] * dirs[hit, 1])
        normal[hit] = 2
        inv = 1.0 / dirs
        for box in boxes:
            lo, hi = np.array(box.lo), np.array(box.hi)
            t1, t2 = (lo - origin) * inv, (hi - origin) * inv
            tmin_axes = np.minimum(t1, t2)
            tmin = tmin_axes.max(1)
            tmax = np.maximum(t1, t2).min(1)
            hit = (tmax >= np.maximum(tmin, 0)) & (tmin > 0) & (tmin < best_t)
            best_t[hit] = tmin[hit]
            label[hit] = box.label
            normal[hit] = tmin_axes[hit].argmax(1)
            tint[hit] = box.tint
    colors = np.array([CLASS_COLORS[c] for c in SEMANTIC_KITTI_CLASSES], np.float64)
    shade = np.array([0.75, 0.6, 1.0])[normal]
    sky = label < 0
    points = origin + np.where(sky, 0.0, best_t)[:, None] * dirs
    texture = 0.9 + 0.1 * np.sin(points[:, 0] * 3.1) * np.cos(points[:, 1] * 2.3 + points[:, 2] * 1.7)
    rgb = colors[np.maximum(label, 0)] * (shade * tint * texture)[:, None]
    rgb[sky] = np.array([150.0, 190.0, 235.0]) * (0.8 + 0.2 * (v.ravel()[sky] / height))[:, None]
    depth = np.where(sky, 80.0, np.minimum(best_t, 80.0))
    return (rgb.clip(0, 255).reshape(height, width, 3).astype(np.uint8),
            depth.reshape(height, width).astype(np.float32))


def camera_matrix(image_size: tuple[int, int]) -> np.ndarray:
    """KITTI's left colour camera intrinsics, scaled to ``image_size`` (W, H)."""
    K = np.array(SEMANTIC_KITTI.cam_K)
    sx, sy = image_size[0] / KITTI_IMAGE_SIZE[0], image_size[1] / KITTI_IMAGE_SIZE[1]
    return np.diag([sx, sy, 1.0]) @ K


def _matrix_line(name: str, m: np.ndarray) -> str:
    return f'{name}: ' + ' '.join(f'{v:.12e}' for v in m.ravel()) + '\n'


def write_sequence(root, sequence: str, num_frames: int, image_size=KITTI_IMAGE_SIZE,
                   label_every: int = 5, seed: int = 0, ground_truth: bool = True) -> Path:
    """Write one sequence in the SemanticKITTI layout under ``root``; returns its folder.
    Without ``ground_truth`` the voxel folder holds only the input ``.bin`` files."""
    root = Path(root)
    seq_dir = root / 'dataset' / 'sequences' / sequence
    depth_dir = root / 'depth' / 'sequences' / sequence
    for d in (seq_dir / 'image_2', seq_dir / 'voxels', depth_dir):
        d.mkdir(parents=True, exist_ok=True)
    K = camera_matrix(image_size)
    tr = np.array(SEMANTIC_KITTI.cam_from_grid)
    p_rect = np.hstack([K, np.zeros((3, 1))])
    with open(seq_dir / 'calib.txt', 'w') as f:
        for i in range(4):
            f.write(_matrix_line(f'P{i}', p_rect))
        f.write(_matrix_line('Tr', tr[:3]))
    boxes = make_scene(num_frames * STEP, seed)
    velo_step = np.linalg.inv(tr)[:3, :3] @ np.array([0.0, 0.0, STEP])  # the camera drives along its z
    with open(seq_dir / 'poses.txt', 'w') as poses, open(seq_dir / 'times.txt', 'w') as times:
        for frame in range(num_frames):
            pose = np.eye(4)
            pose[2, 3] = frame * STEP
            poses.write(' '.join(f'{v:.12e}' for v in pose[:3].ravel()) + '\n')
            times.write(f'{frame * 0.1:.6e}\n')
    for frame in range(num_frames):
        offset = frame * velo_step
        name = f'{frame:06d}'
        image, depth = render(boxes, offset, K, tr, image_size)
        Image.fromarray(image).save(seq_dir / 'image_2' / f'{name}.png')
        np.save(depth_dir / f'{name}.npy', depth)
        if frame % label_every == 0:
            labels, invalid = voxelize(boxes, offset)
            write_voxels(seq_dir / 'voxels' / name, labels, invalid, ground_truth)
    return seq_dir


def write_voxels(stem: Path, labels: np.ndarray, invalid: np.ndarray, ground_truth: bool = True) -> None:
    """SemanticKITTI voxel files: ``.label`` uint16 raw ids, ``.bin`` / ``.invalid`` bit-packed
    (only ``.bin`` without ``ground_truth``)."""
    np.packbits(labels.reshape(-1) != 0).tofile(f'{stem}.bin')
    if not ground_truth:
        return
    inverse = np.zeros(256, np.uint16)
    for train_id, raw in SEMANTIC_KITTI_LEARNING_MAP_INV.items():
        inverse[train_id] = raw
    raw = inverse[labels.reshape(-1)]
    raw[invalid.reshape(-1)] = 0
    raw.astype(np.uint16).tofile(f'{stem}.label')
    np.packbits(invalid.reshape(-1)).tofile(f'{stem}.invalid')
