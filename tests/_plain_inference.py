"""A toolbox's own inferencer on an exported (plain) config and checkpoint, without vpetl_mm.

    python tests/_plain_inference.py {mmdet,mmseg} CONFIG WEIGHTS IMAGE INPUT OUT

Builds ``DetInferencer`` / ``MMSegInferencer`` from CONFIG and WEIGHTS on the CPU, loads WEIGHTS
again with ``strict=True`` (the inferencers load non-strictly, so a key mismatch would pass
unseen), runs the model's ``mode='tensor'`` forward on the tensor saved at INPUT and the
inferencer on IMAGE, and saves ``{'tensor', 'raw', 'classes'}`` to OUT. Exits non-zero when
anything imported vpetl_mm. Run as a script, it imports only torch and the toolbox; the test
process imports it for the same extraction of outputs.
"""
import importlib
import sys

import torch

INFERENCERS = {'mmdet': ('mmdet.apis', 'DetInferencer'),
               'mmseg': ('mmseg.apis', 'MMSegInferencer')}


def build_inferencer(toolbox: str, config: str, weights: str):
    """The toolbox's inferencer for ``config`` with ``weights`` on the CPU."""
    module, name = INFERENCERS[toolbox]
    return getattr(importlib.import_module(module), name)(model=config, weights=weights,
                                                          device='cpu')


def raw_outputs(inferencer, image: str) -> dict:
    """The inferencer's prediction for ``image`` as tensors: a detector's ``bboxes`` ``(N, 4)``
    in image pixels, ``scores`` / ``labels`` ``(N,)``; a segmentor's ``seg_logits``
    ``(classes, H, W)`` and ``pred_sem_seg`` ``(1, H, W)`` at the image's size."""
    result = inferencer(image, return_datasamples=True)
    sample = result['predictions'] if isinstance(result, dict) else result  # mmseg: the sample
    sample = sample[0] if isinstance(sample, list) else sample
    if 'pred_instances' in sample:
        return {k: sample.pred_instances[k] for k in ('bboxes', 'scores', 'labels')}
    return {'seg_logits': sample.seg_logits.data, 'pred_sem_seg': sample.pred_sem_seg.data}


@torch.no_grad()
def tensor_outputs(model, x: torch.Tensor) -> list:
    """``model(x, mode='tensor')`` (a detector: per-level head maps; a segmentor: the decode
    head's logits) as a flat list of tensors."""
    out = model.eval()(x, mode='tensor')
    pending, flat = [out], []
    while pending:
        item = pending.pop(0)
        if isinstance(item, torch.Tensor):
            flat.append(item)
        else:
            pending[:0] = list(item)
    return flat


def main(argv):
    toolbox, config, weights, image, inputs, out = argv
    inferencer = build_inferencer(toolbox, config, weights)
    state = torch.load(weights, map_location='cpu', weights_only=True)['state_dict']
    print(inferencer.model.load_state_dict(state, strict=True))
    torch.save({'tensor': tensor_outputs(inferencer.model, torch.load(inputs)),
                'raw': raw_outputs(inferencer, image),
                'classes': tuple(inferencer.model.dataset_meta['classes'])}, out)
    loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'vpetl_mm')
    if loaded:
        sys.exit(f'imported {loaded}')


if __name__ == '__main__':
    main(sys.argv[1:])
