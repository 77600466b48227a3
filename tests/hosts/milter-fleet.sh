#!/bin/bash
# Two MTAs of one fleet sharing a ledger in a real redis-server (issue 16).
#
#   bash tests/hosts/milter-fleet.sh BACKSTOP_MILTER_BINARY
#
# Postfix A (127.0.0.1:$A_SMTP) is the outbound MTA: it delivers example.net
# to a sink Maildir, so that what the world would receive can be read there.
# Postfix B (127.0.0.1:$B_SMTP) receives example.jp, where the bounces come
# back. Each has its own backstop-milter (the same site config: stamp key,
# BATV signing, ledger in Redis, learn_outbound); a redis-server started here
# listens on 127.0.0.1:$REDIS_PORT with its own directory. Python's smtplib
# drives both: own clients come from 127.0.0.1, foreign ones from 127.0.0.2.
# Cases:
#   batv-sign     mail sent through A reaches the sink stamped, with MAIL FROM
#                 rewritten to prvs=...=kijitora@example.jp;
#   stamp-alone   Redis emptied, its DSN into B is legit-bounce by the stamp
#                 (stamp-valid, no ledger-sent);
#   ledger-alone  another message sent through A, its DSN with the stamp field
#                 stripped is legit-bounce by the shared ledger (ledger-sent);
#   wrong-key     a stamp made with another secret is no proof;
#   copied        a real stamp moved onto another Message-ID is no proof;
#   batv-bounce   a DSN with no original, to the tagged sender A wrote, is
#                 legit-bounce by BATV (batv-valid); to a forged tag it is not;
#   redis-down    redis-server stopped: A still accepts and stamps outbound
#                 mail, B accepts clean mail and judges a stamped DSN legit,
#                 nothing is tempfailed, and the milter logs that it judges
#                 without the ledger;
#   redis-back    redis-server started again: after their backoff both
#                 milters learn and look up in it again (and log it).
# Prints "ok NAME" / "FAIL NAME: why", then "N passed, M failed"; exits 0 only
# when all passed (KEEP=1 keeps $T). Every wait polls for at most 30 s.

set -u
export LC_ALL=C
MILTER_IN=${1:?usage: milter-fleet.sh BACKSTOP_MILTER_BINARY}
T=${BACKSTOP_FLEET_DIR:-/tmp/backstop-milter-fleet}
# shellcheck source=tests/hosts/postfix-instance.sh
. "$(dirname "${BASH_SOURCE[0]}")/postfix-instance.sh"
A_SMTP=10745 A_MILTER=10746 B_SMTP=10747 B_MILTER=10748 REDIS_PORT=10749
passed=0
failed=0
pids=()
redis_pid=""

ok() { echo "ok $1"; passed=$((passed + 1)); }
no() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
preflight() {
  echo "FAIL preflight: $1"
  echo "$passed passed, $((failed + 1)) failed"
  exit 1
}

exec 9>"$T.lock"
flock -w 900 9 || preflight "$T.lock held"

stop_postfix() {
  local pf=$1 i
  [ -d "$pf/etc" ] && postfix -c "$pf/etc" stop >/dev/null 2>&1
  for i in $(seq 1 50); do
    [ -f "$pf/spool/pid/master.pid" ] || return 0
    kill -0 "$(tr -dc '0-9' <"$pf/spool/pid/master.pid")" 2>/dev/null || return 0
    sleep 0.1
  done
}
stop_redis() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null
    wait "$redis_pid" 2>/dev/null
    redis_pid=""
  fi
}
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  stop_redis
  stop_postfix "$T/a" &
  stop_postfix "$T/b"
  wait "$!"
  if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

stop_postfix "$T/a"
stop_postfix "$T/b"
rm -rf "$T"
mkdir -p "$T/redis"

# ---------------------------------------------------------------- redis
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$T/redis" --save '' \
  --appendonly no --daemonize no --logfile "$T/redis/log" &
redis_pid=$!
# redis.py PORT COMMAND...: one command, prints the reply line ("" when down).
cat >"$T/redis.py" <<'EOF'
import socket, sys
port, args = int(sys.argv[1]), sys.argv[2:]
msg = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)
try:
    s = socket.create_connection(("127.0.0.1", port), 1)
    s.sendall(msg)
    print(s.recv(4096).decode("ascii", "replace").strip())
except OSError:
    print("")
EOF
redis() { python3 "$T/redis.py" "$REDIS_PORT" "$@"; }
for i in $(seq 1 300); do
  [ "$(redis PING)" = "+PONG" ] && break
  sleep 0.1
done
[ "$(redis PING)" = "+PONG" ] || preflight "redis-server did not start: $(tail -n 3 "$T/redis/log")"

# ---------------------------------------------------------------- the site
printf 'k1 %s\n' "fleet-test-stamp-secret-0123" >"$T/stamp.keys"
printf '%s\n' "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" >"$T/ledger.key"
chmod 600 "$T/stamp.keys" "$T/ledger.key"
cat >"$T/milter.yaml" <<EOF
own:
  domains: [example.jp]
  hosts: [mail.own.example]
  networks: [198.51.100.0/24, 127.0.0.1/32]
threshold: 8
stamp:
  key_file: $T/stamp.keys
ledger:
  redis: redis://127.0.0.1:$REDIS_PORT/0
  key_file: $T/ledger.key
  timeout_ms: 200
batv:
  secrets: [fleet-batv-secret]
milter:
  backscatter: reject
  learn_outbound: true
  batv_sign: true
EOF
chmod 600 "$T/milter.yaml"

# make_postfix DIR PORT MILTER_PORT DOMAIN MAILBOX: a private instance that
# delivers MAILBOX@DOMAIN (and prvs=TAG=MAILBOX@DOMAIN) to DIR/vmail.
make_postfix() {
  local pf=$1 port=$2 milter=$3 domain=$4 box=$5
  mkdir -p "$pf/etc" "$pf/spool" "$pf/data" "$pf/vmail"
  chown postfix "$pf/data"
  chown nobody:nogroup "$pf/vmail"
  printf '/^prvs=[0-9a-fA-F]{10}=(.*)$/ ${1}\n' >"$pf/etc/batv.regexp"
  postfix_instance "$pf" "$port" "mx-$(basename "$pf").fleet.test" fleet.test "inet:127.0.0.1:$milter"
  cat >>"$pf/etc/main.cf" <<EOF
default_transport = error:the fleet tests send nothing out
relay_transport = error:the fleet tests send nothing out
virtual_mailbox_domains = $domain
virtual_mailbox_base = $pf/vmail
virtual_mailbox_maps = inline:{ $box@$domain=$box/ }
virtual_alias_maps = regexp:$pf/etc/batv.regexp
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
milter_command_timeout = 10s
milter_content_timeout = 20s
EOF
  { postfix -c "$pf/etc" set-permissions && postfix -c "$pf/etc" check &&
    postfix -c "$pf/etc" start; } >"$pf/start.log" 2>&1 || touch "$pf/start.failed"
}

# start_milter PORT LOG
start_milter() {
  local i
  "$MILTER_IN" --listen "inet:127.0.0.1:$1" --config "$T/milter.yaml" 2>>"$2" &
  pids+=($!)
  for i in $(seq 1 300); do
    grep -q listening "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  preflight "the milter did not start: $(tail -n 3 "$2")"
}
start_milter "$A_MILTER" "$T/milter-a.log"
start_milter "$B_MILTER" "$T/milter-b.log"
# Both at once (each takes seconds to start).
make_postfix "$T/a" "$A_SMTP" "$A_MILTER" example.net friend &
starting_a=$!
make_postfix "$T/b" "$B_SMTP" "$B_MILTER" example.jp kijitora &
wait "$starting_a" "$!"
for pf in "$T/a" "$T/b"; do
  [ -e "$pf/start.failed" ] && preflight "postfix $pf did not start: $(tail -n 5 "$pf/start.log")"
done
for port in "$A_SMTP" "$B_SMTP"; do
  for i in $(seq 1 300); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" \
      2>/dev/null && break
    sleep 0.1
  done
done

# send.py PORT SOURCE_IP SENDER RCPT FILE: one SMTP transaction; prints the
# final reply code and text on one line.
cat >"$T/send.py" <<'EOF'
import smtplib, sys
port, source, sender, rcpt, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
data = open(path, "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
s.ehlo("client.test")
code, text = s.mail(sender)
if code == 250:
    code, text = s.rcpt(rcpt)
if code == 250:
    code, text = s.data(data)
print(code, text.decode("ascii", "replace").replace("\n", " "))
s.quit()
EOF
# out ID: kijitora@example.jp sends message ID through A to friend@example.net.
out() {
  cat >"$T/$1.eml" <<EOF
From: Kijitora <kijitora@example.jp>
To: Friend <friend@example.net>
Subject: the report, $1
Date: Sun, 06 Dec 2026 09:10:00 +0000
Message-ID: <$1@example.jp>

Here it is.
EOF
  python3 "$T/send.py" "$A_SMTP" 127.0.0.1 kijitora@example.jp friend@example.net "$T/$1.eml" 2>&1
}
# into_b RCPT FILE: a foreign MTA sends FILE to B with the null sender.
into_b() { python3 "$T/send.py" "$B_SMTP" 127.0.0.2 "" "$1" "$2" 2>&1; }

# delivered DIR: the newest message in DIR/new not returned before (waits for
# it up to 30 s); empty when none came.
touch "$T/seen"
delivered() {
  local dir=$1 i f
  for i in $(seq 1 300); do
    for f in "$dir"/new/*; do
      [ -f "$f" ] || continue
      grep -qxF "$f" "$T/seen" && continue
      echo "$f" >>"$T/seen"
      echo "$f"
      return 0
    done
    sleep 0.1
  done
}
sink() { delivered "$T/a/vmail/friend"; }
inbox() { delivered "$T/b/vmail/kijitora"; }
verdict() { grep '^X-Backstop' "$1" | tr '\n' '|'; }

# dsn ORIGINAL_FILE MODE [SWAP]: a DSN as a foreign MTA writes it, returning the
# original's header (MODE all), without its stamp field (MODE nostamp), or
# nothing of it (MODE none); SWAP replaces its Message-ID.
dsn() {
  python3 - "$@" <<'EOF'
import re, sys
src, mode = sys.argv[1], sys.argv[2]
swap = sys.argv[3] if len(sys.argv) > 3 else ""
raw = open(src, "rb").read().decode("ascii", "replace").replace("\r\n", "\n") if src != "-" else ""
head = raw.split("\n\n", 1)[0] + "\n"
if mode == "nostamp":
    head = re.sub(r"(?im)^X-Bounce-Stamp:.*\n(?:[ \t].*\n)*", "", head)
if swap:
    head = re.sub(r"(?im)^(Message-ID:\s*)<[^>]*>", lambda m: m.group(1) + swap, head)
part = "" if mode == "none" else "--B\nContent-Type: text/rfc822-headers\n\n%s\n" % head
print("""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: kijitora@example.jp
Subject: Undelivered Mail Returned to Sender
Date: Sun, 06 Dec 2026 09:20:00 +0000
Message-ID: <dsn-%d@mx.example.net>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.example.net.
I'm sorry to have to inform you that your message could not be delivered.

<nobody@example.net>: host mx.example.net said: 550 5.1.1 User unknown

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; nobody@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

%s--B--""" % (abs(hash((src, mode, swap))), part))
EOF
}

# legit NAME REPLY FILE PROOF [NOT_PROOF]: the DSN was accepted and delivered
# tagged legit-bounce, its reason naming PROOF (and not NOT_PROOF).
legit() {
  local name=$1 r=$2 f=$3 proof=$4 not=${5:-}
  if [ "${r%% *}" != 250 ]; then no "$name" "not accepted: $r"
  elif [ -z "$f" ]; then no "$name" "accepted, not delivered"
  elif ! grep -q '^X-Backstop-Verdict: legit-bounce' "$f"; then no "$name" "not legit-bounce: $(verdict "$f")"
  elif ! grep -q "^X-Backstop-Reason: .*$proof" "$f"; then no "$name" "legit, but not by $proof: $(verdict "$f")"
  elif [ -n "$not" ] && grep -q "^X-Backstop-Reason: .*$not" "$f"; then no "$name" "legit by $not too: $(verdict "$f")"
  else ok "$name"; fi
}
# not_legit NAME REPLY: refused with 550, or accepted and tagged anything but
# legit-bounce.
not_legit() {
  local name=$1 r=$2 f
  case "$r" in
    "550 5.7.1 "*) ok "$name" ;;
    250*)
      f=$(inbox)
      if [ -z "$f" ]; then no "$name" "accepted, not delivered"
      elif grep -q '^X-Backstop-Verdict: legit-bounce' "$f"; then no "$name" "passed as legit: $(verdict "$f")"
      elif ! grep -q '^X-Backstop-Verdict: ' "$f"; then no "$name" "accepted untagged"
      else ok "$name"; fi
      ;;
    *) no "$name" "unexpected reply: $r" ;;
  esac
}

# ---------------------------------------------------------------- batv-sign
r=$(out fleet-1)
sent1=$(sink)
if [ "${r%% *}" != 250 ]; then no batv-sign "not accepted by A: $r"
elif [ -z "$sent1" ]; then no batv-sign "accepted by A, nothing reached the sink"
elif ! grep -q '^X-Bounce-Stamp: v=1; k=k1; ' "$sent1"; then no batv-sign "not stamped: $(head -n 8 "$sent1" | tr '\n' '|')"
elif ! grep -Eq '^Return-Path: <prvs=0[0-9]{3}[0-9a-f]{6}=kijitora@example\.jp>$' "$sent1"; then
  no batv-sign "the sink got MAIL FROM $(grep '^Return-Path' "$sent1")"
else ok batv-sign; fi
tagged=$(sed -n 's/^Return-Path: <\(prvs=.*\)>$/\1/p' "$sent1" | head -n 1)

# ---------------------------------------------------------------- stamp-alone
redis FLUSHALL >/dev/null
dsn "$sent1" all >"$T/stamp-alone.eml"
r=$(into_b kijitora@example.jp "$T/stamp-alone.eml")
legit stamp-alone "$r" "$(inbox)" stamp-valid ledger-sent

# ---------------------------------------------------------------- ledger-alone
r=$(out fleet-2)
sent2=$(sink)
if [ "${r%% *}" != 250 ] || [ -z "$sent2" ]; then no ledger-alone "not sent through A: $r"
else
  dsn "$sent2" nostamp >"$T/ledger-alone.eml"
  r=$(into_b kijitora@example.jp "$T/ledger-alone.eml")
  legit ledger-alone "$r" "$(inbox)" ledger-sent stamp-valid
fi

# ---------------------------------------------------------------- wrong-key
python3 - "$T/wrong.hdr" <<'EOF'
import base64, hashlib, hmac, sys, time
t = int(time.time())
fields = ["Kijitora <kijitora@example.jp>", "Sun, 06 Dec 2026 09:10:00 +0000", "<never-1@example.jp>"]
msg = b"v=1\0k1\0%d\0" % t + b"".join(f.encode() + b"\0" for f in fields)
h = base64.b64encode(hmac.new(b"not-the-fleet-secret-0123", msg, hashlib.sha256).digest()).decode()
open(sys.argv[1], "w").write(
    "From: %s\nTo: friend@example.net\nSubject: the report\nDate: %s\nMessage-ID: %s\n"
    "X-Bounce-Stamp: v=1; k=k1; t=%d; h=%s\n\nbody\n" % (fields[0], fields[1], fields[2], t, h))
EOF
dsn "$T/wrong.hdr" all >"$T/wrong-key.eml"
r=$(into_b kijitora@example.jp "$T/wrong-key.eml")
not_legit wrong-key "$r"

# ---------------------------------------------------------------- copied
dsn "$sent1" all "<other-1@example.jp>" >"$T/copied.eml"
r=$(into_b kijitora@example.jp "$T/copied.eml")
not_legit copied "$r"

# ---------------------------------------------------------------- batv-bounce
dsn - none >"$T/batv.eml"
if [ -z "$tagged" ]; then no batv-bounce "no tagged sender from batv-sign"
else
  r=$(into_b "$tagged" "$T/batv.eml")
  legit batv-bounce "$r" "$(inbox)" batv-valid
  forged=$(sed 's/^prvs=\(....\)....../prvs=\1000000/' <<<"$tagged")
  r=$(into_b "$forged" "$T/batv.eml")
  not_legit batv-forged "$r"
fi

# ---------------------------------------------------------------- redis-down
stop_redis
r=$(out fleet-3)
sent3=$(sink)
r2=$(python3 "$T/send.py" "$B_SMTP" 127.0.0.2 friend@example.net kijitora@example.jp "$T/fleet-1.eml" 2>&1)
clean=$(inbox)
if [ "${r%% *}" != 250 ] || [ -z "$sent3" ]; then no redis-down "A did not pass outbound mail: $r"
elif ! grep -q '^X-Bounce-Stamp: ' "$sent3"; then no redis-down "outbound not stamped"
elif [ "${r2%% *}" != 250 ] || [ -z "$clean" ]; then no redis-down "B did not pass clean mail: $r2"
elif grep -q '^X-Backstop' "$clean"; then no redis-down "clean mail tagged: $(verdict "$clean")"
else
  dsn "$sent3" all >"$T/down-stamp.eml"
  r=$(into_b kijitora@example.jp "$T/down-stamp.eml")
  f=$(inbox)
  dsn "$sent2" nostamp >"$T/down-ledger.eml"
  r3=$(into_b kijitora@example.jp "$T/down-ledger.eml")
  if [ "${r3%% *}" = 451 ] || [ "${r3:0:1}" = 4 ]; then no redis-down "tempfailed without Redis: $r3"
  elif ! grep -q 'shared ledger .* cannot be reached' "$T/milter-a.log" "$T/milter-b.log"; then
    no redis-down "no log line about the unreachable ledger"
  else legit redis-down "$r" "$f" stamp-valid; fi
fi

# ---------------------------------------------------------------- redis-back
# redis-server started again: after their backoff, A learns and B looks up
# once more (each try sends the message again; learning is idempotent).
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$T/redis" --save '' \
  --appendonly no --daemonize no --logfile "$T/redis/log" &
redis_pid=$!
key4=backstop:ledger:$(python3 -c '
import hashlib, hmac, sys
key = bytes.fromhex(open(sys.argv[1]).read().strip())
print(hmac.new(key, b"id:fleet-4@example.jp", hashlib.sha256).hexdigest())' "$T/ledger.key")
learnt=""
for i in $(seq 1 30); do
  r=$(out fleet-4)
  sent4=$(sink)
  [ "$(redis EXISTS "$key4")" = ":1" ] && { learnt=1; break; }
  sleep 1
done
back=""
if [ -n "$learnt" ]; then
  dsn "$sent4" nostamp >"$T/back.eml"
  for i in $(seq 1 30); do
    r=$(into_b kijitora@example.jp "$T/back.eml")
    f=$(inbox)
    grep -q '^X-Backstop-Reason: .*ledger-sent' "$f" 2>/dev/null && { back=1; break; }
    sleep 1
  done
fi
if [ -z "$learnt" ]; then no redis-back "A did not learn into Redis again: $r"
elif [ -z "$back" ]; then no redis-back "B did not find it in Redis again: $r $(verdict "$f")"
elif ! grep -q 'shared ledger .* answers again' "$T/milter-a.log" ||
  ! grep -q 'shared ledger .* answers again' "$T/milter-b.log"; then
  no redis-back "no log line about the ledger answering again"
else ok redis-back; fi

if [ "$failed" -gt 0 ]; then
  echo "--- milter A log"; tail -n 20 "$T/milter-a.log"
  echo "--- milter B log"; tail -n 20 "$T/milter-b.log"
  echo "--- postfix B log"; tail -n 20 "$T/b/maillog" 2>/dev/null
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
