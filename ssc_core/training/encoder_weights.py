"""Initialising the image encoder from MaskDINO's COCO-panoptic checkpoint, as the authors do.

The authors' config starts the image encoder (ResNet + pixel decoder) from
``maskdino_r50_50e_300q_panoptic_pq53.0.pth``. Two layouts of that file are read:

* ``detectron2``: IDEA-Research/MaskDINO's release, ``{"model": state_dict}`` with
  ``backbone.stem.conv1.norm.weight``, ``backbone.res2.0.shortcut.weight``, ...,
  ``sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear1.weight``, ...;
* ``mmdet``: the MMDetection port the authors load, a bare state dict with
  ``backbone.conv1.weight``, ``backbone.layer1.0.downsample.0.weight``, ...,
  ``panoptic_head.pixel_decoder.transformer.encoder.layers.0.ffn.layers.0.0.weight``, ...

Our trunk (``encoder.model``) uses the MMDetection names, so the ``mmdet`` layout maps one to
one and the ``detectron2`` layout is renamed. MaskDINO's transformer decoder, predictor and
criterion are not part of Symphonies: their tensors are skipped and counted.
"""
import re
from collections import Counter
from dataclasses import dataclass

import torch

from ..checkpoint import CheckpointError, read_state_dict
from ..model.image_encoder import ImageEncoder

# Key prefixes of the two parts we take, per layout: (backbone, pixel decoder).
LAYOUT_PREFIXES = {
    'detectron2': ('backbone.', 'sem_seg_head.pixel_decoder.'),
    'mmdet': ('backbone.', 'panoptic_head.pixel_decoder.'),
}
# Where those parts live in our trunk (ImageEncoder.model).
OUR_PREFIXES = ('backbone.', 'panoptic_head.pixel_decoder.')

# detectron2 ResNet blocks: res<stage>.<block>.<conv1|conv2|conv3|shortcut>[.norm].<param>.
_D2_BLOCK = re.compile(r'^res(\d)\.(\d+)\.(conv\d|shortcut)(\.norm)?\.(\w+)$')
# detectron2 MaskDINOEncoder → mmdet names (after the pixel-decoder prefix); keys that match no
# rule (input_proj, level_embed, self_attn, mask_features) are named alike.
_D2_PIXEL_DECODER_RULES = (
    (re.compile(r'^(transformer\.encoder\.layers\.\d+)\.norm1\.'), r'\1.norms.0.'),
    (re.compile(r'^(transformer\.encoder\.layers\.\d+)\.norm2\.'), r'\1.norms.1.'),
    (re.compile(r'^(transformer\.encoder\.layers\.\d+)\.linear1\.'), r'\1.ffn.layers.0.0.'),
    (re.compile(r'^(transformer\.encoder\.layers\.\d+)\.linear2\.'), r'\1.ffn.layers.1.'),
    (re.compile(r'^(adapter_\d+|layer_\d+)\.weight$'), r'\1.conv.weight'),
    (re.compile(r'^(adapter_\d+|layer_\d+)\.norm\.'), r'\1.gn.'),
)


@dataclass(frozen=True)
class EncoderWeightsReport:
    """What a MaskDINO file gave the encoder trunk.

    loaded: our trunk keys set from the file. kept: our trunk keys the file lacks (left as
    initialised; BatchNorm step counters not listed). skipped: file tensors outside the backbone
    and pixel decoder, counted by their first two name parts.
    """
    path: str
    layout: str
    loaded: tuple[str, ...]
    kept: tuple[str, ...]
    skipped: dict[str, int]

    def summary(self) -> str:
        lines = [f'encoder_weights: {self.path} ({self.layout} layout): loaded {len(self.loaded)} '
                 'backbone and pixel-decoder tensors']
        skipped = ', '.join(f'{group} {n}' for group, n in sorted(self.skipped.items()))
        lines.append(f'  skipped {sum(self.skipped.values())} tensors that are not part of this '
                     f'network' + (f' ({skipped})' if skipped else ''))
        if self.kept:
            lines.append(f'  kept as initialised ({len(self.kept)}, not in the file): '
                         + ', '.join(self.kept[:10]) + (' …' if len(self.kept) > 10 else ''))
        return '\n'.join(lines)


def detect_layout(keys) -> str | None:
    """``detectron2``, ``mmdet`` or None from a state dict's key names."""
    keys = list(keys)
    if any(k.startswith(('sem_seg_head.', 'backbone.stem.', 'backbone.res2.')) for k in keys):
        return 'detectron2'
    if any(k.startswith(('panoptic_head.', 'backbone.conv1.', 'backbone.layer1.')) for k in keys):
        return 'mmdet'
    return None


def trunk_key(key: str, layout: str) -> str | None:
    """Our trunk name for a file key, or None when the key is outside backbone and pixel decoder."""
    for theirs, ours in zip(LAYOUT_PREFIXES[layout], OUR_PREFIXES, strict=True):
        if key.startswith(theirs):
            suffix = key[len(theirs):]
            if layout == 'detectron2':
                suffix = _rename_detectron2(suffix, ours == 'backbone.')
            return ours + suffix
    return None


def _rename_detectron2(suffix: str, backbone: bool) -> str:
    if not backbone:
        for pattern, replacement in _D2_PIXEL_DECODER_RULES:
            suffix = pattern.sub(replacement, suffix, count=1)
        return suffix
    if suffix.startswith('stem.conv1.'):
        param = suffix[len('stem.conv1.'):]
        return 'conv1.weight' if param == 'weight' else 'bn1.' + param.removeprefix('norm.')
    match = _D2_BLOCK.match(suffix)
    if match is None:
        return suffix
    stage, block, layer, norm, param = match.groups()
    prefix = f'layer{int(stage) - 1}.{block}.'
    if layer == 'shortcut':
        return prefix + ('downsample.1.' if norm else 'downsample.0.') + param
    return prefix + (f'bn{layer[-1]}.' if norm else f'{layer}.') + param


def load_encoder_weights(encoder: ImageEncoder, path) -> EncoderWeightsReport:
    """Set ``encoder.model`` (backbone + pixel decoder) from a MaskDINO checkpoint file.

    Raises CheckpointError naming the file when it matches neither layout, when a backbone or
    pixel-decoder tensor of the file has no place in ours, or when one has the wrong shape,
    a non-floating type or NaN/inf values. Nothing is changed then.
    """
    state, _ = read_state_dict(path)
    layout = detect_layout(state)
    if layout is None:
        raise CheckpointError(
            f'{path}: matches no MaskDINO layout (expected detectron2 keys backbone.stem.* / '
            'sem_seg_head.pixel_decoder.* or MMDetection keys backbone.conv1.* / '
            'panoptic_head.pixel_decoder.*)')
    expected = encoder.model.state_dict()
    mapped, unplaced, skipped = {}, [], Counter()
    for key, tensor in state.items():
        ours = trunk_key(key, layout)
        if ours is None:
            skipped['.'.join(key.split('.')[:2])] += 1
        elif ours in expected:
            mapped[ours] = tensor
        else:
            unplaced.append(key)
    problems = []
    if unplaced:
        problems.append(f'{len(unplaced)} tensors have no place in our image '
                        f'encoder: {", ".join(unplaced[:5])}')
    misshaped = [f'{k}: file {tuple(v.shape)}, network {tuple(expected[k].shape)}'
                 for k, v in mapped.items() if v.shape != expected[k].shape]
    if misshaped:
        problems.append(f'{len(misshaped)} mis-shaped tensors: {", ".join(misshaped[:5])}')
    bad_values = [k for k, v in mapped.items() if expected[k].is_floating_point()
                  and (not v.is_floating_point() or not torch.isfinite(v).all())]
    if bad_values:
        problems.append(f'{len(bad_values)} tensors not finite floating point: '
                        f'{", ".join(bad_values[:5])}')
    if not mapped and not problems:
        problems.append('no tensor matches the backbone or pixel decoder')
    if problems:
        raise CheckpointError(f'{path}: does not fit the image encoder ({layout} layout): '
                              + '; '.join(problems))
    encoder.model.load_state_dict(mapped, strict=False)
    kept = tuple(k for k in expected if k not in mapped and not k.endswith('num_batches_tracked'))
    return EncoderWeightsReport(str(path), layout, tuple(mapped), kept, dict(skipped))
