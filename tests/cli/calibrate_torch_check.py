"""Independent check of a `kvlab calibrate` bases file against PyTorch (issue 5 item 2).

Runs tests/golden/torch_llama.py (a PyTorch transcription of HF's Llama forward) over the same
calibration sequences, captures every layer's queries, keys and values (post-RoPE as HF computes
them, and pre-RoPE straight from q_proj / k_proj, so the pre frame is checked without any
un-rotation), forms the f64 second moments per KV head
    qk = Q^T Q/|Q| + K^T K/|K| (the group's H/G query heads), k = K^T K/|K|, v = V^T V/|V|
and compares them with the moments the file encodes, V diag(lambda) V^T, and its eigenvalues with
numpy.linalg.eigvalsh. Tolerance: kvlab and torch agree to f32 rounding in the forward pass
(~1e-6 relative) and the file stores f32: 1e-4 relative (Frobenius).

usage: /usr/bin/python3 calibrate_torch_check.py MODEL_DIR IDS_JSON N SEQ_LEN POST.h5 PRE.h5
  IDS_JSON: the calibration text's token ids (BOS not included), e.g. from `kvlab tokenize`;
  the first N are used, in sequences of SEQ_LEN, each after a BOS (as `kvlab calibrate` does).
"""

import json
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))
import torch_llama  # noqa: E402


def capture(model, seqs):
    """Per layer: lists of q_post [H, T, D], q_pre, k_post [G, T, D], k_pre, v [G, T, D]."""
    c = model.cfg
    rec = [{"q_post": [], "q_pre": [], "k_post": [], "k_pre": [], "v": []} for _ in range(c.L)]
    orig = model._attention

    def attention(i, x, cos, sin, q_pos, cache):
        p = f"model.layers.{i}.self_attn."
        T = x.shape[0]
        q = model._lin(x, p + "q_proj").view(T, c.H, c.D).transpose(0, 1)
        k = model._lin(x, p + "k_proj").view(T, c.G, c.D).transpose(0, 1)
        v = model._lin(x, p + "v_proj").view(T, c.G, c.D).transpose(0, 1)
        qr, kr = torch_llama.apply_rotary_pos_emb(q, k, cos, sin)
        r = rec[i]
        r["q_pre"].append(q.double())
        r["k_pre"].append(k.double())
        r["q_post"].append(qr.double())
        r["k_post"].append(kr.double())
        r["v"].append(v.double())
        return orig(i, x, cos, sin, q_pos, cache)

    model._attention = attention
    with torch.inference_mode():
        for s in seqs:
            model.forward(s)
    return rec


def moments(rec, c, frame):
    """{(kind, layer, g): [D, D] f64}."""
    out = {}
    rep = c.H // c.G
    for l in range(c.L):
        Q = torch.cat(rec[l]["q_" + frame], dim=1)  # [H, n, D]
        K = torch.cat(rec[l]["k_" + frame], dim=1)  # [G, n, D]
        V = torch.cat(rec[l]["v"], dim=1)
        n = K.shape[1]
        for g in range(c.G):
            Mk = K[g].T @ K[g] / n
            Qg = Q[g * rep:(g + 1) * rep].reshape(-1, c.D)
            out[("k", l, g)] = Mk.numpy()
            out[("qk", l, g)] = (Qg.T @ Qg / Qg.shape[0] + Mk).numpy()
            out[("v", l, g)] = (V[g].T @ V[g] / n).numpy()
    return out


def check(path, want, c, frame, n_tokens):
    f = h5py.File(path, "r")
    attr = lambda k: f.attrs[k].decode() if isinstance(f.attrs[k], bytes) else f.attrs[k]
    assert attr("frame") == frame + "_rope", (path, attr("frame"))
    assert int(attr("tokens")) == n_tokens, (attr("tokens"), n_tokens)
    worst = 0.0
    for (kind, l, g), M in want.items():
        U = f[f"layer_{l:02d}/{kind}/vectors"][g].astype(np.float64)
        lam = f[f"layer_{l:02d}/{kind}/values"][g].astype(np.float64)
        got = U @ np.diag(lam) @ U.T
        rel = np.linalg.norm(got - M) / np.linalg.norm(M)
        ev = np.linalg.eigvalsh(M)[::-1]
        rel_ev = np.abs(lam - ev).max() / ev[0]
        worst = max(worst, rel, rel_ev)
        assert rel < 1e-4 and rel_ev < 1e-4, (path, kind, l, g, rel, rel_ev)
    return worst


def main():
    model_dir, ids_json, n_tokens, seq_len, post, pre = sys.argv[1:7]
    seq_len = int(seq_len)
    ids = json.load(open(ids_json))[:int(n_tokens)]
    model = torch_llama.load_model(model_dir)
    with open(os.path.join(model_dir, "config.json")) as fh:
        bos = json.load(fh)["bos_token_id"]
    seqs = [[bos] + ids[s:s + seq_len] for s in range(0, len(ids), seq_len)]
    rec = capture(model, seqs)
    n = sum(len(s) for s in seqs)
    w1 = check(post, moments(rec, model.cfg, "post"), model.cfg, "post", n)
    w2 = check(pre, moments(rec, model.cfg, "pre"), model.cfg, "pre", n)
    print(f"torch check: {len(seqs)} sequences, {n} tokens; worst relative error "
          f"post {w1:.2e}, pre {w2:.2e}")


if __name__ == "__main__":
    main()
