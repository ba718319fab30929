"""The network on a CUDA GPU: agreement with the CPU, batches, frames without depth, half
precision. Skipped where no GPU is present (CI); `scripts/gpu_check.sh` runs them on a GPU machine."""
import numpy as np
import pytest
import torch

from ssc_core.checkpoint import BUILTIN_CHECKPOINT, load_model
from ssc_core.data.sample import street_frame
from ssc_core.predictor import Predictor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def builtin_predictor(device, precision='fp32', optimize=True):
    from ssc_core.backends import TorchBackend
    model, preset = load_model(BUILTIN_CHECKPOINT)
    return Predictor(TorchBackend(model, device, precision, optimize=optimize), preset)


@pytest.fixture(scope='module')
def frame():
    _, preset = load_model(BUILTIN_CHECKPOINT)
    return street_frame(preset, 3)


@pytest.fixture(scope='module')
def cpu_labels(frame):
    predictor = builtin_predictor('cpu')
    return predictor.predict(frame.image, frame.depth, frame.K, frame.cam_from_grid).labels


@pytest.mark.parametrize('precision, least', [('fp32', 0.999), ('fp16', 0.995), ('bf16', 0.99)])
def test_cuda_agrees_with_cpu(frame, cpu_labels, precision, least):
    predictor = builtin_predictor('cuda', precision)
    labels = predictor.predict(frame.image, frame.depth, frame.K, frame.cam_from_grid).labels
    agreement = (labels == cpu_labels).mean()
    print(f'cuda {precision} vs cpu fp32: {agreement:.4%} of voxels agree')
    assert labels.dtype == np.uint8 and agreement >= least, agreement


def test_cuda_optimized_layers_agree_with_the_authors_layers(frame):
    authors = builtin_predictor('cuda', optimize=False)
    fast = builtin_predictor('cuda')
    a = authors.predict(frame.image, frame.depth, frame.K, frame.cam_from_grid).labels
    b = fast.predict(frame.image, frame.depth, frame.K, frame.cam_from_grid).labels
    assert (a == b).mean() >= 0.999


def test_cuda_batch_equals_single_frames(frame):
    predictor = builtin_predictor('cuda')
    other = np.ascontiguousarray(frame.image[:, ::-1])
    singles = [predictor.predict(image, frame.depth, frame.K, frame.cam_from_grid).labels
               for image in (frame.image, other)]
    batch = predictor.predict_batch([frame.image, other], [frame.depth] * 2, [frame.K] * 2,
                                    [frame.cam_from_grid] * 2)
    for single, result in zip(singles, batch, strict=True):
        assert (single == result.labels).mean() >= 0.9999


def test_cuda_frame_without_depth_and_probabilities(frame):
    predictor = builtin_predictor('cuda', 'fp16')
    no_depth = np.full_like(frame.depth, np.nan)
    result = predictor.predict(frame.image, no_depth, frame.K, frame.cam_from_grid, return_probs=True)
    assert 'no_depth_in_grid' in result.warnings
    assert result.probs.dtype == np.float32 and np.isfinite(result.probs).all()
    np.testing.assert_allclose(result.probs.sum(0), 1, atol=1e-3)
