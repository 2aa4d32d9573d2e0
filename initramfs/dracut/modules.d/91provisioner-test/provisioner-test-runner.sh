#!/bin/sh
# provisioner-test runner (dracut module "provisioner-test").
#
# 1. finds the virtio-serial port named "provisioner.test",
# 2. reads the test script from fw_cfg opt/provisioner/test-script,
# 3. waits until udev has settled and every NVMe controller has its namespaces,
# 4. runs the script with sh after sourcing lib.sh (step NAME CMD...),
# 5. writes "@@DONE <status>\n" to the port, syncs and powers off at once.
# Only step() and the @@DONE line write to the port; everything else goes to
# the console/journal.  A runner failure (no script) reports @@DONE 255.

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

PORT_NAME=provisioner.test
FWCFG_SCRIPT=/sys/firmware/qemu_fw_cfg/by_name/opt/provisioner/test-script/raw
PROVISIONER_TEST_DIR=/run/provisioner-test
export PROVISIONER_TEST_DIR

log() {
    echo "provisioner-test: $*" >&2
}

power_off() {
    sync
    # virtio-serial has no acknowledgement: what was written to the port may still sit in the
    # virtqueue when the machine powers off, and QEMU never writes it out (seen on a loaded host:
    # the results cut after their first 4 KiB buffer). Give QEMU a moment to drain the queue.
    sleep 2
    log "powering off"
    # -ff: reboot(RB_POWER_OFF) right away, no unit shutdown.
    systemctl --force --force poweroff
    echo o > /proc/sysrq-trigger
    sleep 30
    exit 1
}

# Wait up to $1 tenths of a second for the command in $2... to succeed.
wait_for() {
    _n=$1
    shift
    while ! "$@"; do
        _n=$((_n - 1))
        [ "$_n" -gt 0 ] || return 1
        sleep 0.1
    done
    return 0
}

find_port() {
    if [ -c "/dev/virtio-ports/$PORT_NAME" ]; then
        PORT=/dev/virtio-ports/$PORT_NAME
        return 0
    fi
    for _f in /sys/class/virtio-ports/*/name; do
        [ -r "$_f" ] || continue
        if [ "$(cat "$_f")" = "$PORT_NAME" ]; then
            _d=${_f%/name}
            _d=${_d##*/}
            if [ -c "/dev/$_d" ]; then
                PORT=/dev/$_d
                return 0
            fi
        fi
    done
    return 1
}

# All NVMe controllers live, and each live one has a namespace block device.
nvme_ready() {
    for _c in /sys/class/nvme/nvme*; do
        [ -e "$_c" ] || continue
        [ "$(cat "$_c/state" 2> /dev/null)" = live ] || return 1
        _name=${_c##*/}
        ls -d "$_c/${_name}"n* > /dev/null 2>&1 \
            || ls -d "$_c"/nvme*c*n* > /dev/null 2>&1 \
            || return 1
    done
    return 0
}

mkdir -p "$PROVISIONER_TEST_DIR"
modprobe -q virtio_console
modprobe -q qemu_fw_cfg

if ! wait_for 300 find_port; then
    log "no virtio-serial port named $PORT_NAME; cannot report results"
    power_off
fi
PROVISIONER_TEST_PORT=$PORT
export PROVISIONER_TEST_PORT
log "reporting to $PORT"

if ! wait_for 100 test -r "$FWCFG_SCRIPT"; then
    log "no test script at $FWCFG_SCRIPT (-fw_cfg name=opt/provisioner/test-script,file=...)"
    printf '@@DONE %d\n' 255 >> "$PORT"
    power_off
fi
cat "$FWCFG_SCRIPT" > "$PROVISIONER_TEST_DIR/script"

udevadm settle --timeout=120
if ! wait_for 300 nvme_ready; then
    log "NVMe controllers not ready after 30 s; going on"
fi
udevadm settle --timeout=120

log "running test script ($(wc -c < "$PROVISIONER_TEST_DIR/script") bytes)"
cd /
sh -c '. /usr/lib/provisioner-test/lib.sh && . "$1"' provisioner-test \
    "$PROVISIONER_TEST_DIR/script" < /dev/null
status=$?
log "test script exited with status $status"

printf '@@DONE %d\n' "$status" >> "$PORT"
power_off
