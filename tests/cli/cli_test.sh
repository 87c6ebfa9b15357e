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

# sweep: grid x zip x methods points, --list, validation before any point runs, a killed sweep
# resumes (each point run once, complete ones untouched), lock files, --slurm script
$KVLAB sweep --help | grep -q "usage: kvlab sweep" && ok || bad "--help for sweep"
cat > "$W/s.yaml" <<YAML
name: sw
experiment: ppl
model: {preset: tiny, seed: 1}
task: {text: "file:$W/t.txt", max_tokens: 12}
threads: 1
output: $W/results
sweep:
  methods: [full_cache]
  grid:
    task.max_tokens: [12, 16]
  zip:
    seed: [1, 2]
    task.chunk: [4, 8]
YAML
SW=$W/results/sw
$KVLAB run "$W/s.yaml" --list > "$W/list.txt"
grep -q "s.yaml: 4 points in $SW/, 0 done" "$W/list.txt" && ok || bad "--list header: $(cat "$W/list.txt")"
[[ $(grep -c ' pending ' "$W/list.txt") == 4 ]] && ok || bad "--list statuses: $(cat "$W/list.txt")"
grep -Eq '^3 +[0-9a-f]{12} +pending +method=full_cache task.max_tokens=16 seed=2 task.chunk=8$' "$W/list.txt" && ok || bad "--list point 3: $(cat "$W/list.txt")"
mapfile -t ids < <(awk 'NR > 2 { print $2 }' "$W/list.txt")
[[ ${#ids[@]} == 4 && $(printf '%s\n' "${ids[@]}" | sort -u | wc -l) == 4 ]] && ok || bad "point ids not distinct: ${ids[*]}"
sed 's/max_tokens: \[12, 16\]/max_tokens: [12, 1]/' "$W/s.yaml" | sed 's/^name: sw/name: swbad/' > "$W/sbad.yaml"
expect_fail "sbad.yaml:10: task: max_tokens = 1 is out of range" $KVLAB run "$W/sbad.yaml"
[[ ! -e $W/results/swbad ]] && ok || bad "a point ran before every point was validated"
expect_fail "--point 4: $W/s.yaml has 4 points (0-3)" $KVLAB run "$W/s.yaml" --point 4
# A "killed" sweep: points 0 and 2 done, point 1 half-written, point 3 under a dead process's lock.
$KVLAB run "$W/s.yaml" --point 0 >/dev/null 2>&1 || bad "--point 0 failed"
$KVLAB run "$W/s.yaml" --point 2 >/dev/null 2>&1 || bad "--point 2 failed"
m0=$(stat -c %y "$SW/${ids[0]}/results.json"); m2=$(stat -c %y "$SW/${ids[2]}/results.json")
mkdir -p "$SW/${ids[1]}" && echo '{"trunc' > "$SW/${ids[1]}/results.json" && echo "old" > "$SW/${ids[1]}/stray.txt"
( exit 0 ) & dead=$!; wait $dead
echo "pid=$dead host=$(hostname) started=x" > "$SW/${ids[3]}.lock"
$KVLAB run "$W/s.yaml" --list > "$W/list.txt"
[[ $(awk 'NR > 2 { printf "%s ", $3 }' "$W/list.txt") == "done partial done pending " ]] && ok || bad "--list after a kill: $(cat "$W/list.txt")"
out=$($KVLAB run "$W/s.yaml" 2>&1) || bad "resumed sweep failed: $out"
[[ $(grep -c "complete, skipped" <<<"$out") == 2 ]] && ok || bad "resume did not skip the 2 complete points: $out"
grep -q "half-written by an earlier run (no COMPLETE): cleared" <<<"$out" && ok || bad "half-written point not cleared: $out"
grep -q "2 run now, 2 already complete, 0 being run elsewhere, 0 failed" <<<"$out" && ok || bad "resume summary: $out"
for i in 0 1 2 3; do
  [[ -s $SW/${ids[$i]}/COMPLETE && -s $SW/${ids[$i]}/results.json ]] && ok || bad "point $i not complete"
  [[ $(grep -c "done: " "$SW/${ids[$i]}/log.txt") == 1 ]] && ok || bad "point $i not run exactly once"
  [[ ! -e $SW/${ids[$i]}.lock ]] && ok || bad "point $i lock left behind"
done
[[ $(stat -c %y "$SW/${ids[0]}/results.json") == "$m0" && $(stat -c %y "$SW/${ids[2]}/results.json") == "$m2" ]] && ok || bad "a complete point was rewritten"
[[ ! -e $SW/${ids[1]}/stray.txt ]] && grep -q '"perplexity"' "$SW/${ids[1]}/results.json" && ok || bad "half-written point not rerun from scratch"
out=$($KVLAB sweep "$W/s.yaml" 2>&1)
[[ $(grep -c "complete, skipped" <<<"$out") == 4 ]] && ok || bad "second run did not skip all: $out"
$KVLAB run "$W/s.yaml" --list | grep -q "4 points in $SW/, 4 done" && ok || bad "--list after resume"
# A live lock (a running process on this host) keeps others off the point.
sleep 60 & live=$!
id0=$($KVLAB run "$W/s.yaml" --set task.bos=false --list | awk 'NR == 3 { print $2 }')
echo "pid=$live host=$(hostname) started=x" > "$SW/$id0.lock"
out=$($KVLAB run "$W/s.yaml" --set task.bos=false --point 0 2>&1) || bad "busy point exited non-zero: $out"
grep -q "being run by pid $live" <<<"$out" && [[ ! -e $SW/$id0 ]] && ok || bad "live lock not respected: $out"
kill $live; wait $live 2>/dev/null || true
# Two processes on one sweep at once: every point run exactly once.
$KVLAB run "$W/s.yaml" --set task.bos=false >/dev/null 2>"$W/c1.txt" & c1=$!
$KVLAB sweep "$W/s.yaml" --set task.bos=false >/dev/null 2>"$W/c2.txt" & c2=$!
wait $c1 && wait $c2 && ok || bad "concurrent runs failed: $(cat "$W/c1.txt" "$W/c2.txt")"
n_done=0
for id in $($KVLAB run "$W/s.yaml" --set task.bos=false --list | awk 'NR > 2 { print $2 }'); do
  [[ -s $SW/$id/COMPLETE && $(grep -c "done: " "$SW/$id/log.txt") == 1 ]] && n_done=$((n_done + 1))
done
[[ $n_done == 4 ]] && ok || bad "concurrent runs: $n_done of 4 points done exactly once: $(cat "$W/c1.txt" "$W/c2.txt")"
[[ $(ls -d "$SW"/models/*/ | wc -l) == 1 && -z $(ls -d "$SW"/models/*.tmp.* 2>/dev/null) ]] && ok || bad "random model: $(ls "$SW/models")"
# --slurm: the job-array script (dry run), and submission through a stand-in sbatch.
$KVLAB sweep "$W/s.yaml" --slurm --dry-run --partition p1 --time 01:00:00 --gpus 1 --cpus-per-task 2 >/dev/null 2>&1 || bad "sweep --slurm --dry-run failed"
sb=$SW/slurm/sweep.sbatch
for want in "#SBATCH --array=0-3" "#SBATCH --partition=p1" "#SBATCH --time=01:00:00" "#SBATCH --gpus=1" \
            "#SBATCH --cpus-per-task=2" "#SBATCH --output=$SW/slurm/logs/%A_%a.log" \
            "exec '$(realpath "$KVLAB")' run '$W/s.yaml' --point \"\$SLURM_ARRAY_TASK_ID\""; do
  grep -qxF -- "$want" "$sb" && ok || bad "sbatch script lacks '$want': $(cat "$sb")"
done
mkdir -p "$W/bin" && printf '#!/bin/sh\necho "$@" > %s/sbatch.args\necho 4242\n' "$W" > "$W/bin/sbatch" && chmod +x "$W/bin/sbatch"
job=$(PATH="$W/bin:$PATH" $KVLAB sweep "$W/s.yaml" --slurm --set task.bos=false 2>/dev/null)
[[ $job == 4242 && $(cat "$W/sbatch.args") == "--parsable $sb" ]] && ok || bad "sbatch submission: job '$job', args $(cat "$W/sbatch.args" 2>&1)"
grep -qF -- "--set 'task.bos=false' --point" "$sb" && ok || bad "--set not passed on to the tasks: $(tail -1 "$sb")"
expect_fail "--partition applies only with --slurm" $KVLAB sweep "$W/s.yaml" --partition p1

# suite: several configs in order, a table and charts for each; --set reaches every member;
# bad suites fail naming file:line and key.
mkdir -p "$W/suite"
cat > "$W/suite/a.yaml" <<YAML
name: sa
experiment: ppl
model: {preset: tiny, seed: 1}
task: {text: "file:$W/t.txt", max_tokens: 12}
threads: 1
output: $W/results
sweep:
  methods: [full_cache, {name: streaming_llm, budget: 8}]
YAML
sed 's/^name: sa/name: sb/' "$W/suite/a.yaml" > "$W/suite/b.yaml"
printf 'name: st\nsuite:\n  - a.yaml\n  - b.yaml\n' > "$W/suite/s.yaml"
out=$($KVLAB run "$W/suite/s.yaml" --set task.max_tokens=16 2>&1) || bad "suite run failed: $out"
for n in sa sb; do
  grep -q "^table: $W/results/$n/table.md$" <<<"$out" && [[ -s $W/results/$n/table.md ]] && ok || bad "suite table $n: $out"
  grep -q "^chart: $W/results/$n/plots/.*\.svg$" <<<"$out" && ok || bad "suite charts $n: $out"
  [[ $(ls "$W/results/$n"/*/COMPLETE | wc -l) == 2 ]] && ok || bad "suite points $n"
  grep -q "max_tokens: 16" "$W/results/$n"/*/config.resolved.yaml && ok || bad "--set did not reach $n"
done
grep -q "| streaming_llm |" "$W/results/sa/table.md" && ok || bad "suite table rows: $(cat "$W/results/sa/table.md")"
out=$($KVLAB run "$W/suite/s.yaml" --set task.max_tokens=16 2>&1) || bad "suite rerun failed: $out"
[[ $(grep -c "complete, skipped" <<<"$out") == 4 ]] && ok || bad "suite rerun did not skip: $out"
printf 'name: st\nsuite:\n  - a.yaml\n  - nope.yaml\n' > "$W/suite/bad1.yaml"
expect_fail "bad1.yaml:4: suite.1: no such config file" $KVLAB run "$W/suite/bad1.yaml"
printf 'name: st\nsuite: [a.yaml]\nreprot: true\n' > "$W/suite/bad2.yaml"
expect_fail "bad2.yaml:3: reprot: unknown key (did you mean 'report'?)" $KVLAB run "$W/suite/bad2.yaml"
expect_fail "is a suite of 2 configs" $KVLAB run "$W/suite/s.yaml" --point 0

# Method checks that need no model run on every point before any point runs.
cat > "$W/mc.yaml" <<YAML
name: mc
experiment: ppl
model: {preset: tiny, seed: 1}
task: {text: "file:$W/t.txt", max_tokens: 12}
threads: 1
output: $W/results
sweep:
  methods: [full_cache, {name: h2o, budget: 8}, {name: h2o, budget: 8, ratio: 0.5}]
YAML
expect_fail "mc.yaml: method: h2o.budget, h2o.ratio: set either budget (tokens) or ratio (of the prompt), not both (in sweep point 2" $KVLAB run "$W/mc.yaml"
[[ ! -e $W/results/mc ]] && ok || bad "a point ran before the method checks"
expect_fail "ojakv.bases: no such file '$W/nope.h5'" $KVLAB run "$W/mc.yaml" --set "sweep.methods.2={name: ojakv, bases: $W/nope.h5}"
expect_fail "set either budget" $KVLAB run "$W/mc.yaml" --check

echo "$pass passed, $fails failed"
[[ $fails == 0 ]]
