#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the SLURM backend's tests and for trying
# `scripts/reproduce.py --backend slurm` without a cluster.
#
#   bash scripts/slurm/local_cluster.sh start    # install (once), wipe old state, start, smoke-test
#   bash scripts/slurm/local_cluster.sh status   # exit 0 only when every daemon answers
#   bash scripts/slurm/local_cluster.sh stop     # scancel all jobs, stop the daemons (pid files)
#
# Why it looks like this:
# - Debian's packages (munge, slurmctld, slurmd, slurm-client, slurmdbd, mariadb-server) are
#   installed with apt-get only when missing; nothing starts on install, so every daemon is
#   started here by hand, in dependency order, each only after the previous one answers.
# - Accounting (MariaDB + slurmdbd) is required: without it `sacct` fails, and submitit then
#   reports every state as UNKNOWN and can wait forever on a cancelled job.
# - No systemd and no cgroups are assumed (proctrack/linuxproc, task/none).
# - `start` wipes the controller/node spool and the accounting database first: a controller
#   restarted on old state reloads old jobs as running, and job ids restart at 1, so an old
#   database would show old jobs under new ids. A `start` on a cluster that already answers
#   does nothing (idempotent), so tests may call it every time.
# - Daemons are stopped only by the pids in their pid files; a zombie counts as stopped.
# Needs root (it writes /etc/slurm, /etc/munge and starts daemons). It writes /etc/slurm/slurm.conf
# and /etc/slurm/slurmdbd.conf: do not run it on a machine that is part of a real cluster.
set -euo pipefail

CLUSTER=localcluster
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
DB_DATADIR=/var/lib/mysql
DB_NAME=slurm_acct_db
PKGS=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

MUNGE_PID=/run/munge/munged.pid
DB_PID=/run/mysqld/mysqld.pid
DB_SOCK=/run/mysqld/mysqld.sock
DBD_PID=/run/slurmdbd.pid
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid

T0=${EPOCHREALTIME/./}
say() {
  local dt=$(( ${EPOCHREALTIME/./} - T0 ))
  printf '[slurm %3d.%ds] %s\n' $(( dt / 1000000 )) $(( dt / 100000 % 10 )) "$*"
}

# fail MESSAGE [LOGFILE...]: print the message and the tail of each log, then exit 1.
fail() {
  local msg=$1; shift
  echo "[slurm] ERROR: $msg" >&2
  local f
  for f in "$@"; do
    if [ -s "$f" ]; then
      echo "----- last lines of $f -----" >&2
      tail -n 25 "$f" >&2
      echo "-----" >&2
    fi
  done
  exit 1
}

# alive PIDFILE: the pid in the file is a live (non-zombie) process.
alive() {
  local pid state
  [ -s "$1" ] || return 1
  pid=$(tr -dc '0-9' 2>/dev/null < "$1") || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  # Field 3 of /proc/PID/stat is the state; the command field (2) may hold spaces, so cut after ')'.
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.2 s until COMMAND succeeds.
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
  say "$what"
}

# stop_pid PIDFILE NAME: TERM the daemon, wait up to 15 s, then KILL it.
stop_pid() {
  local pidfile=$1 name=$2 pid
  if ! alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  pid=$(tr -dc '0-9' 2>/dev/null < "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 75); do alive "$pidfile" || break; sleep 0.2; done
  if alive "$pidfile"; then
    echo "[slurm] $name (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 25); do alive "$pidfile" || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
  say "stopped $name (pid $pid)"
}

need_root() {
  [ "$(id -u)" = 0 ] || fail "must run as root (it installs packages, writes /etc/slurm and starts daemons)"
}

host() { hostname -s; }

node_state() { sinfo -h -n "$(host)" -o %t 2>/dev/null | head -n1; }

cluster_answers() {
  alive "$MUNGE_PID" && alive "$DB_PID" && alive "$DBD_PID" && alive "$CTLD_PID" && alive "$SLURMD_PID" \
    && scontrol ping >/dev/null 2>&1 && sacctmgr -n show cluster >/dev/null 2>&1 \
    && [[ "$(node_state)" =~ ^(idle|mix|alloc|comp)$ ]]
}

any_running() {
  local f
  for f in "$MUNGE_PID" "$DB_PID" "$DBD_PID" "$CTLD_PID" "$SLURMD_PID"; do alive "$f" && return 0; done
  return 1
}

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || fail "packages missing (${missing[*]}) and no apt-get to install them"
  say "installing ${missing[*]} (apt-get, once)"
  # Keep services from starting on install where no policy says so (a booted Debian would start
  # mariadb and munge here, outside our pid files).
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1
  fi
  local log=/tmp/local_cluster_apt.log
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}")
  if ! "${apt[@]}" > "$log" 2>&1; then
    say "apt-get install failed; running apt-get update and trying again"
    apt-get update -q >> "$log" 2>&1 || true
    if ! "${apt[@]}" >> "$log" 2>&1; then
      [ $made_policy = 1 ] && rm -f "$policy"
      fail "apt-get install ${missing[*]} failed" "$log"
    fi
  fi
  [ $made_policy = 1 ] && rm -f "$policy"
  say "installed ${missing[*]}"
}

start_munge() {
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey -c -k /etc/munge/munge.key >/dev/null 2>&1 \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
  if ! alive "$MUNGE_PID"; then
    rm -f "$MUNGE_PID" /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged \
      || fail "munged did not start" /var/log/munge/munged.log
  fi
  munge_ok() { munge -n | unmunge; }
  wait_for 10 "munge answers" munge_ok || fail "munge does not answer" /var/log/munge/munged.log
}

start_mariadb() {
  mkdir -p /run/mysqld "$LOG_DIR"
  chown mysql:mysql /run/mysqld
  if [ ! -d "$DB_DATADIR/mysql" ]; then
    say "initialising the MariaDB data folder (once)"
    mariadb-install-db --user=mysql --datadir="$DB_DATADIR" --skip-test-db > "$LOG_DIR/mariadb-install.log" 2>&1 \
      || fail "mariadb-install-db failed" "$LOG_DIR/mariadb-install.log"
  fi
  if ! alive "$DB_PID"; then
    rm -f "$DB_PID" "$DB_SOCK"
    : > "$LOG_DIR/mariadb.log"; chown mysql:mysql "$LOG_DIR/mariadb.log"
    setsid -f mariadbd --user=mysql --datadir="$DB_DATADIR" --skip-networking --socket="$DB_SOCK" \
      --pid-file="$DB_PID" --log-error="$LOG_DIR/mariadb.log" < /dev/null > /dev/null 2>&1
  fi
  db_ok() { mariadb-admin --socket="$DB_SOCK" ping; }
  wait_for 30 "MariaDB answers" db_ok || fail "MariaDB does not answer" "$LOG_DIR/mariadb.log"
}

# Fresh accounting database and a password for it (it only listens on its unix socket).
reset_accounting_db() {
  DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  mariadb --socket="$DB_SOCK" -uroot <<SQL || fail "could not set up the accounting database" "$LOG_DIR/mariadb.log"
DROP DATABASE IF EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS 'slurm'@'localhost';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
  say "accounting database reset"
}

# The slurm.conf for this machine (node line from `slurmd -C`), on stdout.
slurm_conf_text() {
  local h cpus mem line
  h=$(host)
  line=$(slurmd -C 2>/dev/null | head -n1) || true
  cpus=$(sed -n 's/.*\bCPUs=\([0-9]*\).*/\1/p' <<< "$line")
  mem=$(sed -n 's/.*\bRealMemory=\([0-9]*\).*/\1/p' <<< "$line")
  cpus=${cpus:-$(nproc)}
  mem=${mem:-$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)}
  # AuthInfo cred_expire: a requeued job waits this long before it may start again (default
  # 120 s); 5 s is plenty on one node. sched_interval/bf_interval: run the schedulers every
  # second (defaults 60 s / 30 s), or an eligible requeued job waits up to a minute to start.
  cat <<EOF
# Written by scripts/slurm/local_cluster.sh (a single-node test cluster); node from \`slurmd -C\`.
ClusterName=$CLUSTER
SlurmctldHost=$h(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
KillWait=5
NodeName=$h NodeAddr=127.0.0.1 CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

write_configs() {
  mkdir -p "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
  cat > "$CONF_DIR/slurmdbd.conf" <<EOF
# Written by scripts/slurm/local_cluster.sh (a single-node test cluster).
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
PidFile=$DBD_PID
LogFile=$LOG_DIR/slurmdbd.log
EOF
  chmod 600 "$CONF_DIR/slurmdbd.conf"
  slurm_conf_text > "$CONF_DIR/slurm.conf"
  say "wrote $CONF_DIR/slurm.conf ($(grep '^NodeName=' "$CONF_DIR/slurm.conf" | cut -d' ' -f1,3,8))"
}

start_slurm_daemons() {
  local h; h=$(host)
  rm -rf "${CTLD_SPOOL:?}"/* "${SLURMD_SPOOL:?}"/*
  : > "$LOG_DIR/slurmdbd.log"; : > "$LOG_DIR/slurmctld.log"; : > "$LOG_DIR/slurmd.log"

  slurmdbd || fail "slurmdbd did not start" "$LOG_DIR/slurmdbd.log"
  dbd_ok() { alive "$DBD_PID" && sacctmgr -n show cluster; }
  wait_for 30 "slurmdbd answers" dbd_ok || fail "slurmdbd does not answer" "$LOG_DIR/slurmdbd.log"

  slurmctld -c || fail "slurmctld did not start" "$LOG_DIR/slurmctld.log"
  ctld_ok() { alive "$CTLD_PID" && scontrol ping | grep -q UP; }
  wait_for 30 "slurmctld answers" ctld_ok || fail "slurmctld does not answer" "$LOG_DIR/slurmctld.log"

  slurmd || fail "slurmd did not start" "$LOG_DIR/slurmd.log"
  # It daemonizes: the pid file appears a moment after the command returns.
  wait_for 10 "slurmd started" alive "$SLURMD_PID" || fail "slurmd exited" "$LOG_DIR/slurmd.log"
  local deadline=$(( $(date +%s) + 30 )) st=""
  while :; do
    alive "$SLURMD_PID" || fail "slurmd exited" "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.log"
    st=$(node_state)
    case "$st" in
      idle|mix|alloc) break ;;
      drain*|down*|drng*|fail*)
        scontrol update nodename="$h" state=resume >/dev/null 2>&1 || true ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "node $h is '$st', not idle, after 30 s" \
      "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.log"
    sleep 0.2
  done
  say "slurmd up, node $h is $st"
}

smoke() {
  local out
  out=$(timeout 60 srun -n1 -t1 true 2>&1) || fail "smoke test 'srun -n1 -t1 true' failed: $out" \
    "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"
  say "smoke test 'srun -n1 -t1 true' passed"
}

cmd_stop() {
  need_root
  if alive "$CTLD_PID" && command -v scancel >/dev/null; then
    local ids
    ids=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ') || true
    if [ -n "${ids// /}" ]; then
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      say "cancelled jobs: $ids"
      for _ in $(seq 50); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  stop_pid "$SLURMD_PID" slurmd
  stop_pid "$CTLD_PID" slurmctld
  stop_pid "$DBD_PID" slurmdbd
  stop_pid "$DB_PID" mariadbd
  stop_pid "$MUNGE_PID" munged
  say "stopped"
}

cmd_start() {
  if command -v sinfo >/dev/null && cluster_answers; then
    if [ "$(slurm_conf_text)" = "$(cat "$CONF_DIR/slurm.conf" 2>/dev/null)" ]; then
      say "already running (node $(host) is $(node_state)); nothing to do"
      return 0
    fi
    need_root
    say "running, but with another slurm.conf than this script writes: restarting"
    cmd_stop
  fi
  need_root
  if any_running; then
    say "some daemons run but the cluster does not answer: stopping them for a clean start"
    cmd_stop
  fi
  install_packages
  start_munge
  start_mariadb
  reset_accounting_db
  write_configs
  start_slurm_daemons
  smoke
  say "cluster '$CLUSTER' is up (partition debug, node $(host))"
}

cmd_status() {
  local f name rc=0
  for f in "munged:$MUNGE_PID" "mariadbd:$DB_PID" "slurmdbd:$DBD_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID"; do
    name=${f%%:*}
    if alive "${f#*:}"; then echo "$name: running (pid $(tr -dc '0-9' < "${f#*:}"))"
    else echo "$name: stopped"; rc=1; fi
  done
  if [ $rc = 0 ] && cluster_answers; then
    echo "cluster: up, node $(host) is $(node_state)"
  else
    echo "cluster: not answering"; rc=1
  fi
  return $rc
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
