"""Against the official SemanticKITTI tools (PRBonn/semantic-kitti-api, unchanged excerpt in
../shared/third_party/semantic-kitti-api): evaluate_completion.py and validate_submission.py.

Synthetic sequences in the real layout, 256x256x32 voxels: validation sequence 08 with raw ids
1/52/99 (learning-map 0, not empty), invalid voxels and unlabelled frames between the labelled
ones; test sequences 11-21 with input voxels only. Predictions come from the `submit` tool with the
built-in model, from the ground truth itself (an oracle) and from a corrupted ground truth.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ssc_core.checkpoint import BUILTIN_CHECKPOINT
from ssc_core.labels import SEMANTIC_KITTI_CLASSES, SEMANTIC_KITTI_LEARNING_MAP_INV

REPO = Path(__file__).resolve().parents[1]
API = Path(os.environ.get('SSC_SEMANTIC_KITTI_API',
                          REPO.parent / 'shared' / 'third_party' / 'semantic-kitti-api'))
# The official scripts use np.bool (absent from numpy 1.24 to 1.26, back as np.bool_ in 2.x): run
# them unchanged behind this shim.
SHIM = ('import runpy, sys; import numpy as np; np.bool = getattr(np, "bool", bool); '
        'sys.path.insert(0, "."); '
        'script = sys.argv[1]; sys.argv = sys.argv[1:]; runpy.run_path(script, run_name="__main__")')
TEST_SEQUENCES = [str(s) for s in range(11, 22)]


def run(cmd, check=True, cwd=None):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd)
    if check and out.returncode:
        raise AssertionError(f'{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}')
    return out


def tool(name, *args, check=True):
    return run([sys.executable, '-m', f'ssc_core.tools.{name}', *args], check=check)


def official(script, *args, check=True):
    if not (API / script).is_file():
        raise FileNotFoundError(f'{API / script}: official tools missing (set SSC_SEMANTIC_KITTI_API)')
    return run([sys.executable, '-c', SHIM, script, *args], check=check, cwd=API)


def add_ignored_ids_and_invalid_voxels(voxel_dir: Path, seed: int) -> None:
    """Raw 1 (outlier) in free space, 52 (other-structure) and 99 (other-object) over occupied
    voxels, and more invalid voxels than the generator's (hidden ones), as the real data has them."""
    rng = np.random.default_rng(seed)
    for label in sorted(voxel_dir.glob('*.label')):
        raw = np.fromfile(label, np.uint16)
        empty, occupied = np.flatnonzero(raw == 0), np.flatnonzero(raw != 0)
        raw[rng.choice(empty, 3000, replace=False)] = 1
        raw[rng.choice(occupied, 2000, replace=False)] = 52
        raw[rng.choice(occupied, 2000, replace=False)] = 99
        raw.tofile(label)
        invalid = np.unpackbits(np.fromfile(label.with_suffix('.invalid'), np.uint8)).reshape(256, 256, 32)
        invalid[100:160, 40:90] = 1
        np.packbits(invalid.reshape(-1)).tofile(label.with_suffix('.invalid'))


@pytest.fixture(scope='module')
def kitti(tmp_path_factory):
    root = tmp_path_factory.mktemp('official')
    tool('make_synthetic', root, '--sequences', '08', '--frames', 6, '--label-every', 5,
         '--image-size', 320, 96)
    add_ignored_ids_and_invalid_voxels(root / 'dataset' / 'sequences' / '08' / 'voxels', 0)
    tool('make_synthetic', root, '--sequences', *TEST_SEQUENCES, '--frames', 2, '--label-every', 5,
         '--image-size', 320, 96, '--no-ground-truth', '--seed', 11)
    tool('prepare_labels', '--data-root', root, '--label-root', root / 'labels', '--sequences', '08')
    return root


def invalid_fraction(label: Path) -> float:
    return float(np.unpackbits(np.fromfile(label.with_suffix('.invalid'), np.uint8)).mean())


def ground_truth(kitti):
    return sorted((kitti / 'dataset' / 'sequences' / '08' / 'voxels').glob('*.label'))


def write_predictions(root: Path, raws: dict[str, np.ndarray]) -> Path:
    for frame_id, raw in raws.items():
        path = root / 'sequences' / '08' / 'predictions' / f'{frame_id}.label'
        path.parent.mkdir(parents=True, exist_ok=True)
        raw.astype(np.uint16).tofile(path)
    return root


def both_evaluators(kitti, predictions: Path, tmp_path) -> tuple[dict, dict, str]:
    """(official scores.txt, our evaluate JSON, official stdout) for the predictions of sequence 08."""
    out_dir = tmp_path / 'official_scores'
    out_dir.mkdir(exist_ok=True)
    printed = official('evaluate_completion.py', '--dataset', kitti / 'dataset', '--predictions', predictions,
                       '--split', 'valid', '--output', out_dir).stdout
    theirs = yaml.safe_load((out_dir / 'scores.txt').read_text())
    tool('evaluate', '--predictions', predictions, '--data-root', kitti, '--label-root', kitti / 'labels',
         '--split', 'val', '--output', tmp_path / 'ours.json')
    return theirs, json.loads((tmp_path / 'ours.json').read_text()), printed


def assert_same_scores(theirs: dict, ours: dict, printed: str) -> None:
    assert ours['IoU'] == pytest.approx(theirs['iou_completion'], abs=1e-6)
    assert ours['mIoU'] == pytest.approx(theirs['iou_mean'], abs=1e-6)
    for name in SEMANTIC_KITTI_CLASSES[1:]:
        assert ours['iou_per_class'][name] == pytest.approx(theirs[f'iou_{name}'], abs=1e-6), name
    # precision and recall are only printed, rounded to 0.01 %
    precision = float(printed.split('Precision =')[1].split()[0])
    recall = float(printed.split('Recall =')[1].split()[0])
    assert ours['Precision'] * 100 == pytest.approx(precision, abs=0.005 + 1e-9)
    assert ours['Recall'] * 100 == pytest.approx(recall, abs=0.005 + 1e-9)


def test_oracle_scores_100_iou_under_both(kitti, tmp_path):
    raws = {p.stem: np.fromfile(p, np.uint16) for p in ground_truth(kitti)}
    assert all(np.isin([1, 52, 99], raw).all() for raw in raws.values())
    assert all(0.2 < invalid_fraction(p) < 0.8 for p in ground_truth(kitti))
    theirs, ours, printed = both_evaluators(kitti, write_predictions(tmp_path / 'oracle', raws), tmp_path)
    assert theirs['iou_completion'] == 1.0 and ours['IoU'] == 1.0
    present = [n for n in SEMANTIC_KITTI_CLASSES[1:] if theirs[f'iou_{n}'] > 0]
    assert len(present) >= 7 and all(ours['iou_per_class'][n] == pytest.approx(1.0) for n in present)
    assert_same_scores(theirs, ours, printed)


def test_evaluate_equals_official_on_corrupted_ground_truth(kitti, tmp_path):
    rng = np.random.default_rng(1)
    raw_ids = np.array(sorted(SEMANTIC_KITTI_LEARNING_MAP_INV.values()), np.uint16)
    raws = {}
    for path in ground_truth(kitti):
        raw = np.fromfile(path, np.uint16)
        raw[np.isin(raw, [1, 52, 99])] = 0   # a prediction holds only the 20 classes' raw ids
        flip = rng.random(raw.size) < 0.02
        raw[flip] = rng.choice(raw_ids, int(flip.sum()))
        raws[path.stem] = raw
    theirs, ours, printed = both_evaluators(kitti, write_predictions(tmp_path / 'noisy', raws), tmp_path)
    assert 0.1 < ours['IoU'] < 0.99 and ours['frames'] == 2
    assert_same_scores(theirs, ours, printed)


def test_builtin_model_submission_is_valid_and_scored_alike(kitti, tmp_path):
    """`test` on the test split predicts exactly the frames with voxel files: the official checker
    accepts the bundle; with --all-frames it refuses it. On sequence 08 the official evaluator and
    ours agree on the same submission files."""
    submission = tmp_path / 'submission'
    out = tool('submit', '--checkpoint', BUILTIN_CHECKPOINT, '--data-root', kitti,
               '--depth-root', kitti / 'depth', '--output', submission, '--zip', '--num-workers', 0)
    assert f'wrote {len(TEST_SEQUENCES)} predictions' in out.stdout
    for seq in TEST_SEQUENCES:
        predicted = [p.name for p in (submission / 'sequences' / seq / 'predictions').iterdir()]
        assert predicted == ['000000.label']
    checked = official('validate_submission.py', '--task', 'completion', tmp_path / 'submission.zip',
                       kitti / 'dataset', check=False)
    assert checked.returncode == 0 and 'Everything ready for submission' in checked.stdout, checked.stdout

    tool('submit', '--checkpoint', BUILTIN_CHECKPOINT, '--data-root', kitti, '--depth-root', kitti / 'depth',
         '--sequences', '11', '--output', submission, '--zip', '--num-workers', 0, '--all-frames')
    assert sorted(p.name for p in (submission / 'sequences' / '11' / 'predictions').iterdir()) == [
        '000000.label', '000001.label']
    refused = official('validate_submission.py', '--task', 'completion', tmp_path / 'submission.zip',
                       kitti / 'dataset', check=False)
    assert refused.returncode != 0 and 'unneeded predictions' in refused.stdout

    val = tmp_path / 'val'
    tool('submit', '--checkpoint', BUILTIN_CHECKPOINT, '--data-root', kitti, '--depth-root', kitti / 'depth',
         '--sequences', '08', '--output', val, '--num-workers', 0)
    assert sorted(p.name for p in (val / 'sequences' / '08' / 'predictions').iterdir()) == [
        '000000.label', '000005.label']
    theirs, ours, printed = both_evaluators(kitti, val, tmp_path)
    assert ours['IoU'] > 0.2   # the built-in model knows these streets
    assert_same_scores(theirs, ours, printed)



@pytest.mark.slow
def test_fused_grids_are_scored_as_the_official_evaluator_scores_them(kitti, tmp_path):
    """`evaluate --fuse` on a network with the benchmark's grid (the small network made to predict
    256x256x32 voxels of 0.2 m, random weights): its fused block equals what evaluate_completion.py
    says of the fused grids it wrote (--fused-output)."""
    import dataclasses

    import torch

    from ssc_core.checkpoint import save_checkpoint
    from ssc_core.presets import SMALL
    fine = dataclasses.replace(SMALL, name='small_fine', model=dataclasses.replace(
        SMALL.model, scene_shape=(256, 256, 32), voxel_size=0.2))
    torch.manual_seed(0)
    weights = save_checkpoint(fine.model.build(), fine, tmp_path / 'fine.safetensors')
    fused = tmp_path / 'fused'
    tool('evaluate', '--checkpoint', weights, '--data-root', kitti, '--depth-root', kitti / 'depth',
         '--label-root', kitti / 'labels', '--sequences', '08', '--num-workers', 0, '--fuse', 2,
         '--fused-output', fused, '--output', tmp_path / 'fused.json')
    ours = json.loads((tmp_path / 'fused.json').read_text())
    assert sorted(p.name for p in (fused / 'sequences' / '08' / 'predictions').iterdir()) == [
        '000000.label', '000005.label']
    out_dir = tmp_path / 'official_scores'
    out_dir.mkdir()
    printed = official('evaluate_completion.py', '--dataset', kitti / 'dataset', '--predictions', fused,
                       '--split', 'valid', '--output', out_dir).stdout
    theirs = yaml.safe_load((out_dir / 'scores.txt').read_text())
    assert_same_scores(theirs, ours['fused'], printed)
    assert ours['fused'] != ours['single']
