#!/usr/bin/env bash
# Cross-check of the bench's own load generator: start the API the way ledger-bench does (the
# release binary in its own process, on a fresh embedded cluster), replenish the SKUs, and drive
# the uncontended keyed reserves of scenario (a) with wrk, whose Lua script gives every request
# its own reservation id. Compare the req/s printed here with ledger-bench's (a) row at the
# same connection count. Run by hand on an otherwise idle machine; CI does not run it.
#
#   cargo build --release -p ledger-bench -p ledger-api
#   tests/bench/compare-load-generator.sh [--api-binary PATH] [--connections N] [--seconds S]
#                                         [--skus N] [--warmup-seconds S]
#
# Needs wrk (Debian: `apt-get install wrk`) and curl.
set -euo pipefail

# Defaults match ledger-bench's scenario (a).
api_binary="${CARGO_TARGET_DIR:-$(dirname "$0")/../../target}/release/ledger-api"
connections=32
seconds=15
skus=10000
warmup_seconds=3
# wrk threads: one per core of the small machines this runs on, as pgbench's in the floor.
threads=2
# Stock per SKU: more than any run reserves from one SKU, as in the bench.
stock=1000000
# How long the API may take to listen; a first start creates its cluster.
start_timeout_seconds=120

while [ $# -gt 0 ]; do
  case "$1" in
    --api-binary) api_binary="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --skus) skus="$2"; shift 2 ;;
    --warmup-seconds) warmup_seconds="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || { echo "wrk is not installed (Debian: apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is not installed" >&2; exit 1; }
[ -x "$api_binary" ] || {
  echo "$api_binary does not exist: build it with cargo build --release -p ledger-api" >&2
  exit 1
}

work="$(mktemp -d /tmp/ledger-compare-XXXXXX)"
# mktemp makes the folder private; the cluster runs as the postgres user when we are root, and
# must be able to enter it.
chmod 755 "$work"
api_pid=""
stop_api() {
  # SIGTERM makes the API stop its cluster and exit; then the folder can go.
  if [ -n "$api_pid" ] && kill -0 "$api_pid" 2>/dev/null; then
    kill -TERM "$api_pid"
    wait "$api_pid" || true
  fi
  rm -rf "$work"
}
trap stop_api EXIT INT TERM

"$api_binary" --listen 127.0.0.1:0 --data-dir "$work/data" --pool-size $((connections + 8)) \
  >"$work/api.out" 2>"$work/api.log" &
api_pid=$!
url=""
for _ in $(seq $((start_timeout_seconds * 10))); do
  url="$(sed -n 's/^inventory ledger API listening on //p' "$work/api.out")"
  [ -n "$url" ] && break
  kill -0 "$api_pid" 2>/dev/null || { echo "the API exited:" >&2; tail -20 "$work/api.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the API did not listen within ${start_timeout_seconds} s" >&2; exit 1; }
echo "API (pid $api_pid) listening on $url"

run="$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
prefix="W${run}-"
echo "replenishing $skus SKUs ${prefix}* with $stock units each..."
# Each URL takes its own output option, so every answer's body is dropped.
for i in $(seq 0 $((skus - 1))); do
  echo "url = \"$url/v1/skus/${prefix}${i}/replenishments\""
  echo 'output = "/dev/null"'
done >"$work/replenish.curl"
# One curl process, one keep-alive connection, every SKU in turn.
failed="$(curl -s -w '%{http_code}\n' -X POST -H 'content-type: application/json' \
  -d "{\"quantity\":$stock}" -K "$work/replenish.curl" | grep -cv '^200$' || true)"
[ "$failed" = "0" ] || { echo "$failed replenishments failed" >&2; exit 1; }

# Each wrk thread has its own Lua state: `setup` numbers the threads, and request n of thread t
# goes to SKU (n * threads + t) mod skus with reservation id wrk-<run>-<phase>-<t>-<n>, so no
# two requests share a key.
cat >"$work/reserve.lua" <<'LUA'
local threads_started = 0
function setup(thread)
  thread:set("thread_number", threads_started)
  threads_started = threads_started + 1
end
local sent = 0
local skus = tonumber(os.getenv("SKUS"))
local threads = tonumber(os.getenv("THREADS"))
local prefix = os.getenv("SKU_PREFIX")
local ids = os.getenv("ID_PREFIX")
local headers = { ["Content-Type"] = "application/json" }
function request()
  sent = sent + 1
  local sku = prefix .. ((sent * threads + thread_number) % skus)
  local body = string.format('{"reservation_id":"%s%d-%d","quantity":1}', ids, thread_number, sent)
  return wrk.format("POST", "/v1/skus/" .. sku .. "/reservations", headers, body)
end
LUA

export SKUS="$skus" THREADS="$threads" SKU_PREFIX="$prefix"
if [ "$warmup_seconds" -gt 0 ]; then
  echo "warm-up: ${warmup_seconds} s, not counted..."
  ID_PREFIX="wrk-${run}-w-" wrk -t"$threads" -c"$connections" -d"${warmup_seconds}s" \
    -s "$work/reserve.lua" "$url" >/dev/null
fi
echo "wrk: $connections connections, $threads threads, ${seconds} s of keyed reserves over $skus SKUs"
ID_PREFIX="wrk-${run}-u-" wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency \
  -s "$work/reserve.lua" "$url" | tee "$work/wrk.out"
echo
echo "wrk req/s: $(sed -n 's/^Requests\/sec: *//p' "$work/wrk.out")" \
  "(any 'Non-2xx or 3xx responses' line above counts failed reserves)"
echo "compare with ledger-bench's (a) row, e.g.: ledger-bench --connections $connections" \
  "--seconds $seconds --skus $skus --skip-expensive --skip lag,expiry,degradation,floor"
