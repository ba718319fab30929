"""Image encoder (ResNet-50 + MaskDINO pixel decoder + projections) against the authors'."""
import torch

from ssc_core.model import ImageEncoder

from conftest import assert_close, load_npz


def test_encoder_small_image(reference_dir, fill):
    d = load_npz(reference_dir / 'fixture_encoder_small.npz')
    state = fill.fill_state_dict(str(reference_dir / 'MANIFEST_semantic_kitti.tsv'),
                                 prefix_filter='encoder.')
    state.pop('model.panoptic_head.criterion.empty_weight')
    encoder = ImageEncoder(128).eval()
    encoder.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    img = torch.from_numpy(d['img'])
    with torch.no_grad():
        res = encoder.model.backbone(img)
        pixel_decoder = encoder.model.panoptic_head.pixel_decoder
        ms = pixel_decoder(res)
        mask_feat = pixel_decoder.mask_branch(res[0], ms[0])
        feats, queries, pred_pts = encoder(img)
    for i, r in enumerate(res):
        assert_close(r[0], d[f'backbone_res{i + 2}'], atol=1e-4, rtol=1e-4, name=f'res{i + 2}')
    for i, m in enumerate(ms):
        assert_close(m[0], d[f'pixdec_ms{i}'], name=f'ms{i}')
    assert_close(mask_feat[0], d['mask_feat'], name='mask_feat')
    for i, f in enumerate(feats):
        assert_close(f[0], d[f'feat{i}'], name=f'feat{i}')
    assert_close(queries[0], d['queries'], atol=0, rtol=0, name='queries')
    assert_close(pred_pts[0], d['pred_pts'], atol=1e-7, rtol=0, name='pred_pts')
