"""A plain PyTorch reference of Hugging Face's LlamaForCausalLM / MistralForCausalLM /
Qwen2ForCausalLM forward pass, written from the definitions in transformers'
modeling_llama.py, modeling_mistral.py, modeling_qwen2.py and modeling_rope_utils.py
(eager attention path). No transformers or safetensors package is needed: config.json and
model.safetensors are parsed here.

Dimension letters (DESIGN.md section 9): T tokens, H query heads, G KV heads, D head dim,
C model dim, F MLP width, V vocab, L layers, S cached tokens.

Numerics: weights are read in their stored dtype (bf16/f16/f32) and upcast exactly to f32;
everything is computed in f32 (compute_dtype=torch.float32), which is what kvlab does. With
compute_dtype=torch.bfloat16 the weights stay bf16 and the casts follow HF's (RMSNorm in f32 then
back, softmax in f32 then back): used only by the perf peer.

Run as /usr/bin/python3 (Debian's python3-torch, numpy).
"""

import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")

# ---------------------------------------------------------------------------------------------
# safetensors: u64 little-endian header length N, N bytes of JSON, then raw little-endian data
# (offsets relative to the data start).
# ---------------------------------------------------------------------------------------------

_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def bf16_bits_to_f32(bits):
    """uint16/int16 bf16 bit patterns -> exact f32 tensor (view int16 -> int32 << 16 -> f32)."""
    t = torch.from_numpy(np.ascontiguousarray(bits).view(np.int16).astype(np.int16))
    return (t.to(torch.int32) << 16).view(torch.float32)


def read_safetensors(path, dtype=torch.float32):
    """Returns ({name: tensor}, metadata). Tensors are converted exactly to `dtype` (f32 default);
    dtype=None keeps the stored dtype (bf16 stays torch.bfloat16)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    n = int(np.frombuffer(raw[:8], dtype="<u8")[0])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = memoryview(raw)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in _NP_DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        b, e = info["data_offsets"]
        shape = list(info["shape"])
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * _DTYPE_BYTES[dt] or e > len(data):
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {b},{e} for shape {shape}")
        arr = np.frombuffer(data[b:e], dtype=np.dtype(_NP_DTYPES[dt]).newbyteorder("<"))
        if dt == "BF16":
            t = bf16_bits_to_f32(arr)
            if dtype is None:
                t = t.to(torch.bfloat16)  # exact: the values are bf16 already
        else:
            t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))
        if dtype is not None:
            t = t.to(dtype)
        out[name] = t.reshape(shape)
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: torch tensor of dtype float32 / bfloat16 / float16}, written in sorted name
    order (as the safetensors library does) so the file is deterministic."""
    names = sorted(tensors)
    header = {}
    blobs = []
    off = 0
    for name in names:
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype == torch.float32:
            dt, blob = "F32", t.numpy().astype("<f4").tobytes()
        elif t.dtype == torch.float16:
            dt, blob = "F16", t.numpy().astype("<f2").tobytes()
        elif t.dtype == torch.bfloat16:
            bits = (t.view(torch.int16).to(torch.int32) & 0xFFFF).numpy().astype("<u2")
            dt, blob = "BF16", bits.tobytes()
        else:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * ((8 - (8 + len(js)) % 8) % 8)  # pad so that 8 + N is a multiple of 8
    with open(path, "wb") as f:
        f.write(np.array([len(js)], dtype="<u8").tobytes())
        f.write(js)
        for blob in blobs:
            f.write(blob)


# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------


class Config:
    """The fields of a HF config.json that the forward pass depends on, with HF's defaults."""

    def __init__(self, d):
        archs = d.get("architectures") or []
        self.architecture = archs[0] if archs else {
            "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
            "qwen2": "Qwen2ForCausalLM"}.get(d.get("model_type"), "")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unsupported architecture {self.architecture!r}")
        self.C = int(d["hidden_size"])
        self.F = int(d["intermediate_size"])
        self.L = int(d["num_hidden_layers"])
        self.H = int(d["num_attention_heads"])
        self.G = int(d.get("num_key_value_heads") or self.H)
        # LlamaAttention / MistralAttention: getattr(config, "head_dim", C // H) (None -> C // H)
        self.D = int(d.get("head_dim") or self.C // self.H)
        self.V = int(d["vocab_size"])
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        self.rope_theta = float(d.get("rope_theta", 10000.0))
        self.rope_scaling = d.get("rope_scaling")
        self.tie = bool(d.get("tie_word_embeddings", False))
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"hidden_act {act!r}: only silu is supported")
        if self.architecture == "LlamaForCausalLM":
            # LlamaAttention: q,k,v,o all use bias=config.attention_bias; LlamaMLP: mlp_bias.
            bias = bool(d.get("attention_bias", False))
            self.qkv_bias, self.o_bias = bias, bias
            self.mlp_bias = bool(d.get("mlp_bias", False))
        elif self.architecture == "Qwen2ForCausalLM":
            # Qwen2Attention: q,k,v with bias=True, o_proj bias=False.
            self.qkv_bias, self.o_bias, self.mlp_bias = True, False, False
            if d.get("use_sliding_window", False):
                raise NotImplementedError("qwen2 use_sliding_window=true is not modelled")
        else:
            self.qkv_bias, self.o_bias, self.mlp_bias = False, False, False
            if d.get("sliding_window") is not None:
                raise NotImplementedError("mistral sliding_window is not modelled (use null)")
        if self.H % self.G:
            raise ValueError(f"num_attention_heads {self.H} not a multiple of num_key_value_heads {self.G}")


def rope_inv_freq(cfg):
    """inv_freq [D/2] in f32, as modeling_rope_utils computes it (default, linear, llama3)."""
    D = cfg.D
    # _compute_default_rope_parameters: base ** (arange(0, D, 2).float() / D), in f32.
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    rs = cfg.rope_scaling
    if not rs:
        return inv_freq
    rope_type = rs.get("rope_type", rs.get("type", "default"))
    if rope_type == "default":
        return inv_freq
    if rope_type == "linear":
        # _compute_linear_scaling_rope_parameters
        return inv_freq / float(rs["factor"])
    if rope_type == "llama3":
        # _compute_llama3_parameters
        factor = float(rs["factor"])
        low_freq_factor = float(rs["low_freq_factor"])
        high_freq_factor = float(rs["high_freq_factor"])
        old_context_len = float(rs["original_max_position_embeddings"])
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        # wavelen < high_freq_wavelen: unchanged; wavelen > low_freq_wavelen: divided by factor
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        # in between: smooth interpolation
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(is_medium, smoothed, inv_freq_llama)
    raise NotImplementedError(f"rope_scaling type {rope_type!r}")


def rope_cos_sin(inv_freq, positions):
    """LlamaRotaryEmbedding.forward: freqs = f32(position) * inv_freq in f32,
    emb = cat(freqs, freqs); returns cos, sin [T, D] in f32 (attention_scaling is 1 here)."""
    freqs = positions.to(torch.float32)[:, None] * inv_freq[None, :].to(torch.float32)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """q [H, T, D], k [G, T, D]; cos, sin [T, D] (broadcast over heads)."""
    cos = cos.unsqueeze(0)
    sin = sin.unsqueeze(0)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(x, n_rep):
    """[G, S, D] -> [G * n_rep, S, D]; query head h reads KV head h // n_rep."""
    if n_rep == 1:
        return x
    G, S, D = x.shape
    return x[:, None, :, :].expand(G, n_rep, S, D).reshape(G * n_rep, S, D)


def rms_norm(x, weight, eps):
    """LlamaRMSNorm / Qwen2RMSNorm / MistralRMSNorm."""
    input_dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


class KvCache:
    """Per-layer keys (post-RoPE) and values [G, S, D], plus the next position."""

    def __init__(self, n_layers):
        self.k = [None] * n_layers
        self.v = [None] * n_layers
        self.pos = 0


class LlamaRef:
    def __init__(self, cfg, weights, compute_dtype=torch.float32):
        self.cfg = cfg
        self.dtype = compute_dtype
        w = {k: v.to(compute_dtype) for k, v in weights.items()}
        self._check(w)
        self.w = w
        self.inv_freq = rope_inv_freq(cfg)

    def _check(self, w):
        c = self.cfg
        want = {"model.embed_tokens.weight": [c.V, c.C], "model.norm.weight": [c.C]}
        if not c.tie:
            want["lm_head.weight"] = [c.V, c.C]
        for i in range(c.L):
            p = f"model.layers.{i}."
            want[p + "input_layernorm.weight"] = [c.C]
            want[p + "post_attention_layernorm.weight"] = [c.C]
            want[p + "self_attn.q_proj.weight"] = [c.H * c.D, c.C]
            want[p + "self_attn.k_proj.weight"] = [c.G * c.D, c.C]
            want[p + "self_attn.v_proj.weight"] = [c.G * c.D, c.C]
            want[p + "self_attn.o_proj.weight"] = [c.C, c.H * c.D]
            if c.qkv_bias:
                want[p + "self_attn.q_proj.bias"] = [c.H * c.D]
                want[p + "self_attn.k_proj.bias"] = [c.G * c.D]
                want[p + "self_attn.v_proj.bias"] = [c.G * c.D]
            if c.o_bias:
                want[p + "self_attn.o_proj.bias"] = [c.C]
            want[p + "mlp.gate_proj.weight"] = [c.F, c.C]
            want[p + "mlp.up_proj.weight"] = [c.F, c.C]
            want[p + "mlp.down_proj.weight"] = [c.C, c.F]
            if c.mlp_bias:
                want[p + "mlp.gate_proj.bias"] = [c.F]
                want[p + "mlp.up_proj.bias"] = [c.F]
                want[p + "mlp.down_proj.bias"] = [c.C]
        for name, shape in want.items():
            if name not in w:
                raise KeyError(f"missing tensor {name}")
            if list(w[name].shape) != shape:
                raise ValueError(f"tensor {name}: shape {list(w[name].shape)}, want {shape}")
        extra = sorted(set(w) - set(want))
        if extra:
            raise ValueError(f"unexpected tensors: {extra}")

    def _lin(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def new_cache(self):
        return KvCache(self.cfg.L)

    def _attention(self, i, x, cos, sin, q_pos, cache):
        """x [T, C] (normed) -> attention output after o_proj [T, C]."""
        c = self.cfg
        p = f"model.layers.{i}.self_attn."
        T = x.shape[0]
        q = self._lin(x, p + "q_proj").view(T, c.H, c.D).transpose(0, 1)  # [H, T, D]
        k = self._lin(x, p + "k_proj").view(T, c.G, c.D).transpose(0, 1)  # [G, T, D]
        v = self._lin(x, p + "v_proj").view(T, c.G, c.D).transpose(0, 1)  # [G, T, D]
        q, k = apply_rotary_pos_emb(q, k, cos.to(q.dtype), sin.to(q.dtype))
        if cache is not None:
            if cache.k[i] is not None:
                k = torch.cat((cache.k[i], k), dim=1)
                v = torch.cat((cache.v[i], v), dim=1)
            cache.k[i], cache.v[i] = k, v
        S = k.shape[1]
        k_pos = torch.arange(S, dtype=torch.int64) + (int(q_pos[-1]) + 1 - S)
        k = repeat_kv(k, c.H // c.G)
        v = repeat_kv(v, c.H // c.G)
        # eager_attention_forward: softmax(q k^T * scale + causal mask) in f32, then @ v
        scores = torch.matmul(q, k.transpose(1, 2)) * (c.D ** -0.5)  # [H, T, S]
        masked = k_pos[None, :] > q_pos[:, None]                       # [T, S]
        if bool(masked.any()):
            scores = scores.masked_fill(masked[None], torch.finfo(scores.dtype).min)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v)                                  # [H, T, D]
        out = out.transpose(0, 1).reshape(T, c.H * c.D)
        return self._lin(out, p + "o_proj")

    def _forward(self, tokens, cache, all_logits=True):
        c = self.cfg
        tokens = torch.as_tensor(tokens, dtype=torch.int64).reshape(-1)
        T = tokens.shape[0]
        start = cache.pos if cache is not None else 0
        q_pos = torch.arange(start, start + T, dtype=torch.int64)
        cos, sin = rope_cos_sin(self.inv_freq, q_pos)
        h = F.embedding(tokens, self.w["model.embed_tokens.weight"])  # [T, C]
        for i in range(c.L):
            p = f"model.layers.{i}."
            r = h
            h = rms_norm(h, self.w[p + "input_layernorm.weight"], c.eps)
            h = r + self._attention(i, h, cos, sin, q_pos, cache)
            r = h
            h = rms_norm(h, self.w[p + "post_attention_layernorm.weight"], c.eps)
            g = self._lin(h, p + "mlp.gate_proj")
            u = self._lin(h, p + "mlp.up_proj")
            h = r + self._lin(F.silu(g) * u, p + "mlp.down_proj")
        if cache is not None:
            cache.pos += T
        if not all_logits:
            h = h[-1:]
        h = rms_norm(h, self.w["model.norm.weight"], c.eps)
        head = self.w["model.embed_tokens.weight"] if c.tie else self.w["lm_head.weight"]
        return F.linear(h, head).to(torch.float32)  # [T, V] (or [1, V])

    def forward(self, tokens):
        """Full causal forward over tokens [T] at positions 0..T-1 -> logits [T, V] f32."""
        return self._forward(tokens, None)

    def forward_cached(self, tokens, cache, all_logits=True):
        """Feeds tokens [T] at positions cache.pos.. (prefill or one decode step), appending their
        keys and values to `cache` -> logits [T, V] (or [1, V] for the last token)."""
        return self._forward(tokens, cache, all_logits)


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return Config(json.load(f))


def load_model(model_dir, compute_dtype=torch.float32):
    """Reads model_dir/{config.json, model.safetensors}; weights upcast exactly to f32 (or kept in
    compute_dtype, e.g. torch.bfloat16 for the perf peer)."""
    cfg = load_config(model_dir)
    weights, _ = read_safetensors(os.path.join(model_dir, "model.safetensors"), dtype=torch.float32)
    return LlamaRef(cfg, weights, compute_dtype)
