#!/bin/sh
# Runs manager_server and manager_client as two unrelated programs on a loopback port the system
# picks, as CTest's example_manager_remote does: the client's output, then the server's (stopped
# once it has printed what the client did).
#   manager_pair.sh <manager_server> <manager_client>
set -e
server=$1
client=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$server" tcp://127.0.0.1:0 "$dir/key" >"$dir/server.out" &
pid=$!
tries=0
until grep -q '^serving ' "$dir/server.out"; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        echo "manager_server did not start" >&2
        exit 1
    fi
    sleep 0.1
done
address=$(sed -n 's/^serving //p' "$dir/server.out")
"$client" "$address" "$dir/key"
# The server prints its last line once the client is done, and serves on until it is stopped.
tries=0
until grep -q '^visits: ' "$dir/server.out"; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ]; then
        kill "$pid"
        echo "manager_server did not finish" >&2
        exit 1
    fi
    sleep 0.1
done
kill "$pid"
wait "$pid" || true
cat "$dir/server.out"
