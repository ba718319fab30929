"""Losses, metrics and frustums equal the authors' (reference fixtures, 1e-5 relative)."""
import numpy as np
import pytest
import torch

from ssc_core.geometry import frustum_cells, local_frustums
from ssc_core.labels import SEMANTIC_KITTI_CLASS_FREQ, class_weights
from ssc_core.losses import ce_ssc_loss, frustum_proportion_loss, geo_scal_loss, sem_scal_loss
from ssc_core.metrics import SSCMetrics, confusion_matrix

from conftest import load_npz


@pytest.fixture(scope='module')
def ref(reference_dir):
    return load_npz(reference_dir / 'metrics_losses.npz')


def masks_to_ids(masks: np.ndarray) -> torch.Tensor:
    """(B, F, ...) disjoint bool masks → (B, ...) frustum id or -1."""
    assert masks.sum(1).max() <= 1
    ids = np.where(masks.any(1), masks.argmax(1), -1)
    return torch.from_numpy(ids)


def test_class_weights(ref):
    np.testing.assert_allclose(class_weights(SEMANTIC_KITTI_CLASS_FREQ), ref['class_weights'], rtol=1e-6)


def test_losses(ref):
    logits = torch.from_numpy(ref['loss_logits'])
    target = torch.from_numpy(ref['loss_target'])
    weights = torch.from_numpy(ref['class_weights'])
    values = {
        'ce_ssc': ce_ssc_loss(logits, target, weights),
        'sem_scal': sem_scal_loss(logits, target),
        'geo_scal': geo_scal_loss(logits, target),
        'frustum': frustum_proportion_loss(logits, masks_to_ids(ref['loss_frustums_masks']),
                                           torch.from_numpy(ref['loss_frustums_class_dists'])),
    }
    for name, value in values.items():
        np.testing.assert_allclose(float(value), float(ref[f'loss_{name}']), rtol=1e-5, err_msg=name)


def test_losses_have_gradients(ref):
    logits = torch.from_numpy(ref['loss_logits']).requires_grad_()
    target = torch.from_numpy(ref['loss_target'])
    loss = sem_scal_loss(logits, target) + geo_scal_loss(logits, target)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_metrics_over_two_updates(ref):
    metrics = SSCMetrics(20)
    for i in range(2):
        metrics.update(torch.from_numpy(ref[f'metric_logits_{i}']),
                       torch.from_numpy(ref[f'metric_target_{i}']))
    out = metrics.compute()
    for key, name in (('Precision', 'precision'), ('Recall', 'recall'), ('IoU', 'iou'), ('mIoU', 'miou')):
        np.testing.assert_allclose(out[key], float(ref[f'metric_{name}']), rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(out['iou_per_class'], ref['metric_iou_per_class'], rtol=1e-5)
    conf = metrics.confusion
    np.testing.assert_array_equal(conf.diagonal().numpy(), ref['metric_tps_ssc'])
    np.testing.assert_array_equal((conf.sum(0) - conf.diagonal()).numpy(), ref['metric_fps_ssc'])
    assert int(conf[1:, 1:].sum()) == int(ref['metric_tp_sc'])
    assert int(conf[0, 1:].sum()) == int(ref['metric_fp_sc'])
    assert int(conf[1:, 0].sum()) == int(ref['metric_fn_sc'])


def test_metric_rejects_labels_outside_the_map():
    with pytest.raises(ValueError, match='labels outside 0..19'):
        confusion_matrix(torch.tensor([[3, 25]]), torch.tensor([[3, 4]]), 20)


def test_local_frustums(reference_dir):
    g = load_npz(reference_dir / 'geometry.npz')
    cells = frustum_cells(g['projected_pix_1'], g['pix_z_1'], (1220, 370), size=8)
    ids, dists = local_frustums(cells, g['frustum_target'], num_classes=20, size=8)
    shape = tuple(g['frustums_masks_shape'])
    expected = np.unpackbits(g['frustums_masks_packed'], axis=1)[:, :int(np.prod(shape[1:]))]
    np.testing.assert_array_equal(ids[None] == np.arange(64)[:, None, None, None],
                                  expected.reshape(shape).astype(bool))
    np.testing.assert_array_equal(dists, g['frustums_class_dists'])



def test_class_weights_come_from_the_preset():
    """Cross-entropy weights follow the preset's own class frequencies (not the class count)."""
    import dataclasses

    from ssc_core.labels import KITTI_360_CLASS_FREQ
    from ssc_core.presets import KITTI_360, SMALL, Preset
    from ssc_core.training import SSCModule

    weights = SSCModule(preset='small').class_weights.numpy()
    np.testing.assert_allclose(weights, class_weights(SEMANTIC_KITTI_CLASS_FREQ), rtol=1e-6)
    assert KITTI_360.class_frequencies == tuple(KITTI_360_CLASS_FREQ.tolist())
    assert Preset.from_dict(KITTI_360.to_dict()) == KITTI_360
    with pytest.raises(ValueError, match='19 class frequencies for 20 classes'):
        dataclasses.replace(SMALL, class_frequencies=KITTI_360.class_frequencies)
