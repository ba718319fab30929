"""GPU measurements the bench does not make, for scripts/gpu_check.sh (full-size SemanticKITTI,
untrained weights, the built-in sample frame); each writes its results into OUT:

    python scripts/gpu_measure.py profile OUT     per-kernel tables of one fp16 frame, eager and
                                                  replayed as a CUDA graph (profile_*.txt, profile.json)
    python scripts/gpu_measure.py ort-cuda ONNX OUT   onnxruntime's CUDA provider alone (ort_cuda.json)
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ssc_core.backends import CudaGraphBackend, TorchBackend
from ssc_core.data.sample import sample_frame
from ssc_core.predictor import Predictor
from ssc_core.presets import get_preset

PRESET = 'semantic_kitti'
FRAMES = 20


def sample_inputs(predictor: Predictor) -> dict[str, torch.Tensor]:
    frame = sample_frame(predictor.preset)
    return predictor.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])


def write(out: Path, name: str, text: str) -> None:
    (out / name).write_text(text)
    print(f'wrote {out / name}', flush=True)


def profile(out: Path) -> None:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    preset = get_preset(PRESET)
    torch.manual_seed(0)
    model = preset.model.build()
    summary = {'gpu': torch.cuda.get_device_name(), 'torch': torch.__version__}
    for name, backend in (('eager_fp16', TorchBackend(model, 'cuda', 'fp16')),
                          ('cudagraph_fp16', CudaGraphBackend(model, 'cuda', 'fp16'))):
        predictor = Predictor(backend, preset)
        inputs = sample_inputs(predictor)
        for _ in range(5):
            predictor.labels(inputs)
        torch.cuda.synchronize()
        times = []
        for _ in range(FRAMES):
            start = time.perf_counter()
            predictor.labels(inputs)
            times.append(time.perf_counter() - start)
        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            predictor.labels(inputs)
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by='cuda_time_total', row_limit=50,
                                          max_name_column_width=80)
        write(out, f'profile_{name}.txt', table)
        on_gpu = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        summary[name] = {
            'describe': backend.describe(), 'frame_ms_p50': 1e3 * float(np.median(times)),
            'frame_ms_p95': 1e3 * float(np.percentile(times, 95)),
            'gpu_busy_ms': sum(e.time_range.elapsed_us() for e in on_gpu) / 1e3,
            'gpu_ops': len(on_gpu)}
        print(json.dumps({name: summary[name]}), flush=True)
        write(out, 'profile.json', json.dumps(summary, indent=1))


def ort_cuda(onnx_path: str, out: Path) -> None:
    """The exported model with onnxruntime's CUDA provider only (the backend prefers TensorRT)."""
    import onnxruntime as ort
    preset = get_preset(PRESET)
    torch.manual_seed(0)
    reference = Predictor(preset.model.build(), preset)
    inputs = sample_inputs(reference)
    session = ort.InferenceSession(onnx_path, providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])
    feed = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
    start = time.perf_counter()
    labels = session.run(['labels'], feed)[0]
    first = time.perf_counter() - start
    times = []
    for _ in range(FRAMES):
        start = time.perf_counter()
        session.run(['labels'], feed)
        times.append(time.perf_counter() - start)
    agreement = float((labels == reference.labels(inputs)).mean())
    result = {'providers': session.get_providers(), 'first_s': first,
              'p50_ms': 1e3 * float(np.median(times)), 'p95_ms': 1e3 * float(np.percentile(times, 95)),
              'agreement_with_torch_cpu_fp32': agreement}
    print(json.dumps(result), flush=True)
    write(out, 'ort_cuda.json', json.dumps(result, indent=1))


if __name__ == '__main__':
    if sys.argv[1:2] == ['profile'] and len(sys.argv) == 3:
        profile(Path(sys.argv[2]))
    elif sys.argv[1:2] == ['ort-cuda'] and len(sys.argv) == 4:
        ort_cuda(sys.argv[2], Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
