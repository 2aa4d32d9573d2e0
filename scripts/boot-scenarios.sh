#!/usr/bin/env bash
# The boot flow end to end, in QEMU (part of `make test`; docs/boot.md describes the flow).
#
#   (a) stateful install on blank disks reaches the image's multi-user.target
#       (k1) ... booted by the image's own kernel, and a module not in the initramfs loads
#       (m) ... while n4 boots the same image stateless at the same time, its objects through a
#       caching mirror (real nginx with server/nginx-cache-mirror.conf, named by n4's own
#       provisioner.mirrors=)
#   (b) second boot: no partitioning, no object downloaded, nothing rewritten
#   (i) in boot (c) (below), after its pivot, n1 captures itself into image `captured` (provisioner-agent capture, with the
#       admin's certificate from an extra disk): only what the server lacks is sent; a second capture
#       after a one-file change sends one object
#   every node enrolls: its first boot makes a key and gets its own certificate; later boots renew it
#   (a, b: the key on n1's disk; e, e2: in n3's TPM); SSH host keys and secrets come from the server
#   (c) image edited on the server (image exec installs one package) -> only the changed objects are fetched
#       (r) n1 revoked first: that boot waits for `nodes approve`, then enrolls a new key
#   (h) the edit rolled back on the server (image rollback) -> the node returns, fetching only the difference
#   (k2) another kernel installed in the image (image exec) -> the next boot runs it, only its objects
#       move, and the ESP holds it
#   (d) an unknown machine waits, is assigned with provisionerctl, and proceeds
#   (g) that machine is killed in the middle of its image sync -> the next boot converges and boots
#   (e) the image captured from n1 boots stateless into RAM on n3 (k4: with the image's kernel)
#       (e2) ... and again: its key from its TPM (swtpm), the same SSH host keys; its secret in place
#   (p) a node of a range, defined by a profile with an overlay (a template and a plugin script),
#       boots an image that uses NetworkManager with the address the profile gave; its second
#       boot rewrites nothing
#   (f) server stopped -> the node boots from its disk through UEFI and the installed system comes up
#       (k3: with the image's kernel from the ESP)
#
# Nodes boot what the server's iPXE script for their MAC names (ipxe_boot fetches it as iPXE does);
# an unknown machine boots the server's default kernel, the build machine's. Each scenario boots
# its VM once, in one of two lanes that run side by side (one VM each, on the two cores): lane A
# is n1's story (a b c i h k2), lane B the nodes that need nothing of n1's disks (m d g p), then n3's
# (e e2) once (i) made the image it boots;
# (f) comes after both. Boot-to-pivot times (seconds since power-on when the agent hands over to the image's
# systemd) are printed as a table at the end.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
: "${KERNEL:?}" "${INITRD:?}" "${BASE_INITRD:?}" "${BIN:?}" "${TLS:?}" "${IMAGES:?}"
work=$REPO/build/boot-tests
STATE=$work/state
rm -rf "$work"
mkdir -p "$work"
# shellcheck source=lib/cluster.sh
source "$REPO/scripts/lib/cluster.sh"
# shellcheck source=lib/mirror.sh
source "$REPO/scripts/lib/mirror.sh"

VM_PID=
LANE_B=
cleanup() {
    set +e
    # A VM booted in the background, and lane B with whatever it runs (its own VMs): the shell first,
    # so it starts nothing more; provisioner-vm stops its QEMU when it is stopped.
    local pid kids kid
    for pid in $VM_PID $LANE_B; do
        kids=$(pgrep -P "$pid")
        kill "$pid"
        for kid in $kids; do pkill -TERM -P "$kid"; kill "$kid"; done
        wait "$pid"
    done 2> /dev/null
    if [[ -f $work/n3-tpm.pid ]]; then kill "$(cat "$work/n3-tpm.pid")"; fi 2> /dev/null
    mirror_stop
    server_stop
}
trap cleanup EXIT

times=()
# A kernel release as a has() pattern: 6.12.117+deb12-cloud-amd64 holds + and . (releases have no other metacharacters)
re() { printf '%s' "$1" | sed 's/[.+]/\\&/g'; }
pivot_seconds() { sed -nE 's/.*switching root into .* at ([0-9.]+) s after power-on.*/\1/p' "$1" | tail -n 1; }
record() { times+=("$1|$(pivot_seconds "$2")|$3"); }

layout=$REPO/docs/examples/layout-simple-mirror.yaml
common_args=(--kernel-arg console=ttyS0,115200 --kernel-arg provisioner-ready.poweroff
    --kernel-arg provisioner.server-wait=20 --kernel-arg provisioner.retry-delay=3)
SHOW='provisioner: |PROVISIONER-READY|PROVISIONER-CAPTURE|Entering emergency|Kernel panic'
FAIL='giving up after|Entering emergency mode|Kernel panic|provisioner: ERROR'

# boot NODE-LABEL N MAC [provisioner-vm boot options...]: one boot; console in $work/LABEL-N.log.
boot() {
    local label=$1 n=$2 mac=$3
    shift 3
    echo "-- boot: $label #$n"
    "$BIN/provisioner-vm" boot --mac "$mac" --console "$work/$label-$n.log" --work-dir "$work" \
        --show "$SHOW" --fail-when "$FAIL" --timeout 900 "$@"
}

say "setup: server, image, nodes"
cluster_prepare "$KERNEL" "$INITRD" "$BASE_INITRD"
cat > "$STATE/server.yaml" << EOF
stateDir: $STATE
pollAfterSeconds: 3
unknownMachines: discover
EOF
SERVER_CONFIG=$STATE/server.yaml server_start
ctl image import debian --from "$IMAGES/debian.tar"
ctl nodes add n1 --mac 52:54:00:00:00:01 --image debian --layout "$layout" \
    --plugin hostname --plugin network "${common_args[@]}"
ctl nodes add n3 --mac 52:54:00:00:00:03 --image debian --mode stateless --plugin hostname "${common_args[@]}"
# (m): a caching mirror on loopback (VMs reach it as 10.0.2.2), with its own certificate to the
# server; n4 names it on its kernel command line, so its objects come through it.
ctl ca issue mirror mirror1 --dir "$TLS" --out "$work/certs" > /dev/null
MIRROR_PORT=$(free_port)
mirror_start "$work/mirror" "127.0.0.1:$MIRROR_PORT" "https://127.0.0.1:$API_PORT" "$work/certs/mirror1.pem" "$work/certs/mirror1-key.pem"
ctl nodes add n4 --mac 52:54:00:00:00:04 --image debian --mode stateless --plugin hostname "${common_args[@]}" \
    --kernel-arg "provisioner.mirrors=https://10.0.2.2:$MIRROR_PORT"
n1_disks=(--disk "nvme,size=4000000000,serial=N1-A,file=$work/n1-a.img" --disk "nvme,size=4000000000,serial=N1-B,file=$work/n1-b.img")
# The image's kernel: another release than the build machine's, so the checks can tell them apart.
image_kernel=$(tar -tf "$IMAGES/debian.tar" | sed -n 's|^\./boot/vmlinuz-||p' | head -n 1)
echo "image kernel: $image_kernel; build machine's (the server's default): $(basename "$KERNEL" | sed 's/^vmlinuz-//')"
check "the image carries a kernel the build machine does not run" \
    test -n "$image_kernel" -a "$image_kernel" != "$(basename "$KERNEL" | sed 's/^vmlinuz-//')"
# ipxe_n1: what iPXE boots for n1 now (asked again before every boot: the image may have changed).
ipxe_n1() {
    ipxe_boot 52:54:00:00:00:01 "$work/boot-files"
    n1_boot=(--kernel "$BOOT_KERNEL" --initrd "$BOOT_INITRD" --append "$BOOT_APPEND" --uefi-vars "$work/n1-vars.fd")
}

# Two lanes of one VM each (two single-vCPU VMs on the two cores). Lane A is n1's story (a, b, c
# with i, h, k2). Lane B boots the nodes whose stories need nothing of n1's disks: n4 through the mirror
# (m), the unknown machine n2 (d, g), the profile's r01 (p), then n3 (e, e2), which boots the image
# n1 captured in (i) (lane A leaves a mark when it exists). (f) stops the server, so it comes after
# both. Lane B's output follows lane A's.
debian_version=$(ctl image show debian --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["image"]["branches"][0]["head"])')
lane_b() {
    # Its own count and times (lane A's are the parent shell's), handed back through files.
    failures=0
    times=()
    LANE_VM=
    say "(m) stateless through a caching mirror: n4 names it on its own kernel command line"
    ipxe_boot 52:54:00:00:00:04 "$work/boot-files-b"
    check "(m) n4 booted" boot n4 1 52:54:00:00:00:04 --kernel "$BOOT_KERNEL" --initrd "$BOOT_INITRD" \
        --append "$BOOT_APPEND" --memory 2048 --until 'PROVISIONER-READY' --grace 60 --timeout 1500
    log=$work/n4-1.log
    check "(m) n4 reached the image's multi-user.target" has "$log" 'PROVISIONER-READY: n4 reached multi-user.target'
    check "(m) n4 installed the version n1 installs beside it (a)" \
        has "$log" "n4 ready: .*switching root into debian@${debian_version:0:12}"
    n4_fetched=$(sed -nE 's/.*chunks fetched ([0-9]+),.*/\1/p' "$log" | tail -n 1)
    n4_through=$(grep -Ec '"GET /v1/objects/[0-9a-f]{64} HTTP/1.1" 200 ' "$work/mirror/logs/access.log" || true)
    check "(m) every object n4 fetched came through the mirror (${n4_fetched:-?} fetched, $n4_through served by nginx)" \
        test "${n4_fetched:-0}" -gt 0 -a "$n4_through" -ge "${n4_fetched:-1}"
    record "(m) stateless through the mirror" "$log" "full sync to tmpfs through nginx"

    say "(d) an unknown machine waits until it is assigned"
    mac2=52:54:00:00:00:02
    n2_disks=(--disk "nvme,size=4000000000,serial=N2-A,file=$work/n2-a.img" --disk "nvme,size=4000000000,serial=N2-B,file=$work/n2-b.img")
    n2_cmdline="$(ipxe_cmdline $mac2) console=ttyS0,115200 provisioner-ready.poweroff provisioner.server-wait=20"
    # (g) is the same boot: once assigned, the machine is killed (power cut) in the middle of its image sync.
    boot n2 1 $mac2 --kernel "$KERNEL" --initrd "$INITRD" --append "$n2_cmdline" "${n2_disks[@]}" \
        --until 'provisioner: image: ([2-9][0-9])%' --hard &
    LANE_VM=$!
    for _ in $(seq 1 300); do
        grep -q 'is not assigned to a node' "$work/n2-1.log" 2> /dev/null && break
        sleep 1
    done
    check "the unknown machine says it waits" has "$work/n2-1.log" 'is not assigned to a node; waiting'
    check "the server lists it as pending" is_pending $mac2
    ctl nodes add n2 --image debian --layout "$layout" --plugin hostname "${common_args[@]}"
    ctl nodes assign $mac2 n2
    wait "$LANE_VM" || true
    LANE_VM=
    log=$work/n2-1.log
    check "once assigned, it proceeds" has "$log" 'this machine is node n2'

    say "(g) killed in the middle of the image sync, then booted again"
    check "the first boot was cut in the middle of the sync" bash -c "! grep -q 'PROVISIONER-READY' '$log' && grep -Eq 'image: [2-9][0-9]%' '$log'"
    ipxe_boot $mac2 "$work/boot-files-b"
    boot n2 2 $mac2 --kernel "$BOOT_KERNEL" --initrd "$BOOT_INITRD" --append "$BOOT_APPEND console=ttyS0,115200 provisioner-ready.poweroff provisioner.server-wait=20" \
        "${n2_disks[@]}" --until 'PROVISIONER-READY' --grace 60
    log=$work/n2-2.log
    check "the next sync knew it had been interrupted and rehashed" has "$log" 'previous sync was interrupted'
    check "the node booted the image" has "$log" 'PROVISIONER-READY: n2 reached multi-user.target'
    record "(g) boot after a power cut mid-sync" "$log" "recovery"

    say "(p) a range, a profile, an overlay and NetworkManager"
    # The NetworkManager image: the same Debian with network-manager, made on the server.
    ctl image import debian-nm --from "$IMAGES/debian.tar" > /dev/null
    ctl image exec debian-nm -- sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        network-manager > /dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*_*' | tail -n 1
    # The site overlay: a template and a plugin script that runs when its inputs change.
    site=$work/site
    mkdir -p "$site/etc" "$site/usr/local/sbin"
    printf '%s\n' '{{name}} at {{vars.ip}} ({{#profiles}}{{.}}{{/profiles}})' > "$site/etc/motd.mustache"
    printf '%s\n' '#!/bin/sh' 'echo "$PROVISIONER_NODE/$PROVISIONER_VAR_ip" > /etc/site-check' \
        'echo "site-check: wrote /etc/site-check for $PROVISIONER_NODE"' > "$site/usr/local/sbin/site-check"
    chmod 755 "$site/usr/local/sbin/site-check"
    ctl overlays add site "$site" --plugin /usr/local/sbin/site-check:changed:60
    ctl profiles add rack --image debian-nm --layout "$layout" --overlay hosts --overlay site \
        --plugin hostname --plugin 'network:mac={{mac}},address={{vars.ip}}/24,gateway=10.0.2.2,dns=10.0.2.3' \
        "${common_args[@]}"
    ctl nodes add 'r[01-02]' --profile rack --ip '10.0.2.[21-22]'
    ctl nodes set r01 --mac 52:54:00:00:00:05
    ctl nodes show r01 --effective | head -n 30
    r1_disks=(--disk "nvme,size=4000000000,serial=R1-A,file=$work/r1-a.img" --disk "nvme,size=4000000000,serial=R1-B,file=$work/r1-b.img")
    for n in 1 2; do
        ipxe_boot 52:54:00:00:00:05 "$work/boot-files-b"
        boot r01 $n 52:54:00:00:00:05 --kernel "$BOOT_KERNEL" --initrd "$BOOT_INITRD" --append "$BOOT_APPEND" \
            --uefi-vars "$work/r1-vars.fd" "${r1_disks[@]}" --until 'PROVISIONER-READY' --grace 60
    done
    log=$work/r01-1.log
    check "(p) r01 reached multi-user.target" has "$log" 'PROVISIONER-READY: r01 reached multi-user.target'
    check "(p) NetworkManager runs it, with the address the profile gave" \
        has "$log" 'PROVISIONER-READY: r01 .*addr: [0-9./ ]*10\.0\.2\.21/24.*nm: active'
    check "(p) the network plugin wrote a NetworkManager keyfile" has "$log" 'wrote .*/etc/NetworkManager/system-connections/'
    check "(p) the overlay's template was rendered for r01" has "$log" 'PROVISIONER-READY: r01 .*motd: r01 at 10\.0\.2\.21 \(rack\)'
    check "(p) the overlay's plugin ran in the node's root, its output in the session" has "$log" 'site-check: wrote /etc/site-check for r01'
    check "(p) what it wrote is there after the pivot" has "$log" 'PROVISIONER-READY: r01 .*site: r01/10\.0\.2\.21'
    check "(p) /etc/hosts came from the hosts overlay" has "$log" 'overlays .*hosts.*wrote .*/etc/hosts'
    record "(p) profile + overlay + NetworkManager" "$log" "install"
    log=$work/r01-2.log
    check "(p) the second boot rewrote nothing" has "$log" 'r01 ready: nothing was rewritten'
    check "(p) and did not run the plugin again (its inputs are unchanged)" bash -c "! grep -q 'site-check: wrote' '$log'"
    check "(p) NetworkManager still has the profile's address" \
        has "$log" 'PROVISIONER-READY: r01 .*addr: [0-9./ ]*10\.0\.2\.21/24.*nm: active'
    record "(p) second boot" "$log" "nothing changed"

    say "(e) stateless: the image captured from n1, in RAM on n3 (k4: with the image's kernel; its key in a TPM)"
    # (i) in lane A made it, during n1's boot (b).
    for _ in $(seq 1 1800); do [[ -f $work/captured.done ]] && break; sleep 1; done
    captured_version=$(ctl image show captured --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["image"]["branches"][0]["head"])')
    ctl nodes set n3 --image captured
    printf 'site token for n3\n' > "$work/n3-token"
    ctl secrets set n3 site.token --from "$work/n3-token" --path /etc/site/token --mode 0400
    # n3's TPM: swtpm (Debian's), its state in $work/n3-tpm across power cycles, stopped by its pid.
    # swtpm ends when QEMU closes it, so each boot starts it again.
    swtpm_start() {
        if [[ -f $work/n3-tpm.pid ]] && kill -0 "$(cat "$work/n3-tpm.pid")" 2> /dev/null; then return 0; fi
        mkdir -p "$work/n3-tpm"
        rm -f "$work/n3-tpm.sock"
        swtpm socket --tpm2 --tpmstate dir="$work/n3-tpm" --ctrl type=unixio,path="$work/n3-tpm.sock" \
            --flags startup-clear --daemon --pid file="$work/n3-tpm.pid" --log file="$work/n3-tpm.log"
        for _ in $(seq 1 50); do [[ -S $work/n3-tpm.sock ]] && break; sleep 0.1; done
    }
    # boot_n3 N: n3's Nth stateless boot, with its TPM, as the server's iPXE script says.
    boot_n3() {
        swtpm_start
        ipxe_boot 52:54:00:00:00:03 "$work/boot-files-b"
        boot n3 "$1" 52:54:00:00:00:03 --kernel "$BOOT_KERNEL" --initrd "$BOOT_INITRD" --append "$BOOT_APPEND" \
            --tpm-socket "$work/n3-tpm.sock" --memory 2048 --until 'PROVISIONER-READY' --grace 60
    }
    boot_n3 1
    log=$work/n3-1.log
    check "(e) n3 enrolled with a new key and keeps it in its TPM" \
        has "$log" 'node n3 enrolled \(first\) with the key made in TPM NV index 0x1500170'
    check "(e) its secret is in place with the admin's mode, and its SSH host keys" \
        has "$log" 'PROVISIONER-READY: n3 .*hostkey: [0-9a-f]{16}; token: 400 18'
    n3_hostkey=$(sed -nE 's/.*PROVISIONER-READY: n3 .*hostkey: ([0-9a-f]{16});.*/\1/p' "$log" | tail -n 1)
    check "the root is a RAM disk" has "$log" 'stateless: the root is a RAM disk'
    check "the image's multi-user.target was reached on n3" has "$log" 'PROVISIONER-READY: n3 reached multi-user.target'
    check "(i) n3 runs the captured version, with the file n1 wrote before its second capture" \
        has "$log" "PROVISIONER-READY: n3 reached multi-user.target; image ${captured_version:0:12};.*capture-note: captured from n1"
    check "(k4) the stateless node runs the image's newest kernel, modules loading" \
        has "$log" "PROVISIONER-READY: n3 .*kernel: $(re "$image_kernel"); isofs: loaded"
    record "(e) stateless into RAM" "$log" "full sync to tmpfs, image captured from n1"
    # The second stateless boot: a fresh RAM root, the key from the TPM, the same host keys.
    boot_n3 2
    log=$work/n3-2.log
    check "(e2) the second stateless boot proved n3's identity with the key from its TPM" \
        has "$log" 'node n3 proved its identity with the key kept in TPM NV index 0x1500170'
    check "(e2) the same SSH host keys on a fresh RAM root" has "$log" "PROVISIONER-READY: n3 .*hostkey: ${n3_hostkey:-missing};"
    record "(e2) stateless again, key from the TPM" "$log" "full sync to tmpfs"
    if [[ -f $work/n3-tpm.pid ]]; then kill "$(cat "$work/n3-tpm.pid")" 2> /dev/null || true; fi

    echo "$failures" > "$work/lane-b.failures"
    printf '%s\n' "${times[@]}" > "$work/lane-b.times"
}
say "lane B, in the background: (m), (d), (g), (p), then (e) once (i) made its image"
lane_b > "$work/lane-b.log" 2>&1 &
LANE_B=$!

say "(a) stateful install on blank disks (k1: the image's kernel), beside (m)"
ipxe_n1
boot n1 1 52:54:00:00:00:01 "${n1_boot[@]}" "${n1_disks[@]}" --until 'PROVISIONER-READY' --grace 60
log=$work/n1-1.log
check "the image's multi-user.target was reached on n1" has "$log" 'PROVISIONER-READY: n1 reached multi-user.target'
check "the layout was created (partitions, arrays, LVM, filesystems)" has "$log" 'layout change\(s\) applied'
check "the image was installed" has "$log" 'applied [0-9]+ entries'
check "the fallback boot path was written" has "$log" 'local boot path written'
check "a UEFI boot entry was added" has "$log" 'UEFI boot entr(y|ies) [0-9A-F]+'
check "the session succeeded on the server" last_session_is n1 succeeded
check "n1 installed the version n4 boots beside it (m)" has "$log" "n1 ready: .*switching root into debian@${debian_version:0:12}"
check "(k1) the image's kernel runs the installed system" has "$log" "PROVISIONER-READY: n1 .*kernel: $(re "$image_kernel");"
check "(k1) a module that is not in the initramfs loads after the pivot" has "$log" 'PROVISIONER-READY: n1 .*isofs: loaded'
check "(k1) the ESP holds the image's kernel" has "$log" "local boot path written: .*boots kernel $(re "$image_kernel")"
check "n1 enrolled with a key it made and keeps on its own disk" \
    has "$log" 'node n1 enrolled \(first\) with the key made in /var/lib/provisioner/identity'
check "the key is root-only (0600) in the installed system" has "$log" 'PROVISIONER-READY: n1 .*identity: 600;'
check "the server made n1's SSH host keys and the agent wrote them" has "$log" 'secrets: wrote .*/etc/ssh/ssh_host_ed25519_key'
n1_hostkey=$(sed -nE 's/.*PROVISIONER-READY: n1 .*hostkey: ([0-9a-f]{16});.*/\1/p' "$log" | tail -n 1)
record "(a) stateful install, blank disks" "$log" "install, with n4 booting beside it"

say "(b) second boot: nothing changes"
ipxe_n1
boot n1 2 52:54:00:00:00:01 "${n1_boot[@]}" "${n1_disks[@]}" --until 'PROVISIONER-READY' --grace 60
log=$work/n1-2.log
check "no partitioning: the disks already match" has "$log" 'the disks already match the layout: nothing written'
check "no object downloaded: the image is up to date" has "$log" 'image: debian@[0-9a-f]+: up to date \(verify metadata'
check "nothing was rewritten" has "$log" 'n1 ready: nothing was rewritten'
check "multi-user.target reached again" has "$log" 'PROVISIONER-READY: n1'
check "n1 proved its identity with the key kept on its disk, without the admin" \
    has "$log" 'node n1 proved its identity with the key kept in /var/lib/provisioner/identity'
check "the same SSH host keys" has "$log" "PROVISIONER-READY: n1 .*hostkey: ${n1_hostkey:-missing};"
record "(b) second boot, nothing changed" "$log" "verify metadata"

say "(c) image edited on the server: one package installed with image exec (r: n1's identity revoked first)"
ctl image exec debian -- sh -c \
    'apt-get update -qq && apt-get install -y -qq hello > /dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*_*'
# (r): the admin revokes n1; its next boot presents the revoked key and waits until the admin approves.
ctl nodes revoke n1
ipxe_n1
# (i) rides on this boot: the kernel command line asks the image's provisioner-capture.service to capture
# n1 into `captured` after the pivot; the admin's certificate comes on a small disk holding a tar (the
# test image reads it). (Not on (b): its loader entry, this boot's command line, would change.)
tar -C "$TLS" -cf "$work/capture-tls.img" ca.pem admin.pem admin-key.pem
truncate -s 1M "$work/capture-tls.img"
n1_capture=(--kernel "$BOOT_KERNEL" --initrd "$BOOT_INITRD" --append "$BOOT_APPEND provisioner-capture=captured"
    --uefi-vars "$work/n1-vars.fd")
boot n1 3 52:54:00:00:00:01 "${n1_capture[@]}" "${n1_disks[@]}" \
    --disk "virtio,size=1048576,serial=CAPTURETLS,file=$work/capture-tls.img" --until 'PROVISIONER-READY' --grace 60 &
VM_PID=$!
for _ in $(seq 1 600); do
    grep -q 'waiting for the admin' "$work/n1-3.log" 2> /dev/null && break
    kill -0 "$VM_PID" 2> /dev/null || break
    sleep 1
done
log=$work/n1-3.log
check "(r) the revoked key is refused: n1 waits for the admin" has "$log" 'waiting for the admin: .*revoked'
ctl audit --subject node/n1 > "$work/audit-n1.txt"
check "(r) the refusal is in the audit log" has "$work/audit-n1.txt" 'node.enroll.refused'
ctl nodes approve n1
wait "$VM_PID" || true
VM_PID=
check "(r) approved: n1 enrolled a new key, kept on its disk, and went on" \
    has "$log" 'node n1 enrolled \(approved\) with the key made in /var/lib/provisioner/identity'
check "(r) the boot succeeded on the server" last_session_is n1 succeeded
received=$(sed -nE 's/.*received ([0-9]+) bytes, wrote.*/\1/p' "$log" | tail -n 1)
echo "  bytes received for the update: ${received:-?} (the image tar is $(stat -c %s "$IMAGES/debian.tar") bytes)"
check "only the changed objects were fetched (under 2% of the image)" test "${received:-999999999}" -lt $(($(stat -c %s "$IMAGES/debian.tar") / 50))
check "the layout was left alone" has "$log" 'the disks already match the layout: nothing written'
check "the new package runs on the node" has "$log" 'PROVISIONER-READY: n1 .*hello: Hello, world!'
record "(c) image update (one package)" "$log" "delta"

say "(i) n1 captured itself into image captured during boot (c)"
log=$work/n1-3.log
grep 'PROVISIONER-CAPTURE' "$log" | sed 's/^/  /' || true
first_sent=$(sed -nE 's/.*PROVISIONER-CAPTURE: first: captured\/main@[0-9a-f]+: sent [0-9]+ of [0-9]+ objects \(([0-9]+) bytes; ([0-9]+) bytes of requests.*/\2/p' "$log" | tail -n 1)
second_objects=$(sed -nE 's/.*PROVISIONER-CAPTURE: second: captured\/main@[0-9a-f]+: sent ([0-9]+) of.*/\1/p' "$log" | tail -n 1)
second_sent=$(sed -nE 's/.*PROVISIONER-CAPTURE: second: captured\/main@[0-9a-f]+: sent [0-9]+ of [0-9]+ objects \(([0-9]+) bytes; ([0-9]+) bytes of requests.*/\2/p' "$log" | tail -n 1)
echo "  bytes sent by the first capture: ${first_sent:-?} (the image tar is $(stat -c %s "$IMAGES/debian.tar") bytes); by the second: ${second_sent:-?} (${second_objects:-?} object)"
check "(i) the agent left a copy of itself for the running system" has "$log" 'a copy of the agent \([0-9]+ bytes\) is at /run/provisioner/provisioner-agent'
check "(i) the first capture published a version of captured" has "$log" 'PROVISIONER-CAPTURE: first: captured/main@[0-9a-f]{64}: sent'
check "(i) it left /var's content in (--include-mount /var) and the node-owned paths out" \
    has "$log" 'PROVISIONER-CAPTURE: first: capture: var: xfs .* captured as asked \(C3\)'
check "(i) it sent only what the server lacked (under 2% of the image)" test "${first_sent:-999999999}" -lt $(($(stat -c %s "$IMAGES/debian.tar") / 50))
check "(i) a second capture after a one-file change sent one object" test "${second_objects:-x}" = 1
check "(i) ... and its version differs by that file alone" has "$log" 'PROVISIONER-CAPTURE: second: .* \+1 ~0 -0 entries'
check "(i) ... its manifest went as a delta from the first capture" \
    has "$log" 'PROVISIONER-CAPTURE: second: capture: the manifest goes as a delta from the last capture, captured@[0-9a-f]+ \(B1\)'
check "(i) ... so the second capture sent under 64 KiB in all" test "${second_sent:-999999999}" -lt 65536
check "(i) the captured image's newest kernel is the one n1 runs" \
    test "$(ctl image show captured --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["kernels"]["kernels"][0]["release"])')" = "$image_kernel"
# Lane B boots n3 with it from here on.
touch "$work/captured.done"

say "(h) the edit rolled back on the server: the node returns, moving only the difference"
ctl image rollback debian
ipxe_n1
boot n1 4 52:54:00:00:00:01 "${n1_boot[@]}" "${n1_disks[@]}" --until 'PROVISIONER-READY' --grace 60
log=$work/n1-4.log
received=$(sed -nE 's/.*received ([0-9]+) bytes, wrote.*/\1/p' "$log" | tail -n 1)
echo "  bytes received for the rollback: ${received:-?}"
check "only the difference was fetched (under 2% of the image)" test "${received:-999999999}" -lt $(($(stat -c %s "$IMAGES/debian.tar") / 50))
check "the package is gone again" has "$log" 'PROVISIONER-READY: n1 .*hello: absent'
check "the session succeeded on the server" last_session_is n1 succeeded
record "(h) rollback of the edit" "$log" "delta back"

say "(k2) another kernel installed in the image on the server: the next boot runs it"
ctl image exec debian -- sh -c 'apt-get update -qq && apt-get install -y -qq linux-image-6.12-cloud-amd64 > /dev/null \
    && rm -f /boot/initrd.img-* && apt-get clean && rm -rf /var/lib/apt/lists/*_*'
ctl image show debian | sed -n '/^kernels of/,$p'
new_kernel=$(ctl image show debian --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["kernels"]["kernels"][0]["release"])')
new_bytes=$(ctl image show debian --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["image"]["versions"][-1]["summary"]["contentBytes"])')
check "(k2) the newest kernel of the new version is the one installed" test "$new_kernel" != "$image_kernel"
ipxe_n1
boot n1 5 52:54:00:00:00:01 "${n1_boot[@]}" "${n1_disks[@]}" --until 'PROVISIONER-READY' --grace 60
log=$work/n1-5.log
received=$(sed -nE 's/.*received ([0-9]+) bytes, wrote.*/\1/p' "$log" | tail -n 1)
echo "  bytes received for the new kernel: ${received:-?} (new content in the version: $new_bytes bytes)"
check "(k2) the node runs the new kernel" has "$log" "PROVISIONER-READY: n1 .*kernel: $(re "$new_kernel");"
check "(k2) its modules load" has "$log" 'PROVISIONER-READY: n1 .*isofs: loaded'
check "(k2) only the version's new objects moved (at most its new content and 10%)" test "${received:-999999999}" -le $((new_bytes + new_bytes / 10))
check "(k2) the ESP now holds the new kernel and its modules" \
    has "$log" "local boot path written: provisioner/vmlinuz, provisioner/modules.img.*boots kernel $(re "$new_kernel")"
check "(k2) the layout was left alone" has "$log" 'the disks already match the layout: nothing written'
record "(k2) image update: another kernel" "$log" "new kernel"

say "lane B: (m), (d), (g), (p), (e), which ran beside lane A"
lane_b_status=0
wait "$LANE_B" || lane_b_status=$?
LANE_B=
cat "$work/lane-b.log"
if [[ $lane_b_status -ne 0 || ! -f $work/lane-b.failures ]]; then
    echo "  FAIL: lane B stopped before its end (exit $lane_b_status; its output is above)"
    failures=$((failures + 1))
else
    failures=$((failures + $(cat "$work/lane-b.failures")))
    while IFS= read -r t; do [[ -n $t ]] && times+=("$t"); done < "$work/lane-b.times"
fi

say "(f) server stopped: boot from the disk through UEFI"
server_stop
boot n1 6 52:54:00:00:00:01 --uefi-vars "$work/n1-vars.fd" "${n1_disks[@]}" --until 'PROVISIONER-READY' --grace 60
log=$work/n1-6.log
check "the agent said it boots the installed system without the server" has "$log" 'SERVER UNREACHABLE: booting node n1 from its disks'
check "the firmware started the agent's UEFI boot entry (not the removable-media path)" \
    has "$log" 'BdsDxe: starting Boot[0-9A-F]{4} "provisioner \(local disk\)"'
check "it came up from the local boot path" has "$log" 'provisioner.local-boot|found the saved config of node n1'
check "the installed system reached multi-user.target" has "$log" 'PROVISIONER-READY: n1 reached multi-user.target'
check "(k3) the ESP's kernel, the image's newest, runs it" has "$log" "PROVISIONER-READY: n1 .*kernel: $(re "$new_kernel"); isofs: loaded"
record "(f) server down, UEFI boot from disk" "$log" "fallback after provisioner.server-wait=20"

say "boot-to-pivot times (seconds since power-on, QEMU TCG, 2 cores)"
printf '| scenario | to pivot (s) | note |\n|---|---|---|\n' | tee "$work/boot-times.md"
for t in "${times[@]}"; do IFS='|' read -r a b c <<< "$t"; printf '| %s | %s | %s |\n' "$a" "$b" "$c"; done | tee -a "$work/boot-times.md"

if ((failures > 0)); then
    echo "boot scenarios: $failures check(s) failed; consoles in $work"
    exit 1
fi
echo "boot scenarios: all checks passed"
