# Sourced by the start scripts (DIR set): each daemon's pid goes into DIR/pids as soon as it has
# started, and if the script then fails or is interrupted (Ctrl-C, a daemon that never comes up),
# what it started is stopped. The daemons detach from the script's session, so a Ctrl-C does not
# reach them: before this they outlived an interrupted start, unrecorded, one of them holding the
# caller's output pipe open (so a caller reading it to its end waited forever).
SERVICES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PIDS=$DIR/pids
: > "$PIDS"
# Every daemon started from here inherits this (daemonizing keeps the environment): the mark by
# which an interrupted start finds a daemon that had no time to write its pid file. DIR is fresh
# and this script's own, so nothing else carries the same mark.
export FC_UFFD_SERVICE_DIR=$DIR
trap stop_started EXIT
trap 'exit 130' INT TERM

# What this script started: the recorded pids, then any process with its mark that left its session.
stop_started() {
  set +e # clean-up goes on whatever fails in it (a process gone since it was listed, say)
  local sid p psid
  sid=$(ps -o sid= -p $$ | tr -d ' ')
  for p in $(grep -lsxF "FC_UFFD_SERVICE_DIR=$DIR" --null-data /proc/[0-9]*/environ | cut -d/ -f3); do
    psid=$(ps -o sid= -p "$p" | tr -d ' ')
    # Gone since, still in this script's session (its own commands), or recorded already: skipped.
    [ -n "$psid" ] && [ "$psid" != "$sid" ] && ! grep -q " $p\$" "$PIDS" && echo "unrecorded $p" >> "$PIDS"
  done
  bash "$SERVICES/stop.sh" "$PIDS"
}

# record_pid NAME PIDFILE: appends "NAME PID" once the daemon has written its pid file (5 s at most).
record_pid() {
  local name=$1 file=$2 pid=""
  for _ in $(seq 1 50); do
    pid=$(cat "$file" 2>/dev/null || true)
    [[ $pid =~ ^[1-9][0-9]*$ ]] && break
    sleep 0.1
  done
  [[ $pid =~ ^[1-9][0-9]*$ ]] || { echo "$name wrote no pid to $file" >&2; exit 1; }
  echo "$name $pid" >> "$PIDS"
}

# started: the script is done; what it started stays up (for stop.sh DIR/pids).
started() { trap - EXIT INT TERM; }
