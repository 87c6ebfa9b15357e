#!/usr/bin/env bash
# End-to-end checks of the kvlab command's contracts (issue: the kvlab command). Usage:
#   cli_test.sh KVLAB_BINARY SOURCE_DIR
# Every check fails loudly; bad input must exit non-zero with a message naming the file/key.
set -euo pipefail
KVLAB=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fails=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect_fail "substring" cmd...: the command must exit non-zero and print the substring.
expect_fail() {
  local want=$1; shift
  local out
  if out=$("$@" 2>&1); then bad "expected failure: $* (output: $out)"; return; fi
  if [[ "$out" != *"$want"* ]]; then bad "error of '$*' lacks '$want': $out"; return; fi
  ok
}

# --help on every subcommand
for c in run "model init" tokenize "tokenizer train" logits generate ppl sysinfo help inspect score; do
  # shellcheck disable=SC2086
  if $KVLAB $c --help | grep -q "usage: kvlab $c"; then ok; else bad "--help for $c"; fi
done

# model init, reproducible
$KVLAB model init --preset tiny --dtype bf16 --seed 3 --out "$W/m1" 2>/dev/null
$KVLAB model init --preset tiny --dtype bf16 --seed 3 --out "$W/m2" 2>/dev/null
cmp -s "$W/m1/model.safetensors" "$W/m2/model.safetensors" && ok || bad "model init not reproducible"
for f in config.json model.safetensors tokenizer.json; do [[ -s "$W/m1/$f" ]] && ok || bad "missing $f"; done

# tokenize: byte-level tokenizer of a random model maps ASCII bytes to their values
ids=$($KVLAB tokenize --model "$W/m1" --text "Hi!")
[[ "$ids" == "[72,105,33]" ]] && ok || bad "tokenize gave $ids"
ids=$($KVLAB tokenize --model "$W/m1" --text "a" --bos)
[[ "$ids" == "[256,97]" ]] && ok || bad "tokenize --bos gave $ids"

# logits: HDF5 with tokens [T] and logits [T, V]
$KVLAB logits --model "$W/m1" --tokens 1,2,3 --out "$W/l.h5" --threads 1 2>/dev/null
if command -v h5ls >/dev/null; then
  h5ls "$W/l.h5" | grep -q "logits *Dataset {3, 258}" && ok || bad "logits shape: $(h5ls "$W/l.h5")"
  h5ls "$W/l.h5" | grep -q "tokens *Dataset {3}" && ok || bad "tokens shape"
fi
[[ ! -e "$W/l.h5.tmp" ]] && ok || bad "temporary file left behind"

# generate: greedy is deterministic; seeded sampling repeats
g1=$($KVLAB generate --model "$W/m1" --prompt "abc" --max-new-tokens 8 --json --threads 2)
g2=$($KVLAB generate --model "$W/m1" --prompt "abc" --max-new-tokens 8 --json --threads 1)
[[ "$(echo "$g1" | grep -o '"ids":\[[^]]*\]')" == "$(echo "$g2" | grep -o '"ids":\[[^]]*\]')" ]] && ok || bad "greedy differs across threads: $g1 / $g2"
s1=$($KVLAB generate --model "$W/m1" --prompt "abc" --max-new-tokens 8 --temperature 1 --top-p 0.9 --seed 5 --json)
s2=$($KVLAB generate --model "$W/m1" --prompt "abc" --max-new-tokens 8 --temperature 1 --top-p 0.9 --seed 5 --json)
[[ "$(echo "$s1" | grep -o '"ids":\[[^]]*\]')" == "$(echo "$s2" | grep -o '"ids":\[[^]]*\]')" ]] && ok || bad "seeded sampling not repeatable"

# ppl prints a finite perplexity
printf 'In the beginning God created the heaven and the earth.\n' > "$W/t.txt"
p=$($KVLAB ppl --model "$W/m1" --text-file "$W/t.txt")
[[ "$p" =~ ^perplexity\ [0-9.]+\ over\ 55\ tokens$ ]] && ok || bad "ppl printed '$p'"

# run: a folder per point, skip when complete, a new point when the config changes
cat > "$W/q.yaml" <<YAML
name: ci
experiment: ppl
model: {preset: tiny, seed: 1}
method: {name: full_cache}
task: {text: "file:$W/t.txt", max_tokens: 40}
threads: 1
output: $W/results
YAML
$KVLAB run "$W/q.yaml" >/dev/null 2>&1 || bad "run failed: $($KVLAB run "$W/q.yaml" 2>&1)"
pt=$(ls -d "$W"/results/ci/*/ | grep -v models)
for f in config.resolved.yaml meta.json results.json log.txt COMPLETE; do [[ -s "$pt/$f" ]] && ok || bad "run folder lacks $f"; done
grep -q '"perplexity"' "$pt/results.json" && ok || bad "results.json lacks perplexity"
before=$(stat -c %Y "$pt/results.json")
$KVLAB run "$W/q.yaml" 2>&1 | grep -q "complete, skipped" && ok || bad "complete point was not skipped"
[[ $(stat -c %Y "$pt/results.json") == "$before" ]] && ok || bad "complete point was rewritten"
$KVLAB run "$W/q.yaml" --set task.max_tokens=30 >/dev/null 2>&1
[[ $(ls -d "$W"/results/ci/*/ | grep -vc models) == 2 ]] && ok || bad "changed config did not make a new point"

# score: LongBench metrics by short name or metrics.py name
[[ $($KVLAB score --metric qa_f1 --prediction "The cat sat" --answer "a cat sat down") == "0.8" ]] && ok || bad "score qa_f1"
[[ $($KVLAB score --metric qa_f1_score --prediction "x" --answer "y" --answer "x") == "1.0" ]] && ok || bad "score max over answers"
expect_fail "did you mean 'rouge'" $KVLAB score --metric rogue --prediction x --answer y

# inspect: the run's trace
$KVLAB inspect "$pt/trace.h5" | grep -q "/samples/0/nll  f64 \[" && ok || bad "inspect trace: $($KVLAB inspect "$pt/trace.h5" 2>&1 | head -5)"
[[ $($KVLAB inspect "$pt/trace.h5" --dataset /samples/0/nll --csv | wc -l) == 39 ]] && ok || bad "inspect --csv rows"

# bad input: clear errors, non-zero exit
expect_fail "unknown option --max-new-token (did you mean --max-new-tokens?)" $KVLAB generate --model "$W/m1" --prompt x --max-new-token 3
expect_fail "config.json" $KVLAB logits --model "$W/nope" --tokens 1 --out "$W/x.h5"
printf 'name: ci\nexperiment: ppl\nmodel: {preset: tiny}\nmetod: {name: full_cache}\n' > "$W/bad.yaml"
expect_fail "bad.yaml:4: metod: unknown key (did you mean 'method'?)" $KVLAB run "$W/bad.yaml"
expect_fail "did you mean 'full_cache'" $KVLAB run "$W/q.yaml" --set method.name=full_cach
expect_fail "unknown model preset 'nosuch'" $KVLAB model init --preset nosuch --out "$W/m3"
head -c 1000 "$W/m1/model.safetensors" > "$W/trunc.safetensors"
mkdir -p "$W/m4" && cp "$W/m1/config.json" "$W/m4/" && cp "$W/trunc.safetensors" "$W/m4/model.safetensors"
expect_fail "model.safetensors" $KVLAB logits --model "$W/m4" --tokens 1 --out "$W/x.h5"
expect_fail "outside the vocabulary" $KVLAB logits --model "$W/m1" --tokens 1,999 --out "$W/x.h5"

echo "$pass passed, $fails failed"
[[ $fails == 0 ]]
