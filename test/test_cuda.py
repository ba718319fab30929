"""The network on a CUDA GPU: agreement with the CPU, batches, frames without depth, half
precision, the forward without host syncs and the CUDA-graph backend. Skipped where no GPU is
present (CI; their bookkeeping runs on the CPU in test_static_shapes.py); `scripts/gpu_check.sh`
runs them on a GPU machine."""
import numpy as np
import pytest
import torch

from ssc_core.backends import CudaGraphBackend, TorchBackend
from ssc_core.backends.static_shapes import fixed_sizes
from ssc_core.checkpoint import BUILTIN_CHECKPOINT, load_model
from ssc_core.data.sample import street_frame
from ssc_core.predictor import Predictor, batch_to_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def builtin_predictor(device, precision='fp32', optimize=True):
    model, preset = load_model(BUILTIN_CHECKPOINT)
    return Predictor(TorchBackend(model, device, precision, optimize=optimize), preset)


def graph_predictor(precision='fp32', max_graphs=4):
    model, preset = load_model(BUILTIN_CHECKPOINT)
    return Predictor(CudaGraphBackend(model, 'cuda', precision, max_graphs), preset)


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


def test_forward_with_fixed_sizes_does_not_sync(frame):
    """With fixed selection sizes the forward never waits for the GPU (what a CUDA graph needs);
    sized by the data it does (the check sees syncs)."""
    predictor = builtin_predictor('cuda', optimize=False)
    model = predictor.backend.model
    inputs = predictor.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])
    sizes = fixed_sizes(model, inputs)
    with torch.no_grad():
        model(**inputs, sizes=sizes)  # constants made, cuDNN/cuBLAS set up
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode('error')
        try:
            model(**inputs, sizes=sizes)
            with pytest.raises(RuntimeError, match='synchroniz'):
                model(**inputs)
        finally:
            torch.cuda.set_sync_debug_mode('default')


@pytest.mark.parametrize('precision, least', [('fp32', 0.9999), ('fp16', 0.999)])
def test_cuda_graph_backend_agrees_with_eager(frame, precision, least):
    """Captured once, replayed on new inputs (another image of the same calibration and
    proposal step): each frame its own eager result."""
    eager = builtin_predictor('cuda', precision)
    graphs = graph_predictor(precision)
    flipped = np.ascontiguousarray(frame.image[:, ::-1])
    results = []
    for image in (frame.image, flipped, frame.image):
        got = graphs.predict(image, frame.depth, frame.K, frame.cam_from_grid, return_probs=True)
        want = eager.predict(image, frame.depth, frame.K, frame.cam_from_grid, return_probs=True)
        agreement = (got.labels == want.labels).mean()
        print(f'CUDA graph {precision} vs eager: {agreement:.4%} of voxels agree')
        assert agreement >= least
        np.testing.assert_allclose(got.probs, want.probs, atol=1e-3)
        results.append(got.labels)
    assert graphs.backend.captures == 1 and 'CUDA graphs' in graphs.backend.describe()
    assert next(iter(graphs.backend.graphs.values())).graph is not None
    assert (results[0] != results[1]).any()  # the replay read the new image
    np.testing.assert_array_equal(results[0], results[2])


def test_cuda_graph_backend_batches_calibrations_and_frames_without_depth(frame):
    graphs = graph_predictor(max_graphs=2)
    eager = builtin_predictor('cuda')
    pose = frame.cam_from_grid.copy()
    pose[:3, 3] += (0.5, 0.0, 3.0)
    no_depth = np.full_like(frame.depth, np.nan)
    cases = [([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid]),
             ([frame.image], [frame.depth], [frame.K], [pose]),
             ([frame.image], [no_depth], [frame.K], [frame.cam_from_grid]),
             ([frame.image] * 2, [frame.depth, no_depth], [frame.K] * 2, [frame.cam_from_grid, pose])]
    for case in cases:
        got = graphs.predict_batch(*case)
        want = eager.predict_batch(*case)
        for g, w in zip(got, want, strict=True):
            assert (g.labels == w.labels).mean() >= 0.9999
            assert g.warnings == w.warnings
    assert graphs.backend.captures == 4 and len(graphs.backend.graphs) == 2


def test_inputs_move_in_one_copy_from_pinned_memory(frame):
    predictor = builtin_predictor('cuda')
    frames = predictor._frames([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])[0]
    moved = batch_to_device(frames, list(frames[0]), 'cuda')
    assert {v.device.type for v in moved.values()} == {'cuda'}
    assert len({v.untyped_storage().data_ptr() for v in moved.values()}) == 1
    for key, value in moved.items():
        np.testing.assert_array_equal(value.cpu().numpy(), frames[0][key][None])
