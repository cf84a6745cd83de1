#!/bin/sh
# The CTest run of the guide's Listener/Client example: listener_server and listener_client (in
# the directory given) side by side over ipc with a fresh authkey; prints the server's output,
# then the client's. The client waits for the server to be there.
set -eu
bin=$1
dir=$(mktemp -d /tmp/zmp-listener-example-XXXXXX)
trap 'rm -rf "$dir"' EXIT
(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$dir/authkey" && echo >> "$dir/authkey")
"$bin/listener_server" "ipc://$dir/listener.sock" "$dir/authkey" > "$dir/server.out" &
server=$!
"$bin/listener_client" "ipc://$dir/listener.sock" "$dir/authkey" > "$dir/client.out"
wait "$server"
cat "$dir/server.out" "$dir/client.out"
