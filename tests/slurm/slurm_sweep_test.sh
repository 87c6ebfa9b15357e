#!/usr/bin/env bash
# Slurm integration test (ctest label `slurm`): a one-node cluster on loopback
# (scripts/start-slurm.sh, idempotent), a 4-point sweep submitted as a job array with
# `kvlab sweep --slurm`, and every point checked: COMPLETE and results.json present, each point run
# exactly once, every array task COMPLETED. Usage: slurm_sweep_test.sh KVLAB_BINARY SOURCE_DIR
# Exits 77 (ctest: skipped) when not root and no Slurm is running. Prints the daemons' logs and
# the tasks' logs when anything is off, and how long each phase took.
set -euo pipefail
KVLAB=$1
SRC=$2
TIMEOUT=${KVLAB_SLURM_TEST_TIMEOUT:-300}
LOGS=${KVLAB_SLURM_LOGS:-/tmp/kvlab-slurm}
t0=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

if [[ $(id -u) != 0 ]] && ! sinfo -h >/dev/null 2>&1; then
  echo "SKIP: needs root to start Slurm (or a running Slurm)"
  exit 77
fi

W=$(mktemp -d /tmp/kvlab-slurm-test.XXXXXX)
chmod 755 "$W"
JOB=""
dump() {
  echo "---- FAILED: $*"
  echo "---- sinfo / squeue"; sinfo -N -l 2>&1 || true; squeue -a 2>&1 || true
  [[ -n $JOB ]] && { scontrol show job "$JOB" 2>&1 | head -40 || true; }
  for f in "$LOGS"/slurmctld.log "$LOGS"/slurmd.log; do
    echo "---- last lines of $f"; tail -n 40 "$f" 2>&1 || true
  done
  for f in "$W"/results/slurm4/slurm/logs/*.log; do
    [[ -e $f ]] && { echo "---- $f"; tail -n 20 "$f"; }
  done
  [[ -s $LOGS/jobcomp.txt ]] && { echo "---- jobcomp"; grep -E "ArrayJobId=$JOB " "$LOGS/jobcomp.txt" | tail -n 8 || true; }
  exit 1
}
trap 'rm -rf "$W"' EXIT

bash "$SRC/scripts/start-slurm.sh" || dump "scripts/start-slurm.sh"
t_up=$(elapsed "$t0")
bash "$SRC/scripts/start-slurm.sh" 2>&1 | grep -q "already running" || dump "a second start-slurm.sh is not idempotent"

# A 4-point sweep: 2 lengths x 2 seeds, tiny random model, perplexity of a short text.
printf 'In the beginning God created the heaven and the earth. And the earth was without form, and void.\n' > "$W/t.txt"
cat > "$W/sweep.yaml" <<YAML
name: slurm4
experiment: ppl
model: {preset: tiny, seed: 1}
method: {name: full_cache}
task: {text: "file:$W/t.txt", max_tokens: 16}
threads: 1
output: results
sweep:
  grid:
    task.max_tokens: [16, 24]
    seed: [1, 2]
YAML
cd "$W"  # `output: results` is relative: the tasks run from here (#SBATCH --chdir)
t1=$(date +%s.%N)
JOB=$("$KVLAB" sweep sweep.yaml --slurm --time 00:10:00 --cpus-per-task 1) || dump "kvlab sweep --slurm"
[[ $JOB =~ ^[0-9]+$ ]] || dump "kvlab sweep --slurm printed '$JOB', not a job id"
grep -q '^#SBATCH --array=0-3$' results/slurm4/slurm/sweep.sbatch || dump "sbatch script: $(cat results/slurm4/slurm/sweep.sbatch)"
echo "submitted job array $JOB"

deadline=$(( $(date +%s) + TIMEOUT ))
while [[ -n $(squeue -h -j "$JOB" 2>/dev/null) ]]; do
  (( $(date +%s) < deadline )) || { scancel "$JOB" || true; dump "job array $JOB still queued/running after ${TIMEOUT}s"; }
  sleep 1
done
t_run=$(elapsed "$t1")

fails=0
"$KVLAB" run sweep.yaml --list > list.txt || dump "kvlab run --list"
cat list.txt
[[ $(grep -c ' done ' list.txt) == 4 ]] || { echo "not every point is done"; fails=1; }
for id in $(awk 'NR > 2 { print $2 }' list.txt); do
  d=results/slurm4/$id
  for f in COMPLETE results.json config.resolved.yaml meta.json trace.h5; do
    [[ -s $d/$f ]] || { echo "point $id lacks $f"; fails=1; }
  done
  grep -q '"perplexity"' "$d/results.json" 2>/dev/null || { echo "point $id: no perplexity in results.json"; fails=1; }
  [[ $(grep -c "done: " "$d/log.txt" 2>/dev/null) == 1 ]] || { echo "point $id was not run exactly once"; fails=1; }
  [[ ! -e results/slurm4/$id.lock ]] || { echo "point $id: lock file left behind"; fails=1; }
done
[[ $(ls results/slurm4/slurm/logs/"$JOB"_*.log 2>/dev/null | wc -l) == 4 ]] || { echo "expected 4 task logs"; fails=1; }
# jobcomp/filetxt: one record per array task (its own JobId, ArrayJobId=$JOB).
if [[ -s $LOGS/jobcomp.txt ]]; then
  recs=$(grep -E "ArrayJobId=$JOB " "$LOGS/jobcomp.txt" || true)
  [[ $(grep -c "JobState=COMPLETED" <<<"$recs") == 4 ]] || { echo "not 4 COMPLETED array tasks: $recs"; fails=1; }
fi
(( fails == 0 )) || dump "checks above"
echo "PASS: 4-point sweep through Slurm job array $JOB; cluster up in ${t_up}s, array ran in ${t_run}s, total $(elapsed "$t0")s"
