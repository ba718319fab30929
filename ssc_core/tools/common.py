"""Command-line arguments shared by the tools that read a dataset and a checkpoint."""
import argparse
import sys
from pathlib import Path

from ..checkpoint import CheckpointError
from ..data.readers import READERS
from ..predictor import Predictor
from ..presets import PRESETS


def add_dataset_arguments(parser: argparse.ArgumentParser, split_default: str, labels: bool,
                          predictions: bool = False) -> None:
    """The shared arguments; with ``predictions``, ``--predictions DIR`` may replace
    ``--checkpoint`` (and ``--depth-root`` is then not needed)."""
    weights_help = 'weights (ours, a training run\'s or the authors\')'
    if predictions:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument('--checkpoint', help=weights_help)
        source.add_argument('--predictions', help='stored predictions to score instead (test/infer output)')
    else:
        parser.add_argument('--checkpoint', required=True, help=weights_help)
    parser.add_argument('--preset', choices=sorted(PRESETS), help='default: from the checkpoint')
    parser.add_argument('--dataset', default='semantic_kitti', choices=sorted(READERS))
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--depth-root', required=not predictions)
    if labels:
        parser.add_argument('--label-root', required=True)
    parser.add_argument('--split', default=split_default)
    parser.add_argument('--sequences', nargs='*', help='instead of the split\'s sequences')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--num-workers', type=int, default=2)


def add_map_arguments(parser: argparse.ArgumentParser) -> None:
    """The semantic map's settings (:class:`ssc_core.mapping.SemanticMap`)."""
    group = parser.add_argument_group('semantic map')
    group.add_argument('--hit-probability', type=float, default=0.7,
                       help='how often a frame\'s label is right (the evidence one observation adds)')
    group.add_argument('--change-after', type=float, default=4,
                       help='contrary observations that change a voxel\'s class at the clamp')
    group.add_argument('--slots', type=int, default=3, help='classes kept per voxel')
    group.add_argument('--half-life', type=float, help='seconds for old evidence to halve (default: none)')
    group.add_argument('--radius', type=float, help='metres around the latest pose beyond which the map is '
                       'dropped (default: none)')


def map_settings(args) -> dict:
    """Keyword arguments of SemanticMap from :func:`add_map_arguments`' options."""
    return {'hit_probability': args.hit_probability, 'change_after': args.change_after, 'slots': args.slots,
            'half_life': args.half_life, 'radius': args.radius}


def load_frames(args, with_labels: bool, all_frames: bool = False):
    """The frames with voxel files of ``--split``/``--sequences`` (every image with
    ``all_frames``); a missing path ends the tool with one line."""
    reader = READERS[args.dataset]
    try:
        return reader(args.data_root, args.split, args.depth_root,
                      args.label_root if with_labels else None, sequences=args.sequences,
                      all_frames=all_frames)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'{Path(sys.argv[0]).stem}: {e}')


def load_predictor(args) -> Predictor:
    try:
        return Predictor.from_checkpoint(args.checkpoint, args.preset, args.device)
    except CheckpointError as e:
        sys.exit(f'{Path(sys.argv[0]).stem}: {e}')
