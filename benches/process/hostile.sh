#!/bin/bash
# The hostile-input figures of issue 11: CPU time and peak RSS of one run of backstop on
#   - auto-replies whose References name many short Message-IDs (0.55, 1.2 and 6.4 MB), the
#     quadratic case (a linear search per ID) before the fix;
#   - a 200 MB message through `filter` (max_size bounds what is held in memory);
#   - deliver of the 6.4 MB References message into a Maildir.
# Usage: bash benches/process/hostile.sh [BACKSTOP_BINARY]   (default: target/release/backstop)
# Prints one Markdown table. Needs GNU time (/usr/bin/time) and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/backstop}
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release)" >&2; exit 1; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# An out-of-office answer whose References name `size` bytes of short IDs ("N@"), folded.
references() {
  python3 - "$1" <<'EOF'
import sys
size = int(float(sys.argv[1]) * 1024 * 1024)
out = [b"From: someone@remote.example\r\nTo: user@example.org\r\n",
       b"Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n",
       b"In-Reply-To: <a@example.org>\r\nReferences:"]
n, i = 0, 0
while n < size:
    w = b" %d@\r\n" % i
    out.append(w)
    n += len(w)
    i += 1
out.append(b"\r\nI am away until Monday.\r\n")
sys.stdout.buffer.write(b"".join(out))
EOF
}

# Runs the command; prints "seconds of CPU (user+sys) | peak RSS in MiB".
measure() {
  local input=$1
  shift
  /usr/bin/time -f '%U %S %M' -o "$W/time" "$@" <"$input" >/dev/null 2>"$W/err" || true
  awk '{ printf "%.2f s | %.1f MiB", $1 + $2, $3 / 1024 }' "$W/time"
}

printf '| input | command | CPU | peak RSS |\n|---|---|---:|---:|\n'
for mb in 0.55 1.2 6.4; do
  references "$mb" >"$W/refs-$mb.eml"
  printf '| References, %s MB | check | %s |\n' "$mb" "$(measure "$W/refs-$mb.eml" "$BIN" check --recipient user@example.org)"
done
printf '| References, 6.4 MB | deliver | %s |\n' \
  "$(measure "$W/refs-6.4.eml" "$BIN" deliver --maildir "$W/Maildir" --recipient user@example.org)"
head -c 200000000 /dev/zero | tr '\0' 'x' | fold -w 76 >"$W/body"
{ printf 'From: a@remote.example\nTo: user@example.org\nSubject: big\n\n'; cat "$W/body"; } >"$W/big.eml"
printf '| 200 MB message | filter | %s |\n' "$(measure "$W/big.eml" "$BIN" filter)"
printf '| 200 MB message | check | %s |\n' "$(measure "$W/big.eml" "$BIN" check)"
