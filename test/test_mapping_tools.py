"""The mapping commands from a fresh clone: `evaluate --fuse` (the temporal protocol), `map`
(a sequence's map as npz and PLY) and `render --map`, on synthetic streets in the SemanticKITTI
layout with the built-in model."""
import json
import subprocess

import numpy as np
import pytest
from cli import run_tool
from PIL import Image

from ssc_core.checkpoint import BUILTIN_CHECKPOINT
from ssc_core.mapping import load_map
from ssc_core.presets import SMALL

SCORES = {'IoU', 'Precision', 'Recall', 'mIoU', 'flicker', 'iou_per_class'}


def inputs(root, labels=False):
    """The dataset arguments of the built-in model on ``root`` (sequence 08)."""
    return (['--checkpoint', BUILTIN_CHECKPOINT, '--data-root', root, '--depth-root', root / 'depth']
            + (['--label-root', root / 'labels', '--sequences', '08', '--num-workers', 0] if labels else []))


@pytest.fixture(scope='module')
def street(tmp_path_factory):
    root = tmp_path_factory.mktemp('street')
    run_tool('make_synthetic', root, '--sequences', '08', '--frames', 8, '--image-size', 320, 96,
         '--label-every', 1, '--seed', 10)
    run_tool('prepare_labels', '--data-root', root, '--label-root', root / 'labels')
    return root


def evaluate_fused(street, tmp_path, k, *extra):
    out = tmp_path / f'fuse{k}.json'
    run_tool('evaluate', *inputs(street, labels=True), '--fuse', k, '--output', out, *extra)
    return json.loads(out.read_text())


def test_fuse_scores_single_and_fused_side_by_side(street, tmp_path):
    none = evaluate_fused(street, tmp_path, 0)
    assert set(none['single']) == set(none['fused']) == SCORES
    assert none['fused'] == none['single'] and none['frames'] == 8 and none['fuse'] == 0
    assert none['single']['IoU'] > 0.3 and 0 <= none['single']['flicker'] < 0.2
    plain = run_tool('evaluate', *inputs(street, labels=True), '--output', tmp_path / 'plain.json')
    assert 'IoU' in plain.stdout
    single = json.loads((tmp_path / 'plain.json').read_text())
    for key in ('IoU', 'mIoU', 'Precision', 'Recall'):   # the same frames, the same metrics code
        assert none['single'][key] == pytest.approx(single[key], abs=1e-9)
    three = evaluate_fused(street, tmp_path, 3)
    assert three['single'] == none['single']
    assert three['fused'] != three['single']
    assert three['fused']['flicker'] < three['single']['flicker']


def test_fuse_needs_poses_that_make_sense(street, tmp_path):
    broken = tmp_path / 'broken'
    subprocess.run(['cp', '-r', str(street), str(broken)], check=True)
    poses = broken / 'dataset' / 'sequences' / '08' / 'poses.txt'
    lines = poses.read_text().splitlines()
    poses.write_text('\n'.join(lines[:5]) + '\n')
    out = run_tool('evaluate', *inputs(broken, labels=True), '--fuse', 2, check=False)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f'evaluate: {poses}: 5 poses for a sequence of 8 images (line 6 missing)')


def test_map_of_a_sequence_as_npz_ply_and_picture(street, tmp_path):
    npz, ply, png = tmp_path / 'map.npz', tmp_path / 'map.ply', tmp_path / 'map.png'
    out = run_tool('map', *inputs(street), '--sequence', '08', '--frames', '0:6', '--out', npz, ply)
    assert f'wrote {npz}' in out.stdout and '6 frames' in out.stdout
    semantic_map = load_map(npz, voxel_size=SMALL.model.voxel_size, class_names=SMALL.class_names)
    assert semantic_map.frames == 6
    voxels, labels = semantic_map.voxels()
    centres = semantic_map.centres(voxels)
    # the camera drove 5 m along the grid's x: the map reaches further than one grid (51.2 m)
    assert centres[:, 0].max() > 51.2 + 4
    header, body = ply.read_bytes().split(b'end_header\n')
    count = int(header.split(b'element vertex ')[1].split(b'\n')[0])
    assert count == int((labels != 0).sum()) and len(body) == count * 16
    run_tool('render', '--map', npz, '--out', png)
    picture = np.asarray(Image.open(png))
    assert picture.shape[0] > 200 and len(np.unique(picture.reshape(-1, 3), axis=0)) > 8
    bad = run_tool('map', *inputs(street), '--sequence', '08', '--frames', '9:12', '--out', npz, check=False)
    assert bad.returncode == 1 and 'no images of the 8' in bad.stderr


def test_bench_map_prints_times_and_memory():
    out = run_tool('bench_map', '--preset', 'small', '--frames', 60, '--radius', 30, '--device', 'cpu',
                   '--kernels', 'native,torch')
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith('cpu ')]
    assert [r[1:3] for r in rows] == [['native', '30'], ['native', '-'], ['torch', '30'], ['torch', '-']]
    memory = [float(r[-1]) for r in rows]   # MiB after 50 frames: bounded, unbounded; the same map
    assert 0 < memory[0] < memory[1] and memory[:2] == memory[2:]
    assert all(float(v) > 0 for r in rows for v in r[4:8])
