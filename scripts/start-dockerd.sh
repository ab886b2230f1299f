#!/usr/bin/env bash
# Start a Docker engine (dockerd, as root) in the background when none answers, and wait until it does.
#
#   scripts/start-dockerd.sh        exit 0 once `docker version` answers; 1 with `Error - ...` when it cannot
#
# For machines without systemd (CI, containers, these VMs): Debian's docker.io installs dockerd but does not
# start it there. dockerd picks its storage driver itself (overlay2 where the kernel allows, else
# fuse-overlayfs or vfs). When the default start fails (no iptables/netfilter in the kernel, no bridge), it is
# started again without iptables, then without the default bridge (containers then have host or no network:
# builds use the host network anyway).
#   KAOS_DOCKERD_LOG    dockerd's output (default /var/log/kaos-dockerd.log)
#   KAOS_DOCKERD_WAIT   seconds to wait for each start (default 60)
set -uo pipefail

log=${KAOS_DOCKERD_LOG:-/var/log/kaos-dockerd.log}
wait_seconds=${KAOS_DOCKERD_WAIT:-60}

answers() { timeout 10 docker version >/dev/null 2>&1; }

if answers; then
  echo "Info - a Docker engine already answers"
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  echo "Error - dockerd is not installed: apt-get install docker.io" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "Error - dockerd needs root" >&2
  exit 1
fi
# A dockerd killed without its cleanup (SIGKILL, a machine stopped) leaves its pid file; a new dockerd refuses
# to start while that pid is alive, whatever process now has it. Removed when it names no running dockerd.
pid_file=/var/run/docker.pid
if [ -f "$pid_file" ]; then
  old_pid=$(cat "$pid_file" 2>/dev/null)
  if [ -z "$old_pid" ] || [ "$(cat "/proc/$old_pid/comm" 2>/dev/null)" != dockerd ] \
     || grep -q '^State:.*Z' "/proc/$old_pid/status" 2>/dev/null; then
    rm -f "$pid_file"
  fi
fi

# One start: dockerd with these flags, detached from this shell; 0 once it answers, 1 when it exited or
# did not answer within wait_seconds (then it is stopped).
start() {
  echo "[$(date '+%F %T')] dockerd $*" >>"$log"
  setsid dockerd "$@" </dev/null >>"$log" 2>&1 &
  local pid=$! started=$SECONDS
  while [ $((SECONDS - started)) -lt "$wait_seconds" ]; do
    if answers; then
      echo "Info - dockerd${*:+ $*} answers (pid $pid, $((SECONDS - started)) s; its log: $log)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; return 1; }
    sleep 0.5
  done
  kill "$pid" 2>/dev/null
  wait "$pid"
  return 1
}

start && exit 0
echo "Warning - dockerd did not start with its defaults; trying without iptables (see $log)" >&2
start --iptables=false --ip6tables=false && exit 0
echo "Warning - dockerd did not start without iptables; trying without the default bridge" >&2
start --iptables=false --ip6tables=false --bridge=none && exit 0
echo "Error - dockerd did not start (its log: $log):" >&2
tail -n 5 "$log" >&2
exit 1
