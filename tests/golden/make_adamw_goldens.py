#!/usr/bin/python3
"""Makes tests/golden/adamw_steps.h5: torch.optim.AdamW (torch 1.13, single-tensor path,
foreach=False) run for STEPS steps on three small f32 tensors with given gradients and a varying
learning rate. Consumed by tests/optim/adamw_test.cpp.

Run from anywhere:   /usr/bin/python3 tests/golden/make_adamw_goldens.py [--out DIR]
Deterministic (fixed seed, one thread): two runs give byte-identical files.

Layout (tensor i in 0..2, S = STEPS):
  p{i}_init    [shape]      f32  parameters before step 1
  p{i}_grads   [S, shape]   f32  gradient fed at each step
  p{i}_after   [S, shape]   f32  parameters after each step
  p{i}_exp_avg, p{i}_exp_avg_sq  [shape] f32  torch's state after step S
  p{i}_weight_decay  [1] i32  1 if the tensor is in the decayed group
  lrs          [S]          f32  lr of each step; every value is exactly representable in f32,
                                 so the C++ side passes torch's Python float bit for bit
Attributes on /: generator, torch_version, seed, beta1, beta2, eps, weight_decay, description.

Gradients mix scales (1e-4 .. 10) and exact zeros, so eps dominates the denominator for some
elements and the bias corrections matter; tensor 1 (a norm-like vector) has weight_decay 0 in its
own param group; tensor lengths (384, 37, 65) are not multiples of torch's 16-float vector block.
"""

import argparse
import os

import h5py
import numpy as np
import torch

GENERATOR = "tests/golden/make_adamw_goldens.py"
SEED = 20240612
STEPS = 10
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.1  # larger than torch's 0.01 default so a missing decay shows clearly
SHAPES = [(16, 24), (37,), (5, 13)]
DECAY = [True, False, True]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(SEED)

    params = [torch.randn(s, generator=g) for s in SHAPES]
    init = [p.clone() for p in params]
    params = [torch.nn.Parameter(p) for p in params]
    groups = [
        {"params": [p for p, d in zip(params, DECAY) if d], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p, d in zip(params, DECAY) if not d], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=BETAS, eps=EPS, foreach=False)

    # lr: a short warmup then decay, rounded to f32 so the file holds torch's exact value.
    lrs = [float(np.float32(5e-2 * min(1.0, (s + 1) / 3) * (0.8 ** max(0, s - 2))))
           for s in range(STEPS)]
    grads = [[] for _ in SHAPES]
    after = [[] for _ in SHAPES]
    for step in range(STEPS):
        for i, p in enumerate(params):
            scale = torch.exp(torch.empty(p.shape).uniform_(np.log(1e-4), np.log(10.0), generator=g))
            gr = torch.randn(p.shape, generator=g) * scale
            gr[torch.rand(p.shape, generator=g) < 0.05] = 0.0
            p.grad = gr.to(torch.float32)
            grads[i].append(p.grad.clone())
        for grp in opt.param_groups:
            grp["lr"] = lrs[step]
        opt.step()
        for i, p in enumerate(params):
            after[i].append(p.detach().clone())

    path = os.path.join(args.out, "adamw_steps.h5")
    # No object timestamps anywhere (root group included) so reruns are byte-identical.
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
        f.attrs["description"] = (
            "torch.optim.AdamW(foreach=False) steps on 3 tensors; tensor 1 in a weight_decay=0 "
            "group; see the generator's docstring for the layout")
        f.create_dataset("lrs", data=np.array(lrs, dtype=np.float32), track_times=False)
        for i, p in enumerate(params):
            st = opt.state[p]
            f.create_dataset(f"p{i}_init", data=init[i].numpy(), track_times=False)
            f.create_dataset(f"p{i}_grads", data=torch.stack(grads[i]).numpy(),
                             track_times=False)
            f.create_dataset(f"p{i}_after", data=torch.stack(after[i]).numpy(),
                             track_times=False)
            f.create_dataset(f"p{i}_exp_avg", data=st["exp_avg"].numpy(), track_times=False)
            f.create_dataset(f"p{i}_exp_avg_sq", data=st["exp_avg_sq"].numpy(),
                             track_times=False)
            f.create_dataset(f"p{i}_weight_decay", data=np.array([int(DECAY[i])], dtype=np.int32),
                             track_times=False)
            assert int(st["step"].item()) == STEPS
    moved = max(float((after[i][-1] - init[i]).abs().max()) for i in range(len(SHAPES)))
    print(f"wrote {path}: {STEPS} steps, lrs {lrs[0]:.3g}..{max(lrs):.3g}, max |change| {moved:.3g}")


if __name__ == "__main__":
    main()
