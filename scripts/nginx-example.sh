#!/usr/bin/env bash
# Off-the-shelf server as a marble: Debian's unmodified nginx launched through cairn-premain, its TLS
# certificate and key rendered into files by manifest templates, reached by a client (curl) that
# trusts only the Coordinator root. Installs nginx-light when missing. Exit 0 on success.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD
BIN=${CAIRN_BIN_DIR:-$ROOT_DIR/target/debug}
for b in cairn cairn-coordinator cairn-premain; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: run cargo build --workspace --bins first" >&2; exit 2; }
done
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx-light (Debian) ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

WORK=$(mktemp -d /tmp/cairn-nginx-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for_line() { # file marker -> prints the token after the marker
  local file=$1 marker=$2
  for _ in $(seq 1 600); do
    if grep -q "$marker" "$file" 2>/dev/null; then
      grep -o "$marker[^ ]*" "$file" | head -1 | sed "s/^$marker//"
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for '$marker' in $file:" >&2; cat "$file" >&2; return 1
}

"$BIN/cairn-coordinator" --simulation --seal-dir "$WORK/seal" \
  --client-addr 127.0.0.1:0 --mesh-addr 127.0.0.1:0 >"$WORK/coordinator.log" 2>&1 &
PIDS+=($!)
CLIENT=$(wait_for_line "$WORK/coordinator.log" "client API listening on ")
MESH=$(wait_for_line "$WORK/coordinator.log" "mesh API listening on ")
SIM="$WORK/seal/sim"
COORD_ID=$(sha256sum "$BIN/cairn-coordinator" | cut -d' ' -f1)
NGINX_ID=$(sha256sum "$NGINX" | cut -d' ' -f1)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TLS="$WORK/tls"

python3 - "$WORK/manifest.json" "$NGINX_ID" "$TLS" "$PORT" "$WORK" <<'PY'
import json, sys
out, uid, tls, port, work = sys.argv[1:]
conf = f"""worker_processes 1;
error_log stderr info;
pid {work}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log {work}/access.log;
  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fcgi;
  uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {tls}/marble.crt;
    ssl_certificate_key {tls}/marble.key;
    location / {{ default_type text/plain; return 200 "hello from an attested nginx marble\\n"; }}
  }}
}}
"""
m = {
  "Packages": {"nginx": {"UniqueID": uid}},
  "Marbles": {"frontend": {"Package": "nginx", "Parameters": {"Files": {
    f"{tls}/marble.crt": "{{ pem .MarbleRun.MarbleCert.Cert }}{{ pem .MarbleRun.CoordinatorIntermediate.Cert }}",
    f"{tls}/marble.key": "{{ pem .MarbleRun.MarbleCert.Private }}",
    f"{work}/nginx.conf": {"Data": conf, "NoTemplates": True},
  }}}},
}
json.dump(m, open(out, "w"), indent=2)
PY

ATTEST=(--simulation-root "$SIM/root.pem" --unique-id "$COORD_ID" --coordinator-cert "$WORK/cache.pem")
"$BIN/cairn" manifest set "$WORK/manifest.json" "$CLIENT" "${ATTEST[@]}"
"$BIN/cairn" certificate root "$CLIENT" "${ATTEST[@]}" -o "$WORK/root.pem"

EDG_MARBLE_TYPE=frontend EDG_MARBLE_COORDINATOR_ADDR="$MESH" EDG_MARBLE_UUID_FILE="$WORK/uuid" \
CAIRN_SIM_DIR="$SIM" CAIRN_COORDINATOR_ROOT_CA="$WORK/root.pem" \
  "$BIN/cairn-premain" -- "$NGINX" -c "$WORK/nginx.conf" -g 'daemon off;' >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)

URL="https://localhost:$PORT/"
for _ in $(seq 1 300); do
  if OUT=$(curl -sS --max-time 5 --cacert "$WORK/root.pem" "$URL" 2>"$WORK/curl.err"); then break; fi
  sleep 0.1
done
if [ "${OUT:-}" != "hello from an attested nginx marble" ]; then
  echo "FAIL: curl trusting only the Coordinator root could not reach nginx" >&2
  cat "$WORK/curl.err" "$WORK/nginx.log" >&2
  exit 1
fi
echo "ok: curl --cacert <Coordinator root> $URL -> $OUT"
if curl -sS --max-time 5 "$URL" >/dev/null 2>&1; then
  echo "FAIL: a client without the Coordinator root must not verify nginx's certificate" >&2
  exit 1
fi
echo "ok: without the Coordinator root the certificate is not trusted"
KEY_MODE=$(stat -c %a "$TLS/marble.key")
[ "$KEY_MODE" = 600 ] || { echo "FAIL: key file mode $KEY_MODE, want 600" >&2; exit 1; }
echo "ok: key file written 0600"
echo "1 passed, 0 failed"
