#!/usr/bin/env bash
# A caching mirror proven (part of `make test`; docs/mirrors.md): real nginx, configured with
# server/nginx-cache-mirror.conf itself (names and paths replaced), in front of provisioner-server,
# all on loopback. Two agents (the static agent's `sync`) install the same image through the mirror
# at the same time, then a third after them. Checks: every tree is the image; the server's link
# carried each object once (its own /metrics); the later agent was served from the cache.
#
# Needs: BIN (provisioner-server, provisionerctl), AGENT (static provisioner-agent), TLS (the test
# cluster's `provisionerctl ca init` directory), nginx.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
: "${BIN:?}" "${AGENT:?}" "${TLS:?}"
command -v nginx > /dev/null || { echo "mirror-test: nginx is not installed (apt-get install nginx)" >&2; exit 1; }
work=$REPO/build/mirror-test
STATE=$work/state
rm -rf "$work"
mkdir -p "$work"
# shellcheck source=lib/cluster.sh
source "$REPO/scripts/lib/cluster.sh"
# shellcheck source=lib/mirror.sh
source "$REPO/scripts/lib/mirror.sh"

cleanup() {
    set +e
    mirror_stop
    server_stop
}
trap cleanup EXIT


say "setup: the server and an image of 600 files (about 60 MB)"
mkdir -p "$STATE/tls" "$STATE/images"
cp "$TLS"/{ca.pem,server.pem,server-key.pem} "$STATE/tls/"
server_start
# The mirror's own certificate (role mirror: objects and files, read only), and a node's for the
# agents (images are for nodes that proved who they are, not for the bootstrap certificate).
certs=$work/certs
ctl ca issue mirror mirror1 --dir "$TLS" --out "$certs" > /dev/null
ctl ca issue node agent1 --dir "$TLS" --out "$certs" > /dev/null
tree=$work/tree
mkdir -p "$tree/etc" "$tree/usr/lib/data" "$tree/var/lib"
for i in $(seq 1 600); do
    head -c $((i * 200)) /dev/urandom > "$tree/usr/lib/data/file-$i.bin"
done
echo "mirror test" > "$tree/etc/motd"
ctl image import mirrored --from "$tree" > /dev/null
version=$(ctl image show mirrored --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["image"]["branches"][0]["head"])')
stored=$(du -sb "$STATE/images/objects" | cut -f1)
objects=$(find "$STATE/images/objects" -type f | wc -l)
echo "  version $version: $objects objects, $stored bytes as stored"

say "nginx as a caching mirror (server/nginx-cache-mirror.conf)"
MIRROR_PORT=$(free_port)
mirror_start "$work/nginx" "127.0.0.1:$MIRROR_PORT" "https://127.0.0.1:$API_PORT" "$certs/mirror1.pem" "$certs/mirror1-key.pem"

sync_through_mirror() { # sync_through_mirror NAME: one agent installs the image into $work/NAME
    "$AGENT" sync --source "https://127.0.0.1:$MIRROR_PORT" --image "mirrored@$version" --to "$work/$1" \
        --ca "$TLS/ca.pem" --cert "$certs/agent1.pem" --key "$certs/agent1-key.pem" > "$work/$1.log" 2>&1
}

say "two agents at once through the mirror, then a third"
before=$(metric 'provisioner_http_response_bytes_total{listener="api",route="/v1/objects/{hash}"}')
sync_through_mirror node1 &
p1=$!
sync_through_mirror node2 &
p2=$!
check "agent 1 installed the image through the mirror" wait $p1
check "agent 2 installed the image through the mirror" wait $p2
check "agent 3, after them, too" sync_through_mirror node3
check "the bootstrap certificate of the initramfs gets nothing from the mirror (403)" test "$(curl -ks -o /dev/null \
    -w '%{http_code}' --cert "$TLS/client.pem" --key "$TLS/client-key.pem" \
    "https://127.0.0.1:$MIRROR_PORT/v1/images/mirrored/versions/$version")" = 403
served=$(metric 'provisioner_http_response_bytes_total{listener="api",route="/v1/objects/{hash}"}')
served=$(python3 -c "print(int(float('$served') - float('$before')))")
requests=$(metric 'provisioner_http_requests_total{listener="api",route="/v1/objects/{hash}",method="GET",code="200"}')
packs=$(metric 'provisioner_http_requests_total{listener="api",route="/v1/objects/pack",method="POST",code="200"}')
hits=$(grep -c ' HIT ' "$work/nginx/logs/access.log" || true)
echo "  the server sent $served bytes of objects in $requests object requests ($objects objects, $stored bytes stored);"
echo "  the mirror logged $(wc -l < "$work/nginx/logs/access.log") requests"
for n in node1 node2 node3; do
    check "$n holds exactly the image" diff -r --no-dereference "$tree" "$work/$n" -x .provisioner-state
done
check "the server's link carried each object once (three agents, one copy: $served of $stored bytes)" \
    test "$served" -le "$stored"
check "one request per object reached the server" test "${requests%.*}" -le "$objects"
check "no pack went past the mirror" test "${packs%.*}" -eq 0
tail -n 3 "$work/nginx/logs/error.log" 2> /dev/null | grep -v '^$' || true

if ((failures > 0)); then
    echo "mirror test: $failures check(s) failed; logs in $work"
    exit 1
fi
echo "mirror test: all checks passed"
