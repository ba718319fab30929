"""encoder_weights: MaskDINO's R50 checkpoint in detectron2 and MMDetection layouts → our encoder.

The files are written from our own ResNet-50 + pixel decoder, renamed into each layout, with
a few MaskDINO decoder/criterion tensors that must be skipped.
"""
import pickle
import re

import numpy as np
import pytest
import torch

from ssc_core.checkpoint import CheckpointError
from ssc_core.model.image_encoder import ImageEncoder
from ssc_core.training.encoder_weights import load_encoder_weights

DECODER_KEYS = {  # MaskDINO parts that are not in Symphonies' network: (name after the head, shape)
    'predictor.query_feat.weight': (300, 256),
    'predictor.decoder.layers.0.cross_attn.sampling_offsets.weight': (256, 256),
    'predictor.class_embed.weight': (133, 256),
}


def detectron2_name(key: str) -> str:
    """Our trunk key → IDEA-Research/MaskDINO's (detectron2) name."""
    if key.startswith('backbone.'):
        key = key[len('backbone.'):]
        key = re.sub(r'^conv1\.weight$', 'stem.conv1.weight', key)
        key = re.sub(r'^bn1\.', 'stem.conv1.norm.', key)
        key = re.sub(r'^layer(\d)', lambda m: f'res{int(m.group(1)) + 1}', key)
        key = re.sub(r'\.bn(\d)\.', r'.conv\1.norm.', key)
        key = key.replace('.downsample.0.', '.shortcut.').replace('.downsample.1.', '.shortcut.norm.')
        return 'backbone.' + key
    key = key.replace('panoptic_head.pixel_decoder.', 'sem_seg_head.pixel_decoder.')
    key = key.replace('.norms.0.', '.norm1.').replace('.norms.1.', '.norm2.')
    key = key.replace('.ffn.layers.0.0.', '.linear1.').replace('.ffn.layers.1.', '.linear2.')
    return re.sub(r'\.(adapter_1|layer_1)\.(conv|gn)\.',
                  lambda m: f'.{m.group(1)}.' + ('' if m.group(2) == 'conv' else 'norm.'), key)


@pytest.fixture(scope='module')
def source():
    """The paper's encoder trunk (ResNet-50 + pixel decoder), random weights."""
    torch.manual_seed(0)
    return ImageEncoder(embed_dims=128, backbone='resnet50').model.state_dict()


def fresh_encoder():
    torch.manual_seed(1)
    return ImageEncoder(embed_dims=128, backbone='resnet50')


def write_layout(source, layout, path):
    if layout == 'detectron2':  # FrozenBN: no num_batches_tracked; Checkpointer's {"model": ...}
        model = {detectron2_name(k): v for k, v in source.items() if 'num_batches_tracked' not in k}
        model.update({f'sem_seg_head.{k}': torch.randn(s) for k, s in DECODER_KEYS.items()})
        model['criterion.empty_weight'] = torch.ones(134)
        torch.save({'model': model, 'iteration': 368749}, path)
    else:  # the authors' MMDetection port: a bare state dict of the whole MaskDINO
        model = dict(source)
        model.update({f'panoptic_head.{k}': torch.randn(s) for k, s in DECODER_KEYS.items()})
        model['panoptic_head.criterion.empty_weight'] = torch.ones(134)
        torch.save(model, path)
    return model


@pytest.mark.parametrize('layout', ['detectron2', 'mmdet'])
def test_every_backbone_and_pixel_decoder_tensor_is_loaded(source, layout, tmp_path):
    path = tmp_path / 'maskdino_r50_50e_300q_panoptic_pq53.0.pth'
    written = write_layout(source, layout, path)
    encoder = fresh_encoder()
    report = load_encoder_weights(encoder, path)
    loaded = encoder.model.state_dict()
    counters = {k for k in source if k.endswith('num_batches_tracked')}
    assert report.layout == layout
    assert set(report.loaded) == set(source) - (counters if layout == 'detectron2' else set())
    assert report.kept == ()
    assert report.skipped == {'criterion.empty_weight' if layout == 'detectron2'
                              else 'panoptic_head.criterion': 1,
                              'sem_seg_head.predictor' if layout == 'detectron2'
                              else 'panoptic_head.predictor': 3}
    for key, tensor in source.items():
        if key not in counters:
            assert torch.equal(loaded[key], tensor), key
    assert len(written) == len(report.loaded) + 4
    summary = report.summary()
    assert f'loaded {len(report.loaded)} backbone and pixel-decoder tensors' in summary
    assert 'skipped 4 tensors' in summary and str(path) in summary


def test_a_file_that_matches_nothing_is_refused_in_one_line(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'fc.weight': torch.zeros(10, 4), 'encoder.x': torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match='matches no MaskDINO layout') as error:
        load_encoder_weights(fresh_encoder(), path)
    assert str(path) in str(error.value) and '\n' not in str(error.value)
    path = tmp_path / 'decoder_only.pth'
    torch.save({f'panoptic_head.{k}': torch.zeros(s) for k, s in DECODER_KEYS.items()}, path)
    with pytest.raises(CheckpointError, match='no tensor matches the backbone or pixel decoder'):
        load_encoder_weights(fresh_encoder(), path)


def test_a_misshaped_tensor_is_refused_naming_it_and_nothing_changes(source, tmp_path):
    path = tmp_path / 'r101.pth'
    state = dict(source)
    name = 'panoptic_head.pixel_decoder.input_proj.0.0.weight'
    state[name] = torch.zeros(256, 1024, 1, 1)
    torch.save(state, path)
    encoder = fresh_encoder()
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    with pytest.raises(CheckpointError, match=re.escape(f'{name}: file (256, 1024, 1, 1), '
                                                        'network (256, 512, 1, 1)')) as error:
        load_encoder_weights(encoder, path)
    assert str(path) in str(error.value) and '\n' not in str(error.value)
    torch.testing.assert_close(encoder.model.state_dict(), before, rtol=0, atol=0)


def test_backbone_tensors_without_a_place_in_ours_are_refused(source, tmp_path):
    path = tmp_path / 'deeper.pth'
    extra = 'backbone.layer3.6.conv1.weight'  # a ResNet-101 block that ResNet-50 lacks
    torch.save({**source, extra: torch.zeros(256, 1024, 1, 1)}, path)
    with pytest.raises(CheckpointError, match=re.escape(f'1 tensors have no place in our image '
                                                        f'encoder: {extra}')):
        load_encoder_weights(fresh_encoder(), path)


def test_a_legacy_pickle_with_numpy_arrays_is_refused(tmp_path):
    """detectron2 model-zoo .pkl files (plain pickles of numpy arrays) are not read."""
    path = tmp_path / 'model_final.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'model': {'backbone.stem.conv1.weight': np.zeros((64, 3, 7, 7), np.float32)},
                     '__author__': 'IDEA'}, f)
    with pytest.raises(CheckpointError, match='not a readable torch.save archive') as error:
        load_encoder_weights(fresh_encoder(), path)
    assert str(path) in str(error.value)
