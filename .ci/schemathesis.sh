#!/usr/bin/env bash
# Contract fuzzing: Schemathesis generates requests from the API's own /openapi.json (valid and
# invalid ones, then sequences following the links between operations) against the real
# `ledger-api` binary on the embedded default, and checks every answer against the description
# with all of its checks. A fixed seed and a bounded number of examples make the run
# repeatable; any failure fails the run.
#
# Needs the Rust toolchain, the PostgreSQL server binaries and Python 3 with venv; installs the
# pinned packages of .ci/contract/requirements.txt into a virtual environment under
# ~/.cache once. Settings: CONTRACT_FUZZ_SEED, CONTRACT_FUZZ_EXAMPLES (per operation and phase).
set -euo pipefail
cd "$(dirname "$0")/.."

seed="${CONTRACT_FUZZ_SEED:-20261130}"
examples="${CONTRACT_FUZZ_EXAMPLES:-200}"
requirements=.ci/contract/requirements.txt
started=$(date +%s)

# 1. The fuzzer, in a virtual environment named after the pinned requirements.
digest=$(sha256sum "$requirements" | cut -c1-12)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/inventory-ledger/contract-fuzz-$digest"
if [ ! -x "$venv/bin/schemathesis" ]; then
    python=$(command -v python3.11 || command -v python3)
    echo "contract fuzzing: installing the pinned fuzzer into $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
fi

# 2. The API: the real binary, a throwaway data folder, one admin token made for this run.
cargo build --quiet -p ledger-api --bin ledger-api
binary="${CARGO_TARGET_DIR:-target}/debug/ledger-api"
work=$(mktemp -d)
# Run as root, the embedded cluster runs as the postgres user, which must reach the data folder.
chmod 0711 "$work"
api_pid=""
stop_api() {
    if [ -n "$api_pid" ] && kill -0 "$api_pid" 2>/dev/null; then
        kill -TERM "$api_pid"
        wait "$api_pid" || true
    fi
    rm -rf "$work"
}
trap stop_api EXIT

token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash=$(printf '%s\n' "$token" | "$binary" hash-token)
LEDGER_TOKENS="admin:$hash:contract-fuzzer" "$binary" \
    --listen 127.0.0.1:0 --data-dir "$work/data" \
    >"$work/api.out" 2>"$work/api.log" &
api_pid=$!

base=""
for _ in $(seq 1 600); do
    base=$(sed -n 's/^inventory ledger API listening on //p' "$work/api.out")
    [ -n "$base" ] && break
    if ! kill -0 "$api_pid" 2>/dev/null; then
        echo "contract fuzzing: the API did not start:" >&2
        cat "$work/api.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$base" ]; then
    echo "contract fuzzing: the API did not start within 60 s" >&2
    exit 1
fi

# 3. The run, in the throwaway folder (the fuzzer keeps files in its working directory, and no
# earlier run's may change this one). The hooks hold the rules the description states only in
# words; the settings name the one status (412) that a SKU's state, not the request, decides,
# and pass the token from the environment.
status=0
contract="$PWD/.ci/contract"
(
    cd "$work"
    export CONTRACT_FUZZ_TOKEN="$token" SCHEMATHESIS_HOOKS="$contract/hooks.py"
    "$venv/bin/schemathesis" --config-file "$contract/schemathesis.toml" --no-color \
        run "$base/openapi.json" \
        --checks all \
        --seed "$seed" \
        --max-examples "$examples" \
        --generation-database none \
        --request-timeout 30
) || status=$?

echo "contract fuzzing: seed $seed, $examples examples, $(($(date +%s) - started)) s, exit $status"
if [ "$status" -ne 0 ]; then
    echo "contract fuzzing: the API's log follows" >&2
    tail -n 200 "$work/api.log" >&2
fi
exit "$status"
