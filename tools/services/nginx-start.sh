#!/usr/bin/env bash
# nginx (Debian 1.22, built-in WebDAV module) as an HTTP object store: GET (Range), HEAD, PUT
# (written to a temp file, then renamed: atomic), DELETE. Root DIR/data, listening on
# 127.0.0.1:PORT (default 8080). Prints the URL; `stop.sh DIR/pids` stops it. A start that fails or
# is interrupted stops what it started (daemons.sh).
set -euo pipefail
DIR=${1:?usage: nginx-start.sh DIR [PORT]}
PORT=${2:-8080}
mkdir -p "$DIR"/{data,tmp,logs}
DIR=$(cd "$DIR" && pwd)
cat > "$DIR/nginx.conf" <<CONF
worker_processes 2;
pid $DIR/nginx.pid;
error_log $DIR/logs/error.log warn;
user root;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path $DIR/tmp;
  proxy_temp_path $DIR/tmp; fastcgi_temp_path $DIR/tmp; uwsgi_temp_path $DIR/tmp; scgi_temp_path $DIR/tmp;
  server {
    listen 127.0.0.1:$PORT;
    root $DIR/data;
    client_max_body_size 0;
    client_body_buffer_size 1m;
    location / {
      dav_methods PUT DELETE;
      create_full_put_path on;   # PUT chunks/ab/<digest> creates chunks/ab/
      dav_access user:rw group:r all:r;
      min_delete_depth 1;
      autoindex off;
    }
  }
}
CONF
source "$(dirname "$0")/daemons.sh"
nginx -c "$DIR/nginx.conf" -p "$DIR" -e "$DIR/logs/error.log"   # daemonizes, writes the pid file
record_pid nginx "$DIR/nginx.pid"
for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.05; done
curl -s -o /dev/null "http://127.0.0.1:$PORT/" || { echo "nginx did not answer on 127.0.0.1:$PORT (see $DIR/logs/error.log)" >&2; exit 1; }
started
echo "http://127.0.0.1:$PORT"
