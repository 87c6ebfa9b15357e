#!/usr/bin/python3
"""Makes the forward-pass goldens in tests/golden/ (DESIGN.md section 5).

For each case: a small random model in the Hugging Face layout
tests/golden/models/<case>/{config.json, model.safetensors} and a golden tests/golden/<case>.h5
with datasets `tokens` [T] int32 and `logits` [T, V] f32 computed by tests/golden/torch_llama.py
(the HF forward in f32 from the weights as stored on disk), with provenance attributes.
Also checks that the KV-cached incremental forward reproduces the full forward.

Run from anywhere:   /usr/bin/python3 tests/golden/make_goldens.py [--created YYYY-MM-DD]
Deterministic: the same seed gives byte-identical files (`created` defaults to today's UTC date,
or SOURCE_DATE_EPOCH when set; pass --created to reproduce a committed file exactly).

Weight scales (not HF's initializer_range 0.02, on purpose): with every weight at std 0.02 the
residual stream is dominated by the embedding, q.k scores are ~1e-3 (attention nearly uniform, so
a RoPE, mask or GQA-mapping bug would barely move the logits) and logits are ~0.1. Instead:
  embed_tokens        normal(0, 1)              residual stream of unit RMS
  q_proj, k_proj      normal(0, 1.5/sqrt(C))    scores q.k/sqrt(D) of std ~2: peaked attention
  v, o, gate, up      normal(0, 1/sqrt(fan_in)) each sublayer adds O(1) to the residual
  down_proj           normal(0, 1/sqrt(F))
  lm_head             normal(0, 2/sqrt(C))      logit spread ~2 (tied case: embed std 1 -> ~sqrt(C)
                                                 scaled down by using embed std 0.25)
  norm weights        1 + 0.1 * normal          a missing/wrong norm weight is caught
  biases              normal(0, 0.1)            a missing or misplaced (post-RoPE) bias is caught
"""

import argparse
import datetime
import json
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_llama  # noqa: E402

GENERATOR = "tests/golden/make_goldens.py"
SEED = 20240611

# name, description, config overrides, storage dtype, T, seed offset
CASES = [
    dict(
        name="llama_gqa_f32",
        desc="LlamaForCausalLM, GQA H=8 G=2 D=16 (C=128), default RoPE theta 1e4, f32 weights",
        arch="LlamaForCausalLM", dtype="float32", T=57,
        cfg=dict(hidden_size=128, intermediate_size=128, num_attention_heads=8,
                 num_key_value_heads=2, head_dim=16, vocab_size=320, rms_norm_eps=1e-5,
                 rope_theta=10000.0)),
    dict(
        name="llama_hd80_bf16",
        desc="LlamaForCausalLM, head_dim 80 (not a power of two), C=160 H=2 G=1, bf16 weights",
        arch="LlamaForCausalLM", dtype="bfloat16", T=48,
        cfg=dict(hidden_size=160, intermediate_size=256, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=80, vocab_size=384, rms_norm_eps=1e-5,
                 rope_theta=10000.0)),
    dict(
        name="llama3_rope_bf16",
        desc="LlamaForCausalLM, llama3 rope_scaling (factor 8, low 1, high 4, original 64) with "
             "rope_theta 5e5 at D=32: high-, medium- and low-frequency pairs all occur; "
             "positions 0..69 cross original_max_position_embeddings; explicit head_dim with "
             "H*D=128 != C=96; bf16 weights",
        arch="LlamaForCausalLM", dtype="bfloat16", T=70,
        cfg=dict(hidden_size=96, intermediate_size=192, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, vocab_size=320, rms_norm_eps=1e-5,
                 rope_theta=500000.0, max_position_embeddings=512,
                 rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                   high_freq_factor=4.0, original_max_position_embeddings=64))),
    dict(
        name="llama_tied_bias_f16",
        desc="LlamaForCausalLM, tie_word_embeddings (no lm_head.weight), attention_bias=true "
             "(q,k,v,o biases), MHA H=G=4 D=32, f16 weights",
        arch="LlamaForCausalLM", dtype="float16", T=41,
        cfg=dict(hidden_size=128, intermediate_size=256, num_attention_heads=4,
                 num_key_value_heads=4, head_dim=32, vocab_size=384, rms_norm_eps=1e-5,
                 rope_theta=10000.0, tie_word_embeddings=True, attention_bias=True)),
    dict(
        name="qwen2_bias_bf16",
        desc="Qwen2ForCausalLM, q,k,v biases (no o bias), GQA H=4 G=2 D=32, rope_theta 1e6, "
             "eps 1e-6, bf16 weights",
        arch="Qwen2ForCausalLM", dtype="bfloat16", T=64,
        cfg=dict(hidden_size=128, intermediate_size=256, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=400, rms_norm_eps=1e-6,
                 rope_theta=1000000.0, use_sliding_window=False, sliding_window=None,
                 max_window_layers=2)),
    dict(
        name="mistral_linear_f32",
        desc="MistralForCausalLM, rope_scaling {type: linear, factor: 2} (legacy 'type' key), "
             "sliding_window null, GQA H=6 G=2 D=16 (C=96), f32 weights",
        arch="MistralForCausalLM", dtype="float32", T=66,
        cfg=dict(hidden_size=96, intermediate_size=128, num_attention_heads=6,
                 num_key_value_heads=2, head_dim=16, vocab_size=320, rms_norm_eps=1e-6,
                 rope_theta=10000.0, sliding_window=None,
                 rope_scaling=dict(type="linear", factor=2.0))),
]

MODEL_TYPE = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
              "Qwen2ForCausalLM": "qwen2"}
TORCH_DTYPE = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_config(case):
    arch = case["arch"]
    cfg = dict(architectures=[arch], model_type=MODEL_TYPE[arch], hidden_act="silu",
               num_hidden_layers=2, max_position_embeddings=256, initializer_range=0.02,
               tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
               torch_dtype=case["dtype"], use_cache=True)
    if arch == "LlamaForCausalLM":
        cfg.update(attention_bias=False, mlp_bias=False, attention_dropout=0.0)
    cfg.update(case["cfg"])
    return cfg


def make_weights(cfg, gen):
    c = torch_llama.Config(cfg)

    def normal(shape, std):
        return torch.randn(shape, generator=gen, dtype=torch.float32) * std

    def norm_w(n):
        return 1.0 + 0.1 * normal([n], 1.0)

    w = {}
    w["model.embed_tokens.weight"] = normal([c.V, c.C], 0.25 if c.tie else 1.0)
    for i in range(c.L):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm_w(c.C)
        w[p + "self_attn.q_proj.weight"] = normal([c.H * c.D, c.C], 1.5 / c.C ** 0.5)
        w[p + "self_attn.k_proj.weight"] = normal([c.G * c.D, c.C], 1.5 / c.C ** 0.5)
        w[p + "self_attn.v_proj.weight"] = normal([c.G * c.D, c.C], 1.0 / c.C ** 0.5)
        w[p + "self_attn.o_proj.weight"] = normal([c.C, c.H * c.D], 1.0 / (c.H * c.D) ** 0.5)
        if c.qkv_bias:
            w[p + "self_attn.q_proj.bias"] = normal([c.H * c.D], 0.1)
            w[p + "self_attn.k_proj.bias"] = normal([c.G * c.D], 0.1)
            w[p + "self_attn.v_proj.bias"] = normal([c.G * c.D], 0.1)
        if c.o_bias:
            w[p + "self_attn.o_proj.bias"] = normal([c.C], 0.1)
        w[p + "post_attention_layernorm.weight"] = norm_w(c.C)
        w[p + "mlp.gate_proj.weight"] = normal([c.F, c.C], 1.0 / c.C ** 0.5)
        w[p + "mlp.up_proj.weight"] = normal([c.F, c.C], 1.0 / c.C ** 0.5)
        w[p + "mlp.down_proj.weight"] = normal([c.C, c.F], 1.0 / c.F ** 0.5)
    w["model.norm.weight"] = norm_w(c.C)
    if not c.tie:
        w["lm_head.weight"] = normal([c.V, c.C], 2.0 / c.C ** 0.5)
    return w


def created_date(arg):
    if arg:
        return arg
    if os.environ.get("SOURCE_DATE_EPOCH"):
        t = datetime.datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]),
                                            datetime.timezone.utc)
    else:
        t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%d")


def make_case(case, index, out_dir, created):
    seed = SEED + index
    gen = torch.Generator().manual_seed(seed)
    cfg = make_config(case)
    weights = make_weights(cfg, gen)
    model_dir = os.path.join(out_dir, "models", case["name"])
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    stored = {k: v.to(TORCH_DTYPE[case["dtype"]]) for k, v in weights.items()}
    torch_llama.write_safetensors(os.path.join(model_dir, "model.safetensors"), stored,
                                  metadata={"format": "pt"})

    # The golden is computed from the file as written (bf16/f16 rounding included), read back.
    model = torch_llama.load_model(model_dir)
    for k, v in stored.items():  # the reader round-trips every stored value exactly
        assert torch.equal(model.w[k], v.to(torch.float32)), k
    V = model.cfg.V
    tokens = torch.randint(0, V, (case["T"],), generator=gen, dtype=torch.int64)
    with torch.inference_mode():
        logits = model.forward(tokens)
        # Incremental: prefill the first half in one call, then one token at a time.
        cache = model.new_cache()
        half = case["T"] // 2
        rows = [model.forward_cached(tokens[:half], cache)]
        for t in range(half, case["T"]):
            rows.append(model.forward_cached(tokens[t:t + 1], cache, all_logits=False))
        inc = torch.cat(rows, dim=0)
    max_logit = float(logits.abs().max())
    diff = float((inc - logits).abs().max())
    assert torch.isfinite(logits).all()
    assert diff <= 1e-5 * max(1.0, max_logit), f"{case['name']}: cached vs full diff {diff}"

    with h5py.File(os.path.join(out_dir, case["name"] + ".h5"), "w") as f:
        f.create_dataset("tokens", data=tokens.numpy().astype(np.int32))
        f.create_dataset("logits", data=logits.numpy().astype(np.float32))
        f.attrs["generator"] = GENERATOR
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["seed"] = np.int64(seed)
        f.attrs["case"] = case["name"]
        f.attrs["description"] = case["desc"]
        f.attrs["model_dir"] = f"tests/golden/models/{case['name']}"
        f.attrs["created"] = created
    size = os.path.getsize(os.path.join(model_dir, "model.safetensors"))
    print(f"{case['name']:22s} T={case['T']:3d} V={V:4d} max|logit|={max_logit:7.3f} "
          f"logit std={float(logits.std()):6.3f} cached-vs-full max abs diff={diff:.3g} "
          f"model {size / 1e6:.2f} MB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=HERE, help="output folder (default: tests/golden)")
    ap.add_argument("--created", help="the created attribute (UTC date), default today")
    ap.add_argument("--only", help="make only this case")
    args = ap.parse_args()
    torch.set_num_threads(1)  # summation order fixed: same files on every machine we run on
    created = created_date(args.created)
    for i, case in enumerate(CASES):
        if args.only and case["name"] != args.only:
            continue
        make_case(case, i, args.out, created)


if __name__ == "__main__":
    main()
