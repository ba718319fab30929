"""Full-size forward against the authors' implementation (parity fixtures).

Weights come from the reference fill rule, written as a Lightning checkpoint with the
``model.`` prefix, and go through the same loader as a released checkpoint.
"""
import numpy as np
import pytest
import torch

from ssc_core.checkpoint import load_model
from ssc_core.data.sample import sample_frame
from ssc_core.predictor import Predictor

from conftest import load_npz

pytestmark = pytest.mark.slow


def lightning_checkpoint(fill, reference_dir, dataset, path):
    state = fill.fill_state_dict(str(reference_dir / f'MANIFEST_{dataset}.tsv'))
    torch.save({'epoch': 24, 'global_step': 1000, 'hyper_parameters': {'lr': 2e-4},
                'state_dict': {'model.' + k: torch.from_numpy(v) for k, v in state.items()}}, path)
    return path


@pytest.mark.parametrize('dataset', ['semantic_kitti', 'kitti_360'])
def test_full_size_parity(dataset, reference_dir, fill, tmp_path):
    torch.set_num_threads(2)
    ref = load_npz(reference_dir / f'parity_{dataset}.npz')
    ckpt = lightning_checkpoint(fill, reference_dir, dataset, tmp_path / 'filled.ckpt')
    model, preset = load_model(ckpt)
    assert preset.name == dataset
    predictor = Predictor(model, preset)
    frame = sample_frame(preset)
    inputs = predictor.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])

    # Inputs built from the sample frame and calibration equal the authors' dataset inputs.
    np.testing.assert_allclose(inputs['img'][0].numpy(), ref['img'][0], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(inputs['depth'][0].numpy(), ref['depth'][0])
    np.testing.assert_array_equal(inputs['projected_pix'][0].numpy(), ref['projected_pix_2'])
    np.testing.assert_array_equal(inputs['fov_mask'][0].numpy(), ref['fov_mask_2'])
    np.testing.assert_allclose(inputs['cam_pose'][0].numpy(), ref['cam_pose'], atol=1e-7)

    logits = predictor.logits(inputs)[0]
    num_classes = preset.model.num_classes
    assert logits.shape == (num_classes, 256, 256, 32)
    labels = logits.argmax(0).to(torch.uint8).numpy()
    agreement = (labels == ref['labels']).mean()
    print(f'{dataset}: argmax agreement {agreement:.6%}')
    assert agreement >= 0.999
    flat = logits.reshape(num_classes, -1)
    sampled = flat[:, torch.from_numpy(ref['logit_voxel_idx']).long()].T.numpy()
    err = np.abs(sampled - ref['logits_at_idx'])
    assert np.all(err <= 1e-3 * np.maximum(1, np.abs(ref['logits_at_idx']))), err.max()
    np.testing.assert_allclose(flat.double().mean(1).numpy(), ref['mean_logit_per_class'],
                               atol=1e-4)

    if dataset != 'semantic_kitti':
        return
    # The predictor's own path gives the same labels, with an output-grid FOV mask.
    prediction = predictor.predict(frame.image, frame.depth, frame.K, frame.cam_from_grid)
    np.testing.assert_array_equal(prediction.labels, labels)
    assert prediction.fov_mask.shape == (256, 256, 32) and prediction.fov_mask.any()
