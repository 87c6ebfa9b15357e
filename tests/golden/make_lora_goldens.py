#!/usr/bin/python3
"""Makes the LoRA goldens tests/golden/lora_<case>.h5 in plain PyTorch, independent of kvlab's C++.

The model is torch_llama.py's transcription of HF Llama/Qwen2 (f32); each adapted projection
y = x W^T + b becomes, as in PEFT's LoraLayer (peft/tuners/lora/layer.py, Linear.forward):
    y = x W^T + b + (alpha / r) * lora_B(lora_A(dropout(x)))      A [r, in], B [out, r]
with the dropout mask written out from the rule stated in framework/model/llama_train.h
(lora_mask_key / lora_keep, splitmix64 finaliser over (seed, call, 8 layer + target, row * in +
col), keep iff hash >> 40 >= round(p * 2^24), kept values times f32(1 / (1 - p))) and re-implemented
here in numpy uint64 arithmetic. B is drawn non-zero (PEFT initialises it to zero, which would make
every lora_A gradient vanish and test nothing).

Per case the file holds:
  config_json (u8), weights/<HF name> (base), adapters/<name> (A, B before the step),
  tokens, targets, loss_weight [B, T]; string attrs rank, alpha, dropout, lora_seed, targets, lr,
  weight_decay (Python repr of the value);
  logits [B, T, V]   eval forward (no dropout) with the adapters;
  loss [1]           training forward (dropout of call 0) weighted mean CE (targets < 0 ignored);
  grads/<name>       d loss / d adapter by autograd (base weights do not require grad);
  after_step/<name>  the adapters after one torch.optim.AdamW step (foreach=False) on those grads.
Run: /usr/bin/python3 tests/golden/make_lora_goldens.py [--out DIR]; deterministic (one thread,
torch.manual_seed).
"""

import argparse
import json
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_llama  # noqa: E402

GENERATOR = "tests/golden/make_lora_goldens.py"
SEED = 20261125
TARGETS = ["q", "k", "v", "o", "gate", "up", "down"]
HF = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
      "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
      "down": "mlp.down_proj"}
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix(z):
    """splitmix64 finaliser on a uint64 numpy array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & M64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & M64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & M64
        return z ^ (z >> np.uint64(31))


def keep_mask(seed, call, layer, target, rows, n_in, p):
    """bool [len(rows), n_in]: the kept adapter-input elements (rows are global row indices)."""
    key = mix(np.array([seed], np.uint64))
    key = mix(key ^ np.uint64(call))
    key = mix(key ^ np.uint64(8 * layer + TARGETS.index(target)))[0]
    flat = (np.asarray(rows, np.uint64)[:, None] * np.uint64(n_in)
            + np.arange(n_in, dtype=np.uint64)[None, :])
    h = mix(flat ^ key)
    return torch.from_numpy((h >> np.uint64(40)) >= np.uint64(round(p * 2 ** 24)))


class LoraLlama(torch_llama.LlamaRef):
    def __init__(self, cfg, weights, adapters, rank, alpha, dropout, seed):
        super().__init__(cfg, weights, torch.float32)
        self.ad = adapters
        self.scale = alpha / rank
        self.p = dropout
        self.seed = seed
        self.train = False
        self.rows = None  # global row indices of the sequence being run

    def _lin(self, x, name):
        y = super()._lin(x, name)
        parts = name.split(".")  # model.layers.<i>.<self_attn|mlp>.<proj>
        a = f"{name}.lora_A.weight"
        if a not in self.ad:
            return y
        layer = int(parts[2])
        target = [t for t, h in HF.items() if name.endswith(h)][0]
        xd = x
        if self.train and self.p > 0:
            keep = keep_mask(self.seed, 0, layer, target, self.rows, x.shape[-1], self.p)
            xd = x * keep.to(x.dtype) * torch.tensor(1.0 / (1.0 - self.p), dtype=torch.float32)
        return y + self.scale * F.linear(F.linear(xd, self.ad[a]), self.ad[f"{name}.lora_B.weight"])

    def batch_logits(self, tokens, train):
        self.train = train
        B, T = tokens.shape
        out = []
        for b in range(B):
            self.rows = list(range(b * T, (b + 1) * T))
            out.append(self.forward(tokens[b]))
        return torch.stack(out)


CASES = {
    # every target, no dropout, untied Llama
    "llama_all": dict(arch="LlamaForCausalLM", tie=False, rank=4, alpha=8.0, dropout=0.0,
                      seed=3, targets=TARGETS),
    # Qwen2 (q,k,v biases, tied head), a subset of targets, dropout 0.25
    "qwen2_dropout": dict(arch="Qwen2ForCausalLM", tie=True, rank=3, alpha=6.0, dropout=0.25,
                          seed=11, targets=["q", "v", "o", "down"]),
}


def put(g, name, t):
    t = t.detach()
    if t.dtype in (torch.int32, torch.int64):
        g.create_dataset(name, data=t.numpy().astype(np.int32))
    else:
        g.create_dataset(name, data=t.to(torch.float32).numpy())


def make_case(out_dir, name, spec):
    C, F_, H, G, D, V, L = 48, 64, 4, 2, 16, 260, 2
    cfg = {
        "architectures": [spec["arch"]],
        "model_type": "qwen2" if spec["arch"].startswith("Qwen2") else "llama",
        "hidden_size": C, "intermediate_size": F_, "num_hidden_layers": L,
        "num_attention_heads": H, "num_key_value_heads": G, "head_dim": D, "vocab_size": V,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": spec["tie"], "hidden_act": "silu", "torch_dtype": "float32",
    }
    r = lambda *s, std=1.0: torch.randn(*s) * std  # noqa: E731
    bias = spec["arch"].startswith("Qwen2")
    w = {"model.embed_tokens.weight": r(V, C, std=0.5 if spec["tie"] else 1.0)}
    shapes = {"q": (H * D, C), "k": (G * D, C), "v": (G * D, C), "o": (C, H * D),
              "gate": (F_, C), "up": (F_, C), "down": (C, F_)}
    for i in range(L):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * r(C)
        w[p + "self_attn.q_proj.weight"] = r(H * D, C, std=1.5 / C ** 0.5)
        w[p + "self_attn.k_proj.weight"] = r(G * D, C, std=1.5 / C ** 0.5)
        w[p + "self_attn.v_proj.weight"] = r(G * D, C, std=1 / C ** 0.5)
        w[p + "self_attn.o_proj.weight"] = r(C, H * D, std=1 / (H * D) ** 0.5)
        if bias:
            w[p + "self_attn.q_proj.bias"] = r(H * D, std=0.1)
            w[p + "self_attn.k_proj.bias"] = r(G * D, std=0.1)
            w[p + "self_attn.v_proj.bias"] = r(G * D, std=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * r(C)
        w[p + "mlp.gate_proj.weight"] = r(F_, C, std=1 / C ** 0.5)
        w[p + "mlp.up_proj.weight"] = r(F_, C, std=1 / C ** 0.5)
        w[p + "mlp.down_proj.weight"] = r(C, F_, std=1 / F_ ** 0.5)
    w["model.norm.weight"] = 1 + 0.1 * r(C)
    if not spec["tie"]:
        w["lm_head.weight"] = r(V, C, std=2 / C ** 0.5)
    rank = spec["rank"]
    ad = {}
    for i in range(L):
        for t in TARGETS:  # kvlab's adapter order: layer, then target in this order, A then B
            if t not in spec["targets"]:
                continue
            out, inp = shapes[t]
            p = f"model.layers.{i}.{HF[t]}."
            # A at PEFT's kaiming-uniform bound; B non-zero so that dA is not zero.
            ad[p + "lora_A.weight"] = (torch.rand(rank, inp) * 2 - 1) / inp ** 0.5
            ad[p + "lora_B.weight"] = r(out, rank, std=0.5 / rank ** 0.5)
    before = {k: v.clone() for k, v in ad.items()}
    for t in ad.values():
        t.requires_grad_()
    model = LoraLlama(torch_llama.Config(cfg), w, ad, rank, spec["alpha"], spec["dropout"],
                      spec["seed"])
    B, T = 2, 40
    tokens = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    targets[0, :2] = -100
    targets[1, 30:33] = -100
    weight = torch.rand(B, T) * 2
    with torch.no_grad():
        logits_eval = model.batch_logits(tokens, train=False)
    logits = model.batch_logits(tokens, train=True)
    ce = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(-1).clamp(min=0),
                         reduction="none")
    wv = weight.reshape(-1) * (targets.reshape(-1) >= 0)
    loss = (ce * wv).sum() / wv.sum()
    loss.backward()
    lr, wd = 1e-2, 0.01
    names = list(ad)
    opt = torch.optim.AdamW([ad[n] for n in names], lr=lr, weight_decay=wd, foreach=False)
    opt.step()
    path = os.path.join(out_dir, f"lora_{name}.h5")
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = GENERATOR
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["seed"] = SEED
        f.attrs["rank"] = str(rank)
        f.attrs["alpha"] = repr(spec["alpha"])
        f.attrs["dropout"] = repr(spec["dropout"])
        f.attrs["lora_seed"] = str(spec["seed"])
        f.attrs["targets"] = ",".join(spec["targets"])
        f.attrs["lr"] = repr(lr)
        f.attrs["weight_decay"] = repr(wd)
        f.create_dataset("config_json", data=np.frombuffer(json.dumps(cfg).encode(), np.uint8))
        for n, t in w.items():
            put(f, "weights/" + n, t)
        for n in names:
            put(f, "adapters/" + n, before[n])
            put(f, "grads/" + n, ad[n].grad)
            put(f, "after_step/" + n, ad[n])
        put(f, "tokens", tokens)
        put(f, "targets", targets)
        put(f, "loss_weight", weight)
        put(f, "loss", loss.reshape(1))
        put(f, "logits", logits_eval)
    gmax = max(ad[n].grad.abs().max().item() for n in names)
    print(f"{path}: loss {loss.item():.6f}, max|logit| {logits_eval.abs().max().item():.3f}, "
          f"max|grad| {gmax:.3e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    for name, spec in CASES.items():
        make_case(args.out, name, spec)


if __name__ == "__main__":
    main()
