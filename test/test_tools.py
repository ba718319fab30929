"""Command-line tools, run as a user runs them."""
import json

import numpy as np
import torch
from cli import run_tool
from PIL import Image

from ssc_core.checkpoint import load_model
from ssc_core.predictor import Predictor
from ssc_core.tools.bench import format_table, measure, plan

from small_model import SMALL_PRESET, small_frame


def test_convert_authors_checkpoint(reference_dir, fill, tmp_path):
    state = fill.fill_state_dict(str(reference_dir / 'MANIFEST_kitti_360.tsv'))
    src = tmp_path / 'kitti_360_e26.ckpt'
    torch.save({'state_dict': {'model.' + k: torch.from_numpy(v) for k, v in state.items()}}, src)
    out = run_tool('convert', src, tmp_path / 'k360.safetensors')
    assert 'preset kitti_360, 59,309,915 parameters' in out.stdout
    model, preset = load_model(tmp_path / 'k360.safetensors')
    assert preset.name == 'kitti_360'
    key = 'decoder.scene_pos.proj.weight'
    np.testing.assert_array_equal(model.state_dict()[key].numpy(), state[key])


def test_convert_reports_bad_input(tmp_path):
    bad = tmp_path / 'broken.ckpt'
    bad.write_bytes(b'PK\x03\x04 not really a zip')
    out = run_tool('convert', bad, tmp_path / 'x.safetensors', check=False)
    assert out.returncode != 0
    assert 'broken.ckpt' in out.stderr and 'Traceback' not in out.stderr
    assert not (tmp_path / 'x.safetensors').exists()


def test_demo_with_the_builtin_model(tmp_path):
    out = run_tool('demo', '--out', tmp_path, '--runs', 1)
    labels = np.load(tmp_path / 'labels.npy')
    assert labels.shape == (128, 128, 16) and labels.dtype == np.uint8
    picture = Image.open(tmp_path / 'prediction.png')
    assert picture.width > 1200 and picture.height > 500
    assert 'p50 s' in out.stdout
    # The built-in model has learned the synthetic world: far above predicting all-empty (IoU 0).
    assert 'this frame (uint8 image, as a camera delivers it)' in out.stdout
    iou = float(out.stdout.split('against its ground truth:  IoU ')[1].split()[0])
    miou = float(out.stdout.split('mIoU ')[1].split()[0])
    print(f'built-in model on the demo frame: IoU {iou:.1f}, mIoU {miou:.1f}')
    assert iou > 30 and miou > 10
    changed = float(out.stdout.split('±1 LSB pixel noise changes ')[1].split()[0])
    assert 0 <= changed < 100 and '(mean of 2 draws)' in out.stdout


def test_benchmark_figures_on_small_model():
    model = SMALL_PRESET.model.build()
    predictor = Predictor(model, SMALL_PRESET)
    image, depth, K, pose = small_frame(0)
    frame = type('Frame', (), dict(image=image, depth=depth, K=K, cam_from_grid=pose))
    figures = measure(predictor, frame, runs=3, warmup=1)
    assert figures['runs'] == 3 and 0 < figures['p50_s'] <= figures['p95_s']
    assert figures['first_s'] > 0 and figures['peak_host_mib'] > 100 and figures['peak_gpu_mib'] is None
    row = {'label': 'torch', 'device': 'cpu', 'precision': 'fp32', **figures, 'agreement': 1.0}
    table = format_table('small_test', [row], {'cpu': 'test cpu'})
    assert 'p50 s' in table and '1.00x' in table
    assert 'authors\' implementation' not in table  # their figure is for another network
    assert 'authors\' implementation' in format_table('semantic_kitti', [row], {'cpu': 'test cpu'})


def test_benchmark_plans_the_gpu_rows():
    rows = plan(['cuda'], ['fp16'], 'model.onnx', ['default', 'reduce-overhead'])
    assert [(r.label, r.device, r.precision) for r in rows] == [
        ("torch (authors' layers)", 'cuda', 'fp32'), ('torch', 'cuda', 'fp16'),
        ('torch_cudagraph', 'cuda', 'fp16'), ('torch_compile', 'cuda', 'fp16'),
        ('torch_compile (reduce-overhead)', 'cuda', 'fp16'), ('onnxruntime', 'cuda', 'fp32'),
        ('onnxruntime', 'cuda', 'fp16')]
    assert [r.label for r in plan(['cpu'], None, None)] == ["torch (authors' layers)", 'torch']


def test_benchmark_tool_rows_against_the_authors_layers(tmp_path):
    out = run_tool('bench', '--preset', 'small', '--device', 'cpu', '--runs', '2',
                   '--json', str(tmp_path / 'rows.json'))
    saved = json.loads((tmp_path / 'rows.json').read_text())
    assert [r['label'] for r in saved['rows']] == ["torch (authors' layers)", 'torch']
    assert saved['rows'][1]['agreement'] >= 0.9999 and saved['preset'] == 'small'
    lines = out.stdout.splitlines()
    base = next(line for line in lines if line.startswith("torch (authors' layers)"))
    fast = next(line for line in lines if line.startswith('torch ') and 'authors' not in line)
    assert base.split()[-2] == '1.00x' and base.split()[-1] == '100.0000%'
    speed_up, agreement = float(fast.split()[-2][:-1]), float(fast.split()[-1][:-1])
    print(f'small preset, optimized eager vs authors\' layers: {speed_up:.2f}x, {agreement}% agree')
    base_p50, fast_p50 = float(base.split()[6]), float(fast.split()[4])  # printed to 1 ms
    lowest = (base_p50 - 5e-4) / (fast_p50 + 5e-4) - 0.005  # the p50 ratio, within the rounding
    highest = (base_p50 + 5e-4) / (fast_p50 - 5e-4) + 0.005
    assert lowest <= speed_up <= highest, (speed_up, base_p50, fast_p50)
    assert agreement >= 99.99
