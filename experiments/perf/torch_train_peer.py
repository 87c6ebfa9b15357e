#!/usr/bin/python3
"""The PyTorch side of kvlab's training-throughput benchmark (experiments/perf/train_perf.cpp).

  /usr/bin/python3 experiments/perf/torch_train_peer.py --threads N --seq T --batch B
      [--steps S] [--warmup W] [--hidden 256 --layers 6 --heads 8 --kv-heads 2 --head-dim 32
       --intermediate 704 --vocab 4096 --rope-theta 500000] [--seed 1]

The model is the Llama forward of tests/golden/torch_llama.py (its rope_inv_freq, rope_cos_sin,
apply_rotary_pos_emb, repeat_kv and rms_norm; explicit causal softmax attention, since torch 1.13
has no F.scaled_dot_product_attention) as trainable nn.Parameters in f32 with tied embeddings,
trained with autograd and torch.optim.AdamW (lr 1e-3, weight decay 0.01 on matrices only, as
kvlab's trainer). One step = zero_grad + forward + mean cross-entropy + backward + AdamW step on
B random sequences of T tokens. step_s: best of S timed steps after W warm-up steps.
Prints one JSON line (tok_s = B*T / step_s).
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))

# torch is imported in main() after the thread variables are set (see torch_peer.py: Debian's
# OpenBLAS sizes its pool from OPENBLAS_NUM_THREADS when it loads).
torch = F = tl = None


class Cfg:
    pass


def build(args):
    c = Cfg()
    c.C, c.L, c.H, c.G, c.D = args.hidden, args.layers, args.heads, args.kv_heads, args.head_dim
    c.F, c.V, c.eps, c.rope_theta, c.rope_scaling = args.intermediate, args.vocab, 1e-6, \
        args.rope_theta, None
    nn = torch.nn
    g = torch.Generator().manual_seed(args.seed)

    def mat(r, k):
        return nn.Parameter(torch.randn(r, k, generator=g) * 0.02)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = mat(c.V, c.C)
            self.layers = nn.ModuleList()
            for _ in range(c.L):
                m = nn.Module()
                m.ln1 = nn.Parameter(torch.ones(c.C))
                m.q = mat(c.H * c.D, c.C)
                m.k = mat(c.G * c.D, c.C)
                m.v = mat(c.G * c.D, c.C)
                m.o = mat(c.C, c.H * c.D)
                m.ln2 = nn.Parameter(torch.ones(c.C))
                m.gate = mat(c.F, c.C)
                m.up = mat(c.F, c.C)
                m.down = mat(c.C, c.F)
                self.layers.append(m)
            self.norm = nn.Parameter(torch.ones(c.C))
            self.inv_freq = tl.rope_inv_freq(c)

        def forward(self, tokens, targets):
            B, T = tokens.shape
            pos = torch.arange(T, dtype=torch.int64)
            cos, sin = tl.rope_cos_sin(self.inv_freq, pos)
            mask = pos[None, :] > pos[:, None]  # [T, S] causal
            h = F.embedding(tokens, self.embed)  # [B, T, C]
            for m in self.layers:
                x = tl.rms_norm(h, m.ln1, c.eps)
                q = F.linear(x, m.q).view(B, T, c.H, c.D).transpose(1, 2)  # [B, H, T, D]
                k = F.linear(x, m.k).view(B, T, c.G, c.D).transpose(1, 2)
                v = F.linear(x, m.v).view(B, T, c.G, c.D).transpose(1, 2)
                q, k = tl.apply_rotary_pos_emb(q, k, cos, sin)  # cos/sin broadcast over B, H
                rep = c.H // c.G
                k = k[:, :, None].expand(B, c.G, rep, T, c.D).reshape(B, c.H, T, c.D)
                v = v[:, :, None].expand(B, c.G, rep, T, c.D).reshape(B, c.H, T, c.D)
                s = torch.matmul(q, k.transpose(-1, -2)) * (c.D ** -0.5)
                s = s.masked_fill(mask, torch.finfo(s.dtype).min)
                p = F.softmax(s, dim=-1, dtype=torch.float32)
                a = torch.matmul(p, v).transpose(1, 2).reshape(B, T, c.H * c.D)
                h = h + F.linear(a, m.o)
                x = tl.rms_norm(h, m.ln2, c.eps)
                h = h + F.linear(F.silu(F.linear(x, m.gate)) * F.linear(x, m.up), m.down)
            h = tl.rms_norm(h, self.norm, c.eps)
            logits = F.linear(h, self.embed)  # tied head
            return F.cross_entropy(logits.view(B * T, c.V), targets.reshape(B * T))

    return Model()


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer for kvlab's training benchmark")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--intermediate", type=int, default=704)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--rope-theta", type=float, default=500000.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    global torch, F, tl
    import torch
    import torch.nn.functional as F
    import torch_llama as tl
    torch.set_num_threads(args.threads)

    model = build(args)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    g = torch.Generator().manual_seed(args.seed + 1)
    B, T = args.batch, args.seq
    tokens = torch.randint(0, args.vocab, (B, T), generator=g)
    targets = torch.roll(tokens, -1, dims=1)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = model(tokens, targets)
        loss.backward()
        opt.step()
        return float(loss)

    for _ in range(args.warmup):
        step()
    times, loss = [], None
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(json.dumps({
        "seq": T, "batch": B, "step_s": best, "tok_s": B * T / best,
        "step_times_s": times, "loss": loss,
        "num_params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(), "torch_version": str(torch.__version__),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }))


if __name__ == "__main__":
    main()
