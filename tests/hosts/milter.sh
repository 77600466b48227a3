#!/bin/bash
# backstop-milter behind a real Postfix smtpd, end to end (issue 16).
#
#   bash tests/hosts/milter.sh BACKSTOP_MILTER_BINARY
#
# A private Postfix instance listens on 127.0.0.1:$SMTP_PORT with
# smtpd_milters = inet:127.0.0.1:$MILTER_PORT and milter_default_action = accept,
# and delivers example.jp to a virtual(8) Maildir under $T. Python's smtplib
# drives it: "own network" clients connect from 127.0.0.1, foreign ones from
# 127.0.0.2 (both loopback; nothing leaves the machine). Cases:
#   clean        clean mail from outside is accepted, with no header added;
#   outbound     mail from the own network is accepted with an X-Bounce-Stamp;
#   backscatter  a forged DSN (a corpus bounce of mail never sent here) is
#                refused with 550 5.7.1 and the reason;
#   legit        a DSN returning the headers of the stamped message is accepted
#                and tagged legit-bounce (stamp-valid);
#   copied       the same DSN with the stamp moved onto another Message-ID is
#                not legit (no stamp-valid);
#   killed       the milter killed between RCPT and DATA: the mail is accepted;
#   quarantine   on a Unix socket with backscatter: quarantine, the forged DSN
#                is accepted and put on hold.
# Prints "ok NAME" / "FAIL NAME: why", then "N passed, M failed"; exits 0 only
# when all passed (KEEP=1 keeps $T for inspection). Bounded: every wait polls for at most 30 s.

set -u
export LC_ALL=C
MILTER_IN=${1:?usage: milter.sh BACKSTOP_MILTER_BINARY}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=${BACKSTOP_MILTER_DIR:-/tmp/backstop-milter}
PF=$T/postfix
# shellcheck source=tests/hosts/postfix-instance.sh
. "$HERE/postfix-instance.sh"
SMTP_PORT=${SMTP_PORT:-10725}
MILTER_PORT=${MILTER_PORT:-10726}
CORPUS=$ROOT/tests/fixtures/corpus
passed=0
failed=0
milter_pid=""

ok() { echo "ok $1"; passed=$((passed + 1)); }
no() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

exec 9>"$T.lock"
flock -w 900 9 || { echo "FAIL preflight: $T.lock held"; echo "0 passed, 1 failed"; exit 1; }

stop_postfix() {
  [ -d "$PF/etc" ] && postfix -c "$PF/etc" stop >/dev/null 2>&1
  local i
  for i in $(seq 1 50); do
    [ -f "$PF/spool/pid/master.pid" ] || return 0
    kill -0 "$(tr -dc '0-9' <"$PF/spool/pid/master.pid")" 2>/dev/null || return 0
    sleep 0.1
  done
}
stop_milter() {
  if [ -n "$milter_pid" ]; then
    kill "$milter_pid" 2>/dev/null
    milter_pid=""
  fi
}
cleanup() {
  stop_milter
  stop_postfix
  if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

stop_postfix
rm -rf "$T"
mkdir -p "$T/bin" "$PF/etc" "$PF/spool" "$PF/data" "$T/vmail"
cp "$MILTER_IN" "$T/bin/backstop-milter"
chown postfix "$PF/data"
chown nobody:nogroup "$T/vmail"

# The site config: the host tests' own infrastructure (the corpus bounce is of
# mail never sent through it), the own network 127.0.0.1, and a stamp key.
printf 'k1 %s\n' "milter-test-secret-0123456789" >"$T/stamp.keys"
chmod 600 "$T/stamp.keys"
cat >"$T/milter.yaml" <<EOF
own:
  domains: [example.jp]
  hosts: [mail.own.example]
  networks: [198.51.100.0/24, 127.0.0.1/32]
threshold: 8
stamp:
  key_file: $T/stamp.keys
milter:
  backscatter: reject
EOF
chmod 600 "$T/milter.yaml"

postfix_instance "$PF" "$SMTP_PORT" mx.milter.test milter.test "inet:127.0.0.1:$MILTER_PORT"
cat >>"$PF/etc/main.cf" <<EOF
default_transport = error:the milter tests send nothing out
relay_transport = error:the milter tests send nothing out
virtual_mailbox_domains = example.jp
virtual_mailbox_base = $T/vmail
virtual_mailbox_maps = inline:{ kijitora@example.jp=kijitora/ }
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
milter_command_timeout = 10s
milter_content_timeout = 20s
EOF

# start_milter LISTEN CONFIG: starts it and waits until it listens.
start_milter() {
  local before i
  before=$(grep -c listening "$T/milter.log" 2>/dev/null)
  "$T/bin/backstop-milter" --listen "$1" --config "$2" 2>>"$T/milter.log" &
  milter_pid=$!
  disown "$milter_pid" # no "Killed" notice from the shell in the killed case
  for i in $(seq 1 300); do
    [ "$(grep -c listening "$T/milter.log" 2>/dev/null)" -gt "${before:-0}" ] && return 0
    kill -0 "$milter_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL preflight: the milter did not start: $(tail -n 3 "$T/milter.log")"
  echo "$passed passed, $((failed + 1)) failed"
  exit 1
}
start_milter "inet:127.0.0.1:$MILTER_PORT" "$T/milter.yaml"
if ! { postfix -c "$PF/etc" set-permissions && postfix -c "$PF/etc" check &&
  postfix -c "$PF/etc" start; } >"$T/postfix-start.log" 2>&1; then
  echo "FAIL preflight: postfix did not start: $(tail -n 5 "$T/postfix-start.log")"
  echo "0 passed, 1 failed"
  exit 1
fi
for i in $(seq 1 300); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $SMTP_PORT), 1).close()" \
    2>/dev/null && break
  sleep 0.1
done

# send.py FROM_ADDR SOURCE_IP ENVELOPE_SENDER FILE [kill:PID]: one SMTP
# transaction; prints the final reply code and text on one line.
cat >"$T/send.py" <<'EOF'
import os, signal, smtplib, sys, time
port, source, sender, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
kill = sys.argv[5] if len(sys.argv) > 5 else ""
data = open(path, "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
s.ehlo("client.test")
s.mail(sender)
s.rcpt("kijitora@example.jp")
if kill:
    os.kill(int(kill), signal.SIGKILL)
    time.sleep(0.2)
code, text = s.data(data)
print(code, text.decode("ascii", "replace").replace("\n", " "))
s.quit()
EOF
send() { python3 "$T/send.py" "$SMTP_PORT" "$@" 2>&1; }

# The message delivered since the last call (waits for up to 30 s for the
# COUNTth file); empty when none came.
touch "$T/seen"
delivered() {
  local count=$1 i f
  for i in $(seq 1 300); do
    [ "$(ls "$T/vmail/kijitora/new" 2>/dev/null | wc -l)" -ge "$count" ] && break
    sleep 0.1
  done
  for f in "$T/vmail/kijitora/new"/*; do
    [ -f "$f" ] || continue
    grep -qxF "$f" "$T/seen" && continue
    echo "$f" >>"$T/seen"
    echo "$f"
    return 0
  done
}
n=0

# ---------------------------------------------------------------- clean
cat >"$T/clean.eml" <<'EOF'
From: Friend <friend@example.net>
To: kijitora@example.jp
Subject: lunch?
Date: Sun, 06 Dec 2026 09:00:00 +0000
Message-ID: <clean-1@example.net>

At noon?
EOF
r=$(send 127.0.0.2 friend@example.net "$T/clean.eml")
n=$((n + 1)); f=$(delivered $n)
if [ "${r%% *}" != 250 ]; then no clean "not accepted: $r"
elif [ -z "$f" ]; then no clean "accepted but not delivered"
elif grep -qi '^X-Backstop\|^X-Bounce-Stamp' "$f"; then no clean "headers added: $(grep -i '^X-B' "$f")"
else ok clean; fi

# ---------------------------------------------------------------- outbound
cat >"$T/out.eml" <<'EOF'
From: Kijitora <kijitora@example.jp>
To: kijitora@example.jp
Subject: the report you asked for
Date: Sun, 06 Dec 2026 09:10:00 +0000
Message-ID: <sent-1@example.jp>

Here it is.
EOF
r=$(send 127.0.0.1 kijitora@example.jp "$T/out.eml")
n=$((n + 1)); stamped=$(delivered $n)
if [ "${r%% *}" != 250 ]; then no outbound "not accepted: $r"
elif ! grep -q '^X-Bounce-Stamp: v=1; k=k1; t=[0-9]*; h=' "$stamped"; then
  no outbound "no stamp in the delivered message: $(head -n 12 "$stamped" | tr '\n' '|')"
else ok outbound; fi

# ---------------------------------------------------------------- backscatter
r=$(send 127.0.0.2 "" "$CORPUS/bounces/sisimai-bsd/lhost-postfix-02.eml")
case "$r" in
  "550 5.7.1 backscatter refused: "*) ok backscatter ;;
  *) no backscatter "expected 550 5.7.1 with the reason, got: $r" ;;
esac

# ---------------------------------------------------------------- legit
# A DSN as a foreign MTA writes it, returning the stamped message's headers.
dsn() {
  python3 - "$1" "$2" <<'EOF'
import sys
src, swap = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read().decode("ascii", "replace").replace("\r\n", "\n")
head = raw.split("\n\n", 1)[0] + "\n"
if swap:
    head = head.replace("<sent-1@example.jp>", swap)
print("""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: kijitora@example.jp
Subject: Undelivered Mail Returned to Sender
Date: Sun, 06 Dec 2026 09:20:00 +0000
Message-ID: <dsn-%s@mx.example.net>
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

--B
Content-Type: text/rfc822-headers

%s
--B--""" % ("copied" if swap else "legit", head))
EOF
}
dsn "$stamped" "" >"$T/legit.eml"
r=$(send 127.0.0.2 "" "$T/legit.eml")
n=$((n + 1)); f=$(delivered $n)
if [ "${r%% *}" != 250 ]; then no legit "not accepted: $r"
elif ! grep -q '^X-Backstop-Verdict: legit-bounce' "$f"; then
  no legit "not tagged legit-bounce: $(grep '^X-Backstop' "$f" | tr '\n' '|')"
elif ! grep -q '^X-Backstop-Reason: .*(stamp-valid)' "$f"; then
  no legit "legit, but not by the stamp: $(grep '^X-Backstop' "$f" | tr '\n' '|')"
else ok legit; fi

# ---------------------------------------------------------------- copied
dsn "$stamped" "<other-1@example.jp>" >"$T/copied.eml"
r=$(send 127.0.0.2 "" "$T/copied.eml")
if [ "${r%% *}" = 250 ]; then
  n=$((n + 1)); f=$(delivered $n)
  if grep -q '^X-Backstop-Verdict: legit-bounce' "$f"; then
    no copied "a stamp copied onto another Message-ID passed: $(grep '^X-Backstop' "$f" | tr '\n' '|')"
  elif ! grep -q '^X-Backstop-Verdict: ' "$f"; then no copied "accepted untagged"
  else ok copied; fi
else
  case "$r" in
    550*) ok copied ;;
    *) no copied "unexpected reply: $r" ;;
  esac
fi

# ---------------------------------------------------------------- killed
r=$(send 127.0.0.2 friend@example.net "$T/clean.eml" "$milter_pid")
milter_pid=""
n=$((n + 1)); f=$(delivered $n)
if [ "${r%% *}" != 250 ]; then no killed "not accepted with the milter gone: $r"
elif [ "$(ls "$T/vmail/kijitora/new" | wc -l)" -lt "$n" ]; then no killed "accepted, not delivered"
else ok killed; fi

# ---------------------------------------------------------------- quarantine
# The milter again, on a Unix socket (group postfix, as the service file sets
# it), with backscatter: quarantine: the forged DSN is accepted and held.
sed 's/backscatter: reject/backscatter: quarantine/' "$T/milter.yaml" >"$T/milter-q.yaml"
chmod 600 "$T/milter-q.yaml"
start_milter "unix:$T/milter.sock" "$T/milter-q.yaml"
chgrp postfix "$T/milter.sock"
postconf -c "$PF/etc" -e "smtpd_milters = unix:$T/milter.sock" &&
  postfix -c "$PF/etc" reload >/dev/null 2>&1
sleep 1
r=$(send 127.0.0.2 "" "$CORPUS/bounces/sisimai-bsd/lhost-postfix-02.eml")
held=""
for i in $(seq 1 300); do
  held=$(find "$PF/spool/hold" -type f 2>/dev/null | head -n 1)
  [ -n "$held" ] && break
  sleep 0.1
done
if [ "${r%% *}" != 250 ]; then no quarantine "not accepted: $r"
elif [ -z "$held" ]; then no quarantine "accepted, but nothing on hold"
elif ! grep -q 'inbound: backscatter' "$T/milter.log"; then no quarantine "held, but the milter did not judge it"
else ok quarantine; fi
stop_milter

if [ "$failed" -gt 0 ]; then
  echo "--- milter log"; tail -n 30 "$T/milter.log"
  echo "--- postfix log"; tail -n 30 "$PF/maillog" 2>/dev/null
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
