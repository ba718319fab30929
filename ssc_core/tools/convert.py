"""Convert a checkpoint (the authors' Lightning .ckpt, a training run's or a bare state dict) to ours.

Ours is one .safetensors file holding the weights and the preset that rebuilds the network,
so later tools need only its path:

    python -m ssc_core.tools.convert semantic_kitti_e25_miou0.1489.ckpt symphonies_semantic_kitti.safetensors
"""
import argparse
import sys

from ..checkpoint import CheckpointError, load_model, save_checkpoint
from ..presets import PRESETS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', help='checkpoint to read')
    parser.add_argument('output', help='.safetensors file to write')
    parser.add_argument('--preset', choices=sorted(PRESETS),
                        help='dataset preset (default: inferred from the weights)')
    parser.add_argument('--half', action='store_true', help='store weights as float16')
    args = parser.parse_args(argv)
    if not args.output.endswith('.safetensors'):
        parser.error(f'output: expected a .safetensors path, got {args.output!r}')
    try:
        model, preset = load_model(args.source, args.preset)
    except CheckpointError as e:
        sys.exit(f'ssc_convert: {e}')
    try:
        path = save_checkpoint(model, preset, args.output, half=args.half)
    except OSError as e:
        sys.exit(f'ssc_convert: cannot write {args.output}: {e.strerror or e}')
    params = sum(p.numel() for p in model.parameters())
    print(f'wrote {path} (preset {preset.name}, {params:,} parameters)')


if __name__ == '__main__':
    main()
