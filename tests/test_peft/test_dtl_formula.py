"""DTL and DTL+ against their formula: init and the add-back formula."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmpretrain')

import vpetl_mm  # noqa: E402,F401
from tests.test_models.reference import assert_formula  # noqa: E402
from tests.test_peft.formulas_adapters import DIMS, assert_uniform, build, randomize  # noqa: E402
from tests.test_peft.formulas_adapters import scope  # noqa: E402,F401 (autouse)


# DTL: R = sum_{j <= i} B_j A_j x_j over block inputs x_j; after each add-back block
# x <- x + swish(R), swish(R) = R sigmoid(100 R); DTL+ convolves the patch grid of swish(R)
# depthwise (the cls token bypasses it), one convolution shared by the add-back blocks


def test_dtl_init(tmp_path):
    """``A`` kaiming-uniform, ``B`` zero; DTL+'s one depthwise convolution has PyTorch's
    default init (bound 1 / sqrt(k^2)) and no bias."""
    _, model = build(tmp_path, dict(type='DTL+', rank=8, kernel_size=3))
    dtl = model.peft.methods['dtlplus']
    assert list(dtl.side) == ['0', '1', '2', '3'] and list(dtl.fusion) == ['0']
    assert_uniform(torch.cat([dtl.side[i].down.detach().flatten() for i in dtl.side]),
                   DIMS ** -0.5)
    assert all(torch.equal(dtl.side[i].up, torch.zeros(DIMS, 8)) for i in dtl.side)
    conv = dtl.fusion['0']
    assert conv.weight.shape == (DIMS, 1, 3, 3) and conv.bias is None
    assert_uniform(conv.weight.detach(), 1 / 3)


@pytest.mark.parametrize('kernel', [0, 3])
def test_dtl_formula(tmp_path, kernel):
    """The default add-back blocks are the second half (2 and 3 of 4)."""
    method = dict(type='DTL+', kernel_size=kernel) if kernel else dict(type='DTL')
    plain, model = build(tmp_path, dict(method, rank=2))
    randomize(model)
    dtl = model.peft.methods['dtlplus' if kernel else 'dtl']
    side = {}

    def fused(s):
        if not kernel:
            return s
        grid = s[:, 1:].transpose(1, 2).reshape(len(s), DIMS, 4, 4)
        grid = F.conv2d(grid, dtl.fusion['0'].weight, padding=kernel // 2, groups=DIMS)
        return torch.cat([s[:, :1], grid.flatten(2).transpose(1, 2)], 1)

    def accumulate(m, args, lr):
        side['r'] = side['r'] + args[0] @ lr.down.t() @ lr.up.t()

    def register(plain):
        plain.register_forward_pre_hook(lambda m, a: side.update(r=0))
        for i, ref in enumerate(plain.layers):
            ref.register_forward_pre_hook(lambda m, args, lr=dtl.side[str(i)]:
                                          accumulate(m, args, lr))
            if i >= 2:
                ref.register_forward_hook(
                    lambda m, a, y: y + fused(side['r'] * torch.sigmoid(100 * side['r'])))
    assert_formula(model, plain, register)
