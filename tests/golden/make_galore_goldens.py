#!/usr/bin/python3
"""Makes tests/golden/galore_steps.h5: GaLore-AdamW (Zhao et al. 2024; the math of the official
galore_torch AdamW + GaLoreProjector, proj_type "std") written here from scratch in plain torch,
run for STEPS steps on five small f32 tensors with given gradients. Consumed by
tests/baselines/galore/galore_test.cpp.

Run from anywhere:   /usr/bin/python3 tests/golden/make_galore_goldens.py [--out DIR]
Deterministic (fixed seed, one thread): two runs give byte-identical files.

Algorithm per tensor (it = steps done before this one, t = it + 1):
  target 2-D tensor G [m, n], r = min(RANK, m, n):
    if it % GAP == 0: U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False), each column
      of U signed so its largest-|x| entry (first on ties) is positive, Vh's rows flipped with it;
      m >= n: O = Vh[:r].float() [r, n], R = G @ O.T;  m < n: O = U[:, :r].float() [m, r], R = O.T @ G
  other tensors: R = G
  exp_avg = b1*exp_avg + (1-b1)*R; exp_avg_sq = b2*exp_avg_sq + (1-b2)*R*R   (torch in-place ops)
  N = exp_avg / (sqrt(exp_avg_sq) + EPS); step_size = lr*sqrt(1-b2^t)/(1-b1^t)
  back = (N @ O or O @ N) * SCALE for targets, N otherwise; p -= step_size * back
  if decayed: p -= lr*WEIGHT_DECAY * p        (after the update, as galore_torch does)
Deviation from galore_torch, stated: the SVD runs in f64 (galore_torch: f32) because kvlab's
framework/linalg SVD is f64; both sides then see the same projector up to f64 rounding, so the
comparison tests GaLore's algebra rather than LAPACK's f32 rounding. The sign rule is
framework/linalg's (svd_thin); galore_torch leaves LAPACK's signs, which do not change the update
(the projector enters twice) but do change the stored projector and moments.

Layout (tensor i, S = STEPS): t{i}_name (attr), t{i}_init [shape], t{i}_grads [S, shape],
t{i}_after [S, shape], t{i}_exp_avg, t{i}_exp_avg_sq [moment shape] after step S,
t{i}_ortho [projector shape] after step S (targets), t{i}_weight_decay [1] i32, lrs [S] f32.
Attributes on /: generator, torch_version, seed, beta1, beta2, eps, weight_decay, rank, gap,
scale, names (comma-separated), description.
"""

import argparse
import math
import os

import h5py
import numpy as np
import torch

GENERATOR = "tests/golden/make_galore_goldens.py"
SEED = 20241125
STEPS = 8
BETAS = (0.9, 0.999)
EPS = 1e-6
WEIGHT_DECAY = 0.1
RANK = 4
GAP = 3           # projector refreshed at it = 0, 3, 6
SCALE = 0.5
TENSORS = [  # name, shape, target, weight decay
    ("model.layers.0.self_attn.q_proj.weight", (24, 16), True, True),   # m >= n: right
    ("model.layers.0.mlp.down_proj.weight", (12, 20), True, True),     # m < n: left
    ("model.layers.0.input_layernorm.weight", (10,), False, False),     # vector: plain AdamW
    ("model.embed_tokens.weight", (6, 5), False, True),                 # 2-D, not a target
    ("model.layers.0.mlp.gate_proj.weight", (8, 8), True, True),        # square: right
]


def signed_svd(g):
    U, S, Vh = torch.linalg.svd(g.double(), full_matrices=False)
    for j in range(U.shape[1]):
        col = U[:, j]
        i = int(torch.argmax(col.abs()))  # first index of the maximum
        if col[i] < 0:
            U[:, j] = -U[:, j]
            Vh[j, :] = -Vh[j, :]
    return U, S, Vh


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)

    params = [torch.randn(s, generator=gen) for _, s, _, _ in TENSORS]
    init = [p.clone() for p in params]
    state = [dict() for _ in TENSORS]
    lrs = [float(np.float32(2e-2 * (0.85 ** s))) for s in range(STEPS)]
    grads = [[] for _ in TENSORS]
    after = [[] for _ in TENSORS]
    b1, b2 = BETAS
    for step in range(STEPS):
        lr = lrs[step]
        for i, (name, shape, target, decay) in enumerate(TENSORS):
            # Gradients with a decaying spectrum plus noise and a few exact zeros.
            g = torch.randn(shape, generator=gen)
            if len(shape) == 2:
                u = torch.randn(shape[0], 2, generator=gen)
                v = torch.randn(2, shape[1], generator=gen)
                g = g * 0.3 + u @ v
            g[torch.rand(shape, generator=gen) < 0.05] = 0.0
            g = g.to(torch.float32)
            grads[i].append(g.clone())
            st = state[i]
            it = st.get("step", 0)
            p = params[i]
            if target:
                m, n = shape
                r = min(RANK, m, n)
                if it % GAP == 0:
                    U, S, Vh = signed_svd(g)
                    st["right"] = m >= n
                    st["ortho"] = (Vh[:r, :] if m >= n else U[:, :r]).to(torch.float32).contiguous()
                O = st["ortho"]
                R = g @ O.t() if st["right"] else O.t() @ g
            else:
                R = g
            if "exp_avg" not in st:
                st["exp_avg"] = torch.zeros_like(R)
                st["exp_avg_sq"] = torch.zeros_like(R)
            st["step"] = it + 1
            t = st["step"]
            st["exp_avg"].mul_(b1).add_(R, alpha=1.0 - b1)
            st["exp_avg_sq"].mul_(b2).addcmul_(R, R, value=1.0 - b2)
            denom = st["exp_avg_sq"].sqrt().add_(EPS)
            step_size = lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
            N = st["exp_avg"] / denom
            if target:
                N = (N @ st["ortho"] if st["right"] else st["ortho"] @ N) * SCALE
            p.add_(N, alpha=-step_size)
            if decay and WEIGHT_DECAY > 0:
                p.add_(p, alpha=-lr * WEIGHT_DECAY)
            after[i].append(p.clone())

    path = os.path.join(args.out, "galore_steps.h5")
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fid = h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)
    with h5py.File(fid) as f:
        f.attrs["generator"] = GENERATOR
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["seed"] = SEED
        f.attrs["beta1"], f.attrs["beta2"] = BETAS
        f.attrs["eps"] = EPS
        f.attrs["weight_decay"] = WEIGHT_DECAY
        f.attrs["rank"] = RANK
        f.attrs["gap"] = GAP
        f.attrs["scale"] = SCALE
        f.attrs["names"] = ",".join(t[0] for t in TENSORS)
        f.attrs["description"] = (
            "GaLore-AdamW (galore_torch math, proj_type std, f64 sign-fixed SVD) on 5 tensors; "
            "see the generator's docstring")
        f.create_dataset("lrs", data=np.array(lrs, dtype=np.float32), track_times=False)
        for i, (name, shape, target, decay) in enumerate(TENSORS):
            st = state[i]
            f.create_dataset(f"t{i}_init", data=init[i].numpy(), track_times=False)
            f.create_dataset(f"t{i}_grads", data=torch.stack(grads[i]).numpy(), track_times=False)
            f.create_dataset(f"t{i}_after", data=torch.stack(after[i]).numpy(), track_times=False)
            f.create_dataset(f"t{i}_exp_avg", data=st["exp_avg"].numpy(), track_times=False)
            f.create_dataset(f"t{i}_exp_avg_sq", data=st["exp_avg_sq"].numpy(), track_times=False)
            if target:
                f.create_dataset(f"t{i}_ortho", data=st["ortho"].numpy(), track_times=False)
            f.create_dataset(f"t{i}_weight_decay", data=np.array([int(decay)], dtype=np.int32),
                             track_times=False)
    moved = max(float((after[i][-1] - init[i]).abs().max()) for i in range(len(TENSORS)))
    print(f"wrote {path}: {STEPS} steps, rank {RANK}, gap {GAP}, max |change| {moved:.3g}")


if __name__ == "__main__":
    main()
