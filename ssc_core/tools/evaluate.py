"""Evaluate a checkpoint on a split: print the metric table and save it as JSON.

    python -m ssc_core.tools.evaluate --checkpoint symphonies.safetensors --data-root /data/kitti \\
        --depth-root /data/depth --label-root /data/labels --split val --output metrics.json

--devices N runs N processes (GPUs, or CPU processes with gloo); the metrics are summed over
all of them, so the table is the same as with one process.
"""
import argparse
import sys

import lightning as L
import torch

from ..checkpoint import CheckpointError, load_model
from ..data.dataset import SSCDataset
from ..evaluation import write_json
from ..training import SSCModule
from ..training.module import format_scores
from .common import add_dataset_arguments, load_frames


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, 'val', labels=True)
    parser.add_argument('--devices', type=int, default=1, help='processes (one per GPU on CUDA)')
    parser.add_argument('--output', help='JSON file for the metrics')
    args = parser.parse_args(argv)
    try:
        model, preset = load_model(args.checkpoint, args.preset)
    except CheckpointError as e:
        sys.exit(f'evaluate: {e}')
    frames = load_frames(args, with_labels=True)
    dataset = SSCDataset(frames, preset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers)
    module = SSCModule(preset=preset.name)
    module.model.load_state_dict(model.state_dict())
    accelerator = 'gpu' if args.device.startswith('cuda') else 'cpu'
    trainer = L.Trainer(accelerator=accelerator, devices=args.devices,
                        strategy='ddp' if args.devices > 1 else 'auto', logger=False,
                        enable_checkpointing=False, enable_model_summary=False)
    trainer.validate(module, loader, verbose=False)
    if not trainer.is_global_zero:
        return
    scores = module.last_val_scores
    print(format_scores(scores, preset.class_names, f'{args.split} ({len(frames)} frames)'))
    if args.output:
        write_json(args.output, {
            'checkpoint': str(args.checkpoint), 'preset': preset.name, 'split': args.split,
            'sequences': sorted({f.sequence for f in frames}), 'frames': len(frames),
            'IoU': scores['IoU'], 'Precision': scores['Precision'], 'Recall': scores['Recall'],
            'mIoU': scores['mIoU'],
            'iou_per_class': dict(zip(preset.class_names, scores['iou_per_class'], strict=True))})
        print(f'wrote {args.output}')


if __name__ == '__main__':
    main()
