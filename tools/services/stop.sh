#!/usr/bin/env bash
# stop.sh PIDSFILE: SIGTERM each process recorded as "name pid" lines (last started first), wait up
# to 30 s for them to exit, then SIGKILL what is left. Only those pids, never by process name.
f=${1:?usage: stop.sh PIDSFILE}
[ -f "$f" ] || exit 0
pids=$(awk '{print $2}' "$f" | tac)
# Only positive pids: `kill 0` would signal this script's own process group (its callers).
pids=$(for p in $pids; do [[ $p =~ ^[1-9][0-9]*$ ]] && echo "$p"; done)
for p in $pids; do kill "$p" 2>/dev/null; done
for _ in $(seq 1 300); do
  alive=0; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && exit 0
  sleep 0.1
done
for p in $pids; do kill -9 "$p" 2>/dev/null; done
exit 0
