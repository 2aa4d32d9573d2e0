#!/usr/bin/env bash
# Fuzzes every parser of outside input with libFuzzer and the address sanitizer (docs/fuzzing.md).
#
#   scripts/fuzz.sh [-t SECONDS] [TARGET...]     default: 20 s each, every target
#
# Builds provisioner-fuzz with -sanitize=fuzzer,address (scratch .build/fuzz), then runs each target
# from the committed corpus fuzz/corpus/TARGET, one target per core at once. New interesting inputs
# go to build/fuzz/corpus/TARGET (never into the repository by themselves); a crash, a leak, a timeout or a broken invariant saves
# its input as build/fuzz/crashes/TARGET-* and fails the run. Prints one line per target and a total.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
seconds=20
while getopts t: opt; do
    case $opt in
    t) seconds=$OPTARG ;;
    *) echo "usage: $0 [-t SECONDS] [TARGET...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(layout node-json cluster manifest zstd pack cmdline boot-query lvm)

scratch=$REPO/.build/fuzz
out=$REPO/build/fuzz
mkdir -p "$out/crashes" "$out/logs"
# lld: gold stops with "internal error in format_file_lineno" linking libFuzzer into a SwiftPM executable.
echo "fuzz: building provisioner-fuzz with -sanitize=fuzzer,address"
if ! swift build -c release --product provisioner-fuzz --scratch-path "$scratch" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -use-ld=lld >"$out/logs/build.log" 2>&1; then
    tail -n 30 "$out/logs/build.log"
    echo "fuzz: FAILED: the fuzz build failed (log: $out/logs/build.log)"
    exit 1
fi
bin=$scratch/release/provisioner-fuzz

# fuzz_one TARGET: one libFuzzer run; its report in $out/logs/TARGET.result, "ok" or "FAILED" first.
fuzz_one() {
    local t=$1 seeds=$REPO/fuzz/corpus/$1 found=$out/corpus/$1 log=$out/logs/$1.log result=$out/logs/$1.result
    local rc runs rate cov artifact reason
    [ -d "$seeds" ] || { echo "FAILED fuzz: $t: no corpus $seeds" > "$result"; return; }
    mkdir -p "$found"
    # The Swift runtime's backtracer would catch a trap before libFuzzer saves the input.
    SWIFT_BACKTRACE=enable=no PROVISIONER_FUZZ_TARGET=$t "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$out/crashes/$t-" "$found" "$seeds" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    if [ $rc -eq 0 ]; then
        echo "ok fuzz: $t: ok, ${runs:-?} runs in ${seconds} s (${rate:-?}/s), ${cov:-cov: ?}, corpus $(ls "$found" | wc -l) new + $(ls "$seeds" | wc -l) committed" > "$result"
    else
        artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -n 1 | sed 's/Test unit written to //')
        reason=$(grep -m1 -E 'ERROR: (AddressSanitizer|libFuzzer)|provisioner-fuzz: |Fatal error|SUMMARY' "$log" | cut -c1-200)
        {
            echo "FAILED fuzz: $t: FAILED after ${runs:-?} runs: ${reason:-exit $rc}; input saved as ${artifact:-?} (log: $log)"
            grep -A 12 -m1 -E 'ERROR: AddressSanitizer|provisioner-fuzz: |Fatal error' "$log" | head -n 14 | sed 's/^/    /'
        } > "$result"
    fi
}

# One target per core at once (each libFuzzer run is one process on one core); reports in the order asked.
jobs=$(nproc)
for t in "${targets[@]}"; do
    rm -f "$out/logs/$t.result"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    fuzz_one "$t" &
done
wait
failed=()
passed=0
for t in "${targets[@]}"; do
    result=$out/logs/$t.result
    if [ -f "$result" ] && head -n 1 "$result" | grep -q '^ok '; then
        passed=$((passed + 1))
    else
        [ -f "$result" ] || echo "FAILED fuzz: $t: no report (the run did not finish)" > "$result"
        failed+=("$t")
    fi
    sed -e '1s/^ok //' -e '1s/^FAILED //' "$result"
done
echo "fuzz: ${#targets[@]} targets, $passed passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
