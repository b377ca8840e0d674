"""vpetl_mm against the implementations people compare it with, in one process.

    python tools/analysis_tools/benchmark_peers.py [--pairs lora full frozen merged unmerged
        video-attn seg-attn] [--arch b] [--batch-size 8] [--img-size 224] [--rounds 7]
        [--frames 8] [--seg-size 512] [--attn-batch 2] [--device cpu|cuda] [--out results.json]

Each pair runs ours and the reference on the same input, alternating the order every round
(interleaved rounds, so that a noisy machine slows both alike), and prints the median step time,
images/s, training memory and the ratios ours / reference:

* ``lora``: LoRA r=8 on q and v of mmpretrain's ViT (vpetl_mm) against HF peft's LoRA r=8 on
  timm's fused ``qkv`` (the same parameter count, 4 r C per block), linear head trained in both;
  needs ``peft`` (skipped, and said, when it is not importable);
* ``full``: full fine-tuning of mmpretrain's ViT through vpetl_mm against timm's ViT;
* ``frozen``: inference of the frozen backbone (vpetl_mm's linear probe) against timm's;
* ``merged``: inference of LoRA merged into the weights against plain timm;
* ``unmerged``: inference of LoRA unmerged against merged (both vpetl_mm);
* ``video-attn``: forward + backward of one attention of mmaction's ViT-B (VideoMAE layout,
  ``--frames`` frames of ``--img-size`` px, tubelet 2) as the spec installs it (SDPA) against
  mmaction's own (explicit ``q k^T``), frozen weights, the gradient of the input;
* ``seg-attn``: the same for mmseg's ViT-B at ``--seg-size`` px (``nn.MultiheadAttention``
  called as mmcv's wrapper calls it, against the spec's SDPA forward).

Training memory on a GPU is ``torch.cuda.max_memory_allocated`` during a step minus what was
allocated before it; on the CPU it is what a step adds that the process cannot share: the bytes
autograd saves for backward (parameters excluded) plus the gradients and AdamW's two states of
the trainable parameters. FLOPs per step come from ``torch.utils.flop_counter``; on a GPU whose
peak is known (or given with ``--peak-tflops``) the model FLOPs utilisation is printed.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

PAIRS = ('lora', 'full', 'frozen', 'merged', 'unmerged', 'video-attn', 'seg-attn')
#: mmpretrain arch -> the timm model of the same sizes
TIMM_ARCH = {'b': 'vit_base_patch16_224', 'l': 'vit_large_patch16_224',
             'deit-tiny': 'vit_tiny_patch16_224', 'deit-small': 'vit_small_patch16_224'}
#: dense bf16 / tf32 tensor-core peaks in TFLOP/s, by a substring of the GPU's name
PEAK_TFLOPS = {'H200': 989.0, 'H100': 989.0, 'A100': 312.0, 'L40S': 362.0, 'A10': 125.0}
CLASSES = 100
RANK = 8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pairs', nargs='+', choices=PAIRS, default=list(PAIRS))
    parser.add_argument('--arch', choices=sorted(TIMM_ARCH), default='b')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=7, help='timed rounds per pair')
    parser.add_argument('--frames', type=int, default=8, help='video-attn: frames per clip')
    parser.add_argument('--seg-size', type=int, default=512, help='seg-attn: image size')
    parser.add_argument('--attn-batch', type=int, default=2, help='the attention pairs\' batch')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--peak-tflops', type=float,
                        help='the device peak for the MFU column (known GPUs need none)')
    parser.add_argument('--out', help='write the rows as JSON here')
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.rounds < 1:
        parser.error('--batch-size and --rounds must be >= 1')
    return args


# -- the models --------------------------------------------------------------------------------
class Classifier(nn.Module):
    """A vpetl_mm backbone (cls-token features ``(B, C)``) with a linear head."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.embed_dims, CLASSES)

    def forward(self, x):
        return self.head(self.backbone(x)[-1])


def ours(method, args):
    from mmengine.registry import MODELS, init_default_scope

    import vpetl_mm  # noqa: F401  (registers vpetl_mm.PEFTBackbone)
    init_default_scope('mmpretrain')
    vit = dict(type='VisionTransformer', arch=args.arch, img_size=args.img_size, patch_size=16,
               init_cfg=None)
    return Classifier(MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=vit,
                                        method=method)))


def timm_vit(args):
    import timm
    return timm.create_model(TIMM_ARCH[args.arch], pretrained=False, num_classes=CLASSES,
                             img_size=args.img_size)


def peft_lora(args):
    """timm's ViT with HF peft's LoRA on ``qkv`` (scale alpha / r = 1, no dropout) and the
    head trainable; None when peft is not importable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        return None
    model = get_peft_model(timm_vit(args), LoraConfig(r=RANK, lora_alpha=RANK, lora_dropout=0.0,
                                                      target_modules=['qkv']))
    for p in model.base_model.model.head.parameters():
        p.requires_grad_(True)
    return model


def merged_lora(args):
    from vpetl_mm import merge_and_unload
    model = ours(dict(type='LoRA', rank=RANK, targets=('q', 'v')), args)
    for p in model.parameters():  # a trained update, so that merging changes the weights
        if p.requires_grad:
            nn.init.normal_(p, std=0.02)
    merge_and_unload(model)
    return model


def attention_pair(name, args):
    """``(ours, reference, input)`` of ``video-attn`` / ``seg-attn``: the spec-installed forward
    and the toolbox's own, on one frozen ViT-B attention; the input requires a gradient."""
    from mmengine.registry import MODELS, init_default_scope

    from vpetl_mm.models.specs.base import get_spec
    if name == 'video-attn':
        init_default_scope('mmaction')
        vit = MODELS.build(dict(type='VisionTransformer', img_size=args.img_size, patch_size=16,
                                embed_dims=768, depth=1, num_heads=12, num_frames=args.frames,
                                qkv_bias=True, norm_cfg=dict(type='LN', eps=1e-6)))
        attn = get_spec(vit).blocks[0].attn
        x = torch.randn(args.attn_batch, args.frames // 2 * (args.img_size // 16)**2, 768)
        ours_fn, ref_fn = attn, (lambda t: type(attn).forward(attn, t))
    else:
        init_default_scope('mmseg')
        vit = MODELS.build(dict(type='VisionTransformer', img_size=args.seg_size, patch_size=16,
                                embed_dims=768, num_layers=1, num_heads=12))
        attn = get_spec(vit).blocks[0].attn  # the inner nn.MultiheadAttention, (L, B, C)
        x = torch.randn(1 + (args.seg_size // 16)**2, args.attn_batch, 768)
        ours_fn = (lambda t: attn(t, t, t)[0])
        ref_fn = (lambda t: type(attn).forward(attn, t, t, t)[0])  # need_weights=True, as mmcv
    attn.requires_grad_(False)
    return attn, ours_fn, ref_fn, x.requires_grad_()


def build_pair(name, args):
    """``(ours, reference, 'train' or 'infer', reference label)``; reference None = skipped."""
    lora = dict(type='LoRA', rank=RANK, targets=('q', 'v'))
    if name == 'lora':
        return ours(lora, args), peft_lora(args), 'train', 'HF peft LoRA on timm'
    if name == 'full':
        return ours(dict(type='FullFineTune'), args), timm_vit(args), 'train', 'timm'
    if name == 'frozen':
        return ours(dict(type='LinearProbe'), args), timm_vit(args), 'infer', 'timm'
    if name == 'merged':
        return merged_lora(args), timm_vit(args), 'infer', 'timm'
    return ours(lora, args), merged_lora(args), 'infer', 'vpetl_mm LoRA merged'


# -- measuring ---------------------------------------------------------------------------------
class Runner:
    """One model's step (a training step with AdamW, a no-grad forward, or for ``attn`` the
    forward and backward of ``forward`` to its input) and its figures."""

    def __init__(self, model, mode, x, y, forward=None):
        self.model, self.mode, self.x, self.y = model, mode, x, y
        self.forward = forward or model
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optim = torch.optim.AdamW(self.trainable, lr=1e-4) if mode == 'train' else None
        model.train(mode == 'train')
        self.times = []

    def step(self):
        if self.mode == 'infer':
            with torch.no_grad():
                return self.model(self.x)
        if self.mode == 'attn':
            self.x.grad = None
            return self.forward(self.x).sum().backward()
        self.optim.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.optim.step()
        return loss

    def timed_step(self):
        sync(self.x.device)
        start = time.perf_counter()
        self.step()
        sync(self.x.device)
        self.times.append(time.perf_counter() - start)

    def memory(self):
        """Bytes one step adds (see the module docstring)."""
        if self.x.device.type == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            self.step()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - base
        if self.mode == 'infer':
            return 0
        params = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        saved = {}  # storage -> bytes: views of one storage count once

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                saved[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self.step()
        state = sum(p.numel() * p.element_size() for p in self.trainable)
        return sum(saved.values()) + 3 * state  # gradients + AdamW's exp_avg, exp_avg_sq

    def flops(self):
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            self.step()
        return counter.get_total_flops()


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def measure(name, args, device):
    from mmengine.logging import MMLogger
    MMLogger.get_instance('benchmark_peers', log_level='WARNING')  # no init_weights reports
    torch.manual_seed(0)
    if name.endswith('-attn'):
        attn, ours_fn, ref_fn, x = attention_pair(name, args)
        label = 'mmaction explicit' if name == 'video-attn' else 'mmseg via mmcv'
        mode, batch = 'attn', args.attn_batch
        x = x.detach().to(device).requires_grad_()
        runners = [Runner(attn.to(device), mode, x, None, fn) for fn in (ours_fn, ref_fn)]
    else:
        built, reference, mode, label = build_pair(name, args)
        if reference is None:
            return dict(pair=name, skipped=f'{label}: peft is not installed (pip install peft)')
        batch = args.batch_size
        x = torch.randn(batch, 3, args.img_size, args.img_size, device=device)
        y = torch.randint(0, CLASSES, (batch, ), device=device)
        runners = [Runner(m.to(device), mode, x, y) for m in (built, reference)]
    for runner in runners:  # warm-up: allocates gradients and optimizer state
        runner.step()
        runner.times = []
    for i in range(args.rounds):
        for runner in (runners if i % 2 == 0 else runners[::-1]):
            runner.timed_step()
    row = dict(pair=name, mode=mode, reference=label)
    for key, runner in zip(('ours', 'ref'), runners):
        seconds = statistics.median(runner.times)
        row.update({f'{key}_ms': 1e3 * seconds, f'{key}_img_s': batch / seconds,
                    f'{key}_mem_mib': runner.memory() / 2**20,
                    f'{key}_trainable': sum(p.numel() for p in runner.trainable),
                    f'{key}_gflop': runner.flops() / 1e9})
    row['time_ratio'] = row['ours_ms'] / row['ref_ms']
    row['mem_ratio'] = (row['ours_mem_mib'] / row['ref_mem_mib'] if row['ref_mem_mib'] else None)
    return row


def peak_tflops(args, device):
    if args.peak_tflops:
        return args.peak_tflops
    if device.type == 'cuda':
        name = torch.cuda.get_device_name()
        return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return None


def table(rows, peak):
    head = (f'{"pair":10} {"reference":24} {"ours ms":>9} {"ref ms":>9} {"time x":>7} '
            f'{"ours img/s":>10} {"ours MiB":>9} {"ref MiB":>9} {"mem x":>6} {"trainable":>11}')
    if peak:
        head += f' {"MFU":>6}'
    lines = [head]
    for r in rows:
        if 'skipped' in r:
            lines.append(f'{r["pair"]:10} skipped: {r["skipped"]}')
            continue
        mem = f'{r["mem_ratio"]:6.2f}' if r['mem_ratio'] is not None else f'{"-":>6}'
        line = (f'{r["pair"]:10} {r["reference"]:24} {r["ours_ms"]:9.1f} {r["ref_ms"]:9.1f} '
                f'{r["time_ratio"]:7.2f} {r["ours_img_s"]:10.1f} {r["ours_mem_mib"]:9.1f} '
                f'{r["ref_mem_mib"]:9.1f} {mem} {r["ours_trainable"]:11,}')
        if peak:
            line += f' {100 * r["ours_gflop"] / (r["ours_ms"] * peak):5.1f}%'
        lines.append(line)
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name() if device.type == 'cuda' else (
        f'CPU, {torch.get_num_threads()} threads')
    print(f'ViT arch {args.arch} ({TIMM_ARCH[args.arch]} in timm), batch {args.batch_size}, '
          f'{args.img_size} px, {args.rounds} interleaved rounds, {where}', flush=True)
    rows = []
    for name in args.pairs:
        start = time.perf_counter()
        rows.append(measure(name, args, device))
        print(f'  {name}: {time.perf_counter() - start:.0f} s', flush=True)
    peak = peak_tflops(args, device)
    print(table(rows, peak))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(device=where, args=vars(args), rows=rows), f, indent=1)
    return rows


if __name__ == '__main__':
    main()
