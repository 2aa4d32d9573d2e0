# Shared by the demo and the scenario scripts (boot, PXE, mirror, multicast): a one-machine cluster.
# The server listens on loopback only; VMs reach it as 10.0.2.2 through QEMU's
# user networking. Every process started here is stopped by its own pid.
#
# Needs: REPO, BIN (directory with provisioner-server, provisionerctl,
# provisioner-vm), STATE (server state directory), TLS (directory from
# `provisionerctl ca init`, the same CA the initramfs embeds).
# Optional: SERVER_NETNS, a network namespace the server and provisionerctl run in, and
# SERVER_HOST, the address it listens on there (scripts/pxe-scenario.sh); loopback otherwise.

: "${REPO:?}" "${BIN:?}" "${STATE:?}" "${TLS:?}"

SERVER_PID=
SERVER_HOST=${SERVER_HOST:-127.0.0.1}
SERVER_NETNS=${SERVER_NETNS:-}
API_PORT=${API_PORT:-}
BOOT_PORT=${BOOT_PORT:-}

say() { printf '\n\033[1m== %s\033[0m (at %d s)\n' "$*" "$SECONDS"; }

# check DESCRIPTION COMMAND...: prints ok or FAIL; failures counts the FAILs (the script ends by it).
failures=0
check() {
    local what=$1
    shift
    if "$@"; then echo "  ok: $what"; else echo "  FAIL: $what"; failures=$((failures + 1)); fi
}
# has FILE PATTERN: an extended regular expression matches a line of FILE.
has() { grep -Eq -- "$2" "$1"; }
# metric SERIES: its value in the server's /metrics (0 when absent).
metric() {
    in_server_netns curl -fsS --cacert "$TLS/ca.pem" --cert "$TLS/admin.pem" --key "$TLS/admin-key.pem" \
        "https://$SERVER_HOST:$API_PORT/metrics" | awk -v s="$1" 'index($0, s " ") == 1 { print $2; found = 1 } END { if (!found) print 0 }'
}
# last_session_is NODE STATE: the newest session of NODE on the server is in STATE.
last_session_is() {
    ctl sessions list --json | python3 -c '
import json, sys
node, state = sys.argv[1], sys.argv[2]
mine = [s for s in json.load(sys.stdin) if s.get("node") == node]
mine.sort(key=lambda s: s["openedAt"])
sys.exit(0 if mine and mine[-1]["state"] == state else 1)' "$1" "$2"
}
# is_pending MAC: the server lists the machine as waiting to be assigned.
is_pending() { ctl nodes pending | grep -q "$1"; }

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Runs COMMAND... in the server's network namespace (SERVER_NETNS), or here.
in_server_netns() {
    if [[ -n $SERVER_NETNS ]]; then ip netns exec "$SERVER_NETNS" "$@"; else "$@"; fi
}

ctl() {
    PROVISIONER_SERVER="https://$SERVER_HOST:$API_PORT" PROVISIONER_TLS_DIR="$TLS" in_server_netns "$BIN/provisionerctl" "$@"
}

# cluster_prepare KERNEL INITRD [BASE]: state directory with the CA, the server's default kernel and
# its initramfs, and the kernel-independent base initramfs image kernels boot with (docs/boot.md).
cluster_prepare() {
    local kernel=$1 initrd=$2 base=${3:-}
    mkdir -p "$STATE/tls" "$STATE/files/kernels" "$STATE/files/initramfs" "$STATE/images"
    # The CA key too: the server signs each node's own certificate when it enrolls (docs/certificates.md).
    cp "$TLS"/{ca.pem,ca-key.pem,server.pem,server-key.pem} "$STATE/tls/"
    cp "$kernel" "$STATE/files/kernels/default"
    cp "$initrd" "$STATE/files/initramfs/default"
    if [[ -n $base ]]; then cp "$base" "$STATE/files/initramfs/base"; fi
}

# server_start: provisioner-server on loopback (or SERVER_HOST in SERVER_NETNS), logging to $STATE/server.log
# (SERVER_CONFIG: a configuration file; the defaults otherwise).
server_start() {
    [[ -n $API_PORT ]] || API_PORT=$(free_port)
    [[ -n $BOOT_PORT ]] || BOOT_PORT=$(free_port)
    # Not through in_server_netns: a function in the background is a subshell, and $! must be the server
    # (ip netns exec execs it).
    local netns=()
    if [[ -n $SERVER_NETNS ]]; then netns=(ip netns exec "$SERVER_NETNS"); fi
    "${netns[@]}" "$BIN/provisioner-server" ${SERVER_CONFIG:+--config "$SERVER_CONFIG"} --state-dir "$STATE" \
        --listen "$SERVER_HOST:$API_PORT" --boot-listen "$SERVER_HOST:$BOOT_PORT" >> "$STATE/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if ctl nodes list > /dev/null 2>&1; then
            if [[ -n $SERVER_NETNS ]]; then
                echo "server: pid $SERVER_PID in network namespace $SERVER_NETNS, https://$SERVER_HOST:$API_PORT, iPXE http://$SERVER_HOST:$BOOT_PORT"
            else
                echo "server: pid $SERVER_PID, https://127.0.0.1:$API_PORT (agents: https://10.0.2.2:$API_PORT), iPXE http://127.0.0.1:$BOOT_PORT"
            fi
            return 0
        fi
        kill -0 "$SERVER_PID" 2> /dev/null || { tail -n 20 "$STATE/server.log" >&2; return 1; }
        sleep 0.2
    done
    echo "server did not come up; see $STATE/server.log" >&2
    return 1
}

server_stop() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2> /dev/null; then
        kill "$SERVER_PID"
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2> /dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2> /dev/null || true
        wait "$SERVER_PID" 2> /dev/null || true
    fi
    SERVER_PID=
}

# ipxe_boot MAC DIR: what iPXE would boot for MAC, fetched the way iPXE fetches it: the server's
# script for the MAC, then the kernel and every initrd it names, from the boot listener. QEMU takes
# one initrd, so the initrds are joined in order, each padded to 4 bytes as iPXE places them.
# Sets BOOT_KERNEL, BOOT_INITRD (files in DIR) and BOOT_APPEND (the command line without initrd=).
ipxe_boot() {
    local mac=$1 dir=$2 script url i=0
    mkdir -p "$dir"
    script=$(curl -fsS -H "Host: 10.0.2.2:$BOOT_PORT" "http://127.0.0.1:$BOOT_PORT/boot/ipxe?mac=$mac")
    local local_base="http://127.0.0.1:$BOOT_PORT"
    url=$(awk '$1 == "kernel" { print $2 }' <<< "$script")
    [[ -n $url ]] || { echo "ipxe_boot: the script for $mac boots nothing:" >&2; echo "$script" >&2; return 1; }
    BOOT_KERNEL=$dir/${mac//:/-}.kernel
    BOOT_INITRD=$dir/${mac//:/-}.initrd
    curl -fsS -o "$BOOT_KERNEL" "${url/http:\/\/10.0.2.2:$BOOT_PORT/$local_base}"
    : > "$BOOT_INITRD"
    while read -r url; do
        curl -fsS -o "$dir/initrd.$i" "${url/http:\/\/10.0.2.2:$BOOT_PORT/$local_base}"
        cat "$dir/initrd.$i" >> "$BOOT_INITRD"
        truncate -s %4 "$BOOT_INITRD"
        rm -f "$dir/initrd.$i"
        i=$((i + 1))
    done < <(awk '$1 == "initrd" { print $NF }' <<< "$script")
    BOOT_APPEND=$(ipxe_cmdline "$mac")
    echo "  iPXE for $mac: $(sed -n 's/^# provisioner: //p' <<< "$script" | head -n 1) ($i initrds)"
}

# The kernel command line iPXE would pass, from the server's own iPXE script for
# MAC, asked as the VM would ask (the server names itself by the address it was
# reached at). initrd= is left out: QEMU hands the initramfs over itself.
ipxe_cmdline() {
    local mac=$1 script
    script=$(curl -fsS -H "Host: 10.0.2.2:$BOOT_PORT" "http://127.0.0.1:$BOOT_PORT/boot/ipxe?mac=$mac")
    awk '$1 == "kernel" { for (i = 3; i <= NF; i++) if ($i !~ /^initrd=/) printf "%s ", $i; print "" }' <<< "$script" \
        | sed 's/ *$//'
}
