"""Data: synthetic scenes in the SemanticKITTI layout, label preparation, readers, errors."""

import numpy as np
import pytest
import torch
from cli import run_tool

from ssc_core.data.dataset import SSCDataset
from ssc_core.data.label_files import LabelError, downsample_majority, read_raw_voxels, read_target
from ssc_core.data.photometric import Photometric
from ssc_core.data.semantic_kitti import read_calib, semantic_kitti_frames
from ssc_core.data.synthetic import write_voxels
from ssc_core.geometry import grid_shape
from ssc_core.presets import SEMANTIC_KITTI


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    run_tool('make_synthetic', root, '--sequences', '00', '08', '--frames', 6, '--label-every', 5)
    run_tool('prepare_labels', '--data-root', root, '--label-root', root / 'labels')
    return root


def test_layout_is_semantic_kitti(synthetic):
    seq = synthetic / 'dataset' / 'sequences' / '08'
    assert sorted(p.name for p in (seq / 'voxels').iterdir()) == [
        f'{f}.{ext}' for f in ('000000', '000005') for ext in ('bin', 'invalid', 'label')]
    assert len(list((seq / 'image_2').glob('*.png'))) == 6
    assert len((seq / 'poses.txt').read_text().splitlines()) == 6
    K, tr = read_calib(seq / 'calib.txt')
    assert K[0, 0] > 0 and K[2, 2] == 1
    np.testing.assert_allclose(tr, SEMANTIC_KITTI.cam_from_grid, atol=1e-12)
    assert (synthetic / 'labels' / '08' / '000005_1_8.npy').is_file()


def test_synthetic_voxels_have_unobserved_parts(synthetic):
    """Like the real data: voxels inside buildings and behind them (from the sensor) are invalid,
    and the prepared targets ignore them (255)."""
    stem = synthetic / 'dataset' / 'sequences' / '08' / 'voxels' / '000005'
    invalid = np.unpackbits(np.fromfile(f'{stem}.invalid', np.uint8)).reshape(256, 256, 32).astype(bool)
    target = np.load(synthetic / 'labels' / '08' / '000005_1_1.npy')
    assert 0.2 < invalid.mean() < 0.8, invalid.mean()
    assert (target[invalid] == 255).all() and (target[~invalid] != 255).all()
    building = target == SEMANTIC_KITTI.class_names.index('building')
    assert building.sum() > 1000 and invalid[:, :, 10:].any(2).sum() > 1000  # hidden columns, high up


def test_rendered_depth_lands_in_occupied_voxels(synthetic):
    """Image, depth and voxel labels describe the same scene: pixels lifted with their depth
    fall into labelled voxels of the class the image shows."""
    frame = semantic_kitti_frames(synthetic, 'val', synthetic / 'depth', synthetic / 'labels')[1]
    target = np.load(frame.target)
    depth = np.load(frame.depth)
    v, u = np.nonzero(depth < 40)
    d = depth[v, u].astype(np.float64)
    cam = np.linalg.inv(frame.K) @ np.stack([u * d, v * d, d])
    velo = (np.linalg.inv(frame.cam_from_grid) @ np.vstack([cam, np.ones(len(d))]))[:3]
    # step 5 cm into the surface along the ray so the point is inside its voxel
    ray = velo - np.linalg.inv(frame.cam_from_grid)[:3, 3:4]
    velo += 0.05 * ray / np.linalg.norm(ray, axis=0)
    idx = np.floor((velo.T - np.array(SEMANTIC_KITTI.voxel_origin)) / 0.2).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(grid_shape((51.2, 51.2, 6.4), 0.2))), axis=1)
    labels = target[tuple(idx[inside].T)]
    assert inside.sum() > 50000
    hit = np.isin(labels, np.arange(1, 20))
    print(f"lifted pixels in labelled voxels: {hit.mean():.4f}")
    assert hit.mean() > 0.97, hit.mean()


def test_dataset_sample(synthetic):
    frames = semantic_kitti_frames(synthetic, 'val', synthetic / 'depth', synthetic / 'labels')
    sample = SSCDataset(frames, SEMANTIC_KITTI)[0]
    assert sample['img'].shape == (3, 370, 1220) and sample['depth'].shape == (370, 1220)
    assert sample['projected_pix'].shape == (128 * 128 * 16, 2)
    assert sample['target'].shape == (256, 256, 32)
    assert sample['frustums_class_dists'].shape == (64, 20)
    labelled = (sample['frustum_ids'] >= 0).sum()
    assert labelled == sample['frustums_class_dists'].sum() > 0


def downsample_reference(label, ds):
    """MonoScene's _downsample_label, voxel by voxel."""
    out = np.zeros(tuple(s // ds for s in label.shape), np.uint8)
    for x, y, z in np.ndindex(out.shape):
        b = label[x * ds:(x + 1) * ds, y * ds:(y + 1) * ds, z * ds:(z + 1) * ds].ravel()
        zeros, invalid = (b == 0).sum(), (b == 255).sum()
        if zeros + invalid > 0.95 * ds ** 3:
            out[x, y, z] = 0 if zeros > invalid else 255
        else:
            out[x, y, z] = np.argmax(np.bincount(b[(b > 0) & (b < 255)]))
    return out


def test_majority_downsampling_matches_monoscene():
    rng = np.random.default_rng(0)
    label = rng.choice([0, 0, 0, 255, 3, 7, 12], size=(32, 32, 16)).astype(np.uint8)
    label[:8, :8] = 0
    label[8:16, :8, :8] = 255
    for factor in (2, 8):
        np.testing.assert_array_equal(downsample_majority(label, factor), downsample_reference(label, factor))


def test_raw_voxels_follow_the_official_rule(tmp_path):
    """Raw 0 is empty; outlier (1), other-structure (52), other-object (99) — learning-map 0 — are
    ignored (255), as in the official evaluator; invalid voxels are ignored whatever their id."""
    raw = np.zeros(256 * 256 * 32, np.uint16)
    raw[:7] = [0, 1, 52, 99, 10, 40, 252]
    raw.tofile(tmp_path / 'f.label')
    invalid = np.zeros(raw.size, bool)
    invalid[4] = invalid[7] = True
    np.packbits(invalid).tofile(tmp_path / 'f.invalid')
    labels = read_raw_voxels(tmp_path / 'f').reshape(-1)
    assert labels[:8].tolist() == [0, 255, 255, 255, 255, 9, 1, 255]
    assert labels[8:].max() == 0


def test_label_errors(tmp_path):
    labels = np.zeros((256, 256, 32), np.uint8)
    write_voxels(tmp_path / 'ok', labels, np.zeros_like(labels, bool))
    assert read_raw_voxels(tmp_path / 'ok').shape == (256, 256, 32)
    raw = np.zeros(256 * 256 * 32, np.uint16)
    raw[5] = 1234
    raw.tofile(tmp_path / 'bad.label')
    (tmp_path / 'ok.invalid').rename(tmp_path / 'bad.invalid')
    with pytest.raises(LabelError, match=r'bad.label: raw label ids \[1234\] are not in the learning map'):
        read_raw_voxels(tmp_path / 'bad')
    raw[:100].tofile(tmp_path / 'bad.label')
    with pytest.raises(LabelError, match='100 voxels, expected 2097152'):
        read_raw_voxels(tmp_path / 'bad')
    with pytest.raises(LabelError, match='ok.invalid: missing'):
        read_raw_voxels(tmp_path / 'ok')
    np.save(tmp_path / 't.npy', np.full((4, 4, 2), 21, np.uint8))
    with pytest.raises(LabelError, match=r'values \[21\] outside 0..19 and 255'):
        read_target(tmp_path / 't.npy', (4, 4, 2), 20)


def test_reader_errors_name_the_path(synthetic, tmp_path):
    with pytest.raises(FileNotFoundError, match=r'sequences/03: sequence 03 not found[\s\S]*image_2'):
        semantic_kitti_frames(synthetic, None, synthetic / 'depth', sequences=['03'])
    with pytest.raises(FileNotFoundError, match=r'elsewhere/sequences/08/000000.npy: missing'):
        semantic_kitti_frames(synthetic, 'val', tmp_path / 'elsewhere', synthetic / 'labels')
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        semantic_kitti_frames(synthetic, 'validation', synthetic / 'depth')
    with pytest.raises(ValueError, match='has no frames'):
        SSCDataset([], SEMANTIC_KITTI)


def test_prepare_labels_keeps_existing_outputs_and_reports_bad_files(synthetic, tmp_path):
    out = run_tool('prepare_labels', '--data-root', synthetic, '--label-root', synthetic / 'labels')
    assert '0 frames written, 4 kept' in out.stdout
    bad_root = tmp_path / 'bad'
    seq = bad_root / 'dataset' / 'sequences' / '00' / 'voxels'
    seq.mkdir(parents=True)
    np.full(256 * 256 * 32, 999, np.uint16).tofile(seq / '000000.label')
    np.zeros(256 * 256 * 4, np.uint8).tofile(seq / '000000.invalid')
    out = run_tool('prepare_labels', '--data-root', bad_root, '--label-root', tmp_path / 'labels',
                   check=False)
    assert out.returncode != 0 and '[999] are not in the learning map' in out.stderr
    assert 'Traceback' not in out.stderr and not (tmp_path / 'labels' / '00' / '000000_1_1.npy').exists()


def test_kitti_360_layout(tmp_path):
    """SSCBench-KITTI-360's folders, read with the kitti_360 preset (376x1408 images)."""
    from ssc_core.data.kitti_360 import kitti_360_frames
    from ssc_core.data.synthetic import write_sequence
    from ssc_core.presets import KITTI_360

    src = tmp_path / 'src'
    write_sequence(src, '00', 1, image_size=(1408, 376), label_every=1)
    drive = '2013_05_28_drive_0006_sync'
    root, depth, labels = tmp_path / 'kitti360', tmp_path / 'depth', tmp_path / 'labels'
    images = root / 'data_2d_raw' / drive / 'image_00' / 'data_rect'
    voxels = root / 'data_2d_raw' / drive / 'voxels'
    for d in (images, voxels, depth / drive, labels / drive):
        d.mkdir(parents=True)
    seq = src / 'dataset' / 'sequences' / '00'
    (seq / 'image_2' / '000000.png').rename(images / '000000.png')
    (seq / 'voxels' / '000000.bin').rename(voxels / '000000.bin')
    (src / 'depth' / 'sequences' / '00' / '000000.npy').rename(depth / drive / '000000.npy')
    target = read_raw_voxels(seq / 'voxels' / '000000')
    target[target >= 19] = 18  # the 19-class table
    np.save(labels / drive / '000000_1_1.npy', target)
    frames = kitti_360_frames(root, 'val', depth, labels)
    assert [(f.sequence, f.frame_id) for f in frames] == [(drive, '000000')]
    sample = SSCDataset(frames, KITTI_360)[0]
    assert sample['img'].shape == (3, 376, 1408) and sample['frustums_class_dists'].shape == (64, 19)
    np.testing.assert_allclose(sample['cam_K'].numpy(), KITTI_360.cam_K, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match='2013_05_28_drive_0009_sync: drive not found'):
        kitti_360_frames(root, 'test', depth, labels)


def test_photometric_changes_are_camera_like_and_repeatable():
    rng = np.random.default_rng(0)
    image = np.clip(np.linspace(0, 255, 96 * 128).reshape(96, 128, 1) + rng.normal(0, 20, (96, 128, 3)),
                    0, 255).astype(np.uint8)
    augment = Photometric()
    out = augment(image, seed=1)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, augment(image, seed=1))
    changes = [np.abs(augment(image, seed=s).astype(int) - image).mean() for s in range(20)]
    assert min(changes) > 0 and max(changes) < 0.15 * 255 + 20, changes
    assert len({round(c, 3) for c in changes}) == 20
    jpeg_only = Photometric(brightness=0, contrast=0, noise=0, jpeg_quality=(10, 10), jpeg_probability=1)
    squeezed = jpeg_only(image, seed=0)
    assert 0 < np.abs(squeezed.astype(int) - image).mean() < 20
    off = Photometric(brightness=0, contrast=0, noise=0, jpeg_probability=0)
    np.testing.assert_array_equal(off(image, seed=3), image)


@pytest.mark.parametrize('field, value', [('noise', -1.0), ('brightness', 2), ('jpeg_probability', True),
                                          ('jpeg_quality', (90, 40)), ('jpeg_quality', (0, 50))])
def test_photometric_rejects_bad_settings(field, value):
    with pytest.raises(ValueError, match=f'photometric.{field}: expected'):
        Photometric(**{field: value})


def test_training_samples_get_photometric_changes_from_the_sampler_seed(synthetic):
    from ssc_core.training.data import EpochSampler, SSCDataModule
    module = SSCDataModule('semantic_kitti', 'small', synthetic, synthetic / 'depth', synthetic / 'labels',
                           num_workers=0, splits={'train': ['00'], 'val': ['08']},
                           photometric={'noise': 8.0, 'jpeg_quality': [30, 60]})
    module.setup('fit')
    train, val = module.datasets['train'], module.datasets['val']
    keys = list(EpochSampler(len(train), seed=3, flip=True, epoch=2))
    assert keys == list(EpochSampler(len(train), seed=3, flip=True, epoch=2))
    assert len({seed for _, _, seed in keys}) == len(keys)
    index, flip, seed = keys[0]
    first, again = train[index, flip, seed]['img'], train[index, flip, seed]['img']
    assert torch.equal(first, again)
    assert not torch.equal(first, train[index, flip, seed + 1]['img'])
    plain = SSCDataset(train.frames, train.preset)[index, flip, seed]['img']
    assert not torch.equal(first, plain) and (first - plain).abs().mean() < 0.5
    assert val.photometric is None
    with pytest.raises(ValueError, match='photometric'):
        SSCDataModule('semantic_kitti', 'small', synthetic, synthetic, synthetic, photometric={'blur': 1})
