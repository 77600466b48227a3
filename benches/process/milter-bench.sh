#!/bin/bash
# The milter benchmark (issue 16, Performance): a private Postfix receives SMTP load with
# no milter, with backstop-milter, and with rspamd's proxy in milter mode, one after the
# other in one run, with the same messages and the same load.
#
#   sudo benches/process/milter-bench.sh          # MESSAGES=2000 LATENCY_MESSAGES=1000 SESSIONS=20
#
# As root on a throwaway machine: it installs Debian's rspamd (and postfix, python3 if
# missing) with apt-get, its services kept from starting; it starts a private Postfix on
# 127.0.0.1:$SMTP_PORT whose queue and everything else lie on a tmpfs mounted at $T (so
# that the disk's fsync does not drown the milters' work), and rspamd's workers on
# 127.0.0.1:21332-21334 with a private runtime directory.
#
# Messages: a mix of ham and bounces from the shared corpus (../shared/corpus: every
# DEV-set bounce and as many ham messages, evenly spread), to one local recipient
# (kijitora@bench.example), the bounces from the null sender. Postfix hands them to
# discard(8): the benchmark measures reception, not delivery.
#
# Per configuration (none, backstop, backstop-idle: the milter judging nothing, rspamd):
#   - throughput: smtp-source(1), $SESSIONS parallel sessions, one message per SMTP session
#     (as inbound mail comes), $MESSAGES messages, each session on its own corpus file (half
#     ham, half bounces): messages per second of wall time;
#   - latency: a Python smtplib client with $SESSIONS threads sends $LATENCY_MESSAGES
#     messages of the whole mix (a new SMTP session for each) and times each from the end
#     of its DATA (the ".") to Postfix's 250, which comes after the milter's end-of-message
#     answer: p50 and p99; the same again with one session (no queueing behind other
#     sessions) for the latency of one message alone;
#   - the milter's memory (RSS of its processes, summed; peak RSS for backstop-milter,
#     which is one process) and CPU time (user+system, from /proc) per message.
#
# backstop-milter judges every message as inbound (the client, 127.0.0.1, is not in its
# own.networks) with backscatter: tag, so that every message is accepted by all three and
# the runs queue the same mail. rspamd runs Debian's default config (/etc/rspamd) with
# these modules turned off, because they query the network (DNS lists, URL lookups, fuzzy
# storage, and other DNS), which these machines do not have (see rspamd_local below):
# rbl (includes the URL lists of surbl and the e-mail lists), fuzzy_check, spf, dkim,
# dmarc, arc, asn, hfilter, phishing, mx_check, url_redirector, rspamd_update; and its
# resolver points at a closed local port, so that a lookup left over fails at once
# instead of timing out. Modules that need Redis (bayes, greylist, neural, ratelimit,
# replies, reputation) are off by themselves, since no Redis is configured.
#
# Prints a markdown table (ratios against "none") and the raw numbers; writes them to
# $OUT (default target/milter-bench.md). One run, ratios within it: the machine's other
# jobs change absolute numbers from run to run.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export LC_ALL=C

MESSAGES=${MESSAGES:-2000}
LATENCY_MESSAGES=${LATENCY_MESSAGES:-1000}
SESSIONS=${SESSIONS:-20}
SMTP_PORT=${SMTP_PORT:-10825}
MILTER_PORT=${MILTER_PORT:-10826}
CORPUS=${CORPUS:-$ROOT/../shared/corpus}
T=${BENCH_DIR:-/tmp/backstop-milter-bench}
# shellcheck source=tests/hosts/postfix-instance.sh
. tests/hosts/postfix-instance.sh
OUT=${OUT:-$ROOT/target/milter-bench.md}
PF=$T/postfix
milter_pids=""

say() { echo "milter-bench: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs rspamd and runs a private Postfix)"
[ -f "$CORPUS/manifest.tsv" ] || die "no corpus at $CORPUS (set CORPUS=)"

# ---------------------------------------------------------------- tools
install_tools() {
  local need=()
  command -v smtp-source >/dev/null || need+=(postfix)
  command -v rspamd >/dev/null || need+=(rspamd)
  command -v python3 >/dev/null || need+=(python3)
  [ ${#need[@]} -gt 0 ] || return 0
  say "apt-get install ${need[*]} (their services kept from starting)"
  local created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# added by backstop benches/process/milter-bench.sh: start no service\nexit 101\n' \
      >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created=1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" ||
    { [ $created = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
  if [ $created = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
install_tools

# MILTER_BIN=PATH measures that build instead (an older one, to compare in the same session).
if [ -z "${MILTER_BIN:-}" ]; then
  say "cargo build --release --bin backstop-milter"
  cargo build --release --locked --quiet --bin backstop-milter
  MILTER_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/backstop-milter
fi

# ---------------------------------------------------------------- the scratch tmpfs
stop_postfix() {
  [ -f "$PF/etc/main.cf" ] && postfix -c "$PF/etc" stop >/dev/null 2>&1
  local i
  for i in $(seq 1 50); do
    [ -f "$PF/spool/pid/master.pid" ] || return 0
    kill -0 "$(tr -dc '0-9' <"$PF/spool/pid/master.pid")" 2>/dev/null || return 0
    sleep 0.1
  done
}
stop_milter() {
  local p
  for p in $milter_pids; do kill "$p" 2>/dev/null || true; done
  for p in $milter_pids; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  milter_pids=""
}
cleanup() {
  stop_milter
  stop_postfix
  # The logs, for a look afterwards.
  mkdir -p "$ROOT/target/milter-bench-logs"
  cp "$PF/maillog" "$T/backstop.log" "$T/rspamd/log/rspamd.log" "$T/rspamd/stdout" \
    "$ROOT/target/milter-bench-logs/" 2>/dev/null || true
  if mountpoint -q "$T"; then umount "$T" 2>/dev/null || umount -l "$T"; fi
  rmdir "$T" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if mountpoint -q "$T"; then stop_postfix; umount "$T"; fi
mkdir -p "$T"
mount -t tmpfs -o size=1g,mode=0755 tmpfs "$T"
mkdir -p "$PF/etc" "$PF/spool" "$PF/data" "$T/msgs" "$T/rspamd/local.d" "$T/rspamd/run" \
  "$T/rspamd/db" "$T/rspamd/log"
chown postfix "$PF/data"
chown _rspamd:_rspamd "$T/rspamd/run" "$T/rspamd/db" "$T/rspamd/log"

# ---------------------------------------------------------------- the messages
# Every DEV bounce and as many ham messages, evenly spread over the ham; "H" or "B" before
# each path tells the client the envelope sender.
python3 - "$CORPUS" "$T/msgs" <<'EOF'
import csv, os, shutil, sys
corpus, out = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(os.path.join(corpus, "manifest.tsv")), delimiter="\t"))
dev = [r for r in rows if r["set"] == "dev"]
bounces = sorted(r["file"] for r in dev if r["category"] == "bounces")
ham = sorted(r["file"] for r in dev if r["category"] == "ham")
step = max(1, len(ham) // max(1, len(bounces)))
ham = ham[::step][: len(bounces)]
mix = []
for i, (h, b) in enumerate(zip(ham, bounces)):
    mix += [("H", h), ("B", b)]
with open(os.path.join(out, "list"), "w") as lst:
    for i, (kind, f) in enumerate(mix):
        dest = os.path.join(out, "%04d.eml" % i)
        data = open(os.path.join(corpus, f), "rb").read()
        # smtp-source sends a file line by line: LF ends, a bare CR must not split a line.
        data = data.replace(b"\r\n", b"\n")
        open(dest, "wb").write(data)
        lst.write("%s %s\n" % (kind, dest))
sizes = [os.path.getsize(os.path.join(out, "%04d.eml" % i)) for i in range(len(mix))]
print("milter-bench: %d messages (%d ham, %d bounces), %d bytes on average"
      % (len(mix), len(mix) // 2, len(mix) // 2, sum(sizes) // len(sizes)), file=sys.stderr)
EOF

# ---------------------------------------------------------------- Postfix
postfix_instance "$PF" "$SMTP_PORT" mx.bench.example bench.example ""
cat >>"$PF/etc/main.cf" <<EOF
relay_domains = bench.example
transport_maps = inline:{ bench.example=discard: }
default_transport = error:the benchmark sends nothing out
# Accept as fast as mail comes: no pause when arrivals outrun deliveries.
in_flow_delay = 0
smtpd_client_connection_count_limit = 0
default_process_limit = 200
message_size_limit = 52428800
milter_command_timeout = 30s
milter_content_timeout = 60s
EOF
postfix -c "$PF/etc" set-permissions >/dev/null 2>&1
postfix -c "$PF/etc" check
postfix -c "$PF/etc" start >/dev/null 2>&1 || die "postfix did not start: $(tail -n 5 "$PF/maillog" 2>/dev/null)"
wait_port() {
  local i
  for i in $(seq 1 300); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1).close()" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
wait_port "$SMTP_PORT" || die "postfix does not listen on $SMTP_PORT"

# ---------------------------------------------------------------- the milters
printf 'k1 %s\n' "bench-secret-0123456789abcdef" >"$T/stamp.keys"
chmod 600 "$T/stamp.keys"
cat >"$T/milter.yaml" <<EOF
own:
  domains: [bench.example]
  hosts: [mx.bench.example]
  networks: [192.0.2.0/24]
stamp:
  key_file: $T/stamp.keys
milter:
  backscatter: tag
EOF
sed 's/domains: \[bench.example\]/domains: [elsewhere.example]/' "$T/milter.yaml" >"$T/milter-idle.yaml"
chmod 600 "$T/milter.yaml" "$T/milter-idle.yaml"

# Each start_* sets ADDR, the milter's address for smtpd_milters. START_CONFIG picks the
# config: milter.yaml, or milter-idle.yaml, where no recipient is local, so that the milter
# receives every message and judges none (the cost of the milter protocol alone).
start_backstop() {
  "$MILTER_BIN" --listen "inet:127.0.0.1:$MILTER_PORT" --config "$T/${1:-milter.yaml}" >/dev/null 2>>"$T/backstop.log" &
  milter_pids=$!
  wait_port "$MILTER_PORT" || die "backstop-milter did not start: $(tail -n 3 "$T/backstop.log")"
  ADDR="inet:127.0.0.1:$MILTER_PORT"
}

# rspamd: Debian's default config in /etc/rspamd, with a local.d of our own.
rspamd_local() {
  local m
  for m in rbl fuzzy_check spf dkim dmarc arc asn hfilter phishing mx_check url_redirector rspamd_update; do
    echo "enabled = false;" >"$T/rspamd/local.d/$m.conf"
  done
  cat >"$T/rspamd/local.d/options.inc" <<'EOF'
dns {
  nameserver = ["127.0.0.1:1"];
  timeout = 0.2s;
  retransmits = 1;
}
EOF
  echo 'bind_socket = "127.0.0.1:21333";' >"$T/rspamd/local.d/worker-normal.inc"
  echo 'bind_socket = "127.0.0.1:21334";' >"$T/rspamd/local.d/worker-controller.inc"
  cat >"$T/rspamd/local.d/worker-proxy.inc" <<'EOF'
bind_socket = "127.0.0.1:21332";
upstream "local" {
  default = yes;
  hosts = "127.0.0.1:21333";
}
EOF
  cat >"$T/rspamd/local.d/logging.inc" <<EOF
type = "file";
filename = "$T/rspamd/log/rspamd.log";
level = "warning";
EOF
}
start_rspamd() {
  rspamd_local
  rspamd -f -u _rspamd -g _rspamd -c /etc/rspamd/rspamd.conf \
    --var "LOCAL_CONFDIR=$T/rspamd" --var "RUNDIR=$T/rspamd/run" --var "DBDIR=$T/rspamd/db" \
    --var "LOGDIR=$T/rspamd/log" >"$T/rspamd/stdout" 2>&1 &
  milter_pids=$!
  wait_port 21332 || die "rspamd did not start: $(tail -n 5 "$T/rspamd/stdout" "$T/rspamd/log/rspamd.log")"
  wait_port 21333 || die "rspamd's normal worker did not start"
  ADDR="inet:127.0.0.1:21332"
}

# The processes of the milter: its main process and its children (rspamd's workers).
milter_procs() {
  local p
  for p in $milter_pids; do
    echo "$p"
    pgrep -P "$p" || true
  done
}
# CPU seconds (user+system) of the milter's processes so far.
milter_cpu() {
  local total=0 p tck
  tck=$(getconf CLK_TCK)
  for p in $(milter_procs); do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  python3 -c "print($total / $tck)"
}
# kB: summed RSS, summed peak RSS (VmHWM) and summed PSS of the milter's processes.
milter_mem() {
  local rss=0 hwm=0 pss=0 p v
  for p in $(milter_procs); do
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) && rss=$((rss + ${v:-0}))
    v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null) && hwm=$((hwm + ${v:-0}))
    v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) && pss=$((pss + ${v:-0}))
  done
  echo "$rss $hwm $pss"
}

# ---------------------------------------------------------------- the load
# The latency client: N threads, each sending its share of the messages, a new SMTP session
# for each; prints "count, wall seconds, p50 ms, p99 ms, replies".
cat >"$T/client.py" <<'EOF'
import smtplib, socket, sys, threading, time
port, sessions, count, listfile = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
mix = []
for line in open(listfile):
    kind, path = line.split()
    data = open(path, "rb").read().replace(b"\n", b"\r\n")
    # Dot-stuffing, and the end of DATA, as smtplib.SMTP.data does.
    data = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in data.split(b"\r\n"))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    mix.append(("" if kind == "B" else "friend@ham.example", data))
lat, codes, lock = [], {}, threading.Lock()
def worker(w):
    for i in range(w, count, sessions):
        sender, data = mix[i % len(mix)]
        s = smtplib.SMTP("127.0.0.1", port, timeout=120)
        # No Nagle: the "." must leave at once, not wait for the ACK of the data before it.
        s.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.ehlo("client.example")
        s.mail(sender)
        s.rcpt("kijitora@bench.example")
        code, _ = s.docmd("DATA")
        assert code == 354, code
        s.sock.sendall(data)
        t0 = time.perf_counter()
        s.sock.sendall(b".\r\n")
        code, _ = s.getreply()
        t1 = time.perf_counter()
        s.quit()
        with lock:
            lat.append((t1 - t0) * 1000)
            codes[code] = codes.get(code, 0) + 1
start = time.perf_counter()
threads = [threading.Thread(target=worker, args=(w,)) for w in range(sessions)]
for t in threads: t.start()
for t in threads: t.join()
wall = time.perf_counter() - start
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
print(len(lat), "%.3f" % wall, "%.3f" % pct(50), "%.3f" % pct(99),
      ",".join("%s:%d" % kv for kv in sorted(codes.items())))
EOF

# Throughput: $SESSIONS smtp-source processes, one session each, each on its own file of
# the mix (half ham, half bounces); prints messages per second of wall time.
throughput() {
  local files n per start end i kind path
  mapfile -t files < <(awk 'NR % 2 == 1 { h[++nh] = $0 } NR % 2 == 0 { b[++nb] = $0 }
    END { for (i = 1; i <= '"$SESSIONS"'; i++) print (i % 2 ? h[int((i + 1) / 2) * 7] : b[int(i / 2) * 7]) }' "$T/msgs/list")
  per=$((MESSAGES / SESSIONS))
  start=$(date +%s.%N)
  for i in $(seq 0 $((SESSIONS - 1))); do
    read -r kind path <<<"${files[$i]}"
    if [ "$kind" = B ]; then sender='<>'; else sender=friend@ham.example; fi
    smtp-source -A -s 1 -m "$per" -f "$sender" -t kijitora@bench.example -F "$path" \
      "127.0.0.1:$SMTP_PORT" &
  done
  wait
  end=$(date +%s.%N)
  python3 -c "print('%.1f' % ($per * $SESSIONS / ($end - $start)))"
}

# The queue must be empty between phases: discard(8) drains it at once.
drain() {
  local i
  for i in $(seq 1 600); do
    [ -z "$(find "$PF/spool/incoming" "$PF/spool/active" "$PF/spool/deferred" -type f 2>/dev/null | head -n 1)" ] &&
      return 0
    sleep 0.1
  done
  say "the queue did not drain"
}

declare -A R
run_config() {
  local name=$1 cpu0 cpu1 tp lat1 lat20 mem
  say "== $name"
  ADDR=""
  case $name in
    backstop) start_backstop ;;
    backstop-idle) start_backstop milter-idle.yaml ;;
    rspamd) start_rspamd ;;
  esac
  postconf -c "$PF/etc" -e "smtpd_milters = $ADDR"
  postfix -c "$PF/etc" reload >/dev/null 2>&1
  sleep 1
  # Warm-up: each message of the mix once (rspamd's and backstop's first messages compile
  # their rules; Postfix starts its smtpd processes).
  python3 "$T/client.py" "$SMTP_PORT" "$SESSIONS" "$(wc -l <"$T/msgs/list")" "$T/msgs/list" >/dev/null
  drain
  cpu0=$(milter_cpu)
  tp=$(throughput)
  drain
  lat20=$(python3 "$T/client.py" "$SMTP_PORT" "$SESSIONS" "$LATENCY_MESSAGES" "$T/msgs/list")
  drain
  lat1=$(python3 "$T/client.py" "$SMTP_PORT" 1 "$((LATENCY_MESSAGES / 4))" "$T/msgs/list")
  drain
  cpu1=$(milter_cpu)
  mem=$(milter_mem)
  R[$name.tp]=$tp
  R[$name.lat20]=$lat20
  R[$name.lat1]=$lat1
  R[$name.mem]=$mem
  R[$name.cpu]=$(python3 -c "print('%.3f' % (($cpu1 - $cpu0) * 1000 / ($MESSAGES + $LATENCY_MESSAGES + $LATENCY_MESSAGES // 4)))")
  say "$name: $tp msg/s; latency at $SESSIONS sessions: $lat20; at 1 session: $lat1; mem kB (rss hwm pss): $mem; CPU ms/msg ${R[$name.cpu]}"
  stop_milter
}
for c in none backstop backstop-idle rspamd; do run_config "$c"; done

# ---------------------------------------------------------------- the report
{
  echo "## milter-bench: $(date -u +%Y-%m-%d), backstop $("$MILTER_BIN" --version | cut -d' ' -f2-), $(rspamd --version 2>/dev/null | head -n 1)"
  echo
  echo "$(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; postfix $(postconf -d -h mail_version)."
  echo "$(wc -l <"$T/msgs/list") corpus messages (half ham, half bounces); throughput: smtp-source, $SESSIONS sessions,"
  echo "$MESSAGES messages; latency: end of DATA to 250, $LATENCY_MESSAGES messages at $SESSIONS sessions and $((LATENCY_MESSAGES / 4)) at 1."
  echo
  echo "| | none | backstop-milter | backstop-milter judging nothing | rspamd proxy (milter) |"
  echo "|---|---:|---:|---:|---:|"
  args=()
  for c in none backstop backstop-idle rspamd; do
    args+=("${R[$c.tp]}" "${R[$c.lat20]}" "${R[$c.lat1]}" "${R[$c.mem]}" "${R[$c.cpu]}")
  done
  python3 - "$SESSIONS" "${args[@]}" <<'EOF'
import sys
sessions, a = sys.argv[1], sys.argv[2:]
runs = [a[i:i + 5] for i in range(0, len(a), 5)]
tp = [float(r[0]) for r in runs]
lat = {20: [r[1].split() for r in runs], 1: [r[2].split() for r in runs]}
mem = [[int(x) for x in r[3].split()] for r in runs]
cpu = [float(r[4]) for r in runs]
def row(label, cells): print("| %s | %s |" % (label, " | ".join(cells)))
row("messages/s (smtp-source, %s sessions)" % sessions,
    ["%.1f" % tp[0]] + ["%.1f (%.2f)" % (v, v / tp[0]) for v in tp[1:]])
for n, label in ((20, sessions + " sessions"), (1, "1 session")):
    for i, p in ((2, "p50"), (3, "p99")):
        v = [float(r[i]) for r in lat[n]]
        row("%s end of DATA to 250, %s, ms" % (p, label),
            ["%.2f" % v[0]] + ["%.2f (+%.2f)" % (x, x - v[0]) for x in v[1:]])
row("replies (code:count), %s sessions" % sessions, [r[4] for r in lat[20]])
row("milter RSS, MiB (its processes summed)", [""] + ["%.1f" % (m[0] / 1024) for m in mem[1:]])
row("milter peak RSS / PSS, MiB", [""] + ["%.1f / %.1f" % (m[1] / 1024, m[2] / 1024) for m in mem[1:]])
row("milter CPU per message, ms", [""] + ["%.3f" % c for c in cpu[1:]])
EOF
} | tee "$OUT"
say "written to $OUT"
