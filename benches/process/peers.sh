#!/usr/bin/env bash
# Whole-process benchmark of backstop against its peers: procmail with an equivalent
# one-regex recipe delivering to a Maildir, SpamAssassin with only its VBounce rules,
# cat, and a hello-world Rust binary. backstop is built as the packages build it
# (packaging/build-release.sh, static) and, for comparison, by plain cargo (dynamic). Prints the median CPU time (user+sys), wall time and
# peak RSS of many runs for each case, the ratios, and PASS/FAIL per goal of issue 5.
#
# Usage (as root; installs what it needs with apt-get):
#   benches/process/peers.sh                 # about 3-4 minutes on 2 cores, once built
#   RUNS=100 SA_RUNS=5 benches/process/peers.sh
#
# How it measures:
# - cpuruns (benches/process/cpuruns.rs, built here with rustc, no dependencies) starts each command
#   RUNS times with standard input from the message and takes user+sys time, wall time and
#   max RSS of that one process from wait4(2): no shell in between. The programs of a case take
#   turns run by run, so a busy moment on the shared machine weighs on all of them alike.
#   Medians are reported.
# - hyperfine -N gives a second opinion on wall time (its JSON is kept in the work dir).
#   hyperfine 1.15 cannot feed standard input, so every command there runs as
#   `sh -c 'exec CMD < MSG'`, and the row "sh" is that wrapper alone (`sh -c ': < MSG'`).
# - /usr/bin/time -f '%e %U %S %M' gives peak RSS for the large messages.
# Compare ratios within one run: the machine is shared, and absolute times drift.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-300}
WARMUP=${WARMUP:-20}
SA_RUNS=${SA_RUNS:-10}
BIG_RUNS=${BIG_RUNS:-5}

need=()
command -v procmail >/dev/null || need+=(procmail)
command -v spamassassin >/dev/null || need+=(spamassassin)
command -v hyperfine >/dev/null || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

W=$(mktemp -d /tmp/backstop-peers.XXXXXX)
echo "work dir: $W" >&2

# The binary the packages ship (static PIE, packaging/build-release.sh), and for comparison
# the plain `cargo build --release` one (dynamically linked, as `cargo install` gives).
echo "building backstop (release, as packaged, then as cargo builds it)..." >&2
(cd "$ROOT" && packaging/build-release.sh --quiet)
cp "$ROOT/target/release/backstop" "$W/backstop"
(cd "$ROOT" && cargo build --release --locked --quiet --bin backstop)
cp "$ROOT/target/release/backstop" "$W/backstop-dynamic"
BS="$W/backstop"
BSD="$W/backstop-dynamic"

echo "building the hello binary and cpuruns..." >&2
mkdir -p "$W/hello/src"
cat >"$W/hello/Cargo.toml" <<'EOF'
[package]
name = "hello"
version = "0.1.0"
edition = "2024"

[dependencies]

[profile.release]
codegen-units = 1
lto = "thin"
EOF
echo 'fn main() { println!("Hello, world!"); }' >"$W/hello/src/main.rs"
(cd "$W/hello" && CARGO_TARGET_DIR="$W/hello/target" cargo build --release --offline --quiet)
HELLO="$W/hello/target/release/hello"
rustc --edition 2024 -O "$ROOT/benches/process/cpuruns.rs" -o "$W/cpuruns"
CPURUNS="$W/cpuruns"

# --- Messages -------------------------------------------------------------------------------
CORPUS="$ROOT/tests/fixtures/corpus"
cp "$CORPUS/ham/spamassassin-easy-ham-2/00001.1a31cc283af0060967a233d26548a6ce.eml" "$W/clean10k.eml"
cp "$CORPUS/bounces/sisimai-bsd/rfc3464-54.eml" "$W/dsn10k.eml"

# with_attachment BASE BYTES OUT: BASE as multipart/mixed, its text then a base64 attachment
# made of the ham fixtures, to about BYTES in all (as benches/stages.rs builds mixed_200k).
with_attachment() {
    local base=$1 target=$2 out=$3
    awk 'BEGIN { head = 1; skip = 0 }
         head && /^$/ { exit }
         head && /^[ \t]/ { if (!skip) print; next }
         head { skip = tolower($0) ~ /^(content-type|content-transfer-encoding|mime-version):/; if (!skip) print }' "$base" >"$out"
    printf 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="=-backstop-bench"\n\n--=-backstop-bench\nContent-Type: text/plain; charset=us-ascii\n\n' >>"$out"
    awk 'found { print } /^$/ && !found { found = 1 }' "$base" >>"$out"
    printf '\n--=-backstop-bench\nContent-Type: application/octet-stream; name="data.bin"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename="data.bin"\n\n' >>"$out"
    local have want
    have=$(stat -c %s "$out")
    want=$(( (target - have - 64) * 3 / 4 ))
    local chunk="$W/ham.bin"
    [ -f "$chunk" ] || find "$CORPUS/ham" -name '*.eml' -print0 | sort -z | xargs -0 cat >"$chunk"
    local reps=$(( want / $(stat -c %s "$chunk") + 1 ))
    for _ in $(seq "$reps"); do cat "$chunk"; done >"$W/data.bin"
    head -c "$want" "$W/data.bin" | base64 -w 76 >>"$out"
    rm -f "$W/data.bin"
    printf -- '--=-backstop-bench--\n' >>"$out"
}
with_attachment "$W/clean10k.eml" $((200 * 1024)) "$W/mixed200k.eml"
with_attachment "$W/clean10k.eml" $((50 * 1000 * 1000)) "$W/big50m.eml"

VERSIONS="$("$BS" --version), $(rustc --version), $(procmail -v 2>&1 | head -1), SpamAssassin $(spamassassin --version | head -1 | awk '{print $3}'), $(hyperfine --version)"

# --- Configs --------------------------------------------------------------------------------
export HOME="$W/home"   # no ~/.config/backstop/config.yaml: the default rules
mkdir -p "$HOME"
{
    printf 'rules:\n  - id: user-subjects\n    field: subject\n    score: 1\n    match:\n'
    for i in $(seq 0 499); do
        case $((i % 5)) in
            0) printf "      - '^\\\\s*ticket #%d\\\\b'\n" "$i" ;;
            1) printf "      - 'invoice\\\\s+\\\\d+ from vendor%d'\n" "$i" ;;
            2) printf "      - '^\\\\[list-%d\\\\]'\n" "$i" ;;
            3) printf "      - 'newsletter (weekly|monthly) edition %d'\n" "$i" ;;
            4) printf "      - 'alert: host%d\\\\.example\\\\.(com|net) is down'\n" "$i" ;;
        esac
    done
} >"$W/user500.yaml"
printf 'max_size: 104857600\n' >"$W/bigcheck.yaml"
"$BS" lint "$W/user500.yaml" >/dev/null
"$BS" lint "$W/bigcheck.yaml" >/dev/null

cat >"$W/procmailrc" <<EOF
MAILDIR=$W/md-procmail/
DEFAULT=$W/md-procmail/
:0
* ^Subject:.*(undeliver|returned mail)
.Backscatter/
EOF
mkdir -p "$W/md-procmail"

# SpamAssassin with the VBounce rules only (shared/notes/bounces.md, section 10.5).
mkdir -p "$W/vbonly"
sa_dir=$(dirname "$(dpkg -L spamassassin | grep '/20_vbounce.cf$' | head -1)")
cp "$sa_dir/20_vbounce.cf" "$sa_dir/10_default_prefs.cf" "$sa_dir/20_aux_tlds.cf" "$W/vbonly/"
printf 'loadplugin Mail::SpamAssassin::Plugin::Check\nloadplugin Mail::SpamAssassin::Plugin::VBounce\nloadplugin Mail::SpamAssassin::Plugin::RelayEval\n' >"$W/vbonly/init.pre"
printf 'header ALL_TRUSTED eval:check_all_trusted()\nscore ALL_TRUSTED -1.0\nscore BOUNCE_MESSAGE 0.1\nscore CRBOUNCE_MESSAGE 0.1\nscore VBOUNCE_MESSAGE 0.1\nscore OOOBOUNCE_MESSAGE 0.1\nscore ANY_BOUNCE_MESSAGE 0.1\nscore CHALLENGE_RESPONSE 0.1\n' >"$W/vbonly/99_local.cf"
printf 'welcomelist_bounce_relays mail.example.org\n' >"$W/user_prefs"
SA=(spamassassin -L -C "$W/vbonly" --siteconfigpath="$W/vbonly" -p "$W/user_prefs")

# --- Measuring ------------------------------------------------------------------------------
RESULTS="$W/results.txt"
: >"$RESULTS"

# run CASE RUNS MSG NAME CMD... [-- NAME CMD...]...: the commands, taking turns, into the
# results (one line each, keyed by CASE/NAME).
run() {
    local case=$1 runs=$2 msg=$3
    shift 3
    local warm=$WARMUP
    [ "$runs" -lt 50 ] && warm=1
    local args=() first=1
    for a in "$@"; do
        if [ "$first" = 1 ]; then
            args+=("$case/$a")
            first=0
        else
            args+=("$a")
        fi
        [ "$a" = "--" ] && first=1
    done
    "$CPURUNS" "$runs" "$warm" "$msg" "${args[@]}" >>"$RESULTS"
}

# hf CASE MSG NAME=CMD...: hyperfine -N, each command as sh -c 'exec CMD < MSG'.
hf() {
    local case=$1 msg=$2
    shift 2
    local args=(-N --style none --warmup 5 --runs "${HF_RUNS:-100}" --export-json "$W/hyperfine-$case.json")
    args+=(-n sh "sh -c ': < $msg'")
    for nc in "$@"; do
        args+=(-n "${nc%%=*}" "sh -c 'exec ${nc#*=} < $msg'")
    done
    hyperfine "${args[@]}" >/dev/null 2>&1 || echo "hyperfine failed for $case" >&2
}

# val CASE/NAME KEY: a value from the results.
val() {
    awk -v n="$1" -v k="$2" '$1 == n { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$RESULTS"
}

echo "measuring (RUNS=$RUNS, SA_RUNS=$SA_RUNS)..." >&2
PM=$(command -v procmail)
for c in clean10k dsn10k; do
    run "deliver-$c" "$RUNS" "$W/$c.eml" \
        backstop "$BS" deliver --maildir "$W/md-backstop" -- \
        backstop-dynamic "$BSD" deliver --maildir "$W/md-backstop" -- \
        backstop-500-rules "$BS" deliver -c "$W/user500.yaml" --maildir "$W/md-backstop" -- \
        procmail "$PM" -m "$W/procmailrc" -- \
        cat /bin/cat -- \
        hello "$HELLO"
    run "deliver-$c" "$SA_RUNS" "$W/$c.eml" spamassassin "${SA[@]}"
    HF_RUNS=$((RUNS / 3)) hf "deliver-$c" "$W/$c.eml" \
        "backstop=$BS deliver --maildir $W/md-backstop" \
        "procmail=$PM -m $W/procmailrc" \
        "cat=/bin/cat" "hello=$HELLO"
    rm -rf "$W/md-backstop" "$W/md-procmail" && mkdir -p "$W/md-procmail"
done
# The same clean delivery into Maildirs on a tmpfs, where fsync costs nothing: what is left
# is each program's own work (backstop fsyncs the file and new/, procmail the file only).
SHM=$(mktemp -d /dev/shm/backstop-peers.XXXXXX)
sed "s|$W/md-procmail/|$SHM/md-procmail/|" "$W/procmailrc" >"$W/procmailrc-tmpfs"
mkdir -p "$SHM/md-procmail"
run "deliver-clean10k-tmpfs" "$RUNS" "$W/clean10k.eml" \
    backstop "$BS" deliver --maildir "$SHM/md-backstop" -- \
    procmail "$PM" -m "$W/procmailrc-tmpfs" -- \
    hello "$HELLO"
rm -rf "$SHM"
for c in clean10k mixed200k; do
    run "check-$c" "$RUNS" "$W/$c.eml" backstop "$BS" check -- procmail "$PM" -m "$W/procmailrc" -- cat /bin/cat
done
rm -rf "$W/md-procmail"
run "big50m" "$BIG_RUNS" "$W/big50m.eml" deliver-streamed "$BS" deliver --maildir "$W/md-big"
rm -rf "$W/md-big"
run "big50m" "$BIG_RUNS" "$W/big50m.eml" check-parsed "$BS" check -c "$W/bigcheck.yaml" -- cat /bin/cat
# GNU time's view of the peak RSS (KiB), the median of a few runs.
time_rss() {
    local msg=$1
    shift
    for _ in 1 2 3; do
        /usr/bin/time -f '%e %U %S %M' "$@" <"$msg" 2>&1 >/dev/null | tail -1
    done | sort -n -k4 | sed -n 2p
}
T10K=$(time_rss "$W/clean10k.eml" "$BS" deliver --maildir "$W/md-time")
TBIGD=$(time_rss "$W/big50m.eml" "$BS" deliver --maildir "$W/md-time")
TBIGC=$(time_rss "$W/big50m.eml" "$BS" check -c "$W/bigcheck.yaml")
rm -rf "$W/md-time"

# --- Report ---------------------------------------------------------------------------------
ms() { awk -v v="$1" 'BEGIN { printf "%.3f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
verdict() { awk -v v="$1" -v lim="$2" 'BEGIN { print (v <= lim) ? "PASS" : "FAIL" }'; }

echo "## Machine"
echo
echo "- $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "- $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- $VERSIONS"
echo "- runs: $RUNS per case ($SA_RUNS for SpamAssassin, $BIG_RUNS for 50 MB), medians"
echo
echo "## Per-process medians (cpuruns: wait4 of each process, no shell)"
echo
echo "| case | program | CPU ms (user+sys) | wall ms | peak RSS KiB |"
echo "|---|---|---:|---:|---:|"
while read -r name rest; do
    c=${name%%/*}
    p=${name#*/}
    echo "| $c | $p | $(val "$name" cpu_med_ms) | $(val "$name" wall_med_ms) | $(val "$name" rss_med_kb) |"
done <"$RESULTS"
echo
echo "## hyperfine -N (sh -c 'exec CMD < MSG'; row sh is the wrapper alone)"
echo
echo "| case | program | wall median ms | mean user+sys ms |"
echo "|---|---|---:|---:|"
for f in "$W"/hyperfine-*.json; do
    c=$(basename "$f" .json)
    c=${c#hyperfine-}
    awk -v c="$c" '
        /"command":/ { split($0, a, "\""); cmd = a[4] }
        /"median":/ { gsub(/[,]/, "", $2); med = $2 }
        /"user":/ { gsub(/[,]/, "", $2); usr = $2 }
        /"system":/ { gsub(/[,]/, "", $2); sys = $2; printf "| %s | %s | %.3f | %.3f |\n", c, cmd, med * 1000, (usr + sys) * 1000 }
    ' "$f"
done
echo
echo "## /usr/bin/time -f '%e %U %S %M' (median of 3: wall s, user s, sys s, max RSS KiB)"
echo
echo "- deliver, clean 10 KB: $T10K"
echo "- deliver, 50 MB (over max_size: streamed to the inbox unparsed): $TBIGD"
echo "- check, 50 MB, max_size raised to 100 MiB (parsed and judged): $TBIGC"
echo

cpu() { val "$1" cpu_med_ms; }
rss() { val "$1" rss_med_kb; }
big=$(stat -c %s "$W/big50m.eml")
r1=$(ratio "$(cpu deliver-clean10k/backstop)" "$(cpu deliver-clean10k/procmail)")
r2=$(ratio "$(cpu deliver-clean10k/backstop)" "$(cpu deliver-clean10k/hello)")
r3=$(ratio "$(cpu deliver-dsn10k/backstop)" "$(cpu deliver-dsn10k/procmail)")
r4=$(ratio "$(cpu check-mixed200k/backstop)" "$(cpu check-clean10k/backstop)")
rss10=$(rss deliver-clean10k/backstop)
rbigd=$(ratio "$(rss big50m/deliver-streamed)" "$(awk -v b="$big" 'BEGIN { print b / 1024 }')")
rbigc=$(ratio "$(rss big50m/check-parsed)" "$(awk -v b="$big" 'BEGIN { print b / 1024 }')")
d500=$(awk -v a="$(cpu deliver-clean10k/backstop-500-rules)" -v b="$(cpu deliver-clean10k/backstop)" 'BEGIN { printf "%.3f", a - b }')
d500dsn=$(awk -v a="$(cpu deliver-dsn10k/backstop-500-rules)" -v b="$(cpu deliver-dsn10k/backstop)" 'BEGIN { printf "%.3f", a - b }')
echo "## Goals (ratios of the medians above)"
echo
echo "| goal | measured | limit | result |"
echo "|---|---:|---:|---|"
echo "| deliver clean 10 KB: CPU backstop / procmail | $r1 | 1.00 | $(verdict "$r1" 1.0) |"
echo "| deliver clean 10 KB: CPU backstop / hello | $r2 | 2.00 | $(verdict "$r2" 2.0) |"
echo "| deliver DSN 10 KB: CPU backstop / procmail | $r3 | 1.50 | $(verdict "$r3" 1.5) |"
echo "| check 200 KB / check 10 KB (CPU) | $r4 | 2.00 | $(verdict "$r4" 2.0) |"
echo "| peak RSS, deliver 10 KB (KiB; 5 MB = 4883 KiB) | $rss10 | 4883 | $(verdict "$rss10" 4883) |"
echo "| peak RSS / size, deliver 50 MB (streamed) | $rbigd | 2.50 | $(verdict "$rbigd" 2.5) |"
echo "| peak RSS / size, check 50 MB (parsed) | $rbigc | 2.50 | $(verdict "$rbigc" 2.5) |"
echo "| 500 user subject patterns: added CPU ms, clean | $d500 | 2.00 | $(verdict "$d500" 2.0) |"
echo "| 500 user subject patterns: added CPU ms, DSN | $d500dsn | 2.00 | $(verdict "$d500dsn" 2.0) |"
echo
echo "Not goals, for comparison:"
echo
echo "- deliver clean 10 KB, Maildirs on a tmpfs (no fsync cost): CPU backstop / procmail $(ratio "$(cpu deliver-clean10k-tmpfs/backstop)" "$(cpu deliver-clean10k-tmpfs/procmail)")"
echo "- deliver clean 10 KB, the dynamically linked build (\`cargo build --release\`): CPU / procmail $(ratio "$(cpu deliver-clean10k/backstop-dynamic)" "$(cpu deliver-clean10k/procmail)"), peak RSS $(rss deliver-clean10k/backstop-dynamic) KiB"
echo
rm -rf "$W/big50m.eml" "$W/ham.bin" "$W/hello/target"
echo "(work dir kept, with the hyperfine JSON: $W)" >&2
