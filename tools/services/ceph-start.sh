#!/usr/bin/env bash
# A throw-away single-node Ceph (Pacific 16.2, Debian 12): 1 mon + 1 OSD (bluestore on a sparse
# file) + radosgw on 127.0.0.1:PORT (default 7480), S3 keys testkey/testsecret, path-style.
# Wipes and recreates DIR. About 15-25 s. Prints the endpoint; `stop.sh DIR/pids` stops it. A start
# that fails or is interrupted (Ctrl-C) stops what it started (daemons.sh).
# Mon ports: FC_UFFD_CEPH_MON_PORT (v2, default 3300), FC_UFFD_CEPH_MON_V1_PORT (default 6789).
set -euo pipefail
DIR=${1:?usage: ceph-start.sh DIR [PORT]}
PORT=${2:-7480}
MON2=${FC_UFFD_CEPH_MON_PORT:-3300}
MON1=${FC_UFFD_CEPH_MON_V1_PORT:-6789}
# radosgw's readiness is its port answering: another server there would pass for it.
if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then echo "ceph-start: 127.0.0.1:$PORT is already in use" >&2; exit 1; fi
rm -rf "$DIR"; mkdir -p "$DIR"/{mon,osd,run,log,rgw}
DIR=$(cd "$DIR" && pwd)
source "$(dirname "$0")/daemons.sh"
FSID=$(cat /proc/sys/kernel/random/uuid)
export CEPH_CONF=$DIR/ceph.conf
# With auth off, radosgw hangs at start unless its section sets the client mode and auth below;
# "mon data avail crit = 0" keeps the mon up on a nearly full disk.
cat > "$CEPH_CONF" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON2,v1:127.0.0.1:$MON1]
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd memory target = 1073741824
osd crush chooseleaf type = 0
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
mon data = $DIR/mon/\$id
osd data = $DIR/osd/\$id
osd objectstore = bluestore
bluestore block path = $DIR/osd/\$id/block.file
bluestore block size = 17179869184
bluestore block create = true
osd max object size = 134217728
[client.rgw.a]
auth client required = none
ms mon client mode = crc secure
keyring = /dev/null
rgw frontends = beast endpoint=127.0.0.1:$PORT tcp_nodelay=1
rgw data = $DIR/rgw
rgw dns name = localhost
rgw enable usage log = false
CONF
waitfor() { # waitfor SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "ceph-start: $what not up after ${limit}s (logs in $DIR/log)" >&2; exit 1
}
t0=$(date +%s.%N)
monmaptool --create --addv a "[v2:127.0.0.1:$MON2,v1:127.0.0.1:$MON1]" --fsid "$FSID" --enable-all-features --set-min-mon-release pacific "$DIR/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$DIR/monmap"
# The daemons' own output goes to DIR/log (the caller's stdout carries only the endpoint).
ceph-mon -i a </dev/null >>"$DIR/log/daemons.out" 2>&1
record_pid mon.a "$DIR/run/mon.a.pid"
waitfor 30 mon ceph -s --connect-timeout 2
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(ceph osd new "$OSD_UUID")
mkdir -p "$DIR/osd/$OSD_ID"
ceph-osd -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" 2>>"$DIR/log/mkfs.log"
ceph-osd -i "$OSD_ID" </dev/null >>"$DIR/log/daemons.out" 2>&1
record_pid "osd.$OSD_ID" "$DIR/run/osd.$OSD_ID.pid"
waitfor 60 osd sh -c "ceph osd stat -f json | grep -q '\"num_up_osds\":1'"
radosgw -n client.rgw.a </dev/null >>"$DIR/log/daemons.out" 2>&1
record_pid client.rgw.a "$DIR/run/client.rgw.a.pid"
waitfor 60 radosgw curl -s -o /dev/null "http://127.0.0.1:$PORT/"
radosgw-admin user create --uid=test --display-name=test --access-key=testkey --secret=testsecret >/dev/null
started
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN{printf "ceph up in %.1f s\n", b-a}' >&2
echo "http://127.0.0.1:$PORT"
