"""Export a checkpoint to ONNX and verify it against PyTorch before declaring success.

    python -m ssc_core.tools.export --checkpoint symphonies.safetensors --output symphonies.onnx

The model takes one frame at the preset's image size (the inputs of Predictor.prepare) and gives
``labels`` (uint8), ``logits`` and ``selection_counts``. Its shapes are static: at most
--max-visible voxels of the decoder grid in view (default: all, any camera) and --max-proposals
voxels holding a depth point (default: a quarter of the grid); a frame beyond them is refused by
the onnxruntime backend. The check runs ONNX Runtime (CPU) and PyTorch fp32 on the built-in sample
frame and requires argmax agreement of at least --min-agreement.
"""
import argparse
import sys
import time

from ..backends.onnxruntime_backend import OnnxRuntimeBackend
from ..checkpoint import CheckpointError, load_model
from ..data.sample import sample_frame
from ..export import compare, export_onnx
from ..model.decoder import SelectionSizes
from ..predictor import Predictor
from ..presets import PRESETS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--preset', choices=sorted(PRESETS), help='default: from the checkpoint')
    parser.add_argument('--output', required=True, help='.onnx file to write')
    parser.add_argument('--max-visible', type=int,
                        help='most decoder-grid voxels in view (default: all of them)')
    parser.add_argument('--max-proposals', type=int,
                        help='most decoder-grid voxels holding a depth point (default: a quarter of them)')
    parser.add_argument('--min-agreement', type=float, default=0.999)
    args = parser.parse_args(argv)
    try:
        model, preset = load_model(args.checkpoint, args.preset)
    except CheckpointError as e:
        sys.exit(f'export: {e}')
    voxels = model.decoder.num_voxels
    sizes = SelectionSizes(voxels if args.max_visible is None else args.max_visible,
                           voxels // 4 if args.max_proposals is None else args.max_proposals)
    for name, size in zip(('--max-visible', '--max-proposals'), sizes, strict=True):
        if not 0 <= size <= voxels:
            parser.error(f'{name}: expected 0 to {voxels} (the decoder grid\'s voxels), got {size}')
    predictor = Predictor(model, preset)
    frame = sample_frame(preset)
    inputs = predictor.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])
    counts = model.selection_counts(**inputs)[0].tolist()
    print(f'selections: at most {sizes.visible} voxels in view and {sizes.proposals} holding a depth '
          f'point, of {voxels} (the sample frame: {counts[0]} and {counts[1]})')
    if counts[0] > sizes.visible or counts[1] > sizes.proposals:
        sys.exit('export: the sample frame that checks the export does not fit these sizes')
    start = time.perf_counter()
    path = export_onnx(model, preset, inputs, args.output, sizes)
    print(f'exported {path} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.0f} s; '
          'ONNX checker passed')
    reference = predictor.logits(inputs)
    runtime = OnnxRuntimeBackend(path)
    labels, logits = runtime.run(inputs)
    result = compare(reference, labels, logits)
    print(f'onnxruntime ({", ".join(runtime.providers)}) vs PyTorch fp32 on the sample frame: '
          f'argmax agreement {result["argmax_agreement"]:.6%}, max |logit diff| '
          f'{result["max_abs_logit_diff"]:.2e}')
    if result['argmax_agreement'] < args.min_agreement:
        path.unlink()
        sys.exit(f'export: agreement {result["argmax_agreement"]:.4%} is below {args.min_agreement:.2%}; '
                 f'{path} removed')


if __name__ == '__main__':
    main()
