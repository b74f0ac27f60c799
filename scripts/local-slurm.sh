#!/usr/bin/env bash
# A one-node Slurm on this machine, for the cluster executor's tests: Debian's slurm-wlm and
# munge, no systemd and no cgroups (proctrack/linuxproc, task/none), two fake `gpu` GRES
# so that `--gres=gpu:1` is accepted, everything else under one state folder.
#
#   scripts/local-slurm.sh install   # apt-get install slurm-wlm munge (root or sudo)
#   scripts/local-slurm.sh start     # munged, slurmctld, slurmd; waits until the node is idle
#   scripts/local-slurm.sh status    # sinfo, or exit 1 when it is not running
#   scripts/local-slurm.sh stop      # stops the three daemons by their pid files
#
# State lives in $REPRO_SLURM_DIR (default /tmp/repro-slurm). Prints the environment
# (SLURM_CONF) that clients need, as `export` lines, after `start`.
set -euo pipefail

dir="${REPRO_SLURM_DIR:-/tmp/repro-slurm}"
conf="$dir/slurm.conf"
host="$(hostname -s)"
sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo

install() {
  if dpkg -s slurm-wlm munge >/dev/null 2>&1; then return; fi
  $sudo_ apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q slurm-wlm munge
}

write_config() {
  mkdir -p "$dir"/{state,spool,log,fakegpu}
  : > "$dir/fakegpu/gpu0"; : > "$dir/fakegpu/gpu1"
  local cpus mem
  cpus="$(nproc)"
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  cat > "$conf" <<EOF
ClusterName=repro
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ReturnToService=2
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat > "$dir/gres.conf" <<EOF
NodeName=$host Name=gpu File=$dir/fakegpu/gpu[0-1]
EOF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  if [ ! -s /etc/munge/munge.key ]; then
    $sudo_ dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    $sudo_ chown munge:munge /etc/munge/munge.key
    $sudo_ chmod 400 /etc/munge/munge.key
  fi
  $sudo_ mkdir -p /run/munge
  $sudo_ chown munge:munge /run/munge
  $sudo_ /usr/sbin/munged --force 2>>"$dir/log/munged.log" || true
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "munged did not start (see $dir/log/munged.log)" >&2
  exit 1
}

start() {
  if SLURM_CONF="$conf" sinfo -h -o '%T' 2>/dev/null | grep -q idle; then
    echo "export SLURM_CONF=$conf"
    return
  fi
  install >&2
  write_config
  start_munge
  export SLURM_CONF="$conf"
  $sudo_ env SLURM_CONF="$conf" /usr/sbin/slurmctld
  $sudo_ env SLURM_CONF="$conf" /usr/sbin/slurmd
  for _ in $(seq 100); do
    if sinfo -h -o '%T' 2>/dev/null | grep -q idle; then
      echo "export SLURM_CONF=$conf"
      return
    fi
    sleep 0.2
  done
  echo "the node did not become idle:" >&2
  sinfo >&2 || true
  tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  exit 1
}

stop() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
    if [ -s "$pidfile" ]; then
      $sudo_ kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
  pkill -x munged 2>/dev/null || true
}

status() {
  SLURM_CONF="$conf" sinfo
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
