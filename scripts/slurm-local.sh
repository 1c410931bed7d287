#!/usr/bin/env bash
# A real, single-node SLURM on 127.0.0.1 for tests, CI and benchmarks.
#
#   scripts/slurm-local.sh up       install Debian's packages if missing, render slurm.conf,
#                                   start munged / slurmctld / slurmd (and, with accounting,
#                                   mariadbd + slurmdbd), wait until the node is idle
#   scripts/slurm-local.sh down     scancel everything, stop exactly the daemons `up` started
#                                   (by recorded PID), delete the rendered slurm.conf
#   scripts/slurm-local.sh status   which recorded daemons are alive, sinfo
#   scripts/slurm-local.sh env      print `export SLURM_CONF=...` (eval it in your shell)
#
# Environment knobs:
#   SLURM_LOCAL_DIR         state dir (default: <repo>/.slurm-local, git-ignored)
#   SLURM_LOCAL_ACCOUNTING  1: also run MariaDB + slurmdbd so that `sacct` works (default 0;
#                           the Snakemake plugin then needs `--slurm-status-command squeue`)
#   SLURM_LOCAL_CPUS        CPUs the node advertises (default: nproc). More than the hardware
#                           oversubscribes the node, which suits many tiny, mostly idle jobs.
#   SLURM_LOCAL_PORT        first of two ports for slurmctld/slurmd (default 6817; slurmdbd
#                           uses +2)
#
#   SLURM_LOCAL_CONF        where slurm.conf is rendered (default /etc/slurm/slurm.conf)
#
# Needs root (daemons run as root, packages come from apt) and Debian/Ubuntu. State, logs and
# spool live in the state dir. slurm.conf itself goes to the default path because Snakemake's
# SLURM jobstep strips SLURM_* variables (SLURM_CONF too) before its `srun`: inside a job only
# the default path is found. A slurm.conf that this script did not render (no marker line) is
# never overwritten or deleted.
#
# Why the rendered slurm.conf is deleted on `down`: with snakemake-executor-plugin-slurm
# installed, every `snakemake` process runs `scontrol show config`; if a slurm.conf exists
# while slurmctld is down, that call blocks ~9 s. A missing file fails at once.
set -euo pipefail
set +m # background children must not become group leaders: `setsid` then execs in place

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SLURM_LOCAL_DIR:-$REPO_ROOT/.slurm-local}"
ACCOUNTING="${SLURM_LOCAL_ACCOUNTING:-0}"
PORT="${SLURM_LOCAL_PORT:-6817}"
CONF="${SLURM_LOCAL_CONF:-/etc/slurm/slurm.conf}"
DBD_CONF="$(dirname "$CONF")/slurmdbd.conf"
MARKER="# Rendered by scripts/slurm-local.sh"
PIDS="$STATE/pids"
LOGS="$STATE/log"
MYSQL_SOCKET=/run/mysqld/mysqld.sock
CLUSTER=localcluster
export SLURM_CONF="$CONF"

log() { printf '[slurm-local] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- packages ---------------------------------------------------------------------------

need_packages() {
  local pkgs=(slurmctld slurmd slurm-client munge)
  if [[ "$ACCOUNTING" == 1 ]]; then pkgs+=(slurmdbd mariadb-server); fi
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then return 0; fi
  [[ $EUID -eq 0 ]] || die "packages missing (${missing[*]}) and not root"
  command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and no apt-get"
  log "installing ${missing[*]}"
  # Keep maintainer scripts from starting system-wide daemons: we start our own.
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  # Try without `apt-get update` first (a warm machine has fresh lists); update once if needed.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOGS/apt.log" 2>&1; then
    log "apt-get install failed; running apt-get update once"
    apt-get update -qq >>"$LOGS/apt.log" 2>&1 || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$LOGS/apt.log" 2>&1 || rc=$?
  fi
  if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi
  ((rc == 0)) || { tail -20 "$LOGS/apt.log" >&2; die "apt-get install failed (see $LOGS/apt.log)"; }
}

# --- PID bookkeeping ----------------------------------------------------------------------

# pid_of NAME -> prints the recorded PID if that process is alive and still is NAME.
# The cmdline check guards against PID reuse: we never signal a process we did not start.
pid_of() {
  local name=$1 file="$PIDS/$1.pid" pid
  [[ -f "$file" ]] || return 1
  pid=$(<"$file")
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name" || return 1
  echo "$pid"
}

# start NAME CMD... : run a daemon in its foreground mode in the background, record its PID.
start() {
  local name=$1; shift
  if pid_of "$name" >/dev/null; then log "$name already running"; return 0; fi
  nohup setsid "$@" >>"$LOGS/$name.out" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
  log "started $name (pid $!)"
}

# wait_for DESCRIPTION SECONDS CMD... : poll CMD every 0.1 s.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out waiting for $what (logs: $LOGS)"
    sleep 0.1
  done
}

# --- configuration ------------------------------------------------------------------------

render_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus="${SLURM_LOCAL_CPUS:-$(nproc)}"
  # Leave 512 MB to the OS, as `slurmd -C` would report it.
  mem=$(($(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 512))
  local acct_lines
  if [[ "$ACCOUNTING" == 1 ]]; then
    acct_lines="JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT + 2))"
  else
    acct_lines="JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none"
  fi
  if [[ -f "$CONF" ]] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not rendered by this script: refusing to overwrite it"
  fi
  install -d "$(dirname "$CONF")"
  cat >"$CONF.tmp" <<EOF
$MARKER (state: $STATE); deleted again by \`down\`.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# No systemd, no cgroups in containers / CI machines.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default a job with no --mem takes the whole node's memory.
DefMemPerCPU=1024
SchedulerType=sched/backfill
# The default delay of 3 s adds ~2 s to every batch job.
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
# Finished jobs stay visible to squeue for 10 minutes: the Snakemake plugin's squeue-based
# status check relies on it.
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
$acct_lines
JobCompType=jobcomp/none
# Let the node advertise SLURM_LOCAL_CPUS even when that exceeds the hardware.
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
  if [[ "$ACCOUNTING" == 1 ]]; then
    # slurmdbd finds its config next to SLURM_CONF and refuses it unless mode 600.
    (umask 077 && cat >"$DBD_CONF" <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    )
  fi
}

# --- daemons ------------------------------------------------------------------------------

munge_ok() { munge -n </dev/null | unmunge >/dev/null; }

start_munge() {
  if munge_ok 2>/dev/null; then
    # A munged we did not start (e.g. the machine's own) already serves the socket: use it,
    # and never stop it.
    pid_of munged >/dev/null || { log "using the already running munged"; return 0; }
  fi
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then mungekey --create --force; else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  start munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
  wait_for munged 20 munge_ok
}

mariadb_ok() { mariadb-admin --socket="$MYSQL_SOCKET" ping; }

start_accounting() {
  local datadir="$STATE/mysql"
  if [[ ! -d "$datadir/mysql" ]]; then
    log "initialising MariaDB in $datadir"
    install -d -o mysql -g mysql "$datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" \
      --auth-root-authentication-method=socket --skip-test-db >"$LOGS/mariadb-install.log" 2>&1
  fi
  install -d -o mysql -g mysql /run/mysqld
  start mariadbd /usr/sbin/mariadbd --user=mysql --datadir="$datadir" --skip-networking \
    --socket="$MYSQL_SOCKET" --pid-file="$datadir/mariadbd.pid" # mysql owns only the datadir
  wait_for mariadbd 60 mariadb_ok
  start slurmdbd /usr/sbin/slurmdbd -D
  # `sacctmgr` answers only once slurmdbd is up; registering the cluster is idempotent.
  wait_for slurmdbd 60 bash -c "sacctmgr -i add cluster $CLUSTER 2>&1 | grep -qiE 'adding|already exists|nothing new'"
}

node_idle() { sinfo -h -o '%t' | grep -qE '^(idle|mix|alloc)'; }

cmd_up() {
  install -d "$STATE"/{etc,state,spool,run,log,pids}
  need_packages
  if [[ -f "$CONF" ]] && grep -qF "$MARKER" "$CONF" && pid_of slurmctld >/dev/null \
    && pid_of slurmd >/dev/null \
    && scontrol ping >/dev/null 2>&1; then
    log "already up"
    return 0
  fi
  render_conf
  start_munge
  if [[ "$ACCOUNTING" == 1 ]]; then start_accounting; fi
  start slurmctld /usr/sbin/slurmctld -D -f "$CONF"
  wait_for slurmctld 30 bash -c "scontrol ping | grep -q UP"
  start slurmd /usr/sbin/slurmd -D -f "$CONF"
  wait_for "node idle" 30 node_idle
  log "up: SLURM_CONF=$CONF ($(sinfo -h -o '%P %D %c CPUs %m MB %t'))"
}

# stop NAME... : SIGTERM the recorded daemons, SIGKILL those still alive after 10 s.
stop() {
  local name pid pids=()
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$name:$pid")
    fi
    rm -f "$PIDS/$name.pid"
  done
  local deadline=$((SECONDS + 10)) entry
  for entry in "${pids[@]}"; do
    pid=${entry#*:}
    while [[ -d /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.1; done
    if [[ -d /proc/$pid ]]; then
      log "${entry%%:*} (pid $pid) ignored SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped ${entry%%:*} (pid $pid)"
  done
}

cmd_down() {
  if [[ -f "$CONF" ]] && pid_of slurmctld >/dev/null; then
    # Jobs left running would outlive slurmd (slurmstepd and the job's processes).
    local jobs
    jobs=$(squeue -h -o '%i' 2>/dev/null || true)
    if [[ -n "$jobs" ]]; then
      log "cancelling leftover jobs: $(echo $jobs)"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      local deadline=$((SECONDS + 15))
      while [[ -n "$(squeue -h -t R,CG,PD -o '%i' 2>/dev/null)" ]] && ((SECONDS < deadline)); do
        sleep 0.2
      done
    fi
  fi
  stop slurmd slurmctld
  stop slurmdbd
  stop mariadbd munged
  local f
  for f in "$CONF" "$DBD_CONF"; do
    if [[ -f "$f" ]] && grep -qF "$MARKER" "$f"; then rm -f "$f"; fi
  done
  log "down"
}

cmd_status() {
  local name pid rc=0
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    if pid=$(pid_of "$name"); then echo "$name: running (pid $pid)"
    elif [[ -f "$PIDS/$name.pid" ]]; then echo "$name: DEAD (recorded pid $(<"$PIDS/$name.pid"))"; rc=1
    fi
  done
  if [[ -f "$CONF" ]]; then
    echo "SLURM_CONF=$CONF"
    sinfo 2>&1 || rc=1
  else
    echo "not up (no $CONF)"
    rc=1
  fi
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
