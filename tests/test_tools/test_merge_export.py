"""tools/model_converters/merge_peft.py: a merged checkpoint loads into the plain toolbox model."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from tools.model_converters import merge_peft  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_TEMPLATE = osp.join(ROOT, 'configs', 'demo', 'vit-tiny_{}_digits.py')


@pytest.mark.parametrize('method', ['lora', 'kadaptation', 'arc', 'gps'])
def test_merged_checkpoint_loads_without_vpetl_mm(tmp_path, tiny_pretrained, method):
    cfg_file = CFG_TEMPLATE.format(method)
    import vpetl_mm
    from mmpretrain.registry import MODELS
    options = ['model.backbone.backbone.arch.embed_dims=32',
               'model.backbone.backbone.arch.num_heads=2',
               'model.backbone.backbone.arch.feedforward_channels=64',
               'model.head.in_channels=32', f'model.backbone.pretrained={tiny_pretrained}']
    cfg = Config.fromfile(cfg_file)
    cfg.merge_from_dict({'model.backbone.backbone.arch.embed_dims': 32,
                         'model.backbone.backbone.arch.num_heads': 2,
                         'model.backbone.backbone.arch.feedforward_channels': 64,
                         'model.head.in_channels': 32,
                         'model.backbone.pretrained': tiny_pretrained})
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)  # a "trained" LoRA and head
    ckpt = tmp_path / 'trained.pth'
    torch.save({'state_dict': vpetl_mm.engine.trainable_state_dict(model)}, ckpt)
    out = tmp_path / 'merged.pth'
    merge_peft.main([cfg_file, str(ckpt), str(out), '--cfg-options', *options])

    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        expected = model(x, mode='tensor')
    torch.save(x, tmp_path / 'x.pth')
    torch.save(expected, tmp_path / 'expected.pth')
    # a fresh interpreter that never imports vpetl_mm: the plain mmpretrain classifier
    plain_cfg = cfg.model.copy()
    plain_cfg.backbone = merge_peft.plain_backbone_config(cfg.model.backbone)
    code = f'''
import sys, torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
init_default_scope('mmpretrain')
model = MODELS.build({dict(plain_cfg)!r})
sd = torch.load({str(out)!r}, weights_only=True)['state_dict']
print(model.load_state_dict(sd, strict=True))
model.eval()
with torch.no_grad():
    y = model(torch.load({str(tmp_path / 'x.pth')!r}), mode='tensor')
diff = (y - torch.load({str(tmp_path / 'expected.pth')!r})).abs().max().item()
assert 'vpetl_mm' not in sys.modules
print('maxdiff', diff)
'''
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'All keys matched successfully' in res.stdout
    assert float(res.stdout.split('maxdiff')[-1]) < 1e-5


def test_merge_peft_on_another_methods_checkpoint(tmp_path, tiny_pretrained):
    """merge_peft.py explains a checkpoint of another method as tools/test.py does, and a file
    without meta['peft'] by the weights that do not fit, instead of a bare KeyError."""
    import vpetl_mm
    from mmpretrain.registry import MODELS
    sizes = {'model.backbone.backbone.arch.embed_dims': 32,
             'model.backbone.backbone.arch.num_heads': 2,
             'model.backbone.backbone.arch.feedforward_channels': 64,
             'model.head.in_channels': 32, 'model.backbone.pretrained': tiny_pretrained}
    cfg = Config.fromfile(CFG_TEMPLATE.format('adapter'))
    cfg.merge_from_dict(sizes)
    init_default_scope('mmpretrain')
    vpetl_mm.save_trainable(MODELS.build(cfg.model), str(tmp_path / 'adapter.pth'))
    bare = torch.load(tmp_path / 'adapter.pth', weights_only=False)
    bare.pop('meta')
    torch.save(bare, tmp_path / 'bare.pth')
    options = [f'{k}={v}' for k, v in sizes.items()]
    for ckpt, message in (('adapter.pth', 'was trained with PEFT methods'),
                          ('bare.pth', 'was it trained with another method')):
        proc = subprocess.run(
            [sys.executable, 'tools/model_converters/merge_peft.py', CFG_TEMPLATE.format('lora'),
             str(tmp_path / ckpt), str(tmp_path / 'out.pth'), '--cfg-options', *options],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert 'merge_peft: error:' in proc.stderr and message in proc.stderr, \
            proc.stderr[-2000:]
        assert 'Traceback' not in proc.stderr
        assert not (tmp_path / 'out.pth').exists()
