#!/usr/bin/env bash
# End-to-end checks of `kvlab calibrate` (issue 5 item 2). Usage:
#   calibrate_test.sh KVLAB_BINARY [SOURCE_DIR]
# Bad input exits non-zero naming the flag; a good run writes the bases file atomically with the
# schema of results/README.md, and its eigenbases are checked in numpy (orthonormal, descending,
# qk's trace = k's trace + the query moment's, pre and post frame differ, values agree).
set -euo pipefail
KVLAB=$1
SRC=${2:-}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fails=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_fail() {
  local want=$1; shift
  local out
  if out=$("$@" 2>&1); then bad "expected failure: $* (output: $out)"; return; fi
  if [[ "$out" != *"$want"* ]]; then bad "error of '$*' lacks '$want': $out"; return; fi
  ok
}

$KVLAB calibrate --help | grep -q "usage: kvlab calibrate" && ok || bad "--help"
$KVLAB --help | grep -q "calibrate" && ok || bad "calibrate not listed in kvlab --help"
$KVLAB model init --preset tiny --dtype f32 --seed 2 --out "$W/m" 2>/dev/null
printf 'In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.\n' > "$W/t.txt"

expect_fail "--out" $KVLAB calibrate --model "$W/m" --dataset "file:$W/t.txt" --tokens 50
expect_fail "--dataset" $KVLAB calibrate --model "$W/m" --dataset "file:$W/none.txt" --tokens 50 --out "$W/b.h5"
expect_fail "--dataset" $KVLAB calibrate --model "$W/m" --dataset "book:no_such_book" --tokens 50 --out "$W/b.h5"
expect_fail "--tokens" $KVLAB calibrate --model "$W/m" --dataset "file:$W/t.txt" --tokens 0 --out "$W/b.h5"
expect_fail "--tokens" $KVLAB calibrate --model "$W/m" --dataset "file:$W/t.txt" --tokens 100000 --out "$W/b.h5"
expect_fail "--seq-len" $KVLAB calibrate --model "$W/m" --dataset "file:$W/t.txt" --tokens 50 --seq-len 0 --out "$W/b.h5"
expect_fail "--frame" $KVLAB calibrate --model "$W/m" --dataset "file:$W/t.txt" --tokens 50 --frame pre --out "$W/b.h5"
expect_fail "--model" $KVLAB calibrate --model "$W/none" --dataset "file:$W/t.txt" --tokens 50 --out "$W/b.h5"
expect_fail "--out" $KVLAB calibrate --model "$W/m" --dataset "file:$W/t.txt" --tokens 50 --out "$W/t.txt/b.h5"
[[ ! -e "$W/b.h5" ]] && ok || bad "a failed run left $W/b.h5"

$KVLAB calibrate --model "$W/m" --dataset "file:$W/t.txt" --tokens 120 --seq-len 50 --threads 2 \
  --out "$W/sub/post.h5" 2>"$W/log" && mv "$W/sub/post.h5" "$W/post.h5" || bad "calibrate failed: $(cat "$W/log")"
grep -q "layer 01: rank for 90% energy" "$W/log" && ok || bad "no per-layer summary: $(cat "$W/log")"
$KVLAB calibrate --model "$W/m" --dataset "file:$W/t.txt" --tokens 120 --seq-len 50 --threads 1 \
  --frame pre_rope --out "$W/pre.h5" 2>/dev/null || bad "calibrate --frame pre_rope failed"
[[ ! -e "$W/post.h5.tmp" && -s "$W/post.h5" ]] && ok || bad "bases file missing or .tmp left"

if /usr/bin/python3 -c "import h5py, numpy" 2>/dev/null; then
  cat > "$W/check.py" <<'PY'
import sys, h5py, numpy as np
post, pre = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
a = post.attrs
assert a["kvlab_bases_version"] == b"1" or a["kvlab_bases_version"] == "1", a["kvlab_bases_version"]
def s(x): return x.decode() if isinstance(x, bytes) else x
assert s(a["frame"]) == "post_rope" and s(pre.attrs["frame"]) == "pre_rope"
# 120 text tokens in sequences of 50, 50, 20, each with a BOS: 123 tokens.
assert s(a["tokens"]) == "123", a["tokens"]
assert "text_tokens=120" in s(a["source"]) and "seq_len=50" in s(a["source"])
L, G, D = int(s(a["n_layers"])), int(s(a["kv_heads"])), int(s(a["head_dim"]))
assert (L, G, D) == (2, 2, 16)
for l in range(L):
    for kind in ("qk", "k", "v"):
        for f in (post, pre):
            U = f[f"layer_{l:02d}/{kind}/vectors"][...].astype(np.float64)
            w = f[f"layer_{l:02d}/{kind}/values"][...].astype(np.float64)
            assert U.shape == (G, D, D) and w.shape == (G, D)
            for g in range(G):
                assert np.abs(U[g].T @ U[g] - np.eye(D)).max() < 1e-5
                assert (np.diff(w[g]) <= 1e-6 * w[g][0]).all() and (w[g] >= 0).all()
        for g in range(G):
            tr_qk = post[f"layer_{l:02d}/qk/values"][g].sum()
            tr_k = post[f"layer_{l:02d}/k/values"][g].sum()
            assert tr_qk > tr_k  # the query moment adds a positive trace
    # values carry no RoPE: the frames agree; keys differ
    vp, vq = post[f"layer_{l:02d}/v/values"][...], pre[f"layer_{l:02d}/v/values"][...]
    assert np.allclose(vp, vq, rtol=1e-5), (vp, vq)
    kp, kq = post[f"layer_{l:02d}/k/vectors"][...], pre[f"layer_{l:02d}/k/vectors"][...]
    assert np.abs(np.abs(kp[:, :, 0]) - np.abs(kq[:, :, 0])).max() > 1e-3
    # RoPE is a rotation: the key moments' traces agree across frames
    assert np.allclose(post[f"layer_{l:02d}/k/values"][...].sum(1), pre[f"layer_{l:02d}/k/values"][...].sum(1), rtol=1e-4)
PY
  if out=$(/usr/bin/python3 "$W/check.py" "$W/post.h5" "$W/pre.h5" 2>&1); then ok; else bad "bases file check: $out"; fi
fi
# Against PyTorch: the moments the files encode equal f64 moments of Q/K/V captured from an
# independent forward pass (tests/golden/torch_llama.py), pre-RoPE taken before rotation.
if /usr/bin/python3 -c "import torch, h5py, numpy" 2>/dev/null; then
  $KVLAB tokenize --model "$W/m" --text "$(cat "$W/t.txt")" > "$W/ids.json"
  if out=$(/usr/bin/python3 "$(dirname "$0")/calibrate_torch_check.py" "$W/m" "$W/ids.json" 120 50 \
      "$W/post.h5" "$W/pre.h5" 2>&1); then ok; echo "$out"; else bad "torch check: $out"; fi
fi

# The shipped fidelity configs validate against the registered methods and experiment.
if [[ -n "$SRC" ]]; then
  for c in fidelity fidelity_shift; do
    (cd "$SRC" && $KVLAB run "configs/$c.yaml" --list >/dev/null 2>"$W/list.err") && ok || bad "configs/$c.yaml: $(cat "$W/list.err")"
  done
fi

echo "calibrate cli: $pass passed, $fails failed"
[[ $fails == 0 ]]
