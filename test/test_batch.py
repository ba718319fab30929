"""A batch gives each sample exactly its single-sample result (small config)."""
import numpy as np
import torch

from ssc_core.predictor import Predictor

from small_model import SMALL_PRESET, small_frame


def test_batch_of_two_equals_single_samples():
    torch.manual_seed(0)
    model = SMALL_PRESET.model.build()
    predictor = Predictor(model, SMALL_PRESET)
    a, b = small_frame(1), small_frame(2)
    # The second sample sees the scene from another pose, so FOV and proposals differ in size.
    pose_b = b[3].copy()
    pose_b[:3, 3] += (0.5, 0.0, 3.0)
    b = (b[0], b[1], b[2], pose_b)
    inputs = predictor.prepare(*[list(x) for x in zip(a, b)])
    fov = inputs['fov_mask'].sum(1)
    assert fov[0] != fov[1]
    batched = predictor.logits(inputs)
    single_a = predictor.logits(predictor.prepare(*[[x] for x in a]))
    single_b = predictor.logits(predictor.prepare(*[[x] for x in b]))
    assert not torch.allclose(single_a, single_b, atol=1e-3)
    torch.testing.assert_close(batched[0:1], single_a, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(batched[1:2], single_b, atol=2e-5, rtol=1e-5)
    preds = predictor.predict_batch(*[list(x) for x in zip(a, b)])
    np.testing.assert_array_equal(preds[1].labels, single_b.argmax(1)[0].numpy())
