#!/usr/bin/env bash
# Runs every test step of `make test` (the Makefile builds what they need first), goes on after a
# failing step, and ends with a summary naming each failing step and why: CI shows only the last
# lines of its output. Logs: build/test-logs/STEP.log.
#
# Needs the environment the Makefile sets (VM_ENV and BOOT_ENV variables, KVER, AGENT).
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
logs=$REPO/build/test-logs
mkdir -p "$logs"
results=()
failed=0
passed=0

# step NAME COMMAND...: runs it with its output shown and kept; records pass or fail with reasons.
step() {
    local name=$1
    shift
    local log=$logs/$name.log start=$SECONDS
    echo "== $name: $*"
    "$@" 2>&1 | tee "$log"
    record "$name" "${PIPESTATUS[0]}" $((SECONDS - start))
}

# step_start NAME COMMAND...: the same, in the background (its output only in its log until
# step_finish NAME, which waits for it and shows the log). For steps that boot one VM at a time
# beside another such step: two single-vCPU VMs on the two cores.
declare -A started_pid started_at
step_start() {
    local name=$1
    shift
    echo "== $name (in the background, beside the next steps): $*"
    "$@" > "$logs/$name.log" 2>&1 &
    started_pid[$name]=$!
    started_at[$name]=$SECONDS
}
step_finish() {
    local name=$1 rc=0
    wait "${started_pid[$name]}" || rc=$?
    echo "== $name (ran in the background)"
    cat "$logs/$name.log"
    record "$name" "$rc" $((SECONDS - started_at[$name]))
}

# record NAME STATUS SECONDS: pass or fail with reasons from its log.
record() {
    local name=$1 rc=$2 took=$3 log=$logs/$1.log
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        results+=("PASS  $name (${took} s)")
    else
        failed=$((failed + 1))
        results+=("FAIL  $name (${took} s, exit $rc; log $log)")
        # Why: failing Swift tests with their first issue, failed boot checks, fuzz findings.
        local why
        why=$(grep -E '✘ Test .*(recorded an issue|failed after)|^\s*FAIL: |^fuzz: .*FAILED|error: |Fatal error|timed out' "$log" \
            | grep -v 'with [0-9]* issues\?\.$' | sed 's/^[[:space:]]*//' | awk '!seen[$0]++' | head -n 12 | cut -c1-300)
        [ -n "$why" ] || why=$(tail -n 3 "$log" | cut -c1-300)
        while IFS= read -r line; do results+=("        $line"); done <<< "$why"
    fi
}

cd "$REPO"
# Unit and host tests in parallel; the server suites on their own (their live servers answer from
# Swift's cooperative pool, which the blocking image and disk tests would otherwise hold).
step host-tests swift test --skip-build --skip VMTests --skip ProvisionerServerTests
step server-tests swift test --skip-build --filter ProvisionerServerTests --skip BootStormTests
# 1,000 agents at once with the admin watching, alone: other suites' servers would share its 2 cores.
step boot-storm swift test --skip-build --filter BootStormTests
# Every parser of outside input under libFuzzer + ASan, 20 s each from the committed corpus.
step fuzz "$REPO/scripts/fuzz.sh" -t "${FUZZ_SECONDS:-20}"
# Network boot with nothing but firmware: dnsmasq (as `provisionerctl configure dhcp` wrote it), Debian's
# iPXE over TFTP, OVMF on a tap in a network namespace of its own; full and proxy DHCP (docs/pxe-boot.md).
# One VM at a time, beside the mirror and multicast tests, then the VM tests (also one at a time): two single-vCPU VMs on the two cores.
step_start pxe-scenario env $BOOT_ENV "$REPO/scripts/pxe-scenario.sh"
# A caching mirror: real nginx with server/nginx-cache-mirror.conf in front of the server; three
# agents through it, each object crossing the server's link once.
step mirror-test env $BOOT_ENV AGENT="$AGENT" "$REPO/scripts/mirror-test.sh"
# Multicast (docs/multicast.md): udp-sender on a bridge in network namespaces, five static agents
# booting stateless nodes (one losing 2% of its packets, one late, one cut, one not invited).
step multicast-test env $BOOT_ENV AGENT="$AGENT" "$REPO/scripts/multicast-test.sh"
# The VM tests one at a time (2 cores, TCG).
step vm-tests env $VM_ENV swift test --skip-build --filter VMTests --no-parallel
step_finish pxe-scenario
# The boot flow end to end: server, image, QEMU nodes (scenarios of docs/boot.md).
step boot-scenarios env $BOOT_ENV "$REPO/scripts/boot-scenarios.sh"
# The guest side of the harness protocol on its own (byte-exact output, statuses).
step initramfs-harness make -C "$REPO/initramfs" test KVER="$KVER" AGENT="$AGENT"

echo
echo "== make test summary"
for line in "${results[@]}"; do echo "$line"; done
echo "summary: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
