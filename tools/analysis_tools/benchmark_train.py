"""Peak training memory and step time of PEFT methods side by side (a benchmark, not a test).

    python tools/analysis_tools/benchmark_train.py [--methods dtl lora full] [--batch-size 32]
        [--steps 3] [--arch b] [--img-size 224] [--video [--frames 8]] [--device cuda|cpu]

Each method runs in its own subprocess on a freshly built ViT (mmpretrain ``VisionTransformer``,
random weights: memory and time do not depend on their values) with a linear head, AdamW, and
``--steps`` timed training steps after one warm-up step. Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU; on the CPU it is the process's peak resident set
size minus the resident size right before the first step (model and input already allocated),
i.e. what training adds: activations kept for backward, gradients and optimizer state (the
workers run with glibc's ``MALLOC_MMAP_THRESHOLD_=1048576``, so freed tensors leave the resident
set instead of staying in the heap). The table prints ratios to the last method. With
``--video`` the backbone is mmaction's ``VisionTransformer`` (the VideoMAE layout: tubelet 2,
mean-pooled features) of the same sizes on clips of ``--frames`` frames; a method that refuses
a backbone is listed as refused, with its error, and the others still run.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

METHODS = {
    'dtl': dict(type='DTL', rank=2),
    'dtl+': dict(type='DTL+', rank=2, kernel_size=3),
    'lora': dict(type='LoRA', rank=8, targets=('q', 'v')),
    'lst': dict(type='LST', reduction=8),
    'res-tuning-bypass': dict(type='Res-Tuning-Bypass', length=10),
    'last': dict(type='LAST', rank=16, gap=1),
    'hst': dict(type='HST', dims=(32, 48, 64, 72), num_heads=(2, 4, 8, 12)),
    'snf': dict(type='SNF', flow_length=16),
    'res-tuning': dict(type='Res-Tuning', length=10, bottleneck=10),
    'adapter': dict(type='Adapter', bottleneck=8),
    'adaptformer': dict(type='AdaptFormer', bottleneck=64, scale=0.1, input_norm=False),
    'bitfit': dict(type='BitFit'),
    'mona': dict(type='Mona', bottleneck=64),
    'prefix': dict(type='PrefixTuning', length=10, mid=64),
    'linear': dict(type='LinearProbe'),
    'full': dict(type='FullFineTune'),
}


def method_config(method, depth):
    """The method's benchmark setting on a ViT with ``depth`` blocks (DTL adds its side maps
    back after the second half of the blocks, as its ViT-B recipe does with blocks 6-11)."""
    cfg = dict(METHODS[method])
    if method.startswith('dtl'):
        cfg['add_blocks'] = tuple(range(depth // 2, depth))
    return cfg


# the feature width the head reads where it is not the backbone's (HST: its side network's)
HEAD_IN = {'hst': 72}


def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def build_backbone(method, args):
    """The method on mmpretrain's ViT ``--arch``, or with ``--video`` on mmaction's
    VisionTransformer (the VideoMAE layout, tubelet 2) of the same sizes."""
    import torch
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    out_type = 'avg_featmap' if method.startswith('dtl') else 'cls_token'
    vit = dict(type='VisionTransformer', arch=args.arch, img_size=args.img_size, patch_size=16,
               out_type=out_type, final_norm=out_type == 'cls_token', init_cfg=None)
    with torch.device('meta'):  # sizes of the arch, and the depth the block lists need
        image = MODELS.build(vit)
    if args.video:
        init_default_scope('mmaction')
        layer = image.layers[0]
        vit = dict(type='VisionTransformer', img_size=args.img_size, patch_size=16,
                   embed_dims=image.embed_dims, depth=image.num_layers,
                   num_heads=layer.attn.num_heads,
                   mlp_ratio=layer.ffn.layers[0][0].out_features / image.embed_dims,
                   qkv_bias=True, num_frames=args.frames, use_mean_pooling=True,
                   norm_cfg=dict(type='LN', eps=1e-6))
    return MODELS.build(dict(type='vpetl_mm.PEFTBackbone', backbone=vit,
                             method=method_config(method, image.num_layers)))


def feature_width(backbone):
    return getattr(backbone, 'embed_dims', None) or backbone.fc_norm.normalized_shape[0]


def measure(method, args):
    """Run in a subprocess: build, warm up, time ``args.steps`` steps; return a dict."""
    import torch

    import vpetl_mm  # noqa: F401
    device = torch.device(args.device)
    torch.manual_seed(0)
    backbone = build_backbone(method, args)
    head = torch.nn.Linear(HEAD_IN.get(method, feature_width(backbone)), 100)
    model = torch.nn.ModuleDict(dict(backbone=backbone, head=head)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4)
    frames = (args.frames, ) if args.video else ()
    x = torch.randn(args.batch_size, 3, *frames, args.img_size, args.img_size, device=device)
    y = torch.randint(0, 100, (args.batch_size, ), device=device)

    def step():
        feats = model.backbone(x)
        feats = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if feats.dim() > 2:  # mmaction's ViT: the (mean-pooled) token features
            feats = feats.flatten(2).mean(-1) if feats.dim() > 3 else feats.mean(1)
        loss = torch.nn.functional.cross_entropy(model.head(feats), y)
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    model.train()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    step()  # warm-up; also allocates gradients and the optimizer state
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seconds = (time.perf_counter() - t0) / args.steps
    return dict(method=method, trainable=sum(p.numel() for p in params),
                peak_mib=peak / 2**20, step_peak_mib=(peak - base) / 2**20, step_s=seconds,
                device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--methods', nargs='+', default=['dtl', 'lora', 'full'],
                        choices=sorted(METHODS))
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--arch', default='b',
                        help="mmpretrain VisionTransformer arch: b, s, l, deit-tiny, ... (the "
                        'widths and depths come from the built model)')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--video', action='store_true',
                        help="mmaction's VisionTransformer (VideoMAE layout) of --arch's sizes "
                        'on clips of --frames frames')
    parser.add_argument('--frames', type=int, default=8, help='frames per clip with --video')
    parser.add_argument('--device', default=None, help='cuda or cpu (default: cuda if present)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.worker:
        print('RESULT ' + json.dumps(measure(args.worker, args)), flush=True)
        return
    rows, refused = [], []
    for method in args.methods:
        cmd = [sys.executable, os.path.abspath(__file__), '--worker', method,
               '--batch-size', str(args.batch_size), '--steps', str(args.steps),
               '--arch', args.arch, '--img-size', str(args.img_size), '--device', args.device,
               '--frames', str(args.frames)] + (['--video'] if args.video else [])
        # glibc keeps freed blocks below its (self-raising) mmap threshold in the heap, so the
        # peak resident size would count every temporary ever freed; a fixed 1 MiB threshold
        # maps tensors on their own pages, returned to the system when freed
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='1048576')
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith('RESULT ')]
        if out.returncode or not line:
            error = (out.stderr.strip().splitlines() or ['no output'])[-1]
            if 'TypeError' not in error and 'ValueError' not in error:
                raise RuntimeError(f'{method} failed:\n{out.stdout[-2000:]}\n'
                                   f'{out.stderr[-2000:]}')
            refused.append((method, error))  # the method refuses this backbone
            print(f'{method} refused: {error}', file=sys.stderr, flush=True)
            continue
        rows.append(json.loads(line[0][7:]))
        print(f'measured {method}', file=sys.stderr, flush=True)
    ref = rows[-1]
    mem_key = 'peak_mib' if args.device == 'cuda' else 'step_peak_mib'
    if not rows:
        raise SystemExit('no method ran: ' + '; '.join(f'{m}: {e}' for m, e in refused))
    clip = f'{args.frames} x {args.img_size}px clips (mmaction ViT)' if args.video else \
        f'{args.img_size}px'
    print(f'ViT-{args.arch.upper()}/16, batch {args.batch_size}, {clip}, '
          f'{args.steps} timed steps on {rows[0]["device"]}')
    w = 2 + max(len(r['method']) for r in rows)
    print(f'{"method":<{w}}{"trainable":>12}{"peak MiB":>12}{"x " + ref["method"]:>10}'
          f'{"step s":>10}{"x " + ref["method"]:>10}')
    for r in rows:
        print(f'{r["method"]:<{w}}{r["trainable"]:>12,}{r[mem_key]:>12.0f}'
              f'{r[mem_key] / ref[mem_key]:>10.2f}{r["step_s"]:>10.3f}'
              f'{r["step_s"] / ref["step_s"]:>10.2f}')
    for method, error in refused:
        print(f'{method:<{w}}refused: {error}')
    if args.device != 'cuda':
        print('(CPU: peak MiB is the resident memory training adds beyond the model and input: '
              'activations, gradients, optimizer state)')


if __name__ == '__main__':
    main()
