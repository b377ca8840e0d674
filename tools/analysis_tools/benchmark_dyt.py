"""DyT at inference against the plain backbone: FLOPs and throughput (a benchmark, not a test).

    python tools/analysis_tools/benchmark_dyt.py [--batch-size 32] [--iters 5] [--arch b]
        [--target-rate 0.5] [--experts 1] [--device cuda|cpu]

Builds a ViT (mmpretrain ``VisionTransformer``, random weights) plain and with ``DyT`` whose
dispatchers are set so that the requested share of patch tokens is kept (a trained DyT model
reaches its target rate; an untrained dispatcher would keep an arbitrary share). Both run in eval
mode under ``no_grad``; DyT really skips the MLP for the dropped tokens (gather / scatter).

FLOPs are multiply-accumulates counted per image from the shapes the forward actually used: per
block ``qkv`` + ``proj`` (``4 N C^2``), attention (``2 N^2 C``), the MLP on the tokens that
reached ``fc1`` (``2 k C F``), DyT's dispatcher and adapter (with ``--experts``: the router and
the per-image merge of the experts too), plus the patch embedding. The
measured activation rate and the kept-token counts come from the same run as the timing.
"""
import argparse
import logging
import time

import torch


def build(arch, img_size, method, device):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import vpetl_mm  # noqa: F401
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    backbone = dict(type='VisionTransformer', arch=arch, img_size=img_size, patch_size=16,
                    drop_path_rate=0.0, init_cfg=None)
    if method is not None:
        backbone = dict(type='vpetl_mm.PEFTBackbone', backbone=backbone, method=method)
    model = MODELS.build(backbone).to(device)
    model.eval()
    return model


def set_rate(model, rate, generator):
    """Dispatchers that keep a ``rate`` share of tokens: random directions, each bias set so
    that the ``rate`` quantile of its logits on a calibration batch sits at zero."""
    logits = {}

    def remember(module, args, out, i):
        logits[i] = out.detach().flatten().float()

    handles = []
    for i, layer in enumerate(model.layers):
        weight = layer.dyt.dispatcher.weight
        weight.data = 0.05 * torch.randn(weight.shape, generator=generator).to(weight)
        handles.append(layer.dyt.dispatcher.register_forward_hook(
            lambda m, a, out, i=i: remember(m, a, out, i)))
    size = model.patch_embed.init_input_size
    x = torch.randn(8, 3, *size, generator=generator).to(next(model.parameters()))
    with torch.no_grad():  # block by block: each bias shifts the next block's input
        for i, layer in enumerate(model.layers):
            model(x)
            layer.dyt.dispatcher.bias.data.fill_(-torch.quantile(logits[i], 1 - rate).item())
    for h in handles:
        h.remove()


def flops(model, x, dyt):
    """Multiply-accumulates per image of one forward, from the shapes actually used."""
    counts = []
    handles = [layer.ffn.layers[0][0].register_forward_pre_hook(
        lambda m, a: counts.append(a[0].reshape(-1, a[0].shape[-1]).shape[0]))
        for layer in model.layers]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    b = x.shape[0]
    c = model.embed_dims
    n = model.patch_resolution[0] * model.patch_resolution[1] + 1
    hidden = model.layers[0].ffn.layers[0][0].out_features
    total = (n - 1) * c * 3 * 16 * 16  # patch embedding
    for k in counts:
        total += 4 * n * c * c + 2 * n * n * c + 2 * (k / b) * c * hidden
        if dyt:
            modules = model.layers[0].dyt
            total += (n - 1) * c  # dispatcher
            if hasattr(modules, 'moe'):  # router on the token mean, per-image expert merge
                experts, bottleneck, _ = modules.moe.down_weight.shape
                total += n * c + c * experts + 2 * experts * bottleneck * c
            else:
                bottleneck = modules.down.out_features
            total += 2 * n * c * bottleneck
    return total, sum(counts) / (b * len(counts))


def throughput(model, x, iters, device):
    with torch.no_grad():
        model(x)  # warm-up
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        if device.type == 'cuda':
            torch.cuda.synchronize()
    return iters * x.shape[0] / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--arch', default='b')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--target-rate', type=float, default=0.5)
    parser.add_argument('--bottleneck', type=int, default=64)
    parser.add_argument('--experts', type=int, default=1,
                        help="adapter experts (> 1: the paper's MoE adapter)")
    parser.add_argument('--device', default=None, help='cuda or cpu (default: cuda if present)')
    args = parser.parse_args(argv)
    logging.getLogger('mmengine').setLevel(logging.WARNING)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, generator=generator)
    x = x.to(device)
    plain = build(args.arch, args.img_size, None, device)
    dyt = build(args.arch, args.img_size, dict(type='DyT', bottleneck=args.bottleneck,
                                                 target_rate=args.target_rate,
                                                 experts=args.experts), device)
    set_rate(dyt, args.target_rate, generator)
    method = dyt.peft.methods['dyt']
    plain_flops, _ = flops(plain, x, False)
    method.activation_rate()
    dyt_flops, mlp_rows = flops(dyt, x, True)
    rate = method.activation_rate()
    plain_speed = throughput(plain, x, args.iters, device)
    dyt_speed = throughput(dyt, x, args.iters, device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(f'ViT-{args.arch.upper()}/16 {args.img_size}px, batch {args.batch_size}, {name}, '
          f'eval, no_grad; DyT bottleneck {args.bottleneck}, {args.experts} expert(s), target '
          f'rate {args.target_rate}')
    print(f'measured activation rate (patch tokens through the MLPs): {rate:.3f} '
          f'({mlp_rows:.1f} MLP rows per image per block, cls included)')
    print(f'{"model":<8}{"GFLOPs (MAC)":>14}{"x plain":>9}{"img/s":>10}{"x plain":>9}')
    print(f'{"plain":<8}{plain_flops / 1e9:>14.2f}{1:>9.2f}{plain_speed:>10.1f}{1:>9.2f}')
    print(f'{"DyT":<8}{dyt_flops / 1e9:>14.2f}{dyt_flops / plain_flops:>9.2f}{dyt_speed:>10.1f}'
          f'{dyt_speed / plain_speed:>9.2f}')


if __name__ == '__main__':
    main()
