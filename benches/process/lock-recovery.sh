#!/bin/bash
# Lock recovery after a killed mbox delivery (issue 11, defect 7): a delivery of a message over
# max_size stalls on stdin while it holds the fcntl lock and NAME.lock; it is SIGKILLed there;
# the next delivery is timed. Usage: bash benches/process/lock-recovery.sh [BACKSTOP] (default: the debug build).
set -u
B=${1:-target/debug/backstop}
D=$(mktemp -d /tmp/lockrecov.XXXXXX)
trap 'rm -rf "$D"' EXIT
export HOME=$D
printf 'max_size: 1000\n' >"$D/c.yaml"
msg() { printf 'From: a@example.org\nTo: u@example.com\nSubject: %s\n\n' "$1"; head -c 3000 /dev/zero | tr '\0' x; echo; }
mkfifo "$D/fifo"
"$B" deliver --mbox "$D/mbox" --config "$D/c.yaml" --recipient u@example.com <"$D/fifo" 2>/dev/null &
pid=$!
exec 3>"$D/fifo"
msg first >&3 # over max_size: the tail is streamed while the locks are held
while [ ! -e "$D/mbox.lock" ]; do sleep 0.01; done
kill -9 $pid
wait $pid 2>/dev/null
exec 3>&-
echo "left by the killed delivery: mbox.lock containing '$(tr -d '\n' <"$D/mbox.lock")'"
start=$(date +%s%N)
msg second | "$B" deliver --mbox "$D/mbox" --config "$D/c.yaml" --recipient u@example.com
rc=$?
end=$(date +%s%N)
echo "next delivery: exit $rc after $(((end - start) / 1000000)) ms"
