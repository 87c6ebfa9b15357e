#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine, on loopback, for tests and CI (ctest label
# `slurm`, tests/slurm/slurm_sweep_test.sh). Needs root. Idempotent: when `sinfo` already shows
# a responsive node it changes nothing.
#
#   scripts/start-slurm.sh            install slurm-wlm and munge if missing, write the config,
#                                     start munged, slurmctld and slurmd, wait for an idle node
#   scripts/start-slurm.sh --stop     stop the daemons this script started
#
# The cluster: SlurmctldHost=localhost, one node `localhost` (NodeAddr 127.0.0.1) with this
# machine's CPUs and memory as `slurmd -C` reports them, one partition `kvlab` (default),
# proctrack/linuxproc and task/none (no cgroups: works in containers), select/cons_tres with
# CR_Core, no accounting database (jobcomp/filetxt records finished jobs instead). State under
# /var/spool/kvlab-slurm, logs under ${KVLAB_SLURM_LOGS:-/tmp/kvlab-slurm}. The config goes to
# /etc/slurm/slurm.conf, which the Slurm clients read by default; a slurm.conf this script did not
# write is never overwritten.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by kvlab scripts/start-slurm.sh"
LOGS=${KVLAB_SLURM_LOGS:-/tmp/kvlab-slurm}
STATE=/var/spool/kvlab-slurm
WAIT=${KVLAB_SLURM_WAIT:-60}

log() { echo "start-slurm: $*" >&2; }
die() {
  log "error: $*"
  for f in "$LOGS"/slurmctld.log "$LOGS"/slurmd.log /var/log/munge/munged.log; do
    [[ -s $f ]] && { echo "---- last lines of $f" >&2; tail -n 30 "$f" >&2; }
  done
  exit 1
}

pids_of() { pgrep -x "$1" || true; }  # exact process name

if [[ ${1:-} == --stop ]]; then
  for d in slurmd slurmctld; do
    for p in $(pids_of $d); do kill "$p" && log "stopped $d ($p)"; done
  done
  exit 0
fi

[[ $(id -u) == 0 ]] || die "run me as root (the daemons run as root here)"

node_idle() { sinfo -h -N -o '%N %t' 2>/dev/null | grep -Eq '^localhost (idle|mix|alloc)'; }

if command -v sinfo >/dev/null && [[ -n $(pids_of slurmctld) && -n $(pids_of slurmd) ]] && node_idle; then
  log "slurm is already running: $(sinfo -h -N -o '%N %P %t %c CPUs' | head -1)"
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
   ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed"
fi

mkdir -p "$LOGS" "$STATE/ctld" "$STATE/d" /etc/slurm /run/munge /var/log/munge /var/lib/munge

# ---- munge: a key (the package makes one; make one if it is missing), then munged.
if [[ ! -s /etc/munge/munge.key ]]; then
  log "creating /etc/munge/munge.key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
MUNGE_USER=root
id munge >/dev/null 2>&1 && MUNGE_USER=munge
chown "$MUNGE_USER" /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
chmod 700 /etc/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  for p in $(pids_of munged); do kill "$p" || true; done
  rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
  log "starting munged (as $MUNGE_USER)"
  if [[ $MUNGE_USER == root ]]; then
    munged --force --log-file=/var/log/munge/munged.log || die "munged did not start"
  else
    runuser -u munge -- munged --log-file=/var/log/munge/munged.log || die "munged did not start"
  fi
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || die "munge credentials do not round-trip"
fi

# ---- slurm.conf for this host.
if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
  die "$CONF exists and was not written by this script; not overwriting it (is this a real cluster?)"
fi
hw=$(slurmd -C | head -1)  # NodeName=host CPUs=.. Boards=.. SocketsPerBoard=.. ... RealMemory=..
field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
cpus=$(field CPUs); boards=$(field Boards); sockets=$(field SocketsPerBoard)
cores=$(field CoresPerSocket); threads=$(field ThreadsPerCore); mem=$(field RealMemory)
[[ -n $cpus && -n $mem ]] || die "cannot read this machine's CPUs and memory from 'slurmd -C': $hw"
mem=$((mem * 95 / 100))  # leave room: a node reporting less than configured would be drained
cat > "$CONF.tmp" <<EOF
$MARK
# One node on loopback for kvlab's Slurm tests; see the script for what each choice is for.
ClusterName=kvlab
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
Waittime=0
MaxArraySize=10001
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus Boards=${boards:-1} SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-$cpus} ThreadsPerCore=${threads:-1} RealMemory=$mem State=UNKNOWN
PartitionName=kvlab Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.tmp" "$CONF"
log "wrote $CONF (localhost: $cpus CPUs, $mem MB)"

# ---- the daemons (a stale pair from an earlier config is restarted).
for d in slurmd slurmctld; do
  for p in $(pids_of $d); do kill "$p" || true; done
done
for _ in $(seq 50); do [[ -z $(pids_of slurmctld)$(pids_of slurmd) ]] && break; sleep 0.1; done
log "starting slurmctld and slurmd"
slurmctld -c || die "slurmctld did not start"   # -c: clear state from earlier runs
slurmd -N localhost || die "slurmd did not start"

for ((i = 0; i < WAIT * 2; i++)); do
  if node_idle; then
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
    log "ready after ~$((i / 2)) s: $(sinfo -h -N -o '%N %P %t %c CPUs %m MB')"
    exit 0
  fi
  # A node left down/drained by an earlier run comes back with RESUME.
  if sinfo -h -N -o '%N %t' 2>/dev/null | grep -Eq '^localhost (down|drain|drng)'; then
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
  fi
  sleep 0.5
done
sinfo -N -l >&2 || true
die "the node did not become idle within ${WAIT}s"
