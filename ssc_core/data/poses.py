"""Poses of a KITTI odometry / SemanticKITTI sequence: where each frame's voxel grid is in the world.

``poses.txt`` holds one line per image: the 12 numbers of the 3x4 pose of camera 0 in the world
frame (the first camera's frame), row-major. The voxel grid lives in the velodyne frame, which
``calib.txt``'s ``Tr`` maps to camera 0, so::

    world_from_grid[i] = inv(Tr) @ pose[i] @ Tr

(the world frame is then the first frame's velodyne frame, as SemanticKITTI's own tools compose
its scans).
"""
from pathlib import Path

import numpy as np

from ..geometry import check_rigid


class PoseError(ValueError):
    """A pose that cannot be used; the text names the file and line (or the frame)."""


def read_poses(path, num_frames: int | None = None) -> np.ndarray:
    """``poses.txt`` → (N, 4, 4) float64 camera-0 poses, each checked to be finite and rigid.

    ``num_frames``: how many poses the sequence needs (its images); a shorter file is an error.
    Every problem is a PoseError naming the file and the line.
    """
    path = Path(path)
    poses = []
    for where, line in _lines(path, 'poses', 'one line of 12 numbers per image'):
        try:
            values = np.array([float(v) for v in line.split()])
        except ValueError:
            raise PoseError(f'{where}: unreadable pose line {line[:80]!r}') from None
        if values.size != 12:
            raise PoseError(f'{where}: expected 12 numbers (3x4 pose), got {values.size}')
        try:
            poses.append(check_rigid(np.vstack([values.reshape(3, 4), (0, 0, 0, 1)]), where))
        except ValueError as e:
            raise PoseError(str(e)) from None
    if num_frames is not None and len(poses) < num_frames:
        raise PoseError(f'{path}: {len(poses)} poses for a sequence of {num_frames} images '
                        f'(line {len(poses) + 1} missing)')
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def _lines(path: Path, what: str, expected: str):
    """(``FILE:LINE``, text) of each non-blank line of a text file; PoseError when it is missing."""
    if not path.is_file():
        raise PoseError(f'{path}: {what} missing (expected {expected})')
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            yield f'{path}:{number}', line


def grid_poses(camera_poses: np.ndarray, cam_from_grid: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-0 poses and the grid → camera transform (``Tr``) → (N, 4, 4)
    world_from_grid, the world being the first frame's grid frame."""
    tr = np.asarray(cam_from_grid, np.float64)
    return np.linalg.inv(tr) @ np.asarray(camera_poses, np.float64) @ tr


def base_poses(world_from_grid: np.ndarray, base_from_grid: np.ndarray) -> np.ndarray:
    """(N, 4, 4) grid poses in the world (the first grid frame) and the grid frame's mount on a
    base frame (4, 4) → (N, 4, 4) base poses in the world's base frame (the first base frame,
    ROS's ``odom``): ``base_from_grid @ world_from_grid @ inv(base_from_grid)``."""
    mount = np.asarray(base_from_grid, np.float64)
    return mount @ np.asarray(world_from_grid, np.float64) @ np.linalg.inv(mount)


def read_times(path, num_frames: int) -> np.ndarray:
    """``times.txt`` → (N,) float64 seconds of each image (PoseError naming file and line when
    it is shorter than ``num_frames``, unreadable, not finite or going back)."""
    path = Path(path)
    times = []
    for where, line in _lines(path, 'times', 'one time in seconds per image'):
        try:
            value = float(line)
        except ValueError:
            raise PoseError(f'{where}: unreadable time {line[:40]!r}') from None
        if not np.isfinite(value) or (times and value < times[-1]):
            raise PoseError(f'{where}: time {value} is not finite or goes back')
        times.append(value)
    if len(times) < num_frames:
        raise PoseError(f'{path}: {len(times)} times for a sequence of {num_frames} images '
                        f'(line {len(times) + 1} missing)')
    return np.array(times[:num_frames])


def sequence_motion(seq_dir, cam_from_grid: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A SemanticKITTI sequence folder's ``poses.txt`` and ``times.txt`` → (N, 4, 4) world_from_grid
    and (N,) seconds, for its first ``num_frames`` images."""
    seq_dir = Path(seq_dir)
    poses = grid_poses(read_poses(seq_dir / 'poses.txt', num_frames)[:num_frames], cam_from_grid)
    return poses, read_times(seq_dir / 'times.txt', num_frames)
