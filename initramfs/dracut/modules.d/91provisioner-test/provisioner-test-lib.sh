# Sourced by /usr/lib/provisioner-test/runner before the test script.
#
# step NAME CMD [ARGS...]
#   Runs CMD with stdin from /dev/null, stdout and stderr captured to separate
#   files, then writes to the test port ($PROVISIONER_TEST_PORT), exactly:
#     "@@STEP <NAME> <EXIT-STATUS> <STDOUT-BYTES> <STDERR-BYTES>\n"
#     <stdout bytes><stderr bytes>
#   and returns CMD's exit status.  NAME must be non-empty and contain no
#   white space (else nothing is written and step returns 2).  A one-line
#   summary goes to the console (stderr), never to the port.

step() {
    if [ $# -lt 2 ]; then
        echo "step: usage: step NAME CMD [ARGS...]" >&2
        return 2
    fi
    _step_name=$1
    shift
    case $_step_name in
        '' | *[[:space:]]*)
            echo "step: invalid step name '$_step_name' (empty or contains white space)" >&2
            return 2
            ;;
    esac
    _step_out=${PROVISIONER_TEST_DIR:-/run/provisioner-test}/step.out
    _step_err=${PROVISIONER_TEST_DIR:-/run/provisioner-test}/step.err
    "$@" > "$_step_out" 2> "$_step_err" < /dev/null && _step_rc=0 || _step_rc=$?
    _step_ob=$(wc -c < "$_step_out")
    _step_eb=$(wc -c < "$_step_err")
    _step_ob=$((_step_ob + 0))
    _step_eb=$((_step_eb + 0))
    if ! {
        printf '@@STEP %s %d %d %d\n' "$_step_name" "$_step_rc" "$_step_ob" "$_step_eb"
        cat "$_step_out" "$_step_err"
    } >> "$PROVISIONER_TEST_PORT"; then
        echo "step: could not write to $PROVISIONER_TEST_PORT" >&2
    fi
    echo "provisioner-test: step $_step_name: exit $_step_rc, stdout $_step_ob bytes, stderr $_step_eb bytes" >&2
    return "$_step_rc"
}
