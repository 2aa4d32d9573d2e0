#!/bin/bash
# The image sync benchmark (make bench-sync): our sync against rsync -aHAX over SSH on the same
# tree in the same run, plus the floors (cp -a, a metadata walk). Writes docs/bench-sync.md.
# Not a test: numbers, not pass/fail. Needs root, ~6 GB free in $BENCH_DIR.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
AGENT=${AGENT:-$REPO/build/bin/provisioner-agent}
CTL=${CTL:-$REPO/.build/release/provisionerctl}
W=${BENCH_DIR:-/var/tmp/provisioner-bench}
OUT=${BENCH_OUT:-$REPO/docs/bench-sync.md}
# Rounds of the no-change case (b): each contender's median run is reported.
ROUNDS=${BENCH_ROUNDS:-5}
GEN_FILES=${GEN_FILES:-100000}
GEN_BYTES=${GEN_BYTES:-1200000000}
PORT=${BENCH_SSH_PORT:-2299}
HTTPS_PORT=${BENCH_HTTPS_PORT:-2443}
SERVER=${SERVER:-$REPO/.build/release/provisioner-server}
FS_SIZE=${BENCH_FS_SIZE:-6G}

log() { echo "bench-sync: $*" >&2; }
mkdir -p "$W"

# --- the tree: a Debian root (mmdebstrap) plus generated files --------------------------------
if [ ! -f "$W/tree.done" ]; then
    rm -rf "$W/tree"
    # The mirror this machine's apt uses (deb822 sources first, then sources.list).
    mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
    [ -n "$mirror" ] || mirror=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
    log "mmdebstrap from $mirror"
    mmdebstrap --quiet --variant=minbase --include=systemd-sysv,udev,iproute2,openssh-server,python3,perl,locales \
        bookworm "$W/tree" "$mirror"
    log "generating $GEN_FILES files, $GEN_BYTES bytes"
    python3 "$REPO/scripts/bench-gen.py" "$W/tree/srv/data" "$GEN_FILES" "$GEN_BYTES"
    touch "$W/tree.done"
fi
ENTRIES=$(find "$W/tree" | wc -l)
TREE_BYTES=$(du -sb --apparent-size "$W/tree" | cut -f1)
log "tree: $ENTRIES entries, $TREE_BYTES bytes"

# --- targets: a fresh ext4 for every full install ---------------------------------------------
# Each target is its own ext4 (mkfs defaults, with a journal, as a node's root disk) on a loop
# device over a new sparse file, made fresh before each full install so that every contender
# starts from the same empty filesystem. (On a filesystem where a big tree was just deleted,
# creating files is slowed by inodes freed minutes ago, by a different amount each run: ext4
# without a journal, like this machine's root, skips recently freed inodes one by one.)
declare -A LOOPS=()
fresh_fs() {  # fresh_fs NAME: an empty ext4 mounted at $W/mnt-NAME
    local img="$W/$1.img" mnt="$W/mnt-$1"
    umount_fs "$1"
    # A new sparse file each time: every contender also pays the same block allocation below it.
    rm -f "$img"
    truncate -s "$FS_SIZE" "$img"
    mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$img"
    mkdir -p "$mnt"
    LOOPS[$1]=$(losetup --direct-io=on --show -f "$img")
    mount "${LOOPS[$1]}" "$mnt"
}
umount_fs() {
    if [ -n "${LOOPS[$1]:-}" ]; then
        umount "$W/mnt-$1"
        losetup -d "${LOOPS[$1]}"
        unset "LOOPS[$1]"
    fi
}

# --- a loopback sshd and provisioner-server of our own, stopped by their pids ------------------
SSHD_PID=
SERVER_PID=
cleanup() {
    for pid in $SSHD_PID $SERVER_PID; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    for name in "${!LOOPS[@]}"; do umount_fs "$name" || true; done
}
trap cleanup EXIT
S="$W/ssh"
rm -rf "$S" && mkdir -p "$S" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$S/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$S/client_key"
cp "$S/client_key.pub" "$S/authorized_keys"
cat > "$S/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $PORT
HostKey $S/host_key
AuthorizedKeysFile $S/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $S/sshd.pid
CONF
/usr/sbin/sshd -D -f "$S/sshd_config" -E "$S/sshd.log" &
SSHD_PID=$!
SSH="ssh -p $PORT -i $S/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
for _ in $(seq 50); do $SSH root@127.0.0.1 true 2>/dev/null && break; sleep 0.1; done
$SSH root@127.0.0.1 true

# --- measuring --------------------------------------------------------------------------------
# Wall and CPU (user+sys of everything started, including reaped children), bytes written
# (write_bytes of /proc/PID/io, which includes reaped children), for this shell and for sshd
# (rsync's receiving side and the SSH server run under it).
io_write() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
cpu_children() { awk '{print $16 + $17}' "/proc/$1/stat"; }  # cutime + cstime, clock ticks
TCK=$(getconf CLK_TCK)
now() { date +%s.%N; }

# measure NAME CMD...: runs CMD then sync; sets M_WALL M_CPU M_WRITTEN.
measure() {
    sync
    local t0 w0 s0 sw0 r0
    t0=$(now); w0=$(io_write $$); s0=$(cpu_children "$SSHD_PID"); sw0=$(io_write "$SSHD_PID")
    read -r c0 < <(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
    "$@" > "$W/last.out" 2> "$W/last.err"
    sync
    local t1 w1 s1 sw1 c1
    t1=$(now); w1=$(io_write $$); s1=$(cpu_children "$SSHD_PID"); sw1=$(io_write "$SSHD_PID")
    read -r c1 < <(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
    M_WALL=$(echo "$t1 - $t0" | bc -l)
    M_CPU=$(echo "($c1 - $c0 + $s1 - $s0) / $TCK" | bc -l)
    M_WRITTEN=$(( (w1 - w0) + (sw1 - sw0) ))
}

RSYNC_OPTS=(-aHAX --numeric-ids --delete --stats)
rsync_run() { rsync "${RSYNC_OPTS[@]}" -e "$SSH" "$W/tree/" "root@127.0.0.1:$1/"; }
rsync_wire() { awk '/^Total bytes sent:/ {gsub(",","",$4); s=$4} /^Total bytes received:/ {gsub(",","",$4); r=$4} END {print s + r}' "$W/last.out"; }
# Ours over HTTPS from provisioner-server (mutual TLS), as a node syncs; and from the store directory.
ours_run() {
    "$AGENT" sync --source "https://127.0.0.1:$HTTPS_PORT" --ca "$TLS/ca.pem" --cert "$TLS/bench-agent.pem" \
        --key "$TLS/bench-agent-key.pem" --image bench --to "$1" --json "${@:2}"
}
ours_local() { "$AGENT" sync --source "$STORE" --image bench --to "$1" --json "${@:2}"; }
ours_wire() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytesReceived"])' "$W/last.out"; }

declare -A R
record() { R[$1.wall]=$M_WALL; R[$1.cpu]=$M_CPU; R[$1.written]=$M_WRITTEN; R[$1.wire]=${2:--}; log "$1: wall ${M_WALL}s cpu ${M_CPU}s written $M_WRITTEN wire ${2:--}"; }

rm -rf "$W/store" "$W/state" "$W/ours" "$W/rsync" "$W/cp"
STATE="$W/state"
STORE="$STATE/images"
TLS="$STATE/tls"
mkdir -p "$STATE"

log "import into the store"
measure "$CTL" image import bench --from "$W/tree" --store "$STORE"
record import
STORE_BYTES=$(du -sb "$STORE" | cut -f1)

# provisioner-server on loopback with a CA of its own; its CPU is added to ours (measure_server).
"$CTL" ca init --dir "$TLS" --name localhost --ip 127.0.0.1 --admin bench > /dev/null
# The agent as a mirror: ca init's client.pem is the bootstrap certificate, which may only
# register and enroll (docs/certificates.md); a node's own certificate needs a node record.
"$CTL" ca issue mirror bench-agent --dir "$TLS" > /dev/null
"$SERVER" --state-dir "$STATE" --listen "127.0.0.1:$HTTPS_PORT" --boot-listen off --log-level warning \
    > "$W/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do (exec 3<> "/dev/tcp/127.0.0.1/$HTTPS_PORT") 2>/dev/null && break; sleep 0.1; done
kill -0 "$SERVER_PID"
server_cpu() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
# measure_server CMD...: measure, with the server's CPU added to M_CPU.
measure_server() {
    local s0 s1
    s0=$(server_cpu)
    measure "$@"
    s1=$(server_cpu)
    M_CPU=$(echo "$M_CPU + ($s1 - $s0) / $TCK" | bc -l)
}

# (a) full install into an empty directory (each on a fresh filesystem), page cache warm
log "(a) full install"
tar -C "$W" -cf - tree state/images | cat > /dev/null
fresh_fs a; measure cp -a "$W/tree" "$W/mnt-a/cp"; record a.cp
fresh_fs rsync; measure rsync_run "$W/mnt-rsync/t"; record a.rsync "$(rsync_wire)"
fresh_fs a; measure ours_local "$W/mnt-a/t"; record a.local "$(ours_wire)"
fresh_fs a; measure_server ours_run "$W/mnt-a/t"; record a.ours "$(ours_wire)"
OURS="$W/mnt-a/t"
RS="$W/mnt-rsync/t"

# (b) nothing changed. Single runs on these machines vary by tens of percent, so the walk, rsync and
# ours --verify metadata run ROUNDS times each, interleaved (walk, rsync, ours, walk, ...), and each
# is reported as its median run; so is the agent's own start (--help) and each phase of ours.
log "(b) nothing changed, $ROUNDS rounds"
declare -A RUNS
# sample NAME [WIRE]: keeps this measurement for NAME's median.
sample() { RUNS[$1]+="$M_WALL $M_CPU $M_WRITTEN ${2:--}"$'\n'; }
# median NAME: records NAME as its run with the median wall time (the lower of the middle two).
median() {
    local line
    line=$(printf '%s' "${RUNS[$1]}" | sort -g -k1,1 | sed -n "$(( ($(printf '%s' "${RUNS[$1]}" | wc -l) + 1) / 2 ))p")
    read -r M_WALL M_CPU M_WRITTEN wire <<< "$line"
    record "$1" "$wire"
    R[$1.runs]=$(printf '%s' "${RUNS[$1]}" | awk '{printf "%s%.3f", (NR > 1 ? ", " : ""), $1}')
}
PHASES="$W/phases.txt"
: > "$PHASES"
for round in $(seq "$ROUNDS"); do
    measure "$AGENT" --help; sample b.start
    measure find "$OURS" -printf '%s %T@ %m %U %G\n'; sample b.walk
    measure rsync_run "$RS"; sample b.rsync "$(rsync_wire)"
    measure_server ours_run "$OURS" --verify metadata; sample b.ours "$(ours_wire)"
    python3 -c 'import json,sys; [print(k, v) for k, v in json.load(open(sys.argv[1]))["phases"].items()]' \
        "$W/last.out" >> "$PHASES"
done
for name in b.start b.walk b.rsync b.ours; do median "$name"; done
# The median of each phase of ours (seconds), over the rounds.
declare -A PH
for phase in resolve fetch decode scan diff; do
    PH[$phase]=$(awk -v p="$phase" '$1 == p {print $2}' "$PHASES" | sort -g | awk '{v[NR] = $1} END {print (NR ? v[int((NR + 1) / 2)] : 0)}')
done
measure_server ours_run "$OURS" --verify stamp; record b.stamp "$(ours_wire)"
measure_server ours_run "$OURS" --verify content; record b.content "$(ours_wire)"

# (c) 1% of the files changed, plus a few bytes inside a large file
log "(c) 1% changed"
python3 - "$W/tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(7)
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f)))
for p in rng.sample(files, len(files) // 100):
    if "/big/" in p:
        continue
    size = os.path.getsize(p)
    with open(p, "r+b") as f:  # rewrite a small part in place, as a package update or a log append would
        f.seek(rng.randrange(0, max(1, size)))
        f.write(os.urandom(min(64, max(1, size // 10))))
with open(os.path.join(root, "srv/data/big/random.img"), "r+b") as f:
    f.seek(100 << 20)
    f.write(b"a few bytes")
PY
measure "$CTL" image import bench --from "$W/tree" --store "$STORE"; record import2
measure rsync_run "$RS"; record c.rsync "$(rsync_wire)"
measure_server ours_run "$OURS"; record c.ours "$(ours_wire)"

# Both targets must equal the tree.
declare -A DIRS=([ours]=$OURS [rsync]=$RS)
for t in ours rsync; do
    if ! rsync -aHAXn --numeric-ids --delete --exclude=/.provisioner-state -i "$W/tree/" "${DIRS[$t]}/" | grep -q . ; then
        log "$t: identical to the tree"
        R[$t.same]=yes
    else
        log "$t: DIFFERS from the tree"; R[$t.same]=NO
    fi
done

# --- the table -------------------------------------------------------------------------------
f2() { printf '%.2f' "$1"; }
f3() { printf '%.3f' "$1"; }
mb() { if [ "$1" = - ]; then echo -; else printf '%.1f MB' "$(echo "$1 / 1000000" | bc -l)"; fi; }
ratio() { if [ "$1" = - ] || [ "$2" = - ] || [ "$(echo "$2 == 0" | bc)" = 1 ]; then echo -; else printf '%.2f×' "$(echo "$1 / $2" | bc -l)"; fi; }
msec() { printf '%.0f ms' "$(echo "$1 * 1000" | bc -l)"; }
row() { echo "| $1 | $(f3 "${R[$2.wall]}") s | $(f2 "${R[$2.cpu]}") s | $(mb "${R[$2.wire]}") | $(mb "${R[$2.written]}") |"; }

cat > "$OUT" <<DOC
# Image sync benchmark

Measured by \`make bench-sync\` ([scripts/bench-sync.sh](../scripts/bench-sync.sh)) on $(date -u +%Y-%m-%d), on this
project's standard machine ($(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo),
a virtual disk), page cache warm, every timing followed by \`sync\`
(our sync also \`syncfs\`es before recording the applied version; rsync and cp do not).

Tree: a Debian bookworm root from mmdebstrap (minbase + systemd, udev, openssh-server, python3, perl,
locales) plus generated files: **$ENTRIES entries, $(mb "$TREE_BYTES")** (apparent size). Store after
the first import: $(mb "$STORE_BYTES") (zstd level 3 objects).

- **ours**: \`provisioner-agent sync --source https://127.0.0.1:$HTTPS_PORT\` (the static agent) from
  **provisioner-server** on loopback, mutual TLS with certificates from \`provisionerctl ca init\` (the agent presents a mirror
  certificate from \`provisionerctl ca issue\`: the bootstrap one may only register), serving
  STATE/images. CPU includes the server's. "ours, local store" is the same agent reading the store
  directory (\`--source STORE\`), no server. Bytes on the wire are the HTTP bodies both ways as the
  agent counts them (manifest or its delta, pack requests, pack streams of stored objects), without
  TLS and HTTP framing.
- **rsync**: \`rsync -aHAX --numeric-ids --delete\` over SSH to a loopback sshd started by the script; wire
  bytes are rsync's \`--stats\` total sent + received (inside SSH, without its framing). CPU includes the
  ssh client, sshd and the receiving rsync (as children of our sshd).
- Targets: every full install (a) goes into an empty directory on a **freshly made ext4** (mkfs
  defaults, with a journal, as a node's root disk) on a loop device over a new sparse file, so each
  contender starts from the same state; (b) and (c) then run on those targets.
- CPU is user+system seconds of every process involved; written is \`write_bytes\` from /proc/PID/io.

| case | wall | CPU | on the wire | written |
|------|-----:|----:|------------:|--------:|
DOC
{
    row "import into the store (server side, once)" import
    row "(a) cp -a into an empty directory (floor)" a.cp
    row "(a) rsync, full install" a.rsync
    row "(a) ours, full install, local store" a.local
    row "(a) ours, full install, HTTPS" a.ours
    row "(b) find -printf metadata walk (floor), median of $ROUNDS" b.walk
    row "(b) rsync, nothing changed, median of $ROUNDS" b.rsync
    row "(b) ours --verify metadata, nothing changed (HTTPS), median of $ROUNDS" b.ours
    row "(b) ours --verify stamp, nothing changed (HTTPS)" b.stamp
    row "(b) ours --verify content, nothing changed (HTTPS)" b.content
    row "re-import after the change (server side)" import2
    row "(c) rsync, 1% of files + bytes in a large file" c.rsync
    row "(c) ours, 1% of files + bytes in a large file (HTTPS)" c.ours
    echo
    echo "| ratio | measured |"
    echo "|-------|---------:|"
    echo "| (a) ours HTTPS / cp -a, wall (target ≤ 1.2×) | $(ratio "${R[a.ours.wall]}" "${R[a.cp.wall]}") |"
    echo "| (a) ours local store / cp -a, wall | $(ratio "${R[a.local.wall]}" "${R[a.cp.wall]}") |"
    echo "| (a) rsync / ours, wall | $(ratio "${R[a.rsync.wall]}" "${R[a.ours.wall]}") |"
    echo "| (a) rsync / ours, CPU | $(ratio "${R[a.rsync.cpu]}" "${R[a.ours.cpu]}") |"
    echo "| (a) ours / rsync, bytes on the wire | $(ratio "${R[a.ours.wire]}" "${R[a.rsync.wire]}") |"
    echo "| (b) rsync / ours metadata, wall (target ≥ 5×) | $(ratio "${R[b.rsync.wall]}" "${R[b.ours.wall]}") |"
    echo "| (b) ours metadata / walk, wall (target ≤ 1.5×) | $(ratio "${R[b.ours.wall]}" "${R[b.walk.wall]}") |"
    echo "| (b) ours stamp, wall | $(printf '%.1f ms' "$(echo "${R[b.stamp.wall]} * 1000" | bc -l)") |"
    echo "| (c) ours / rsync, bytes on the wire (target ≤ 1×) | $(ratio "${R[c.ours.wire]}" "${R[c.rsync.wire]}") |"
    echo "| (c) rsync / ours, wall | $(ratio "${R[c.rsync.wall]}" "${R[c.ours.wall]}") |"
    echo "| (c) ours / rsync, bytes written | $(ratio "${R[c.ours.written]}" "${R[c.rsync.written]}") |"
    echo
    echo "After (c) both targets were compared with the tree (\`rsync -aHAXn --delete -i\`, which lists"
    echo "any difference): ours ${R[ours.same]} identical, rsync ${R[rsync.same]} identical."
    echo
    echo "Where (b) ours --verify metadata spends its time, medians of the $ROUNDS rounds (the phases are the"
    echo "agent's own report; the rest is the process's exit, unmapping and the final \`sync\` of the measurement):"
    echo
    echo "| part | median |"
    echo "|------|-------:|"
    echo "| process start (\`provisioner-agent --help\`, whole run) | $(msec "${R[b.start.wall]}") |"
    echo "| resolve: TLS handshake and the first request | $(msec "${PH[resolve]}") |"
    echo "| manifest fetch (the node keeps the manifest it applied: no transfer), beside the walk | $(msec "${PH[fetch]}") |"
    echo "| decode $ENTRIES entries, beside the walk | $(msec "${PH[decode]}") |"
    echo "| walk and compare the target (scan), while the manifest is fetched and decoded | $(msec "${PH[scan]}") |"
    echo "| diff | $(msec "${PH[diff]}") |"
    echo "| whole run | $(msec "${R[b.ours.wall]}") |"
    echo
    echo "Every round's wall time, in order: walk ${R[b.walk.runs]} s; rsync ${R[b.rsync.runs]} s;"
    echo "ours ${R[b.ours.runs]} s."
} >> "$OUT"
log "wrote $OUT"
