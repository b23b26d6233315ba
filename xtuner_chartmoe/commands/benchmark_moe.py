"""Forward+backward time of the MoE connector against the dense projector and
the reference per-sample loop (ChartMoE / CuMo ``torch.where`` dispatch).

    chartmoe benchmark moe                      # CPU default grid
    chartmoe benchmark moe --device cuda --dtype bfloat16 --full
    chartmoe benchmark moe --tiny-step          # tiny pipeline step

Prints one row per (size, batch, tokens): median milliseconds of dense,
MoE top-1, MoE top-2 (4 experts) and the reference loop (top-2), the ratios
the goals are about, and the max difference between MoE and reference.
Needs only torch + transformers (``--tiny-step`` also XTuner and the tiny
default in work_dirs/tiny).
"""
import argparse
import sys
import statistics
import time

import torch
import torch.nn.functional as F

from xtuner_chartmoe.model import MoEProjectorConfig, MoEProjectorModel

SIZES = {'tiny': (64, 128), 'real': (1024, 4096)}


def reference_loop(moe, x):
    """The reference implementation: for each sample, for each expert,
    ``torch.where`` the tokens routed to it and add their weighted output."""
    probs = F.softmax(F.linear(x, moe.gate.weight), dim=-1,
                      dtype=torch.float32).to(x.dtype)
    weights, selected = torch.topk(probs, int(moe.num_selected), dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    results = torch.zeros(*x.shape[:2], moe.config.llm_hidden_size,
                          device=x.device, dtype=x.dtype)
    for b in range(x.shape[0]):
        for i, expert in enumerate(moe.experts):
            token_idx, nth_expert = torch.where(selected[b] == i)
            results[b][token_idx] += weights[b][token_idx, nth_expert,
                                                None] * expert(x[b][token_idx])
    return results


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_fwd_bwd(fn, params, x, repeat, warmup):
    times = []
    for i in range(warmup + repeat):
        for p in params:
            p.grad = None
        sync(x.device)
        start = time.perf_counter()
        fn(x).float().square().mean().backward()
        sync(x.device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench_row(size, batch, tokens, args):
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    dv, dl = SIZES[size]
    torch.manual_seed(0)
    moe = MoEProjectorModel(MoEProjectorConfig(
        visual_hidden_size=dv, llm_hidden_size=dl, num_experts=4,
        num_selected=2)).to(device, dtype)
    dense = moe.experts[0]
    x = torch.randn(batch, tokens, dv, device=device, dtype=dtype)
    params = list(moe.parameters())
    run = lambda fn: time_fwd_bwd(fn, params, x, args.repeat, args.warmup)
    row = {'dense': run(dense)}
    moe.set_top_k(1)
    row['top1'] = run(moe)
    moe.set_top_k(2)
    row['top2'] = run(moe)
    if device.type == 'cuda':  # the grouped-GEMM dispatch, for comparison
        moe.dispatch = 'grouped_mm'
        row['top2_grouped'] = run(moe)
        moe.dispatch = 'slices'
    row['reference'] = run(lambda t: reference_loop(moe, t))
    with torch.no_grad():
        diff = (moe(x).float() - reference_loop(moe, x).float()).abs().max()
    row['max_diff'] = diff.item()
    return row


def tiny_step(args):
    """Median training-step time (fwd+bwd+AdamW) of the tiny SFT model with
    the dense projector vs the MoE connector (4 experts, top-2, LoRA on),
    both built from the shipped tiny SFT config (run where ``work_dirs/tiny``
    is, after ``chartmoe build-tiny``)."""
    from mmengine.config import Config
    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.registry import BUILDER

    from xtuner_chartmoe.commands.cli import resolve_config
    cfg = Config.fromfile(resolve_config(
        'chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft'))
    dataset = BUILDER.build(cfg.train_dataloader.dataset)
    batch = default_collate_fn([dataset[i] for i in range(4)])
    general = cfg.tiny_root + 'general_projector'
    results = {}
    for name, connector in (
            ('dense', dict(moe_projector=None, projector_init=general)),
            ('moe', dict(moe_projector=dict(mode='upcycle',
                                            expert_projectors=[general])))):
        torch.manual_seed(0)
        model = BUILDER.build({**cfg.model, **connector})
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=1e-4)
        times = []
        for i in range(args.warmup + args.repeat):
            data = {k: v.clone() for k, v in batch['data'].items()}
            start = time.perf_counter()
            model(data, mode='loss')['loss'].backward()
            optimizer.step()
            optimizer.zero_grad()
            if i >= args.warmup:
                times.append((time.perf_counter() - start) * 1e3)
        results[name] = statistics.median(times)
    overhead = 100 * (results['moe'] / results['dense'] - 1)
    print(f"tiny SFT step (batch 4, LoRA): dense {results['dense']:.1f} ms, "
          f"MoE 4x top-2 {results['moe']:.1f} ms, overhead {overhead:+.1f} %")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe benchmark moe', description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32')
    parser.add_argument('--sizes', nargs='+', default=['tiny', 'real'])
    parser.add_argument('--full', action='store_true',
                        help='batches 1/8/32 x tokens 576/1225 for all sizes '
                        '(default on CPU: real size only batch 1/8 x 576)')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int)
    parser.add_argument('--tiny-step', action='store_true')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny_step:
        args.repeat, args.warmup = max(args.repeat, 20), max(args.warmup, 3)
        return tiny_step(args)
    print(f'device {args.device}, {args.dtype}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads; times: median ms of fwd+bwd')
    cols = ['dense', 'top1', 'top2', 'top2_grouped', 'reference']
    print(f"{'size':5s} {'batch':>5s} {'tokens':>6s} " + ' '.join(
        f'{c:>11s}' for c in cols) + f" {'top2/dense':>10s} {'ref/top2':>8s} "
        f"{'max|diff|':>9s}")
    for size in args.sizes:
        for batch in (1, 8, 32):
            for tokens in (576, 1225):
                if not args.full and args.device == 'cpu' and size == 'real' \
                        and (batch == 32 or tokens == 1225):
                    continue
                row = bench_row(size, batch, tokens, args)
                cells = ' '.join(f'{row[c]:11.2f}' if c in row else
                                 f"{'-':>11s}" for c in cols)
                print(f'{size:5s} {batch:5d} {tokens:6d} {cells} '
                      f"{row['top2'] / row['dense']:10.2f} "
                      f"{row['reference'] / row['top2']:8.2f} "
                      f"{row['max_diff']:9.2e}", flush=True)


if __name__ == '__main__':
    sys.exit(main())
