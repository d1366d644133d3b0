#!/usr/bin/env bash
# Installs what the tests need from Debian: the real storage servers the store tests run against
# (nginx WebDAV for the HTTP store, a single-node Ceph with radosgw for S3) and headless Chromium
# (test/e2e/report.test.ts opens the HTML report the way a person would). Idempotent: does nothing when the binaries are there.
# Debian 12, as root. About 30 s and 270 MiB the first time.
set -euo pipefail
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v ceph-mon >/dev/null || need+=(ceph-mon)
command -v ceph-osd >/dev/null || need+=(ceph-osd)
command -v radosgw >/dev/null || need+=(radosgw)
command -v ceph >/dev/null || need+=(ceph-common)
command -v curl >/dev/null || need+=(curl)
command -v chromium >/dev/null || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian nginx package starts a system nginx on port 80; the tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then systemctl stop nginx || true; fi
