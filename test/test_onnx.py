"""ONNX export and the ONNX Runtime backend (small config; real onnxruntime)."""
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ssc_core.backends.onnxruntime_backend import OnnxRuntimeBackend
from ssc_core.checkpoint import CheckpointError, save_checkpoint
from ssc_core.export import compare
from ssc_core.model.decoder import SelectionSizes
from ssc_core.predictor import Predictor
from ssc_core.presets import ONNX_SIZES_KEY

from small_model import SMALL_PRESET, small_frame

pytestmark = pytest.mark.slow  # exports the small network once (a minute or more)


@pytest.fixture(scope='module')
def export_run(tmp_path_factory):
    """The small network exported once, by the export tool as a user runs it (exporting takes a
    minute or more): its model, the tool's completed process, and the folder it wrote to."""
    folder = tmp_path_factory.mktemp('onnx')
    torch.manual_seed(0)
    model = SMALL_PRESET.model.build().eval()
    ckpt = save_checkpoint(model, SMALL_PRESET, folder / 'small.safetensors')
    out = subprocess.run([sys.executable, '-m', 'ssc_core.tools.export', '--checkpoint', str(ckpt),
                          '--output', str(folder / 'small.onnx')], capture_output=True, text=True)
    return model, out, folder


@pytest.fixture(scope='module')
def exported(export_run):
    """(the exported file, a PyTorch predictor of the same weights)."""
    model, out, folder = export_run
    assert out.returncode == 0, out.stderr[-2000:]
    return folder / 'small.onnx', Predictor(model, SMALL_PRESET)


def test_onnxruntime_matches_pytorch(exported):
    path, torch_predictor = exported
    runtime = Predictor.from_checkpoint(path, backend='onnxruntime')
    assert runtime.preset == SMALL_PRESET and runtime.backend.providers == ['CPUExecutionProvider']
    assert not runtime.backend.session.get_session_options().enable_mem_pattern  # (README: memory)
    for seed in (1, 2):  # frames other than the one used for export
        image, depth, K, pose = small_frame(seed)
        depth[:5] = np.nan
        inputs = torch_predictor.prepare([image], [depth], [K], [pose])
        reference = torch_predictor.logits(inputs)
        labels, logits = runtime.backend.run(inputs)
        result = compare(reference, labels, logits)
        assert result['argmax_agreement'] >= 0.999 and result['max_abs_logit_diff'] < 1e-4, result
        pred = runtime.predict(image, depth, K, pose, return_probs=True)
        np.testing.assert_array_equal(pred.labels, labels[0])
        np.testing.assert_allclose(pred.probs.sum(0), 1.0, rtol=1e-5)
    two = runtime.predict_batch([image, image], [depth, depth], [K, K], [pose, pose])
    np.testing.assert_array_equal(two[0].labels, two[1].labels)


def test_exported_graph_has_static_shapes(exported):
    """No NonZero and no dimension left open: every selection has its fixed size (the tool's
    defaults: all 1,024 voxels of the small decoder grid in view, 256 proposals), for any
    count in view (padding rows computed and dropped), none included."""
    import onnx
    path, torch_predictor = exported
    graph = onnx.load(str(path)).graph
    assert 'NonZero' not in {n.op_type for n in graph.node}
    values = [*graph.input, *graph.value_info, *graph.output]
    assert len(values) > 1000
    for value in values:
        assert all(d.HasField('dim_value') for d in value.type.tensor_type.shape.dim), value.name
    runtime = Predictor.from_checkpoint(path, backend='onnxruntime')
    assert runtime.backend.sizes == SelectionSizes(visible=1024, proposals=256)
    image, depth, K, pose = small_frame(5)
    inputs = torch_predictor.prepare([image], [depth], [K], [pose])
    visible = inputs['fov_mask'][0].nonzero()[:, 0]
    for count in (0, 1, 7, 13, 300):
        fov = torch.zeros_like(inputs['fov_mask'])
        fov[0, visible[:count]] = True
        case = {**inputs, 'fov_mask': fov}
        labels, logits = runtime.backend.run(case)
        result = compare(torch_predictor.logits(case), labels, logits)
        assert result['max_abs_logit_diff'] < 1e-4, (count, result)


def test_onnxruntime_refuses_frames_beyond_the_sizes(exported, tmp_path):
    """A frame with more proposals than the file takes (or a camera seeing more voxels) is
    refused with the count and the export option, not answered with voxels left out."""
    import onnx
    path, torch_predictor = exported
    runtime = OnnxRuntimeBackend(path)
    image, depth, K, pose = small_frame(1)
    spread = np.random.default_rng(0).uniform(1, 60, depth.shape).astype(np.float32)
    inputs = torch_predictor.prepare([image], [spread], [K], [pose])
    assert torch_predictor.backend.model.selection_counts(**inputs)[0, 1] == 349
    with pytest.raises(ValueError, match=r'^depth: 349 voxels hold a depth point, the ONNX model .* takes '
                       r'at most 256 \(export it with --max-proposals 349 or more\)$'):
        runtime.run(inputs)
    model = onnx.load(str(path))
    sizes = next(p for p in model.metadata_props if p.key == ONNX_SIZES_KEY)
    for value, message in (('{"visible": 100, "proposals": 256}', None),
                           ('{"visible": 1025, "proposals": 256}', 'with 0 <= n <= 1024, got'),
                           ('{"visible": 5}', 'must be {"visible": n, "proposals": n}'),
                           ('[1, 2', 'must be'), (None, 'no ssc_ros.selection_sizes metadata')):
        if value is None:
            model.metadata_props.remove(sizes)
        else:
            sizes.value = value
        changed = tmp_path / 'changed.onnx'
        onnx.save_model(model, str(changed))
        if message is not None:
            with pytest.raises(CheckpointError, match=re.escape(message)):
                OnnxRuntimeBackend(changed)
            continue
        with pytest.raises(ValueError, match=r'^camera: 324 voxels of the decoder grid are in view, the '
                           r'ONNX model .* takes at most 100 \(export it with --max-visible 324 or more\)$'):
            OnnxRuntimeBackend(changed).run(torch_predictor.prepare([image], [depth], [K], [pose]))


def test_export_tool_verifies_before_success(export_run):
    _, out, folder = export_run
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'ONNX checker passed' in out.stdout
    assert ('selections: at most 1024 voxels in view and 256 holding a depth point, of 1024 (the '
            'sample frame: 324 and 117)') in out.stdout
    agreement = float(out.stdout.split('argmax agreement ')[1].split('%')[0])
    assert agreement >= 99.99  # float-noise ties aside, the same labels
    assert (folder / 'small.onnx').is_file() and not list(folder.glob('.small.onnx*'))


def test_export_holds_only_the_operators_the_loader_admits(exported):
    """The loader's allow-list (``onnx_model.EXPORTED_OPS``) holds every operator the exporter
    writes, and each data-dependent one it admits is still written (none: the export is static,
    so every shape must be)."""
    import onnx

    from ssc_core.backends.onnx_model import DATA_DEPENDENT_OPS, EXPORTED_OPS
    path, _ = exported
    model = onnx.load(str(path))
    written = {node.op_type for node in model.graph.node}
    assert {node.domain for node in model.graph.node} <= {''} and not model.functions
    assert written <= EXPORTED_OPS, f'add to EXPORTED_OPS: {sorted(written - EXPORTED_OPS)}'
    assert DATA_DEPENDENT_OPS <= written, f'no longer exported: {sorted(DATA_DEPENDENT_OPS - written)}'


def test_wrong_preset_corrupt_file_and_missing_provider(exported, tmp_path):
    path, _ = exported
    with pytest.raises(CheckpointError, match="exported for preset 'small_test'.*not 'semantic_kitti'"):
        Predictor.from_checkpoint(path, 'semantic_kitti', backend='onnxruntime')
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match='bad.onnx'):
        Predictor.from_checkpoint(bad, backend='onnxruntime')
    import onnxruntime as ort
    gpu = ('CUDAExecutionProvider', 'TensorrtExecutionProvider')
    if not any(p in ort.get_available_providers() for p in gpu):
        with pytest.raises(RuntimeError, match='no GPU execution provider'):
            OnnxRuntimeBackend(path, device='cuda')
        fallback = OnnxRuntimeBackend(path, device='cuda', allow_fallback=True)
        assert fallback.providers == ['CPUExecutionProvider']
    backend = OnnxRuntimeBackend(path)
    image, depth, K, pose = small_frame(3)
    inputs = exported[1].prepare([image, image], [depth, depth], [K, K], [pose, pose])
    with pytest.raises(ValueError, match=r'img: the ONNX model .* takes shape \[1, 3, 64, 200\], got \[2'):
        backend.run(inputs)


@pytest.mark.ros
def test_node_runs_with_onnxruntime(exported, tmp_path):
    """ssc_node with backend:=onnxruntime, fed one frame over DDS, publishes its voxels."""
    from ros_helpers import Probe, node_command, start
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header

    from ssc_ros import conversions as conv

    path, _ = exported
    probe = Probe()
    try:
        probe.record(PointCloud2, '/voxels')
        node = start(node_command('-p', 'backend:=onnxruntime', '-p', f'checkpoint:={path}'),
                     tmp_path / 'node.log')
        image, depth, K, _ = small_frame(4)
        pubs = [probe.node.create_publisher(t, n, 10) for t, n in ((CameraInfo, '/camera_info'),
                                                                 (Image, '/image'), (Image, '/depth'))]
        header = Header(frame_id='camera')
        for i in range(40):  # until the node is up and has answered
            if probe.messages('/voxels'):
                break
            header.stamp.sec = 100 + i
            pubs[0].publish(CameraInfo(k=list(K.ravel()), width=200, height=64))
            pubs[1].publish(conv.rgb_image_msg(image, header))
            pubs[2].publish(conv.depth_image_msg(depth, header))
            time.sleep(1.0)
        probe.wait_for(lambda: probe.messages('/voxels'), 30, 'voxels from the onnxruntime node')
        assert probe.messages('/voxels')[0].header.frame_id == 'base_link'  # grid_frame's default
        node.terminate()
        node.wait(timeout=20)
        assert 'onnxruntime (CPUExecutionProvider' in (tmp_path / 'node.log').read_text()
    finally:
        probe.close()


def test_onnxruntime_runs_frames_without_depth(exported):
    path, torch_predictor = exported
    runtime = Predictor.from_checkpoint(path, backend='onnxruntime')
    image, depth, K, pose = small_frame(4)
    for no_depth in (np.full_like(depth, np.nan), np.full_like(depth, 300.0)):
        pred = runtime.predict(image, no_depth, K, pose, return_probs=True)
        reference = torch_predictor.predict(image, no_depth, K, pose, return_probs=True)
        assert 'no_depth_in_grid' in pred.warnings
        np.testing.assert_allclose(pred.probs, reference.probs, atol=1e-5)
        assert (pred.labels == reference.labels).mean() >= 0.999
