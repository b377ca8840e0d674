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

    python tools/analysis_tools/benchmark_train.py --dense {det,seg} [--methods e3va lora full]
        [--embed-dims 32 --depths 2 2 6 2 [--num-heads ...]] [--head-channels 64] [--img-size]

``--dense`` runs the methods of V-PETL's dense table on the whole detector / segmentor of their
generated configs (``configs/dense``: RetinaNet + FPN on Pascal VOC for ``det``, UperNet on
ADE20K for ``seg``; each method's settings as its config has them), with the Swin-L shrunk by
``--embed-dims`` / ``--depths`` / ``--num-heads`` and the neck / heads by ``--head-channels``,
on ``--batch-size`` random images of ``--img-size`` with random targets, through the toolbox's
data preprocessor and ``train_step`` (AdamW). A method that fails, or has no config, is listed
with its error and the others still run. ``--dense seg`` needs a batch of 2 or more: the BN
after UperNet's 1 x 1 pooling sees one value per channel at batch 1.
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
    'res-tuning-bypass': dict(type='Res-Tuning-Bypass', bottleneck=10),
    'last': dict(type='LAST', rank=16, gap=1),
    'hst': dict(type='HST', dims=(32, 48, 64, 72), num_heads=(2, 4, 8, 12)),
    'snf': dict(type='SNF', flow_length=16),
    'res-tuning': dict(type='Res-Tuning', length=10, bottleneck=10),
    'adapter': dict(type='Adapter', bottleneck=8),
    'adaptformer': dict(type='AdaptFormer', bottleneck=64, scale=0.1, input_norm=False),
    'bitfit': dict(type='BitFit'),
    'mona': dict(type='Mona', bottleneck=64),
    'prefix': dict(type='PrefixTuning', length=10, bottleneck=64),
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


def timed(step, steps, device):
    """(peak bytes, bytes before the first step, seconds per step) of one warm-up call of
    ``step`` (it also allocates gradients and the optimizer state) then ``steps`` timed calls.
    Peak: CUDA max_memory_allocated, or on the CPU the peak resident set size (the worker's
    MALLOC_MMAP_THRESHOLD_ returns freed tensors to the system, see ``main``)."""
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak, base, (time.perf_counter() - t0) / steps


def result(method, trainable, measured, device, **extra):
    """The worker's RESULT dict from ``timed``'s (peak, base, seconds) in MiB and seconds."""
    import torch
    peak, base, seconds = measured
    return dict(method=method, trainable=trainable, peak_mib=peak / 2**20,
                step_peak_mib=(peak - base) / 2**20, step_s=seconds,
                device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
                **extra)


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
    measured = timed(step, args.steps, device)
    return result(method, sum(p.numel() for p in params), measured, device,
                  **step_flops(step, device))


def step_flops(step, device):
    """On a GPU, ``{'gflop': model FLOPs of one step}`` (torch's flop counter) for the MFU
    column; nothing on the CPU (one more step would only cost time)."""
    if device.type != 'cuda':
        return {}
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    return dict(gflop=counter.get_total_flops() / 1e9)


# --dense: (default scope, config file name with the method's '{}', model named in the table)
DENSE = dict(det=('mmdet', 'retinanet_swin-l-p4-w7_{}_fpn_1x_voc0712.py', 'RetinaNet + FPN'),
             seg=('mmseg', 'upernet_swin-l-p4-w7_{}_8xb2-160k_ade20k-512x512.py', 'UperNet'))
# V-PETL's dense table, full last (the table's ratios are to the last method)
DENSE_METHODS = ('linear', 'bitfit', 'lntune', 'partial-1', 'adapter', 'lora', 'adaptformer',
                 'lorand', 'e3va', 'mona', 'full')


def dense_config(task, method):
    return os.path.join(ROOT, 'configs', 'dense', DENSE[task][1].format(method))


def swin_sizes(swin, args):
    """The Swin's embed_dims / depths / num_heads: the config's (Swin-L) where the options do not
    set them; without --num-heads, stage i (width embed_dims * 2**i) keeps the config's head width
    (32 on Swin-L), so a narrower Swin has fewer heads rather than thinner ones."""
    embed = args.embed_dims or swin.embed_dims
    depths = args.depths or swin.depths
    head_dims = swin.embed_dims // swin.num_heads[0]
    heads = args.num_heads or [max(1, (embed << i) // head_dims) for i in range(len(depths))]
    return dict(embed_dims=embed, depths=list(depths), num_heads=list(heads))


def syncbn_to_bn(node):
    """Replace every SyncBN config in ``node`` by BN (one process, no process group)."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        node = list(node.values())
    for value in node if isinstance(node, list) else ():
        syncbn_to_bn(value)


def dense_model_cfg(method, args):
    """The model of the method's ``configs/dense`` config with the Swin of ``swin_sizes``, the
    neck / heads reading its stage widths (and ``--head-channels`` wide where set: FPN outputs
    and RetinaNet head, UperNet channels and half that in the auxiliary FCN head, as mmseg's 512
    / 256), BN for SyncBN, no pretrained file, ADE20K's padding to 512 x 512 set to --img-size."""
    from mmengine.config import Config
    model = Config.fromfile(dense_config(args.dense, method)).model
    model.backbone.pretrained = None
    swin = model.backbone.backbone
    swin.update(swin_sizes(swin, args))
    syncbn_to_bn(model)
    widths = [swin.embed_dims << i for i in swin.out_indices]
    channels = args.head_channels
    if args.dense == 'seg':
        model.decode_head.in_channels = widths
        model.auxiliary_head.in_channels = widths[model.auxiliary_head.in_index]
        if channels:
            model.decode_head.channels = channels
            model.auxiliary_head.channels = max(1, channels // 2)
        model.data_preprocessor.size = (args.img_size, args.img_size)
    else:
        model.neck.in_channels = widths
        if channels:
            model.neck.out_channels = channels
            model.bbox_head.update(in_channels=channels, feat_channels=channels)
    return model


def dense_batch(task, batch_size, size):
    """``batch_size`` random uint8 images (3, size, size) packed as the toolbox's pipeline packs
    them: with random ADE20K label maps (1, size, size) of 150 classes (seg) or two random VOC
    boxes of 20 classes each (det, mmdet's demo inputs)."""
    import torch
    if task == 'det':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch_size=batch_size, image_shapes=[(3, size, size)] * batch_size,
                              num_items=[2] * batch_size, num_classes=20)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8))
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 150, (1, size, size))))
        sample.set_metainfo(dict(img_shape=(size, size), ori_shape=(size, size)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def measure_dense(method, args):
    """Run in a subprocess: the whole detector / segmentor of ``dense_model_cfg``, initialised
    as the runner does, trained by ``train_step`` (data preprocessor, losses, AdamW) on
    ``dense_batch``; one warm-up step then ``args.steps`` timed ones. Returns a dict."""
    import torch
    from mmengine.optim import OptimWrapper
    from mmengine.registry import MODELS, init_default_scope

    import vpetl_mm  # noqa: F401
    device = torch.device(args.device)
    init_default_scope(DENSE[args.dense][0])
    torch.manual_seed(0)
    model = MODELS.build(dense_model_cfg(method, args))
    model.init_weights()
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = OptimWrapper(torch.optim.AdamW(params, lr=1e-4))
    data = dense_batch(args.dense, args.batch_size, args.img_size)
    measured = timed(lambda: model.train_step(data, optim), args.steps, device)
    tuned = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
    return result(method, sum(p.numel() for p in params), measured, device, backbone=tuned)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--methods', nargs='+', default=None,
                        help=f'of {", ".join(sorted(METHODS))} (default: dtl lora full); with '
                        f'--dense, of the dense table (default: {" ".join(DENSE_METHODS)})')
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
    parser.add_argument('--dense', choices=sorted(DENSE),
                        help="the dense table's methods on the whole detector (RetinaNet, VOC) "
                        'or segmentor (UperNet, ADE20K) of their configs/dense configs')
    parser.add_argument('--embed-dims', type=int, help="--dense: the Swin's width (Swin-L: 192)")
    parser.add_argument('--depths', type=int, nargs=4,
                        help='--dense: blocks per Swin stage (Swin-L: 2 2 18 2)')
    parser.add_argument('--num-heads', type=int, nargs=4,
                        help='--dense: heads per stage (default: the config\'s head width, 32)')
    parser.add_argument('--head-channels', type=int,
                        help='--dense: FPN / RetinaNet head / UperNet width (default: the '
                        "config's, 256 / 512)")
    parser.add_argument('--device', default=None, help='cuda or cpu (default: cuda if present)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.methods is None:
        args.methods = list(DENSE_METHODS) if args.dense else ['dtl', 'lora', 'full']
    if args.dense and args.video:
        parser.error('--dense runs the Swin of the dense configs; --video is for the ViT runs')
    unknown = [m for m in args.methods if m not in METHODS]
    if not args.dense and unknown:
        parser.error(f'argument --methods: invalid choice: {unknown[0]!r} (choose from '
                     f'{", ".join(sorted(METHODS))})')
    return args


def worker_cmd(method, args):
    """The command line that measures ``method`` alone in a fresh interpreter."""
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', method,
           '--batch-size', str(args.batch_size), '--steps', str(args.steps),
           '--arch', args.arch, '--img-size', str(args.img_size), '--device', args.device,
           '--frames', str(args.frames)] + (['--video'] if args.video else [])
    for option in ('dense', 'embed_dims', 'depths', 'num_heads', 'head_channels'):
        value = getattr(args, option)
        if value:
            values = value if isinstance(value, list) else [value]
            cmd += ['--' + option.replace('_', '-'), *map(str, values)]
    return cmd


def run_worker(method, args):
    """(result dict, None), or (None, error) for a method that refuses the ViT backbone (its
    TypeError / ValueError) or, with --dense, fails in any way or has no config."""
    if args.dense and not os.path.exists(dense_config(args.dense, method)):
        return None, f'unknown method: no {os.path.relpath(dense_config(args.dense, method), ROOT)}'
    # glibc keeps freed blocks below its (self-raising) mmap threshold in the heap, so the
    # peak resident size would count every temporary ever freed; a fixed 1 MiB threshold
    # maps tensors on their own pages, returned to the system when freed
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='1048576')
    out = subprocess.run(worker_cmd(method, args), capture_output=True, text=True, env=env)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith('RESULT ')]
    if not out.returncode and line:
        return json.loads(line[0][7:]), None
    error = (out.stderr.strip().splitlines() or ['no output'])[-1]
    if not args.dense and 'TypeError' not in error and 'ValueError' not in error:
        raise RuntimeError(f'{method} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}')
    return None, error


def title(args, device):
    """The table's first line: model, batch, input and device."""
    if not args.dense:
        clip = f'{args.frames} x {args.img_size}px clips (mmaction ViT)' if args.video else \
            f'{args.img_size}px'
        return (f'ViT-{args.arch.upper()}/16, batch {args.batch_size}, {clip}, '
                f'{args.steps} timed steps on {device}')
    from mmengine.config import Config
    swin = Config.fromfile(dense_config(args.dense, 'full')).model.backbone.backbone
    sizes = swin_sizes(swin, args)
    return (f'{DENSE[args.dense][2]} on Swin (embed {sizes["embed_dims"]}, depths '
            f'{"-".join(map(str, sizes["depths"]))}, heads '
            f'{"-".join(map(str, sizes["num_heads"]))}), head width '
            f'{args.head_channels or "as configured"}, batch {args.batch_size}, '
            f'{args.img_size}px, {args.steps} timed steps on {device}')


def gpu_peak_tflops(name):
    """The dense bf16 / tf32 peak of the GPU called ``name`` (benchmark_peers' table), or
    None."""
    from tools.analysis_tools.benchmark_peers import PEAK_TFLOPS
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def print_table(rows, failed, args):
    """Trainable parameters (with --dense also the backbone's), peak memory and step time of
    each row, with ratios to the last row; then the methods that refused or failed."""
    ref = rows[-1]
    mem_key = 'peak_mib' if args.device == 'cuda' else 'step_peak_mib'
    print(title(args, rows[0]['device']))
    w = 2 + max(len(m) for m in [r['method'] for r in rows] + [f[0] for f in failed])
    tuned = 'backbone' in ref
    peak = gpu_peak_tflops(rows[0]['device']) if 'gflop' in ref else None
    print(f'{"method":<{w}}{"trainable":>12}' + (f'{"backbone":>12}' if tuned else '') +
          f'{"peak MiB":>12}{"x " + ref["method"]:>10}{"step s":>10}{"x " + ref["method"]:>10}'
          f'{"img/s":>9}' + (f'{"MFU":>8}' if peak else ''))
    for r in rows:
        print(f'{r["method"]:<{w}}{r["trainable"]:>12,}' +
              (f'{r["backbone"]:>12,}' if tuned else '') +
              f'{r[mem_key]:>12.0f}{r[mem_key] / ref[mem_key]:>10.2f}{r["step_s"]:>10.3f}'
              f'{r["step_s"] / ref["step_s"]:>10.2f}{args.batch_size / r["step_s"]:>9.1f}' +
              (f'{r["gflop"] / (r["step_s"] * peak * 1e3):>8.1%}' if peak else ''))
    for method, error in failed:
        print(f'{method:<{w}}{"failed" if args.dense else "refused"}: {error}')
    if args.device != 'cuda':
        print('(CPU: peak MiB is the resident memory training adds beyond the model and input: '
              'activations, gradients, optimizer state)')


def main(argv=None):
    args = parse_args(argv)
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.worker:
        measured = measure_dense if args.dense else measure
        print('RESULT ' + json.dumps(measured(args.worker, args)), flush=True)
        return
    rows, failed = [], []
    for method in args.methods:
        row, error = run_worker(method, args)
        if row is None:
            failed.append((method, error))
            print(f'{method} {"failed" if args.dense else "refused"}: {error}', file=sys.stderr,
                  flush=True)
            continue
        rows.append(row)
        print(f'measured {method}', file=sys.stderr, flush=True)
    if not rows:
        raise SystemExit('no method ran: ' + '; '.join(f'{m}: {e}' for m, e in failed))
    print_table(rows, failed, args)


if __name__ == '__main__':
    main()
