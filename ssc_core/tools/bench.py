"""Benchmark the full-size network: latency p50/p95, FPS and peak memory per backend/precision.

    python -m ssc_core.tools.bench --preset semantic_kitti --runs 3 --warmup 1 [--onnx model.onnx]
        [--json rows.json]

Every row runs in its own process (its own peak memory, allocator and caches). The first row
is the baseline: PyTorch eager fp32 running the layers as the authors wrote them; speed-up and
argmax agreement of every other row are against it, measured in the same run.
"""
import argparse
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..backends import CudaGraphBackend, TorchBackend
from ..backends.torch_backend import COMPILE_MODES
from ..checkpoint import load_model
from ..data.sample import sample_frame
from ..files import write_atomic
from ..predictor import PRECISIONS, Predictor
from ..presets import PRESETS, get_preset

# Forward of the authors' implementation on a 2-core CPU with 2 threads (reference README).
AUTHORS_CPU_FORWARD_S = (24.8, 28.6)


@dataclasses.dataclass(frozen=True)
class Row:
    """One configuration to time. ``optimize=False``: the authors' layers (the baseline);
    ``compile_mode``: torch.compile's mode (torch_compile rows)."""
    backend: str
    device: str
    precision: str = 'fp32'
    optimize: bool = True
    compile_mode: str = 'default'

    @property
    def label(self) -> str:
        if not self.optimize:
            return f"{self.backend} (authors' layers)"
        if self.backend == 'torch_compile' and self.compile_mode != 'default':
            return f'{self.backend} ({self.compile_mode})'
        return self.backend


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
    """Time labels from prepared inputs and report latency and memory; the first call's time
    (compilation, allocator warm-up) is reported apart."""
    inputs = predictor.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])
    cuda = predictor.device.type == 'cuda'
    if cuda:
        torch.cuda.reset_peak_memory_stats(predictor.device)
    times = []
    for _ in range(max(warmup, 1) + runs):
        if cuda:
            torch.cuda.synchronize(predictor.device)
        start = time.perf_counter()
        predictor.labels(inputs)
        times.append(time.perf_counter() - start)
    timed = np.array(times[max(warmup, 1):])
    return {'first_s': times[0], 'p50_s': float(np.percentile(timed, 50)),
            'p95_s': float(np.percentile(timed, 95)), 'fps': float(1 / timed.mean()), 'runs': runs,
            'peak_host_mib': peak_host_mib(),
            'peak_gpu_mib': torch.cuda.max_memory_allocated(predictor.device) / 2**20 if cuda else None}


def build_predictor(row: Row, preset_name: str, checkpoint=None, onnx=None) -> Predictor:
    if row.backend == 'onnxruntime':
        return Predictor.from_checkpoint(onnx, preset_name, row.device, row.precision, 'onnxruntime')
    if checkpoint:
        model, preset = load_model(checkpoint, preset_name)
    else:  # timing does not depend on the weights' values
        preset = get_preset(preset_name)
        torch.manual_seed(0)
        model = preset.model.build()
    if row.backend == 'torch_cudagraph':
        return Predictor(CudaGraphBackend(model, row.device, row.precision), preset)
    backend = TorchBackend(model, row.device, row.precision, optimize=row.optimize,
                           compile=row.backend == 'torch_compile', compile_mode=row.compile_mode)
    return Predictor(backend, preset)


def measure_row(row: Row, preset_name: str, checkpoint, onnx, runs: int, warmup: int,
                labels_path) -> dict:
    """Time one row in this process; its labels on the sample frame go to ``labels_path``."""
    predictor = build_predictor(row, preset_name, checkpoint, onnx)
    frame = sample_frame(predictor.preset)
    figures = measure(predictor, frame, runs, warmup)
    inputs = predictor.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])
    np.save(labels_path, predictor.labels(inputs))
    device = torch.device(row.device)
    return {**figures, 'describe': predictor.backend.describe(), 'hardware': hardware(device)}


def measure_in_subprocess(row: Row, preset_name: str, checkpoint, onnx, runs: int, warmup: int,
                          threads: int | None, labels_path) -> dict:
    job = {'row': dataclasses.asdict(row), 'preset': preset_name, 'checkpoint': checkpoint,
           'onnx': onnx, 'runs': runs, 'warmup': warmup, 'threads': threads,
           'labels': str(labels_path)}
    proc = subprocess.run([sys.executable, '-m', 'ssc_core.tools.bench', '--row', json.dumps(job)],
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f'{row.label} {row.device} {row.precision}: ' + ' | '.join(tail))
    return json.loads(lines[-1])


def format_table(preset_name: str, rows: list[dict], hw: dict) -> str:
    """Rows of {label, device, precision, figures from :func:`measure`, agreement}; the first
    row is the baseline → text."""
    lines = [f'preset {preset_name}; torch {torch.__version__}']
    lines += [f'  {dev}: {name}' for dev, name in hw.items()]
    base = rows[0] if rows else None
    width = max([26] + [len(r["label"]) for r in rows])
    lines.append(f'{"backend":<{width}} {"device":<6} {"precision":<9} {"first s":>8} {"p50 s":>8} '
                 f'{"p95 s":>8} {"FPS":>7} {"peak host MiB":>14} {"peak GPU MiB":>13} '
                 f'{"speed-up":>9} {"argmax agree":>13}')
    for r in rows:
        gpu = f'{r["peak_gpu_mib"]:.0f}' if r['peak_gpu_mib'] is not None else '-'
        agree = f'{r["agreement"]:.4%}' if r.get('agreement') is not None else '-'
        lines.append(f'{r["label"]:<{width}} {r["device"]:<6} {r["precision"]:<9} {r["first_s"]:>8.2f} '
                     f'{r["p50_s"]:>8.3f} {r["p95_s"]:>8.3f} {r["fps"]:>7.3f} '
                     f'{r["peak_host_mib"]:>14.0f} {gpu:>13} {base["p50_s"] / r["p50_s"]:>8.2f}x '
                     f'{agree:>13}')
    if len(rows) > 1:
        lines.append(f'speed-up (p50) and argmax agreement on the sample frame: against the first row, '
                     f'{base["label"]} {base["device"]} {base["precision"]}, of this run')
    if base and base['device'] == 'cpu' and preset_name == 'semantic_kitti':
        lo, hi = AUTHORS_CPU_FORWARD_S  # the authors' figure is for this network on a CPU
        lines.append(f"authors' implementation, CPU fp32, 2 cores / 2 threads (reference data): "
                     f'{lo}-{hi} s; baseline p50 {base["p50_s"]:.2f} s')
    return '\n'.join(lines)


def plan(devices, precisions, onnx, compile_modes=()) -> list[Row]:
    """The rows to time: the CPU (or first device's) baseline first; on CUDA also the
    CUDA-graph backend; a torch_compile row per mode in ``compile_modes``."""
    rows = [Row('torch', devices[0], 'fp32', optimize=False)]
    for device in devices:
        cuda = device.startswith('cuda')
        for precision in precisions or (('fp32', 'fp16', 'bf16') if cuda else ('fp32',)):
            rows.append(Row('torch', device, precision))
            if cuda:
                rows.append(Row('torch_cudagraph', device, precision))
            rows += [Row('torch_compile', device, precision, compile_mode=m) for m in compile_modes]
        if onnx:
            rows += [Row('onnxruntime', device, p) for p in (('fp32', 'fp16') if cuda else ('fp32',))]
    return rows


def run(preset_name: str, checkpoint=None, devices=('cpu',), precisions=None, runs=3, warmup=1,
        onnx=None, compile_modes=(), threads=None, json_path=None) -> str:
    """Time each planned row in a subprocess → table; the rows also to ``json_path`` (written
    after each row, so a run cut short keeps what it measured)."""
    if any(d.startswith('cuda') for d in devices) and not torch.cuda.is_available():
        print('CUDA not available: skipping cuda rows')
        devices = [d for d in devices if not d.startswith('cuda')] or ['cpu']
    rows, hw, baseline = [], {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for i, row in enumerate(plan(devices, precisions, onnx, compile_modes)):
            labels_path = Path(tmp) / f'{i}.npy'
            try:
                figures = measure_in_subprocess(row, preset_name, checkpoint, onnx, runs, warmup,
                                                threads, labels_path)
            except RuntimeError as e:
                if baseline is None:
                    raise
                print(f'  skipped: {e}', flush=True)
                continue
            labels = np.load(labels_path)
            baseline = labels if baseline is None else baseline
            hw.setdefault(row.device, figures['hardware'])
            rows.append({**dataclasses.asdict(row), **figures, 'label': row.label,
                         'agreement': float((labels == baseline).mean())})
            print(f'  measured {figures["describe"]}: p50 {figures["p50_s"]:.3f} s', flush=True)
            if json_path:
                write_atomic(json_path, json.dumps({'preset': preset_name, 'torch': torch.__version__,
                                                    'hardware': hw, 'rows': rows}, indent=1).encode())
    return format_table(preset_name, rows, hw)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', default='semantic_kitti', choices=sorted(PRESETS))
    parser.add_argument('--checkpoint', help='weights to time (default: untrained weights; timing '
                        'does not depend on the values)')
    parser.add_argument('--device', default='cpu,cuda', help='comma-separated: cpu, cuda, cuda:N')
    parser.add_argument('--precision', default='auto',
                        help=f'comma-separated, of {list(PRECISIONS)}; auto = fp32 on CPU and '
                        'fp32,fp16,bf16 on CUDA')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1, help='untimed first frames (at least 1)')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--compile', action='store_true',
                        help='also time torch.compile (compiling takes minutes on a CPU)')
    parser.add_argument('--compile-modes', default='default',
                        help=f'with --compile, comma-separated, of {list(COMPILE_MODES)}')
    parser.add_argument('--json', help='also write the rows to this file (after each row)')
    parser.add_argument('--onnx', help='also time this exported model (ssc_core.tools.export) with '
                        'onnxruntime')
    parser.add_argument('--row', help=argparse.SUPPRESS)  # one row, in a child process
    args = parser.parse_args(argv)
    if args.row:
        job = json.loads(args.row)
        if job['threads']:
            torch.set_num_threads(job['threads'])
        figures = measure_row(Row(**job['row']), job['preset'], job['checkpoint'], job['onnx'],
                              job['runs'], job['warmup'], job['labels'])
        print(json.dumps(figures))
        return
    precisions = None if args.precision == 'auto' else args.precision.split(',')
    for p in precisions or ():
        if p not in PRECISIONS:
            parser.error(f'--precision: unknown {p!r}; expected {list(PRECISIONS)}')
    modes = args.compile_modes.split(',') if args.compile else []
    for m in modes:
        if m not in COMPILE_MODES:
            parser.error(f'--compile-modes: unknown {m!r}; expected {list(COMPILE_MODES)}')
    print(run(args.preset, args.checkpoint, args.device.split(','), precisions, args.runs,
              args.warmup, args.onnx, modes, args.threads, args.json))


if __name__ == '__main__':
    main()
