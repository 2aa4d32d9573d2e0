#!/usr/bin/env bash
# One agent of a fleet (scripts/lib/fleet.sh starts it): `provisioner-agent boot` as a stateless
# node's initramfs runs it, inside the private mount namespace and the network namespace it was
# started in, then a check of the root it assembled.
#
#   fleet-agent.sh AGENT CMDLINE TLS ROOT LOG RESULT TIMEOUT [EXPECTED]
#
# What the boot touches outside provisioner.root= on a host, and how it is kept off the host:
#   - it mounts a tmpfs on ROOT (stateless): in this mount namespace only, gone when it ends;
#   - it keeps the node's certificate and key in /run/provisioner/identity (fixed path; in the
#     initrd /run is its own): a tmpfs on /run in this mount namespace, so N agents do not
#     overwrite each other's identity and nothing lands in the host's /run;
#   - with a TPM (/dev/tpmrm0) a stateless node keeps its key in it: fleet_net_up refuses hosts with one;
#   - an unreachable server makes it look for an installed system on the disks (and bring it up)
#     after provisioner.server-wait: the command line carries provisioner.fallback=no;
#   - it reads the disks (blkid, for the inventory it registers with) and DMI: read only.
# LOG gets the agent's output, each line stamped with the time (seconds since the epoch);
# RESULT one line: rc= start= end= image_start= synced= sync_ms= received= https_objects= cpu= tree=.
set -uo pipefail

agent=$1 cmdline=$2 tls=$3 root=$4 log=$5 result=$6 limit=$7 expected=${8:-}

fail() {
    echo "fleet-agent: $*" >&2
    echo "rc=99 start=0 end=0 synced=0 sync_ms=0 received=0 tree=not-run" > "$result"
    exit 99
}
# Never in the host's mount or network namespace, never on / or /sysroot.
[[ $(readlink /proc/self/ns/mnt) != "$(readlink /proc/1/ns/mnt)" ]] || fail "not in a private mount namespace"
[[ $(readlink /proc/self/ns/net) != "$(readlink /proc/1/ns/net)" ]] || fail "not in a network namespace of its own"
[[ $root == /*/* && $root != /sysroot* ]] || fail "refusing provisioner.root $root"
grep -q "provisioner.root=$root\( \|$\)" "$cmdline" || fail "$cmdline does not name provisioner.root=$root"
grep -q 'provisioner.fallback=no' "$cmdline" || fail "$cmdline lacks provisioner.fallback=no"
mount --make-rprivate / || fail "cannot make the mounts private"
mount -t tmpfs -o mode=0755,size=16m pf-run /run || fail "cannot mount a private /run"
mkdir -p "$root"

fifo=$(mktemp -u "${log}.fifo.XXXXXX")
mkfifo "$fifo"
while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done < "$fifo" > "$log" &
stamper=$!
start=$EPOCHREALTIME
timeout -k 10 "$limit" "$agent" boot --cmdline "$cmdline" \
    --ca "$tls/ca.pem" --cert "$tls/client.pem" --key "$tls/client-key.pem" > "$fifo" 2>&1 < /dev/null &
child=$!
trap 'kill -TERM "$child" 2> /dev/null' TERM INT HUP
rc=0
wait "$child" || rc=$?
while kill -0 "$child" 2> /dev/null; do rc=0; wait "$child" || rc=$?; done
end=$EPOCHREALTIME
wait "$stamper"
# The CPU of the children waited for (the agent, under timeout, and the stamping loop): `times`' second
# line, from this shell itself (in a pipeline or $(...) it would be a subshell's, with no children).
times > "$log.times"
cpu=$(awk 'END { s = 0; for (i = 1; i <= 2; i++) { split($i, p, /m|s/); s += p[1] * 60 + p[2] } printf "%.2f", s }' "$log.times")
rm -f "$log.times"
rm -f "$fifo"

# The sync's own summary: "image: NAME@ID: applied N entries in T ms", then "... received B bytes".
# The image step starts at its first line ("image: syncing ..." or "image: multicast: receiving ...").
image_start=$(grep -m 1 -E ' provisioner: image: ' "$log" | cut -d' ' -f1)
line=$(grep -m 1 -E 'provisioner: image: [^ ]+: applied [0-9]+ entries in [0-9]+ ms' "$log")
synced=${line%% *}
sync_ms=$(sed -nE 's/.*: applied [0-9]+ entries in ([0-9]+) ms.*/\1/p' <<< "$line")
received=$(sed -nE 's/.*received ([0-9]+) bytes.*/\1/p' "$log" | head -n 1)
# After a multicast receive: how many objects still came over HTTPS.
https_objects=$(sed -nE 's/.*multicast: [0-9]+ objects came from the multicast, ([0-9]+) over HTTPS.*/\1/p' "$log" | head -n 1)
tree=ok
if [[ -n $expected ]]; then
    if ! (cd "$root" && find data -type f -printf '%p %s\n' | LC_ALL=C sort) | cmp -s - "$expected"; then
        tree=incomplete
        echo "$EPOCHREALTIME fleet-agent: the tree under $root differs from the image ($(find "$root/data" -type f | wc -l) files)" >> "$log"
    fi
fi
echo "rc=$rc start=$start end=$end image_start=${image_start:-0} synced=${synced:-0} sync_ms=${sync_ms:-0}" \
    "received=${received:-0} https_objects=${https_objects:--} cpu=$cpu tree=$tree" > "$result"
[[ $rc == 0 && $tree == ok && -n $synced ]]
