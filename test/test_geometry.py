"""Camera/voxel geometry equals the authors' dataset code (geometry fixture)."""
import numpy as np
import pytest

from ssc_core.geometry import grid_shape, vox2pix

from conftest import load_npz


def test_vox2pix_matches_reference(reference_dir):
    ref = load_npz(reference_dir / 'geometry.npz')
    for scale in (1, 2):
        proj = vox2pix(ref['cam_pose'], ref['cam_K'], ref['voxel_origin'], 0.2 * scale, (1220, 370),
                       (51.2, 51.2, 6.4))
        np.testing.assert_array_equal(proj.projected_pix, ref[f'projected_pix_{scale}'])
        np.testing.assert_array_equal(proj.fov_mask, ref[f'fov_mask_{scale}'])
        np.testing.assert_allclose(proj.pix_z, ref[f'pix_z_{scale}'], rtol=1e-6, atol=1e-6)


def test_grid_shape():
    assert grid_shape((51.2, 51.2, 6.4), 0.2) == (256, 256, 32)
    assert grid_shape((51.2, 51.2, 6.4), 0.4) == (128, 128, 16)


def test_points_behind_camera_are_outside_fov():
    pose = np.eye(4)
    proj = vox2pix(pose, np.diag([100.0, 100.0, 1.0]), (-1, -1, -1), 1.0, (10, 10), (2, 2, 2))
    z = proj.pix_z.reshape(2, 2, 2)
    assert not proj.fov_mask.reshape(2, 2, 2)[z <= 0].any()


def test_quaternions_and_poses_round_trip():
    """pose_from_quaternion (ROS's x, y, z, w) and quaternion_from_pose invert each other for
    rotations of every kind (half turns about each axis included), and agree with a 90 degree yaw."""
    from ssc_core.geometry import pose_from_quaternion, quaternion_from_pose, transform_points
    rng = np.random.default_rng(0)
    quaternions = [*rng.normal(size=(200, 4)), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)]
    for q in quaternions:
        t = rng.normal(size=3)
        pose = pose_from_quaternion(t, q)
        np.testing.assert_allclose(pose[:3, :3].T @ pose[:3, :3], np.eye(3), atol=1e-12)
        back_t, back_q = quaternion_from_pose(pose)
        np.testing.assert_allclose(pose_from_quaternion(back_t, back_q), pose, atol=1e-12)
        assert back_q[3] >= 0 and abs(abs(back_q @ q) / np.linalg.norm(q) - 1) < 1e-12
    yaw = pose_from_quaternion((1, 2, 3), (0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)))
    np.testing.assert_allclose(transform_points(yaw, [[1, 0, 0]]), [[1, 3, 3]], atol=1e-6)
    with pytest.raises(ValueError, match='not a rigid transform'):
        pose_from_quaternion((0, 0, 0), (0, 0, 0, 0))
