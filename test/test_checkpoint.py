"""Checkpoint loading: strict, safe (no code runs from the file), clear errors."""
import builtins
import os
import stat

import pytest
import torch

from ssc_core.checkpoint import CheckpointError, load_model, read_state_dict, save_checkpoint

from small_model import SMALL_PRESET


@pytest.fixture(scope='module')
def small_model():
    torch.manual_seed(0)
    return SMALL_PRESET.model.build().eval()


def test_our_checkpoint_round_trip(small_model, tmp_path):
    path = save_checkpoint(small_model, SMALL_PRESET, tmp_path / 'small.safetensors')
    model, preset = load_model(path)
    assert preset == SMALL_PRESET
    for (k, a), b in zip(small_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    assert not (tmp_path / 'small.safetensors.tmp').exists()


def test_saved_files_are_readable_by_others_as_the_umask_allows(small_model, tmp_path):
    """safetensors creates its files 0600; ours get what any new file gets (a node running as
    another user can load them)."""
    old = os.umask(0o027)
    try:
        path = save_checkpoint(small_model, SMALL_PRESET, tmp_path / 'shared.safetensors')
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_lightning_checkpoint_with_prefix_and_extra_entries(small_model, tmp_path):
    path = tmp_path / 'run.ckpt'
    torch.save({'epoch': 3, 'hyper_parameters': {'lr': 2e-4, 'betas': (0.9, 0.999)},
                'optimizer_states': [{'state': {}, 'param_groups': [{'lr': 2e-4}]}],
                'state_dict': {'model.' + k: v for k, v in small_model.state_dict().items()}}, path)
    model, _ = load_model(path, SMALL_PRESET)
    torch.testing.assert_close(model.state_dict(), small_model.state_dict())


def test_missing_unexpected_and_misshaped_keys_are_listed(small_model, tmp_path):
    state = dict(small_model.state_dict())
    state.pop('decoder.scene_embed.weight')
    state['decoder.bogus'] = torch.zeros(1)
    state['decoder.cls_head.2.bias'] = torch.zeros(99)
    path = tmp_path / 'bad.pt'
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path, SMALL_PRESET)
    msg = str(err.value)
    assert 'missing keys: decoder.scene_embed.weight' in msg
    assert "unexpected keys: 'decoder.bogus'" in msg
    assert 'decoder.cls_head.2.bias: checkpoint (99,), network (6,)' in msg


def test_wrong_preset_is_named(reference_dir, fill, tmp_path):
    state = fill.fill_state_dict(str(reference_dir / 'MANIFEST_kitti_360.tsv'))
    path = tmp_path / 'kitti_360.ckpt'
    torch.save({'state_dict': {'model.' + k: torch.from_numpy(v) for k, v in state.items()}}, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path, 'semantic_kitti')
    msg = str(err.value)
    assert 'decoder.image_grid: checkpoint is for images (376, 1408)' in msg
    assert 'decoder.cls_head.2.weight: checkpoint (19, 128, 1, 1, 1), network (20, 128, 1, 1, 1)' in msg
    _, preset = load_model(path)  # inferred from the shapes
    assert preset.name == 'kitti_360'


def test_our_checkpoint_for_another_preset(small_model, tmp_path):
    path = save_checkpoint(small_model, SMALL_PRESET, tmp_path / 'small.safetensors')
    with pytest.raises(CheckpointError, match="made for preset 'small_test', not 'semantic_kitti'"):
        load_model(path, 'semantic_kitti')


@pytest.mark.parametrize('cut', [0.5, 0.999])
def test_truncated_files(small_model, tmp_path, cut):
    for name, writer in (('a.safetensors', lambda p: save_checkpoint(small_model, SMALL_PRESET, p)),
                         ('a.ckpt', lambda p: torch.save({'state_dict': small_model.state_dict()}, p))):
        path = tmp_path / name
        writer(path)
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * cut)])
        with pytest.raises(CheckpointError, match='truncated|corrupt'):
            load_model(path, SMALL_PRESET)


def test_garbage_and_missing_files(tmp_path):
    path = tmp_path / 'garbage.ckpt'
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match='garbage.ckpt'):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match='no such checkpoint file'):
        read_state_dict(tmp_path / 'absent.ckpt')


class _RunsCode:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.parametrize('fn', [os.system, builtins.exec])
def test_code_in_pickle_is_refused_and_not_run(small_model, tmp_path, fn):
    marker = tmp_path / 'pwned'
    arg = f'touch {marker}' if fn is os.system else f'open({str(marker)!r}, "w").close()'
    path = tmp_path / 'evil.ckpt'
    torch.save({'state_dict': small_model.state_dict(), 'payload': _RunsCode(fn, arg)}, path)
    with pytest.raises(CheckpointError, match='refusing to load.*could run code'):
        load_model(path, SMALL_PRESET)
    assert not marker.exists()


def test_training_initialization_from_weights_and_backbone(tmp_path):
    import timm

    from ssc_core.presets import SMALL
    from ssc_core.training import SSCModule

    torch.manual_seed(1)
    trained = SMALL.model.build()
    module = SSCModule(preset='small')
    module.load_weights(save_checkpoint(trained, SMALL, tmp_path / 'init.safetensors'))
    torch.testing.assert_close(module.model.state_dict(), trained.state_dict())
    backbone = timm.create_model('resnet10t', pretrained=False)  # a user's ImageNet file, with fc
    torch.save(backbone.state_dict(), tmp_path / 'resnet10t.pth')
    module.load_backbone(tmp_path / 'resnet10t.pth')
    torch.testing.assert_close(module.model.encoder.model.backbone.state_dict()['layer4.0.conv2.weight'],
                               backbone.state_dict()['layer4.0.conv2.weight'])
    torch.save({'conv1.0.weight': torch.zeros(3)}, tmp_path / 'wrong.pth')
    with pytest.raises(ValueError, match='backbone weights do not fit resnet10t'):
        module.load_backbone(tmp_path / 'wrong.pth')


def test_presets_pass_their_own_schema():
    import dataclasses
    import json

    from ssc_core.checkpoint import BUILTIN_CHECKPOINT
    from ssc_core.presets import PRESETS, Preset
    for preset in (*PRESETS.values(), SMALL_PRESET):
        again = Preset.from_dict(json.loads(json.dumps(preset.to_dict())))
        assert again == preset and again.description == preset.description
    _, stored = read_state_dict(BUILTIN_CHECKPOINT)
    assert stored == PRESETS['small']
    renamed = dataclasses.replace(SMALL_PRESET, name='mine', description='a fine-tune')
    assert SMALL_PRESET.differences(renamed) == []
    moved = dataclasses.replace(SMALL_PRESET, voxel_origin=(0.0, -25.0, -2.0),
                                model=dataclasses.replace(SMALL_PRESET.model, num_queries=11))
    assert SMALL_PRESET.differences(moved) == ['model.num_queries', 'voxel_origin']


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_pickle_protocols_load_bit_identically(small_model, tmp_path, protocol):
    """torch.save(..., pickle_protocol=N): framing, short strings, memo and stack globals of
    protocols 4-5 and bytes of 3 are read as protocol 2 (the objects the same), and a state
    dict's _metadata and 100,000 integer keys (an optimizer's state) are no hash bomb."""
    from collections import OrderedDict

    from ssc_core.torch_archive import load_archive
    state = small_model.state_dict()
    assert isinstance(state, OrderedDict) and state._metadata
    extra = {'hyper_parameters': {'lr': 1e-3, 'note': b'\x00\xffbytes', 'steps': (1, 2.5)},
             'optimizer_states': [{'state': {i: i for i in range(100_000)}}]}
    path = tmp_path / f'protocol{protocol}.ckpt'
    torch.save({'state_dict': state, **extra}, path, pickle_protocol=protocol)
    read, _ = read_state_dict(path)
    assert list(read) == list(state)
    for key, value in state.items():
        assert value.dtype == read[key].dtype and value.stride() == read[key].stride(), key
        assert torch.equal(value, read[key]), key
    obj = load_archive(path).obj
    assert obj['state_dict']._metadata == state._metadata
    assert {k: obj[k] for k in extra} == extra
    model, _ = load_model(path, SMALL_PRESET)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_stored_presets_read_negative_zero_as_zero():
    import json
    import math

    from ssc_core.presets import Preset
    data = SMALL_PRESET.to_dict()
    data['voxel_origin'] = [-0.0, -25.6, -2.0]
    preset = Preset.from_dict(json.loads(json.dumps(data)))
    assert math.copysign(1.0, preset.voxel_origin[0]) == 1.0 and preset == SMALL_PRESET
