"""Benchmark the full-size network: latency p50/p95, FPS and peak memory per device/precision.

    python -m ssc_core.tools.bench --preset semantic_kitti --runs 3 --warmup 1
"""
import argparse
import platform
import resource
import time

import numpy as np
import torch

from ..checkpoint import load_model
from ..data.sample import sample_frame
from ..predictor import PRECISIONS, Predictor
from ..presets import PRESETS, get_preset

# Forward of the authors' implementation on a 2-core CPU with 2 threads (reference README).
AUTHORS_CPU_FORWARD_S = (24.8, 28.6)


def hardware(device: torch.device) -> str:
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})'
    model = platform.processor() or 'cpu'
    try:
        with open('/proc/cpuinfo') as f:
            model = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{model}, {torch.get_num_threads()} threads'


def peak_host_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(predictor: Predictor, frame, runs: int, warmup: int) -> dict:
    """Time the forward (inputs prepared once) and report latency and memory."""
    inputs = predictor.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])
    cuda = predictor.device.type == 'cuda'
    if cuda:
        torch.cuda.reset_peak_memory_stats(predictor.device)
    times = []
    for i in range(warmup + runs):
        if cuda:
            torch.cuda.synchronize(predictor.device)
        start = time.perf_counter()
        predictor.labels(inputs)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
    times = np.array(times)
    return {'p50_s': float(np.percentile(times, 50)), 'p95_s': float(np.percentile(times, 95)),
            'fps': float(1 / times.mean()), 'runs': runs,
            'peak_host_mib': peak_host_mib(),
            'peak_gpu_mib': torch.cuda.max_memory_allocated(predictor.device) / 2**20 if cuda else None}


def format_table(preset_name: str, rows: list[dict], hw: dict) -> str:
    """Rows of {backend, device, precision, figures from :func:`measure`, agreement} → text."""
    lines = [f'preset {preset_name}; torch {torch.__version__}']
    lines += [f'  {dev}: {name}' for dev, name in hw.items()]
    base = next((r for r in rows if (r['backend'], r['device'], r['precision']) == ('torch', 'cpu', 'fp32')),
                None)
    lines.append(f'{"backend":<12} {"device":<6} {"precision":<9} {"p50 s":>8} {"p95 s":>8} {"FPS":>7} '
                 f'{"peak host MiB":>14} {"peak GPU MiB":>13} {"speed-up":>9} {"argmax agree":>13}')
    for r in rows:
        gpu = f'{r["peak_gpu_mib"]:.0f}' if r['peak_gpu_mib'] is not None else '-'
        speed = f'{base["p50_s"] / r["p50_s"]:.2f}x' if base else '-'
        agree = f'{r["agreement"]:.4%}' if r.get('agreement') is not None else '-'
        lines.append(f'{r["backend"]:<12} {r["device"]:<6} {r["precision"]:<9} {r["p50_s"]:>8.3f} '
                     f'{r["p95_s"]:>8.3f} {r["fps"]:>7.3f} {r["peak_host_mib"]:>14.0f} {gpu:>13} '
                     f'{speed:>9} {agree:>13}')
    if base:
        lines.append("speed-up: against torch cpu fp32 (eager, the authors' way) of this run; "
                     'agreement: argmax against it on the sample frame')
    if base and preset_name == 'semantic_kitti':  # the authors' figure is for this network
        lo, hi = AUTHORS_CPU_FORWARD_S
        lines.append(f"authors' implementation, CPU fp32, 2 cores / 2 threads (reference data): "
                     f'{lo}-{hi} s; ours p50 {base["p50_s"]:.2f} s '
                     f'({lo / base["p50_s"]:.2f}x-{hi / base["p50_s"]:.2f}x)')
    return '\n'.join(lines)


def run(preset_name: str, checkpoint=None, devices=('cpu',), precisions=None, runs=3,
        warmup=1, onnx=None) -> str:
    """Measure torch on each device × precision (None: fp32 on CPU, fp32/fp16/bf16 on CUDA) and,
    given an exported model, onnxruntime on each device → table."""
    if checkpoint:
        model, preset = load_model(checkpoint, preset_name)
    else:
        preset = get_preset(preset_name)
        torch.manual_seed(0)
        model = preset.model.build()
    frame = sample_frame(preset)
    rows, hw, baseline = [], {}, None

    def add(backend, device, precision, predictor):
        nonlocal baseline
        figures = measure(predictor, frame, runs, warmup)
        inputs = predictor.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])
        labels = predictor.labels(inputs)
        if baseline is None and (backend, device, precision) == ('torch', 'cpu', 'fp32'):
            baseline = labels
        agreement = float((labels == baseline).mean()) if baseline is not None else None
        rows.append({'backend': backend, 'device': device, 'precision': precision, **figures,
                     'agreement': agreement})
        print(f'  measured {backend} {device} {precision}', flush=True)

    for device in devices:
        device = torch.device(device)
        if device.type == 'cuda' and not torch.cuda.is_available():
            print('CUDA not available: skipping cuda rows')
            continue
        hw[str(device)] = hardware(device)
        chosen = precisions or (('fp32', 'fp16', 'bf16') if device.type == 'cuda' else ('fp32',))
        for precision in chosen:
            if device.type == 'cpu' and precision == 'fp16':
                print('fp16 autocast is CUDA-only: skipping cpu fp16')
                continue
            add('torch', str(device), precision, Predictor(model, preset, device, precision))
        model.to('cpu')
        if onnx:
            try:
                runtime = Predictor.from_checkpoint(onnx, preset, str(device), backend='onnxruntime')
            except RuntimeError as e:
                print(f'onnxruntime on {device}: {e}')
                continue
            add('onnxruntime', str(device), 'fp32', runtime)
    return format_table(preset.name, rows, hw)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', default='semantic_kitti', choices=sorted(PRESETS))
    parser.add_argument('--checkpoint', help='weights to time (default: untrained weights; timing '
                        'does not depend on the values)')
    parser.add_argument('--device', default='cpu,cuda', help='comma-separated: cpu, cuda')
    parser.add_argument('--precision', default='auto',
                        help=f'comma-separated, of {list(PRECISIONS)}; auto = fp32 on CPU and '
                        'fp32,fp16,bf16 on CUDA')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--onnx', help='also time this exported model (ssc_core.tools.export) with '
                        'onnxruntime')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = None if args.precision == 'auto' else args.precision.split(',')
    for p in precisions or ():
        if p not in PRECISIONS:
            parser.error(f'--precision: unknown {p!r}; expected {list(PRECISIONS)}')
    print(run(args.preset, args.checkpoint, args.device.split(','), precisions, args.runs,
              args.warmup, args.onnx))


if __name__ == '__main__':
    main()
