"""Training, resuming after a kill, evaluation in one and two processes, test and render tools.

Small preset (320x96 images, 0.4 m voxels) on a tiny synthetic dataset, a few steps each.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ssc_core.checkpoint import load_model, read_state_dict, save_checkpoint
from ssc_core.presets import SEMANTIC_KITTI

ENV = {**os.environ, 'PYTHONUNBUFFERED': '1'}


def tool(name, *args):
    return [sys.executable, '-m', f'ssc_core.tools.{name}', *map(str, args)]


def run(cmd, check=True, timeout=600):
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and out.returncode:
        raise AssertionError(f'{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}')
    return out


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('small_synthetic')
    run(tool('make_synthetic', root, '--sequences', '00', '08', '--frames', 4, '--image-size', 320, 96,
             '--label-every', 1))
    run(tool('prepare_labels', '--data-root', root, '--label-root', root / 'labels'))
    return root


def train_cmd(data, out, epochs, *overrides):
    return tool('train', 'preset=small', 'data=synthetic', f'data.data_root={data}', f'output_dir={out}',
                f'trainer.max_epochs={epochs}', 'trainer.limit_train_batches=2',
                'trainer.limit_val_batches=2', 'trainer.log_every_n_steps=1', 'module.lr=1e-3', *overrides)


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
    """A run killed (SIGKILL) after its first checkpoint, then resumed to the end."""
    out = tmp_path_factory.mktemp('run')
    first = subprocess.Popen(train_cmd(data, out, 3, 'save_top_k=-1'), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=ENV, start_new_session=True)
    checkpoint = out / 'checkpoints' / 'last.ckpt'
    deadline = time.time() + 300
    while not checkpoint.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()[-2000:]
    killed_at = read_epoch(out / 'checkpoints' / 'last.ckpt')
    resumed = run(train_cmd(data, out, 3, 'save_top_k=-1'))
    return out, killed_at, resumed


def read_epoch(path):
    import zipfile
    assert zipfile.ZipFile(path).testzip() is None  # complete, not a torn write
    from ssc_core.torch_archive import load_archive
    state = load_archive(path).obj
    return state['epoch'], state['global_step']


def test_resume_after_kill_continues_from_saved_epoch(trained):
    out, (epoch, step), resumed = trained
    assert epoch < 2 and step == 2 * (epoch + 1)
    assert 'resuming from' in resumed.stdout + resumed.stderr
    final_epoch, final_step = read_epoch(out / 'checkpoints' / 'last.ckpt')
    assert (final_epoch, final_step) == (2, 6)
    assert {p.name for p in (out / 'checkpoints').glob('*.ckpt')} >= {
        'epoch=0.ckpt', 'epoch=1.ckpt', 'epoch=2.ckpt', 'last.ckpt', 'best.ckpt'}
    assert (out / 'csv' / 'metrics.csv').read_text().count('val/mIoU') == 1
    assert list((out / 'tensorboard').glob('events.*'))
    assert 'IoU' in resumed.stdout and 'traffic-sign' in resumed.stdout  # the per-class table


def step_losses(out):
    """{step: train/loss} from the run's CSV log (the last value of a step logged twice)."""
    import csv
    with open(out / 'csv' / 'metrics.csv') as f:
        return {int(r['step']): float(r['train/loss']) for r in csv.DictReader(f) if r.get('train/loss')}


def test_resumed_run_repeats_the_uninterrupted_losses(data, tmp_path):
    """Data order, flips and dropout continue exactly: one epoch, then resumed to two, logs the
    second epoch's step losses of a run of two epochs (four frames, each epoch a new order)."""
    overrides = ('trainer.limit_train_batches=4', 'trainer.limit_val_batches=1')
    whole = tmp_path / 'whole'
    run(train_cmd(data, whole, 2, *overrides))
    split = tmp_path / 'split'
    run(train_cmd(data, split, 1, *overrides))
    resumed = run(train_cmd(data, split, 2, *overrides))
    assert 'resuming from' in resumed.stdout + resumed.stderr
    expected, got = step_losses(whole), step_losses(split)  # the resumed run's log starts anew
    assert sorted(expected) == list(range(8)) and sorted(got) == [4, 5, 6, 7]
    for step in got:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), step
    assert {p.name for p in (whole / 'checkpoints').glob('*.ckpt')} == {'best.ckpt', 'last.ckpt'}


def test_bad_config_values_end_in_one_line(data, tmp_path):
    cases = [(('module.lr=abc',), "module.lr: expected a number, got 'abc'"),
             (('data.batch_size=1.5',), 'data.batch_size: expected an integer, got 1.5'),
             (('save_top_k=-2',), 'save_top_k: expected -1')]
    commands = [([*train_cmd(data, tmp_path / 'run', 1), *extra], message) for extra, message in cases]
    commands.append((tool('train', 'preset=small', f'output_dir={tmp_path / "run"}'),
                     'data.data_root: required, not set (add data.data_root=...)'))
    for command, message in commands:
        out = run(command, check=False)
        assert out.returncode != 0 and message in out.stderr, (command, out.stderr[-2000:])
        assert 'Traceback' not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_training_changes_the_weights_and_loads_as_checkpoint(trained):
    out, _, _ = trained
    model, preset = load_model(out / 'checkpoints' / 'last.ckpt')
    assert preset.name == 'small'
    torch.manual_seed(0)
    fresh = preset.model.build()
    assert not torch.equal(model.state_dict()['decoder.cls_head.2.weight'],
                           fresh.state_dict()['decoder.cls_head.2.weight'])


def evaluate(data, ckpt, out_json, devices):
    run(tool('evaluate', '--checkpoint', ckpt, '--data-root', data, '--depth-root', data / 'depth',
             '--label-root', data / 'labels', '--sequences', '08', '--devices', devices,
             '--num-workers', 0, '--output', out_json))
    return json.loads(out_json.read_text())


def test_evaluate_two_processes_equals_one(trained, data, tmp_path):
    out, _, _ = trained
    ckpt = out / 'checkpoints' / 'last.ckpt'
    one = evaluate(data, ckpt, tmp_path / 'one.json', 1)
    two = evaluate(data, ckpt, tmp_path / 'two.json', 2)
    assert one['frames'] == 4 and one['sequences'] == ['08']
    for key in ('IoU', 'mIoU', 'Precision', 'Recall'):
        assert one[key] == pytest.approx(two[key], abs=1e-9), key
    assert one['iou_per_class'] == pytest.approx(two['iou_per_class'])


def test_ddp_training_runs_two_processes(data, tmp_path):
    out = run([*train_cmd(data, tmp_path, 1), 'trainer.accelerator=cpu', 'trainer.devices=2',
               'trainer.strategy=ddp'])
    assert (tmp_path / 'checkpoints' / 'last.ckpt').is_file()
    assert 'GLOBAL_RANK: 1' in out.stdout + out.stderr or 'world_size=2' in out.stdout + out.stderr \
        or 'distributed_backend=gloo' in out.stdout + out.stderr


def test_infer_and_render(trained, data, tmp_path):
    out, _, _ = trained
    run(tool('infer', '--checkpoint', out / 'checkpoints' / 'last.ckpt', '--data-root', data,
             '--depth-root', data / 'depth', '--sequences', '08', '--output', tmp_path / 'pred',
             '--num-workers', 0))
    prediction = np.load(tmp_path / 'pred' / '08' / '000002.npy')
    assert prediction.shape == (128, 128, 16) and prediction.dtype == np.uint8
    png = tmp_path / 'frame.png'
    seq = data / 'dataset' / 'sequences' / '08'
    run(tool('render', '--prediction', tmp_path / 'pred' / '08' / '000002.npy', '--preset', 'small',
             '--target', data / 'labels' / '08' / '000002_1_1.npy', '--image', seq / 'image_2' / '000002.png',
             '--out', png))
    picture = np.asarray(Image.open(png).convert('RGB'))
    assert picture.shape[1] >= 1280
    colours = {tuple(c) for c in picture.reshape(-1, 3)[::7]}
    assert (255, 0, 255) in colours or (191, 0, 191) in colours or len(colours) > 50


def test_submission_files(tmp_path):
    root = tmp_path / 'kitti'
    run(tool('make_synthetic', root, '--sequences', '11', '--frames', 1, '--label-every', 100))
    torch.manual_seed(0)
    ckpt = save_checkpoint(SEMANTIC_KITTI.model.build(), SEMANTIC_KITTI, tmp_path / 'sk.safetensors')
    run(tool('submit', '--checkpoint', ckpt, '--data-root', root, '--depth-root', root / 'depth',
             '--sequences', '11', '--output', tmp_path / 'submission', '--num-workers', 0))
    label = tmp_path / 'submission' / 'sequences' / '11' / 'predictions' / '000000.label'
    raw = np.fromfile(label, np.uint16)
    assert raw.size == 256 * 256 * 32
    assert set(np.unique(raw)) <= {0, 10, 11, 15, 18, 20, 30, 31, 32, 40, 44, 48, 49, 50, 51, 70, 71, 72,
                                   80, 81}
    read_state_dict(ckpt)


def test_tools_report_bad_input_without_traceback(data, tmp_path):
    out = run(train_cmd(tmp_path / 'nowhere', tmp_path / 'run', 1), check=False)
    assert out.returncode != 0 and 'sequence 00 not found' in out.stderr and 'Traceback' not in out.stderr
    out = run(tool('evaluate', '--checkpoint', tmp_path / 'missing.ckpt', '--data-root', data,
                   '--depth-root', data / 'depth', '--label-root', data / 'labels'), check=False)
    assert out.returncode != 0 and 'no such checkpoint file' in out.stderr and 'Traceback' not in out.stderr
    out = run(tool('render', '--prediction', tmp_path / 'nothing.npy', '--out', tmp_path / 'x.png'),
              check=False)
    assert out.returncode != 0 and 'nothing.npy' in out.stderr and not (tmp_path / 'x.png').exists()


def test_train_starts_from_maskdino_encoder_weights(data, tmp_path):
    """encoder_weights=FILE (MMDetection layout, as the authors load it) sets the trunk; lr 0
    keeps the pixel decoder (GroupNorm only, no running statistics) at the file's values."""
    from ssc_core.presets import SMALL

    torch.manual_seed(7)
    trunk = SMALL.model.build().encoder.model.state_dict()
    weights = tmp_path / 'maskdino_r50_50e_300q_panoptic_pq53.0.pth'
    torch.save({**trunk, 'panoptic_head.predictor.query_feat.weight': torch.zeros(300, 256)}, weights)
    out = tmp_path / 'run'
    result = run(tool('train', 'preset=small', 'data=synthetic', f'data.data_root={data}',
                      f'output_dir={out}', 'trainer.max_epochs=1', 'trainer.limit_train_batches=1',
                      'trainer.limit_val_batches=1', 'module.lr=0', f'encoder_weights={weights}'))
    assert f'encoder_weights: {weights} (mmdet layout): loaded {len(trunk)} backbone' in result.stdout
    assert 'skipped 1 tensors that are not part of this network (panoptic_head.predictor 1)' \
        in result.stdout
    state, _ = read_state_dict(out / 'checkpoints' / 'last.ckpt')
    decoder = [k for k in trunk if k.startswith('panoptic_head.pixel_decoder.')]
    assert decoder
    for key in decoder:
        assert torch.equal(state[f'model.encoder.model.{key}'], trunk[key]), key
    bad = tmp_path / 'other.pth'
    torch.save({'fc.weight': torch.zeros(2, 2)}, bad)
    refused = run(tool('train', 'preset=small', 'data=synthetic', f'data.data_root={data}',
                       f'output_dir={tmp_path / "bad"}', f'encoder_weights={bad}'), check=False)
    assert refused.returncode != 0 and 'Traceback' not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f'train: {bad}: matches no MaskDINO layout (expected detectron2 keys backbone.stem.* / '
        'sem_seg_head.pixel_decoder.* or MMDetection keys backbone.conv1.* / '
        'panoptic_head.pixel_decoder.*)']
