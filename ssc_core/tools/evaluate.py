"""Evaluate a checkpoint, or stored predictions, on a split: print the metric table and save it
as JSON.

    python -m ssc_core.tools.evaluate --checkpoint symphonies.safetensors --data-root /data/kitti \\
        --depth-root /data/depth --label-root /data/labels --split val --output metrics.json
    python -m ssc_core.tools.evaluate --predictions submission --data-root /data/kitti \\
        --label-root /data/labels --split val

--predictions scores what `test` (SUB/sequences/XX/predictions/FRAME.label) or `infer`
(OUT/XX/FRAME.npy) wrote, like the official evaluate_completion.py. --devices N runs N processes
(GPUs, or CPU processes with gloo); the metrics are summed over all of them, so the table is the
same as with one process.

--fuse K (SemanticKITTI layout, with poses.txt and times.txt) is the temporal protocol: each scored
frame also from the semantic map of its K previous images and itself (ssc_core.mapping), beside its
single-frame scores, with the flicker of both; --fused-output DIR stores the fused grids as a
benchmark submission, DIR/sequences/XX/predictions/FRAME.label (what --predictions and the official
evaluate_completion.py read).
"""
import argparse
import sys

import lightning as L
import torch

from ..checkpoint import CheckpointError, load_model
from ..data.dataset import SSCDataset
from ..data.label_files import LabelError
from ..evaluation import check_submittable, score_predictions, sequence_inputs, temporal_scores, write_json
from ..mapping import SemanticMap
from ..presets import get_preset
from ..training import SSCModule
from ..training.module import format_scores
from .common import add_dataset_arguments, add_map_arguments, load_frames, load_predictor, map_settings

SCORE_KEYS = ('IoU', 'Precision', 'Recall', 'mIoU')


def checkpoint_scores(args, frames) -> tuple[dict, str]:
    """Run the checkpoint over the frames (Lightning, ``--devices`` processes); None off rank 0."""
    try:
        model, preset = load_model(args.checkpoint, args.preset)
    except CheckpointError as e:
        sys.exit(f'evaluate: {e}')
    dataset = SSCDataset(frames, preset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers)
    module = SSCModule(preset=preset.name)
    module.model.load_state_dict(model.state_dict())
    accelerator = 'gpu' if args.device.startswith('cuda') else 'cpu'
    trainer = L.Trainer(accelerator=accelerator, devices=args.devices,
                        strategy='ddp' if args.devices > 1 else 'auto', logger=False,
                        enable_checkpointing=False, enable_model_summary=False)
    trainer.validate(module, loader, verbose=False)
    return (module.last_val_scores if trainer.is_global_zero else None), preset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, 'val', labels=True, predictions=True)
    parser.add_argument('--devices', type=int, default=1, help='processes (one per GPU on CUDA)')
    parser.add_argument('--output', help='JSON file for the metrics')
    parser.add_argument('--fuse', type=int, metavar='K', help='also score each frame fused with its K '
                        'previous images (the temporal protocol; --checkpoint, SemanticKITTI layout)')
    parser.add_argument('--fused-output', help='with --fuse: store the fused grids here as a submission '
                        '(DIR/sequences/XX/predictions/FRAME.label)')
    add_map_arguments(parser)
    args = parser.parse_args(argv)
    if args.checkpoint and not args.depth_root:
        parser.error('--checkpoint needs --depth-root (the network reads depth)')
    if args.fuse is not None:
        if args.fuse < 0 or not args.checkpoint or args.dataset != 'semantic_kitti':
            parser.error('--fuse K needs K >= 0, --checkpoint and the semantic_kitti layout (poses.txt)')

        return fused_evaluation(args)
    frames = load_frames(args, with_labels=True)
    if args.predictions:
        preset = get_preset(args.preset or 'semantic_kitti')
        try:
            scores, _ = score_predictions(args.predictions, frames, preset.class_names)
        except (OSError, LabelError) as e:
            sys.exit(f'evaluate: {e}')
    else:
        scores, preset = checkpoint_scores(args, frames)
        if scores is None:
            return
    print(format_scores(scores, preset.class_names, f'{args.split} ({len(frames)} frames)'))
    if args.output:
        write_json(args.output, {
            'checkpoint': args.checkpoint, 'predictions': args.predictions,
            'preset': preset.name, 'split': args.split,
            'sequences': sorted({f.sequence for f in frames}), 'frames': len(frames),
            'IoU': scores['IoU'], 'Precision': scores['Precision'], 'Recall': scores['Recall'],
            'mIoU': scores['mIoU'],
            'iou_per_class': dict(zip(preset.class_names, scores['iou_per_class'], strict=True))})
        print(f'wrote {args.output}')


def fused_evaluation(args) -> None:
    """--fuse K: single-frame and fused scores (and flicker) of the same frames."""
    try:
        sequences = sequence_inputs(args.data_root, args.depth_root, args.label_root, args.split,
                                    args.sequences)
    except (FileNotFoundError, ValueError) as e:  # PoseError and LabelError are ValueErrors
        sys.exit(f'evaluate: {e}')
    predictor = load_predictor(args)
    preset = predictor.preset
    settings = map_settings(args)
    if args.fused_output:
        try:
            check_submittable(preset)
        except ValueError as e:
            sys.exit(f'evaluate: --fused-output: {e}')

    def new_map():
        return SemanticMap(preset.model.voxel_size, preset.class_names, preset.voxel_origin, max_jump=None,
                           device=predictor.device, **settings)

    try:
        results = temporal_scores(predictor, sequences, args.fuse, new_map, args.fused_output)
    except (OSError, ValueError) as e:
        sys.exit(f'evaluate: {e}')
    frames = sum(len(s.scored) for s in sequences)
    for name, scores in results.items():
        title = f'{args.split} ({frames} frames) {name}' + (f' (K = {args.fuse})' if name == 'fused' else '')
        print(format_scores(scores, preset.class_names, title))
        print(f'  flicker {scores["flicker"] * 100:.2f} %')
    if args.output:
        write_json(args.output, {
            'checkpoint': args.checkpoint, 'preset': preset.name, 'split': args.split,
            'sequences': [s.frames[0].sequence for s in sequences], 'frames': frames, 'fuse': args.fuse,
            'map': settings,
            **{name: {**{k: scores[k] for k in SCORE_KEYS}, 'flicker': scores['flicker'],
                      'iou_per_class': dict(zip(preset.class_names, scores['iou_per_class'], strict=True))}
               for name, scores in results.items()}})
        print(f'wrote {args.output}')


if __name__ == '__main__':
    main()
