# Shared by the benchmarks: build, certificates, free ports, wrk runs, nginx baseline.
# shellcheck shell=bash
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

BENCH_SECONDS="${BENCH_SECONDS:-5}"

# free_port: prints a TCP port that is free on loopback right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# make_certs DIR: a P-256 CA and a serving certificate for localhost/127.0.0.1.
make_certs() {
  local dir="$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/san.ext" -out "$dir/tls.crt" 2>/dev/null
}

# wait_ready URL [CA]: polls until URL answers 200 (bounded; CA for https URLs).
wait_ready() {
  local url="$1" ca="${2:-}" i
  local tls=()
  [ -z "$ca" ] || tls=(--cacert "$ca")
  for i in $(seq 1 3000); do
    curl -sf "${tls[@]}" -o /dev/null "$url" && return 0
    sleep 0.01
  done
  log "$url never became ready"; return 1
}

# start_nginx DIR PORT BODY_FILE LOCATION [CERT KEY]: nginx answering every request on
# LOCATION (e.g. /mutate) with the body in BODY_FILE, a static file. POST to a static
# file is 405 in nginx, so error_page turns that into the file itself; GET just serves
# it. With CERT and KEY it speaks TLS with the settings of our webhook (TLS 1.2+), else
# plain HTTP like the agent. Keep-alive without a request limit, one worker per core,
# no access log (our servers run at log level warn in the benchmarks for the same reason).
start_nginx() {
  local dir="$1" port="$2" body_file="$3" location="$4" cert="${5:-}" key="${6:-}" listen tls=""
  local file="${location##*/}"
  mkdir -p "$dir/nginx/www${location%/*}"
  cp "$body_file" "$dir/nginx/www$location"
  # nginx workers run as an unprivileged user when the master is root: let them read it.
  chmod -R a+rX "$dir/nginx"
  chmod 0755 "$dir"
  listen="127.0.0.1:$port"
  if [ -n "$cert" ]; then
    listen="$listen ssl"
    tls="ssl_certificate $cert; ssl_certificate_key $key; ssl_protocols TLSv1.2 TLSv1.3;"
  fi
  [ -n "$file" ] || die "start_nginx: LOCATION must name a file"
  cat >"$dir/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log error;
daemon on;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {
    listen $listen;
    $tls
    client_max_body_size 3m;
    location = $location {
      root $dir/nginx/www;
      default_type application/json;
      error_page 405 =200 \$uri;
    }
  }
}
CONF
  nginx -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" 2>/dev/null || nginx -c "$dir/nginx/nginx.conf"
}

stop_nginx() {
  local dir="$1"
  [ -f "$dir/nginx/nginx.pid" ] && kill "$(cat "$dir/nginx/nginx.pid")" 2>/dev/null || true
}

# run_wrk URL CONNECTIONS LUA: prints "requests_per_second p50_ms p99_ms".
run_wrk() {
  local url="$1" conns="$2" lua="$3" threads out
  threads=$(( conns < $(jobs) ? conns : $(jobs) ))
  out="$(wrk -t"$threads" -c"$conns" -d"${BENCH_SECONDS}s" --latency -s "$lua" "$url")"
  local non2xx
  non2xx="$(grep -E 'Non-2xx' <<<"$out" || true)"
  [ -z "$non2xx" ] || die "wrk saw errors against $url: $non2xx"
  python3 - "$out" <<'PY'
import re, sys
text = sys.argv[1]
def ms(label):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, text, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(f"{rps:.0f} {ms('50'):.3f} {ms('99'):.3f}")
PY
}
