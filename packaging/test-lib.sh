# The check harness test-deb.sh and test-rpm.sh share (sourced, after
# NAME=deb or rpm is set): one line per check, "ok: ..." or "FAIL: ..." with
# the tail of the failed command's output, then "N passed, M failed".
passed=0 failed=0
log=$(mktemp -d "/tmp/backstop-test-$NAME.XXXXXX")
trap 'rm -rf "$log"' EXIT

pass() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: runs the command, its output to a log that is
# shown when it fails.
check() {
    local what=$1
    shift
    if "$@" >"$log/out" 2>&1; then
        pass "$what"
    else
        fail "$what"
        sed 's/^/    /' "$log/out" | tail -n 40
    fi
}
# Prints the tally and exits 0 only when no check failed.
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
