#!/bin/bash
# VM smoke test of the provisioner initramfs.
#
# Builds a test image (EXTRA_MODULES=provisioner-test), boots it in QEMU (TCG)
# with one NVMe and one SATA disk, hands a test script in through fw_cfg and
# checks the byte-exact results that come back on the virtio-serial port
# (protocol: initramfs/README.md).
#
# Environment:
#   AGENT          agent binary to embed; default: the real static agent if
#                  built (.build/static/release/provisioner-agent), else a
#                  stand-in (true(1)) -- the smoke test never runs it
#   KVER           kernel version (default: newest /boot/vmlinuz-*)
#   OUTPUT         test image path (default: build/initramfs-test/initramfs-KVER.img)
#   QEMU_TIMEOUT   seconds before QEMU is killed (default 240)
#   KEEP=1         keep the temporary directory even on success
#
# Exit status 0 on success.  On failure the temporary directory (console log,
# port output, disk images) is kept and its path printed.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")

KVER=${KVER:-$(ls /boot/vmlinuz-* 2> /dev/null | sed 's|^/boot/vmlinuz-||' | sort -V | tail -n 1)}
[[ -n $KVER ]] || { echo "test-boot: no kernel in /boot (apt-get install linux-image-amd64)" >&2; exit 1; }
OUTPUT=${OUTPUT:-$REPO/build/initramfs-test/initramfs-$KVER.img}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-240}
KERNEL=$(dirname "$OUTPUT")/vmlinuz-$KVER

if [[ -z ${AGENT:-} ]]; then
    if [[ -f $REPO/.build/static/release/provisioner-agent ]]; then
        AGENT=$REPO/.build/static/release/provisioner-agent
    else
        AGENT=$(command -v true)
        echo "test-boot: real agent not built; embedding $AGENT as a stand-in"
    fi
fi

command -v qemu-system-x86_64 > /dev/null || { echo "test-boot: qemu-system-x86_64 missing (make -C initramfs deps)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/initramfs-test.XXXXXX")
QEMU_PIDFILE=$TMP/qemu.pid
ok=0

cleanup() {
    # Never leave a QEMU behind: kill ours, by its own pid.
    if [[ -s $QEMU_PIDFILE ]]; then
        local p
        p=$(cat "$QEMU_PIDFILE")
        if kill -0 "$p" 2> /dev/null; then
            kill -TERM "$p" 2> /dev/null || true
            sleep 1
            kill -KILL "$p" 2> /dev/null || true
        fi
    fi
    if [[ $ok == 1 && ${KEEP:-0} != 1 ]]; then
        rm -rf -- "$TMP"
    else
        echo "test-boot: kept $TMP (console.log, port.out, disk images)" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "test-boot: FAIL: $*" >&2
    if [[ -f $TMP/console.log ]]; then
        echo "---- last 40 console lines ($TMP/console.log) ----" >&2
        tail -n 40 "$TMP/console.log" >&2 || true
        echo "----" >&2
    fi
    echo "0 passed, 1 failed"
    exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

# ---- 1. build ----------------------------------------------------------------
before=$(stat -c %Y "$OUTPUT" 2> /dev/null || echo 0)
t0=$(now)
make -C "$HERE" --no-print-directory initramfs \
    KVER="$KVER" AGENT="$AGENT" OUTPUT="$OUTPUT" EXTRA_MODULES=provisioner-test \
    || fail "initramfs build failed"
t1=$(now)
build_time=$(elapsed "$t0" "$t1")
build_note=
[[ $(stat -c %Y "$OUTPUT") != "$before" ]] || build_note=" (image was up to date)"
image_size=$(stat -c %s "$OUTPUT")

# ---- 2. VM inputs ------------------------------------------------------------
truncate -s 4G "$TMP/a.img" "$TMP/b.img"
: > "$TMP/port.out"
cat > "$TMP/script.sh" << 'EOF'
step lsblk cat /proc/partitions
step fail sh -c 'echo out; echo err >&2; exit 3'
echo "provisioner-test: console-only marker 5b1c"
step ipv4 ip -4 -o addr show scope global
exit 0
EOF

qemu=(
    qemu-system-x86_64 -accel tcg -machine q35 -m 1024 -smp 2
    -nodefaults -display none -no-reboot
    -pidfile "$QEMU_PIDFILE"
    -kernel "$KERNEL" -initrd "$OUTPUT"
    -append "console=ttyS0 root=provisioner provisioner.test rd.shell=0 rd.emergency=poweroff panic=-1"
    -serial "file:$TMP/console.log"
    -drive "if=none,id=d0,file=$TMP/a.img,format=raw" -device nvme,drive=d0,serial=NVME-A
    -device ahci,id=ahci
    -drive "if=none,id=d1,file=$TMP/b.img,format=raw" -device ide-hd,drive=d1,bus=ahci.0,model=TESTDISK,serial=SATA-B
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0
    -fw_cfg "name=opt/provisioner/test-script,file=$TMP/script.sh"
    -device virtio-serial-pci,id=vser
    -chardev "file,id=testout,path=$TMP/port.out"
    -device virtserialport,bus=vser.0,chardev=testout,name=provisioner.test
)
echo "test-boot: timeout $QEMU_TIMEOUT ${qemu[*]}"

# ---- 3. boot -----------------------------------------------------------------
t2=$(now)
set +e
timeout --kill-after=10 "$QEMU_TIMEOUT" "${qemu[@]}" < /dev/null
qemu_rc=$?
set -e
t3=$(now)
boot_time=$(elapsed "$t2" "$t3")
[[ $qemu_rc != 124 && $qemu_rc != 137 ]] || fail "QEMU did not power off within ${QEMU_TIMEOUT}s"
[[ $qemu_rc == 0 ]] || fail "QEMU exited with status $qemu_rc"

# ---- 4. parse the port output ------------------------------------------------
# Records: "@@STEP NAME RC OUTBYTES ERRBYTES\n" + stdout + stderr, then "@@DONE RC\n".
declare -A step_rc=()
steps=()
done_rc=
port=$TMP/port.out
size=$(stat -c %s "$port")
off=0
mkdir -p "$TMP/steps"
# extract OFFSET COUNT: COUNT bytes of the port output from byte OFFSET on.
extract() {
    (set +o pipefail; tail -c +$(($1 + 1)) "$port" | head -c "$2")
}
while ((off < size)); do
    [[ -z $done_rc ]] || fail "bytes after @@DONE at offset $off"
    header=$(set +o pipefail; extract "$off" 4096 | head -n 1)
    hlen=$((${#header} + 1))
    ((off + hlen <= size)) || fail "truncated header at offset $off: '$header'"
    read -r tag name rc ob eb extra <<< "$header" || true
    case $tag in
        @@STEP)
            [[ -n $name && $rc =~ ^[0-9]+$ && $ob =~ ^[0-9]+$ && $eb =~ ^[0-9]+$ && -z $extra ]] \
                || fail "bad step header at offset $off: '$header'"
            ((off + hlen + ob + eb <= size)) || fail "step $name: output truncated"
            extract $((off + hlen)) "$ob" > "$TMP/steps/$name.out"
            extract $((off + hlen + ob)) "$eb" > "$TMP/steps/$name.err"
            step_rc[$name]=$rc
            steps+=("$name")
            off=$((off + hlen + ob + eb))
            ;;
        @@DONE)
            [[ $name =~ ^[0-9]+$ && -z $rc ]] || fail "bad done line: '$header'"
            done_rc=$name
            off=$((off + hlen))
            ;;
        *)
            fail "unexpected output at offset $off: '$header'"
            ;;
    esac
done
[[ -n $done_rc ]] || fail "no @@DONE on the port (steps seen: ${steps[*]:-none})"

# ---- 5. check ----------------------------------------------------------------
[[ "${steps[*]}" == "lsblk fail ipv4" ]] || fail "steps seen: '${steps[*]}', want 'lsblk fail ipv4'"

[[ ${step_rc[lsblk]} == 0 ]] || fail "step lsblk: exit ${step_rc[lsblk]}"
[[ ! -s $TMP/steps/lsblk.err ]] || fail "step lsblk: unexpected stderr"
awk '$4 == "nvme0n1" && $3 == 4194304 {f=1} END {exit !f}' "$TMP/steps/lsblk.out" \
    || fail "step lsblk: no 4 GiB nvme0n1 in /proc/partitions"
awk '$4 == "sda" && $3 == 4194304 {f=1} END {exit !f}' "$TMP/steps/lsblk.out" \
    || fail "step lsblk: no 4 GiB sda in /proc/partitions"

[[ ${step_rc[fail]} == 3 ]] || fail "step fail: exit ${step_rc[fail]}, want 3"
cmp -s "$TMP/steps/fail.out" <(printf 'out\n') || fail "step fail: stdout is not 'out\\n'"
cmp -s "$TMP/steps/fail.err" <(printf 'err\n') || fail "step fail: stderr is not 'err\\n'"

[[ ${step_rc[ipv4]} == 0 ]] || fail "step ipv4: exit ${step_rc[ipv4]}"
grep -q 'inet 10\.0\.2\.15/' "$TMP/steps/ipv4.out" || fail "step ipv4: no DHCP address 10.0.2.15"

[[ $done_rc == 0 ]] || fail "@@DONE $done_rc, want 0"
grep -q 'console-only marker 5b1c' "$TMP/console.log" || fail "script output missing from the console"
! grep -q 'marker 5b1c' "$port" || fail "script output leaked onto the port"

ok=1
echo "test-boot: kernel $KVER, image $OUTPUT"
echo "test-boot: build ${build_time} s${build_note}, image ${image_size} bytes ($(awk -v s="$image_size" 'BEGIN{printf "%.1f", s/1048576}') MiB), QEMU start to power-off ${boot_time} s"
echo "test-boot: port: ${#steps[@]} steps (${steps[*]}), @@DONE $done_rc, $size bytes"
echo "1 passed, 0 failed"
