"""SFT step time, tokens/s and peak memory of the real recipe's models:
dense LLaVA (XTuner's LLaVAModel, dense projector), ChartMoE (top-2 of 4)
and ChartMoE with QLoRA, on stand-ins built in memory (InternLM2-chat-7B and
CLIP-ViT-L/14-336 widths, random weights), all with LoRA r=64 on the LLM.

    # a GPU, full depth, bf16 (the figures in the README)
    chartmoe benchmark sft --device cuda --dtype bfloat16
    # a quick check of the script on a CPU
    chartmoe benchmark sft --llm-layers 1 --vision-layers 1 \\
        --batch 1 --steps 2 --models dense chartmoe

Prints, per model: median step (forward, backward, AdamW) in ms, tokens/s
(image + text tokens of the batch) and peak memory (CUDA, else the
process's maximum resident set), and the ChartMoE / dense step ratio (goal:
<= 1.05). QLoRA needs CUDA (bitsandbytes 4-bit).
"""
import argparse
import resource
import statistics
import sys
import tempfile
import time

import torch


def build(kind, args):
    """One model of the comparison, trainable parts as in the SFT config."""
    from peft import LoraConfig
    from transformers import (AutoModelForCausalLM, BitsAndBytesConfig,
                              CLIPVisionModel)
    from xtuner.model import LLaVAModel

    from xtuner_chartmoe.devkit.standin import clip_config, random_internlm2
    from xtuner_chartmoe.model import ChartMoEModel
    dtype = getattr(torch, args.dtype)
    llm = random_internlm2(dtype, num_hidden_layers=args.llm_layers)
    if kind == 'qlora':  # bitsandbytes quantizes while loading
        with tempfile.TemporaryDirectory() as folder:
            llm.save_pretrained(folder)
            llm = AutoModelForCausalLM.from_pretrained(
                folder, torch_dtype=dtype, trust_remote_code=True,
                quantization_config=BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type='nf4',
                    bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=dtype))
    clip = CLIPVisionModel._from_config(
        clip_config(args.vision_layers).vision_config, torch_dtype=dtype)
    common = dict(llm=llm, visual_encoder=clip, freeze_llm=True,
                  freeze_visual_encoder=True,
                  use_activation_checkpointing=args.checkpointing,
                  llm_lora=LoraConfig(r=64, lora_alpha=64, lora_dropout=0.05,
                                      target_modules=['wqkv', 'wo', 'w1',
                                                      'w2', 'w3'],
                                      task_type='CAUSAL_LM'))
    if kind == 'dense':
        model = LLaVAModel(**common)
    else:
        model = ChartMoEModel(**common, moe_projector=dict(
            mode='random', visual_hidden_size=clip.config.hidden_size,
            llm_hidden_size=llm.config.hidden_size))
    return model.to(args.device, dtype)


def batch(args, image_size, vocab_size):
    """Image + chat-length text per sample, the image token after the
    first 8 text tokens (XTuner's data layout)."""
    from xtuner.utils import IMAGE_TOKEN_INDEX
    ids = torch.randint(3, vocab_size, (args.batch, args.text_tokens))
    ids[:, 8] = IMAGE_TOKEN_INDEX
    return {'input_ids': ids.to(args.device),
            'labels': ids.clamp(min=0).to(args.device),
            'attention_mask': torch.ones_like(ids, dtype=torch.bool).to(
                args.device),
            'pixel_values': torch.randn(args.batch, 3, image_size,
                                        image_size).to(args.device)}


def peak_memory_gb(device):
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(kind, args):
    model = build(kind, args).train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-5)
    config = model.visual_encoder.config
    data = batch(args, config.image_size, model.llm.config.vocab_size)
    tokens = args.batch * (args.text_tokens - 1 +
                           (config.image_size // config.patch_size)**2)
    if args.device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.warmup + args.steps):
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model({k: v.clone() for k, v in data.items()},
                     mode='loss')['loss']
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    step_ms = statistics.median(times)
    row = dict(step_ms=step_ms, tokens_per_s=tokens / step_ms * 1e3,
               peak_gb=peak_memory_gb(args.device))
    del model, optimizer
    if args.device.startswith('cuda'):
        torch.cuda.empty_cache()
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe benchmark sft', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available()
                        else 'cpu')
    parser.add_argument('--dtype', default='bfloat16')
    parser.add_argument('--llm-layers', type=int, default=32)
    parser.add_argument('--vision-layers', type=int, default=24)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--text-tokens', type=int, default=128)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--checkpointing', action='store_true',
                        help='activation checkpointing (the configs do)')
    parser.add_argument('--models', nargs='+',
                        default=['dense', 'chartmoe', 'qlora'],
                        choices=['dense', 'chartmoe', 'qlora'])
    args = parser.parse_args(argv)
    if 'qlora' in args.models and not args.device.startswith('cuda'):
        print('note: QLoRA needs CUDA; measuring dense and chartmoe only',
              file=sys.stderr)
        args.models = [m for m in args.models if m != 'qlora']
    print(f'{args.device}, {args.dtype}, InternLM2-7B width x '
          f'{args.llm_layers} layers, CLIP-L/14-336 x {args.vision_layers}, '
          f'batch {args.batch} x ({args.text_tokens} text + image) tokens')
    rows = {}
    for kind in args.models:
        rows[kind] = measure(kind, args)
        row = rows[kind]
        print(f"{kind:9s} step {row['step_ms']:9.1f} ms  "
              f"{row['tokens_per_s']:9.0f} tokens/s  peak "
              f"{row['peak_gb']:6.2f} GB", flush=True)
    if {'dense', 'chartmoe'} <= set(rows):
        print(f"chartmoe / dense step: "
              f"{rows['chartmoe']['step_ms'] / rows['dense']['step_ms']:.3f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
