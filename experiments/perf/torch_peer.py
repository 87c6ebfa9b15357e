#!/usr/bin/python3
"""The PyTorch side of kvlab's speed benchmark (DESIGN.md section 6): the same model, the same
thread count, measured the same way.

Model mode:
  /usr/bin/python3 experiments/perf/torch_peer.py --model DIR --threads N --prefill T --decode M
      [--dtype f32|bf16] [--json]
  The model is tests/golden/torch_llama.py (HF's Llama/Mistral/Qwen2 forward, eager attention as
  matmul-softmax-matmul). --dtype f32 (default): weights upcast to f32 and f32 arithmetic, which
  is what kvlab does (bf16/f16 storage, f32 arithmetic). --dtype bf16: weights and activations in
  bf16 as HF with torch_dtype=bfloat16 (RMSNorm and softmax in f32 inside), if torch's CPU bf16
  matmul is usable here.
  prefill_tok_s: T / (time of one forward over T random tokens into an empty cache, logits of
  the last token only), best of 3 after one warm-up.
  decode_tok_s: M / (time of M single-token steps with a KV cache after a prefill of T tokens),
  best of 3 after one warm-up; the prefill is not timed.

Attention-only mode (one decode step's attention for one layer, e.g. an 8B layer H=32 G=8 D=128):
  ... --attention-only --context S --heads H --kv-heads G --head-dim D --threads N [--dtype]
  times softmax(q K^T / sqrt(D)) V for one query token over a cache of S tokens (GQA via a
  [G, H/G, D] view, no repeat copy), best of --repeats after warm-up; reports
  attn_us (microseconds per step) and attn_gb_s (K and V bytes read / time).

Prints one JSON line. Runs under torch.inference_mode().
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))

# torch, torch.nn.functional and torch_llama are imported in main() after the thread variables
# are set: Debian's torch calls the system BLAS (OpenBLAS, pthread build), whose own pool is
# sized from OPENBLAS_NUM_THREADS when the library loads and ignores torch.set_num_threads. Left
# unset it uses every core even at --threads 1, and at --threads 2 torch's OpenMP threads each
# call a 2-thread OpenBLAS GEMM (4 threads on 2 cores: oversubscribed).
torch = F = torch_llama = None
DTYPE_NAMES = ("bf16", "f32")


def best_of(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_model(args, dtype):
    model = torch_llama.load_model(args.model, compute_dtype=dtype)
    V = model.cfg.V
    gen = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, V, (args.prefill,), generator=gen)
    steps = torch.randint(0, V, (args.decode,), generator=gen)

    def prefill():
        model.forward_cached(prompt, model.new_cache(), all_logits=False)

    t_prefill = best_of(prefill, args.repeats)

    def decode():
        cache = model.new_cache()
        model.forward_cached(prompt, cache, all_logits=False)
        t0 = time.perf_counter()
        for i in range(args.decode):
            model.forward_cached(steps[i:i + 1], cache, all_logits=False)
        return time.perf_counter() - t0

    decode()  # warm-up
    t_decode = min(decode() for _ in range(args.repeats))
    return {
        "mode": "model",
        "model": args.model,
        "prefill_tokens": args.prefill,
        "decode_tokens": args.decode,
        "prefill_tok_s": args.prefill / t_prefill,
        "decode_tok_s": args.decode / t_decode if args.decode else None,
    }


def run_attention(args, dtype):
    S, H, G, D = args.context, args.heads, args.kv_heads, args.head_dim
    if H % G:
        raise SystemExit(f"--heads {H} is not a multiple of --kv-heads {G}")
    gen = torch.Generator().manual_seed(args.seed)
    q = torch.randn(H, D, generator=gen).to(dtype)
    k = torch.randn(G, S, D, generator=gen).to(dtype)  # head-major cache [G, S, D]
    v = torch.randn(G, S, D, generator=gen).to(dtype)
    scale = D ** -0.5

    def step():
        qg = q.view(G, H // G, D)                                  # query heads of each KV head
        s = torch.matmul(qg, k.transpose(1, 2)) * scale            # [G, H/G, S]
        p = F.softmax(s, dim=-1, dtype=torch.float32).to(dtype)
        return torch.matmul(p, v)                                  # [G, H/G, D]

    t = best_of(step, args.repeats, warmup=3)
    kv_bytes = 2 * G * S * D * k.element_size()
    return {
        "mode": "attention",
        "context": S, "heads": H, "kv_heads": G, "head_dim": D,
        "attn_us": t * 1e6,
        "attn_gb_s": kv_bytes / t / 1e9,
    }


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer for kvlab's speed benchmark")
    ap.add_argument("--model", help="HF model folder (config.json, model.safetensors)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prefill", type=int, default=128, help="prompt tokens T")
    ap.add_argument("--decode", type=int, default=32, help="decode steps M")
    ap.add_argument("--dtype", choices=DTYPE_NAMES, default="f32",
                    help="f32: weights upcast to f32 (as kvlab computes); bf16: bf16 weights and "
                         "activations in torch")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timed runs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--attention-only", action="store_true")
    ap.add_argument("--context", type=int, default=4096, help="cached tokens S (attention-only)")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--json", action="store_true",
                    help="print only the JSON line (default also prints a human line to stderr)")
    args = ap.parse_args()

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var) not in (None, str(args.threads)):
            print(f"torch_peer: overriding {var}={os.environ[var]} with --threads "
                  f"{args.threads}", file=sys.stderr)
        os.environ[var] = str(args.threads)
    global torch, F, torch_llama
    import torch
    import torch.nn.functional as F
    import torch_llama

    torch.set_num_threads(args.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    with torch.inference_mode():
        if args.attention_only:
            res = run_attention(args, dtype)
        else:
            if not args.model:
                ap.error("--model is required (or --attention-only)")
            res = run_model(args, dtype)
    res.update({
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "torch_version": str(torch.__version__),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    })
    if not args.json:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in res.items()), file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
