"""ONNX export and the ONNX Runtime backend (small config; real onnxruntime)."""
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ssc_core.backends.onnxruntime_backend import OnnxRuntimeBackend
from ssc_core.checkpoint import CheckpointError, save_checkpoint
from ssc_core.export import compare
from ssc_core.model.chunks import EXPORTED_SLICES
from ssc_core.model.deform_attn import MultiScaleDeformableAttention
from ssc_core.predictor import Predictor

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


def test_exported_graph_slices_the_visible_voxels(exported):
    """The data-dependent voxel sets (depth proposals, field of view) are attended in
    ``EXPORTED_SLICES`` slices of a size the graph computes, for any count, empty included."""
    import onnx
    path, torch_predictor = exported
    sliced = ('decoder.voxel_proposal.', 'scene_self_deform_attn.')  # attend data-dependent sets
    expected = sum(m.num_levels * (EXPORTED_SLICES if any(p in name for p in sliced) else 1)
                   for name, m in torch_predictor.backend.model.named_modules()
                   if isinstance(m, MultiScaleDeformableAttention))
    sampled = [n for n in onnx.load(str(path)).graph.node if n.op_type == 'GridSample']
    assert len(sampled) == expected > 40
    runtime = Predictor.from_checkpoint(path, backend='onnxruntime')
    image, depth, K, pose = small_frame(5)
    inputs = torch_predictor.prepare([image], [depth], [K], [pose])
    visible = inputs['fov_mask'][0].nonzero()[:, 0]
    for count in (0, 1, 7, 13, EXPORTED_SLICES * 3):
        fov = torch.zeros_like(inputs['fov_mask'])
        fov[0, visible[:count]] = True
        case = {**inputs, 'fov_mask': fov}
        labels, logits = runtime.backend.run(case)
        result = compare(torch_predictor.logits(case), labels, logits)
        assert result['max_abs_logit_diff'] < 1e-4, (count, result)


def test_export_tool_verifies_before_success(export_run):
    _, out, folder = export_run
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'ONNX checker passed' in out.stdout
    agreement = float(out.stdout.split('argmax agreement ')[1].split('%')[0])
    assert agreement >= 99.99  # float-noise ties aside, the same labels
    assert (folder / 'small.onnx').is_file() and not list(folder.glob('.small.onnx*'))


def test_export_holds_only_the_operators_the_loader_admits(exported):
    """The loader's allow-list (``onnx_model.EXPORTED_OPS``) holds every operator the exporter
    writes, and each data-dependent one it admits is still written (when the export no longer
    writes NonZero, DATA_DEPENDENT_OPS drops it and every shape must be static)."""
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
        assert probe.messages('/voxels')[0].header.frame_id == 'velodyne'
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
