"""Unit layers against the authors' implementation (reference fixtures, 1e-4)."""
import torch

from ssc_core.model.deform_attn import (
    DeformableSqueezeAttention,
    MultiScaleDeformableAttention,
    squeeze_volume,
)
from ssc_core.model.pos_embed import LearnableSqueezePositionalEncoding
from ssc_core.model.transformer import DeformableTransformerLayer, TransformerLayer

from conftest import assert_close, load_npz, weights


def t(x):
    return torch.from_numpy(x)


def shapes(x):
    return [tuple(int(v) for v in row) for row in x]


def test_msda_matches_mmcv(reference_dir):
    d = load_npz(reference_dir / 'fixture_msda.npz')
    attn = MultiScaleDeformableAttention(32, 4, 2, 2).eval()
    attn.load_state_dict(weights(d, ''))
    ss = shapes(d['spatial_shapes'])
    with torch.no_grad():
        out = attn(t(d['query']), t(d['value']), t(d['query_pos']), t(d['reference_points']), ss)
        out_nopos = attn(t(d['query']), t(d['value']), None, t(d['reference_points']), ss)
        out_kpm = attn(t(d['query']), t(d['value']), t(d['query_pos']), t(d['reference_points']),
                       ss, key_padding_mask=t(d['key_padding_mask']))
    assert_close(out, d['out'], name='out')
    assert_close(out_nopos, d['out_nopos'], name='out_nopos')
    assert_close(out_kpm, d['out_kpm'], name='out_kpm')
    assert not torch.allclose(out, out_kpm)


def test_deformable_squeeze_attention(reference_dir):
    d = load_npz(reference_dir / 'fixture_deform_squeeze_attn.npz')
    attn = DeformableSqueezeAttention(32, 4, 1, 8).eval()
    attn.load_state_dict(weights(d, ''))
    ss = shapes(d['spatial_shapes'])
    value, ref, ss2 = squeeze_volume(t(d['value']), t(d['ref_scene']), ss)
    assert_close(value, d['squeezed_value'], atol=0, rtol=0, name='squeezed_value')
    assert_close(ref, d['squeezed_ref_scene'], atol=1e-7, rtol=0, name='squeezed_ref')
    assert ss2 == shapes(d['squeezed_spatial_shapes'])
    with torch.no_grad():
        out_scene = attn(t(d['query_scene']), t(d['value']), t(d['query_pos_scene']),
                         t(d['ref_scene']), ss)
        out_inst = attn(t(d['query_inst']), t(d['value']), None, t(d['ref_inst']), ss)
    assert_close(out_scene, d['out_scene'], name='out_scene')
    assert_close(out_inst, d['out_inst'], name='out_inst')


def test_transformer_layers(reference_dir):
    d = load_npz(reference_dir / 'fixture_layers.npz')
    dtl = DeformableTransformerLayer(32, 4, num_levels=2, num_points=2).eval()
    dtl.load_state_dict(weights(d, 'dtl.'))
    tl4 = TransformerLayer(32, 4).eval()
    tl4.load_state_dict(weights(d, 'tl4.'))
    tl0 = TransformerLayer(32, 4, mlp_ratio=0).eval()
    tl0.load_state_dict(weights(d, 'tl0.'))
    with torch.no_grad():
        out_dtl = dtl(t(d['query']), t(d['value']), t(d['query_pos']), t(d['ref']),
                      shapes(d['spatial_shapes']))
        out_self = tl4(t(d['query']), query_pos=t(d['query_pos']))
        out_cross = tl0(t(d['query']), t(d['kv']), t(d['kv']), t(d['query_pos']), t(d['key_pos']))
    assert_close(out_dtl, d['out_dtl'], name='dtl')
    assert_close(out_self, d['out_tl4_self'], name='tl4 self')
    assert_close(out_cross, d['out_tl0_cross'], name='tl0 cross')


def test_squeeze_positional_encoding(reference_dir):
    d = load_npz(reference_dir / 'fixture_squeeze_pos_enc.npz')
    small = LearnableSqueezePositionalEncoding((4, 3, 2), 8, (2, 2, 1))
    small.load_state_dict(weights(d, 'small.'))
    big = LearnableSqueezePositionalEncoding((128, 128, 2), 128, (2, 2, 1))
    big.load_state_dict(weights(d, ''))
    with torch.no_grad():
        assert_close(small(), d['small_out'], name='small')
        out = big()
    assert tuple(out.shape) == tuple(d['out_shape'])
    assert_close(out[torch.from_numpy(d['row_idx']).long()], d['out_at_idx'], name='rows')
    assert_close(out.double().mean(0), d['out_mean'], atol=1e-6, name='mean')
