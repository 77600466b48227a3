#!/bin/bash
# Real delivery agents, end to end: procmail, maildrop, Dovecot LDA with
# Pigeonhole Sieve (extprograms), both Dovecot 2.3 (the host's, Debian 12)
# and Dovecot 2.4 (Debian 13's, in the chroot that install-dovecot24.sh
# builds), a private Postfix instance delivering
# through ~/.forward, and Debian's Exim binary with a private configuration
# (Debian's userforward router and address_pipe transport, and the example
# router and transport), each running the example files of packaging/examples
# with the built backstop binary. The proofs (issue 14) go through the same
# Postfix: the ledger fed by the cron-learn and postfix-learn recipes, DKIM
# signatures made by python3-dkim, BATV tags made by the Exim binary.
#
#   bash tests/hosts/run.sh BACKSTOP_BINARY [EXAMPLES_DIR]
#
# Prints "ok NAME" or "FAIL NAME: why" per case (a failing case is followed
# by its log, indented with "  | "), then "N passed, M failed". Exits 0 only
# when every case passed. A missing host program is a failure, never a skip:
# tests/hosts/install.sh installs them (Debian 12, as root), and
# tests/hosts/install-dovecot24.sh the Debian 13 chroot in $DV24_ROOT.
#
# Needs root (it creates the unprivileged user $U and runs Postfix). Works
# offline: Postfix has no listener and sends nothing out, Dovecot runs no
# daemon. Dovecot 2.4 runs in the chroot, each command in a private mount
# namespace where $T is bind-mounted at the same path, so that paths are the
# same inside and out and no mount outlives the command. Scratch files live
# in $T (default /tmp/backstop-hosts), which is
# removed when every case passed; it stays for inspection after a failure and
# is wiped at the start of the next run. Runs are serialised with a lock, so
# concurrent test runs on one machine do not collide.
#
# The examples are copied into $T/examples with three path substitutions,
# which are the only differences to what a sysadmin installs:
#   /usr/bin/backstop          -> $T/bin/backstop (a copy of BACKSTOP_BINARY)
#   /usr/lib/dovecot/sieve-    -> $T/dovecot/lib/sieve-
#   /etc/dovecot/sieve/        -> $T/dovecot/sieve/

set -u
export LC_ALL=C

BIN_IN=${1:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
EX_IN=${2:-$ROOT/packaging/examples}
CORPUS=$ROOT/tests/fixtures/corpus
T=${BACKSTOP_HOSTS_DIR:-/tmp/backstop-hosts}
U=bstest                 # the mail user; created once and reused
H=$T/home                # its home directory
PF=$T/postfix            # the private Postfix instance
DV=$T/dovecot            # Dovecot config, Sieve scripts, program directories
EX=$T/exim               # the private Exim configuration, spool and logs
EXIM_ROOT=${EXIM_ROOT:-/opt/backstop-tests/exim4} # Exim unpacked by install.sh
EXIM=$EXIM_ROOT/usr/sbin/exim4
DV24_ROOT=${DV24_ROOT:-/opt/backstop-tests/trixie} # Debian 13 with Dovecot 2.4, by install-dovecot24.sh
DV_IN=""                 # empty: Dovecot 2.3 of the host; else the chroot of the Dovecot under test
DOMAIN=vm.test           # Postfix's own host name
OTHER=example.jp         # also a local domain: the originals' From domain

passed=0
failed=0
started=$(date +%s)

say_ok() { echo "ok $1"; passed=$((passed + 1)); }
say_fail() {
  local name=$1 why=$2 log=${3:-}
  echo "FAIL $name: $why"
  if [ -n "$log" ] && [ -s "$log" ]; then
    tail -n 40 "$log" | sed 's/^/  | /'
  fi
  failed=$((failed + 1))
}
finish() {
  if [ "$failed" -eq 0 ]; then
    echo "hosts: $(($(date +%s) - started)) s" >&2
  else
    echo "hosts: $(($(date +%s) - started)) s; logs and mail kept in $T" >&2
  fi
  echo "$passed passed, $failed failed"
  if [ "$failed" -eq 0 ]; then exit 0; else exit 1; fi
}

# ---------------------------------------------------------------- preflight

if [ -z "$BIN_IN" ]; then
  say_fail preflight "usage: run.sh BACKSTOP_BINARY [EXAMPLES_DIR]"
  finish
fi
if [ "$(id -u)" != 0 ]; then
  say_fail preflight "must run as root (creates the test user $U, runs a private Postfix)"
  finish
fi
if [ ! -x "$BIN_IN" ]; then
  say_fail preflight "no executable backstop binary at $BIN_IN"
  finish
fi
for f in procmailrc procmailrc-filter procmailrc-condition mailfilter mailfilter-xfilter \
  backstop.sieve backstop-filter.sieve dovecot.conf forward exim.md \
  exim4-router-backstop exim4-transport-backstop postfix-learn cron-learn \
  dovecot-imapsieve-learn.sieve dovecot-imapsieve-learn.conf dovecot-2.4.conf \
  dovecot-2.4-imapsieve-learn.conf; do
  if [ ! -f "$EX_IN/$f" ]; then
    say_fail preflight "example $EX_IN/$f is missing"
  fi
done

LDA=/usr/lib/dovecot/dovecot-lda
missing=()
for p in /usr/bin/procmail /usr/bin/maildrop /usr/bin/maildirmake "$LDA" /usr/bin/doveadm /usr/lib/dovecot/imap \
  /usr/bin/sievec /usr/lib/dovecot/modules/sieve/lib90_sieve_extprograms_plugin.so \
  /usr/sbin/postfix /usr/sbin/sendmail /usr/sbin/postqueue /usr/sbin/postsuper \
  /usr/lib/postfix/sbin/local /usr/sbin/runuser /usr/bin/flock /usr/sbin/useradd \
  /usr/sbin/postmap /usr/lib/postfix/sbin/pipe /usr/bin/dkimsign /usr/bin/dknewkey /usr/bin/python3 \
  "$EXIM" "$EXIM_ROOT/etc/exim4/conf.d/router/600_exim4-config_userforward"; do
  [ -e "$p" ] || missing+=("$p")
done
id Debian-exim >/dev/null 2>&1 || missing+=("user Debian-exim")
if [ "${#missing[@]}" -gt 0 ]; then
  say_fail hosts-installed "missing ${missing[*]} (run tests/hosts/install.sh as root)"
fi
missing=()
for p in /usr/lib/dovecot/dovecot-lda /usr/bin/doveadm /usr/bin/sievec /usr/lib/dovecot/imap \
  /usr/lib/dovecot/modules/sieve/lib90_sieve_extprograms_plugin.so /usr/bin/env /usr/bin/doveconf; do
  [ -e "$DV24_ROOT$p" ] || missing+=("$DV24_ROOT$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say_fail dovecot24-installed "missing ${missing[*]} (run tests/hosts/install-dovecot24.sh as root)"
fi
[ "$failed" -eq 0 ] || finish

# One run at a time on a machine: the user, $T and the Postfix instance are shared.
exec 9>"$T.lock"
if ! flock -w 900 9; then
  say_fail preflight "another host test run holds $T.lock for more than 900 s"
  finish
fi

# Stops the private Postfix (also a master left over from an interrupted run)
# and waits until its master has gone.
stop_postfix() {
  local pid="" i
  if [ -f "$PF/spool/pid/master.pid" ]; then
    pid=$(tr -dc '0-9' <"$PF/spool/pid/master.pid")
  fi
  if [ -d "$PF/etc" ]; then
    postfix -c "$PF/etc" stop >/dev/null 2>&1
  fi
  if [ -n "$pid" ] && grep -qa master "/proc/$pid/cmdline" 2>/dev/null; then
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || return 0
      [ -r "/proc/$pid/stat" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat")" = Z ] && return 0
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
  fi
  return 0
}
cleanup() {
  stop_postfix
  rm -f "/var/mail/$U" # the empty mailbox procmail -d creates
  if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
    rm -rf "$T"
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

stop_postfix
rm -rf "$T"
mkdir -p "$T/bin" "$T/msg" "$T/logs" "$T/examples"
chmod 755 "$T"

# The test user: no login shell needed beyond /bin/sh for procmail and Postfix.
if ! id "$U" >/dev/null 2>&1; then
  if ! useradd -M -d "$H" -s /bin/sh -c "backstop host tests" "$U" >"$T/logs/useradd.log" 2>&1; then
    say_fail preflight "useradd $U failed" "$T/logs/useradd.log"
    finish
  fi
elif [ "$(getent passwd "$U" | cut -d: -f6)" != "$H" ]; then
  usermod -d "$H" "$U"
fi
mkdir -p "$H"
chown "$U:" "$H"
chmod 700 "$H"

install -m 755 "$BIN_IN" "$T/bin/backstop"
B=$T/bin/backstop
for f in "$EX_IN"/*; do
  sed -e "s#/usr/bin/backstop#$B#g" \
    -e "s#/usr/lib/dovecot/sieve-#$DV/lib/sieve-#g" \
    -e "s#/etc/dovecot/sieve/#$DV/sieve/#g" "$f" >"$T/examples/$(basename "$f")"
done
chmod 644 "$T"/examples/*
EXA=$T/examples

# Samples (licensed fixtures). bounce: a Postfix DSN whose returned original
# (From kijitora@example.jp) never passed through the own hosts of own.yaml:
# backscatter. clean: ordinary list mail (it starts with an mbox From_ line).
# nullsender: a bounce with Return-Path postmaster@..., which is backscatter
# only when the envelope sender is empty (null-sender evidence).
cp "$CORPUS/bounces/sisimai-bsd/lhost-postfix-02.eml" "$T/msg/bounce.eml"
cp "$CORPUS/ham/spamassassin-easy-ham-2/00018.3b6a8c5da4043f2a6a63a1ae12bd9824.eml" "$T/msg/clean.eml"
cp "$CORPUS/bounces/sisimai-bsd/lhost-trendmicro-01.eml" "$T/msg/nullsender.eml"
# The same bounce without its Return-Path header, so that only the envelope
# the host passes can say who sent it.
sed '/^Return-Path:/d' "$T/msg/nullsender.eml" >"$T/msg/nullsender-norp.eml"
tail -n +2 "$T/msg/clean.eml" >"$T/msg/clean-nofrom.eml"
# Clean mail whose sender wrote backstop's fields at the top, asking the
# recipes to throw it away, or to file it as backscatter. Only the fields of a
# backstop run that succeeded may be obeyed.
for action in discard folder; do
  {
    echo "X-Backstop-Verdict: backscatter; kind=dsn; action=$action"
    echo "X-Backstop-Reason: ownership evidence totals -3: the original was not yours (forged sender)"
    cat "$T/msg/clean-nofrom.eml"
  } >"$T/msg/forged-$action.eml"
done
chmod 644 "$T"/msg/*
M=$T/msg

# Stand-ins for a backstop that fails, put in its place in the recipes: it
# reads the whole message, then exits 75 (as backstop filter does when it
# cannot read or write the message), or is killed (as by a timeout, the OOM
# killer or an administrator).
mkdir -p "$T/fail"
printf '#!/bin/sh\ncat >/dev/null\nexit 75\n' >"$T/fail/exit75"
printf '#!/bin/sh\ncat >/dev/null\nkill -KILL $$\n' >"$T/fail/killed"
# A third, for Dovecot, which kills a program that runs too long: "slow" runs
# until it is killed (the test configs give Dovecot a timeout of 1 s).
printf '#!/bin/sh\ncat >/dev/null\nexec sleep 120\n' >"$T/fail/slow"
chmod 755 "$T/fail/exit75" "$T/fail/killed" "$T/fail/slow"
FAILS="exit75 killed"

# ---------------------------------------------------------------- helpers

# Runs a command as the test user with a minimal environment.
as_user() {
  runuser -u "$U" -- env -i PATH=/usr/bin:/bin HOME="$H" USER="$U" LOGNAME="$U" "$@"
}

# Empties the user's mail and hook-up files; installs the test config NAME
# (tests/hosts/NAME.yaml) as the default config, or none for "none".
reset_home() {
  local config=$1
  rm -rf "$H/Maildir" "$H/blocker" "$H/.procmailrc" "$H/.mailfilter" "$H"/.forward* \
    "$H/.config" "$H/.local" "$H/sieve" "$H/.dovecot.sieve" "$H/.dovecot.lda-dupes"* "$H/env.json" \
    "/var/mail/$U"
  if [ "$config" != none ]; then
    mkdir -p "$H/.config/backstop"
    cp "$HERE/$config.yaml" "$H/.config/backstop/config.yaml"
    chown -R "$U:" "$H/.config"
  fi
  # For fail.yaml: a regular file where the Maildir's parent should be.
  echo "not a directory" >"$H/blocker"
  chown "$U:" "$H/blocker"
}

# Installs an example as a file in the user's home (owned by the user).
install_example() {
  install -o "$U" -g "$(id -gn "$U")" -m "$3" "$EXA/$1" "$H/$2"
}

# The same with the backstop binary replaced by the stand-in $T/fail/MODE.
install_failing() {
  sed "s#$B#$T/fail/$4#g" "$EXA/$1" >"$H/$2"
  chown "$U:" "$H/$2"
  chmod "$3" "$H/$2"
}

nfiles() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }
onefile() { find "$1" -maxdepth 1 -type f 2>/dev/null | head -n 1; }

why=""
# fails the current case with a reason
no() { why=$*; return 1; }

# Checks where a message landed: expects exactly IN files in Maildir/new and
# BS in Maildir/.Backscatter/new.
landed() {
  local in=$1 bs=$2 gotin gotbs
  gotin=$(nfiles "$H/Maildir/new")
  gotbs=$(nfiles "$H/Maildir/.Backscatter/new")
  [ "$gotin" = "$in" ] && [ "$gotbs" = "$bs" ] && return 0
  why="expected $in in Maildir/new and $bs in .Backscatter/new, found $gotin and $gotbs"
  local f
  for f in $(find "$H/Maildir/new" "$H/Maildir/.Backscatter/new" -maxdepth 1 -type f 2>/dev/null); do
    why="$why; ${f#"$H/"}: $(grep -m2 '^X-Backstop-' "$f" | tr '\n' ' ')"
  done
  return 1
}

# The message body the hosts store: the sample less a leading From_ line,
# plus, for a procmail pipe, the newline procmail appends when the message
# does not end in an empty line (procmail's own Maildir writes do not).
expected_body() {
  local src=$1 out=$2 procmail=$3
  if head -c 5 "$src" | grep -q '^From '; then tail -n +2 "$src" >"$out"; else cp "$src" "$out"; fi
  if [ "$procmail" = procmail ] && [ "$(tail -c 2 "$out" | od -An -tx1 | tr -d ' \n')" != 0a0a ]; then
    printf '\n' >>"$out"
  fi
}

# Checks a stored file: the two X-Backstop lines (verdict VERDICT) at the
# top, then the input byte for byte.
stored_exact() {
  local file=$1 src=$2 verdict=$3 procmail=${4:-}
  [ -n "$file" ] && [ -f "$file" ] || no "no stored file" || return 1
  expected_body "$src" "$T/expected" "$procmail"
  head -n 1 "$file" | grep -q "^X-Backstop-Verdict: $verdict[;]" ||
    no "first line is not X-Backstop-Verdict: $verdict: $(head -n 1 "$file")" || return 1
  head -n 2 "$file" | tail -n 1 | grep -q '^X-Backstop-Reason: ' ||
    no "second line is not X-Backstop-Reason: $(head -n 2 "$file" | tail -n 1)" || return 1
  tail -n +3 "$file" | cmp -s - "$T/expected" ||
    no "$(basename "$file") is not the input plus two header lines ($(tail -n +3 "$file" | cmp - "$T/expected" 2>&1 | head -n 1))"
}

# Checks a stored file that must be the input unchanged.
stored_unchanged() {
  local file=$1 src=$2 procmail=${3:-}
  [ -n "$file" ] && [ -f "$file" ] || no "no stored file" || return 1
  expected_body "$src" "$T/expected" "$procmail"
  cmp -s "$file" "$T/expected" || no "$(basename "$file") differs from the input ($(cmp "$file" "$T/expected" 2>&1 | head -n 1))"
}

has_verdict() {
  grep -q "^X-Backstop-Verdict: $2[;]" "$1" 2>/dev/null ||
    no "$(basename "$1") has no X-Backstop-Verdict: $2 ($(grep -m1 '^X-Backstop-Verdict:' "$1" 2>/dev/null))"
}

# Runs one case: NAME, then the function; its output goes to the case log.
case_() {
  local name=$1 fn=$2 log="$T/logs/$1.log"
  why=""
  if "$fn" >"$log" 2>&1; then
    say_ok "$name"
  else
    say_fail "$name" "${why:-failed}" "$log"
  fi
}

# Expects the exit status $2 from the command that follows.
expect_rc() {
  local want=$1 got
  shift
  "$@"
  got=$?
  [ "$got" = "$want" ] || no "$(basename "$1") exited $got, expected $want"
}

# ---------------------------------------------------------------- samples

samples() {
  local v
  v=$("$B" check --format word -c "$HERE/own.yaml" "$M/bounce.eml")
  [ "$v" = backscatter ] || no "bounce.eml: $v, expected backscatter" || return 1
  v=$("$B" check --format word -c "$HERE/own.yaml" "$M/clean.eml")
  [ "$v" = clean ] || no "clean.eml: $v, expected clean" || return 1
  v=$("$B" check --format word -c "$HERE/own.yaml" --sender '' "$M/nullsender.eml")
  [ "$v" = backscatter ] || no "nullsender.eml with sender <>: $v, expected backscatter" || return 1
  v=$("$B" check --format word -c "$HERE/own.yaml" --sender someone@example.org "$M/nullsender.eml")
  [ "$v" = clean ] || no "nullsender.eml with a sender: $v, expected clean"
}

# Checks the JSON report a test-only hook-up wrote to ~/env.json: the own
# domain (none configured: the recipient's), the envelope sender and where
# each came from.
env_report() {
  local domain=$1 sender=$2 sender_source=$3 rcpt=$4 rcpt_source=$5 j
  j=$(cat "$H/env.json" 2>/dev/null)
  [ -n "$j" ] || no "backstop wrote no report" || return 1
  case $j in *"\"own\":{\"domains\":[\"$domain\"]"*) ;; *) no "own.domains is not [$domain]: ${j:0:400}" || return 1 ;; esac
  case $j in *"\"sender\":\"$sender\",\"sender_source\":\"$sender_source\""*) ;;
    *) no "envelope sender is not \"$sender\" from $sender_source: ${j:0:400}" || return 1 ;; esac
  case $j in *"\"recipient\":\"$rcpt\",\"recipient_source\":\"$rcpt_source\""*) ;;
    *) no "envelope recipient is not $rcpt from $rcpt_source: ${j:0:400}" ;; esac
}

# ---------------------------------------------------------------- procmail
# procmail -d USER as root: the local delivery agent mode, reading ~/.procmailrc.

pm() { procmail "$@" -d "$U"; }

# As the filter and condition examples say: procmail needs ~/Maildir to exist.
mkmaildir() { as_user mkdir -p "$H/Maildir/cur" "$H/Maildir/new" "$H/Maildir/tmp"; }

procmail_deliver() {
  reset_home own
  install_example procmailrc .procmailrc 644
  expect_rc 0 pm -f '' <"$M/bounce.eml" || return 1
  landed 0 1 || return 1
  stored_exact "$(onefile "$H/Maildir/.Backscatter/new")" "$M/bounce.eml" backscatter procmail || return 1
  [ -f "$H/Maildir/.Backscatter/maildirfolder" ] || no "no maildirfolder file in .Backscatter" || return 1
  expect_rc 0 pm -f someone@example.org <"$M/clean.eml" || return 1
  landed 1 1 || return 1
  stored_exact "$(onefile "$H/Maildir/new")" "$M/clean.eml" clean procmail || return 1
  [ ! -s "/var/mail/$U" ] || no "procmail also delivered to /var/mail/$U"
}

procmail_filter() {
  reset_home own
  install_example procmailrc-filter .procmailrc 644
  mkmaildir
  expect_rc 0 pm -f '' <"$M/bounce.eml" || return 1
  landed 0 1 || return 1
  stored_exact "$(onefile "$H/Maildir/.Backscatter/new")" "$M/bounce.eml" backscatter procmail || return 1
  expect_rc 0 pm -f someone@example.org <"$M/clean.eml" || return 1
  landed 1 1 || return 1
  stored_exact "$(onefile "$H/Maildir/new")" "$M/clean.eml" clean procmail || return 1
  # action=discard in the config: the backscatter goes to /dev/null.
  reset_home discard
  install_example procmailrc-filter .procmailrc 644
  mkmaildir
  expect_rc 0 pm -f '' <"$M/bounce.eml" || return 1
  landed 0 0
}

procmail_filter_failing() {
  # backstop filter cannot run: procmail rescues the unfiltered message.
  reset_home own
  sed "s#$B#$T/bin/no-such-backstop#" "$EXA/procmailrc-filter" >"$H/.procmailrc"
  chown "$U:" "$H/.procmailrc"
  mkmaildir
  expect_rc 0 pm -f '' <"$M/bounce.eml" || return 1
  landed 1 0 || return 1
  stored_unchanged "$(onefile "$H/Maildir/new")" "$M/bounce.eml"
}

# The message filed in the inbox by a backstop filter that succeeded has
# backstop's own verdict, not the sender's.
forged_filtered() {
  local file
  file=$(onefile "$H/Maildir/new")
  has_verdict "$file" clean || return 1
  [ "$(grep -c '^X-Backstop-Verdict:' "$file")" = 1 ] ||
    no "the sender's X-Backstop-Verdict is still in $(basename "$file")"
}

# forged_to_inbox EXAMPLE DEST MODE SETUP DELIVER: with EXAMPLE installed as
# DEST (file mode MODE) and backstop replaced by each failing stand-in, a
# message with forged fields asking for discard, or for the backscatter
# folder, is delivered (SETUP prepares the Maildir, DELIVER runs the host):
# it must land in the inbox unchanged.
forged_to_inbox() {
  local example=$1 dest=$2 perm=$3 setup=$4 deliver=$5 mode action
  for mode in $FAILS; do
    for action in discard folder; do
      echo "== $mode, forged action=$action"
      reset_home own
      install_failing "$example" "$dest" "$perm" "$mode"
      "$setup" || no "$setup failed" || return 1
      expect_rc 0 "$deliver" -f someone@example.org <"$M/forged-$action.eml" || return 1
      landed 1 0 || { why="$mode, forged action=$action: $why"; return 1; }
      stored_unchanged "$(onefile "$H/Maildir/new")" "$M/forged-$action.eml" || return 1
    done
  done
}

procmail_filter_forged() {
  # backstop filter succeeds: it drops the sender's fields and the recipe
  # obeys its own verdict.
  reset_home own
  install_example procmailrc-filter .procmailrc 644
  mkmaildir
  expect_rc 0 pm -f someone@example.org <"$M/forged-discard.eml" || return 1
  landed 1 0 || return 1
  forged_filtered || return 1
  # backstop filter fails: procmail goes on with the unfiltered message, whose
  # forged fields must not be obeyed.
  forged_to_inbox procmailrc-filter .procmailrc 644 mkmaildir pm
}

procmail_condition_forged() {
  # backstop check fails: the condition does not match, whatever fields the
  # sender wrote.
  forged_to_inbox procmailrc-condition .procmailrc 644 mkmaildir pm
}

procmail_condition() {
  reset_home own
  install_example procmailrc-condition .procmailrc 644
  mkmaildir
  expect_rc 0 pm -f '' <"$M/bounce.eml" || return 1
  landed 0 1 || return 1
  stored_unchanged "$(onefile "$H/Maildir/.Backscatter/new")" "$M/bounce.eml" || return 1
  expect_rc 0 pm -f someone@example.org <"$M/clean.eml" || return 1
  landed 1 1 || return 1
  stored_unchanged "$(onefile "$H/Maildir/new")" "$M/clean.eml"
}

procmail_exit75() {
  # fail.yaml: the Maildir cannot be created, backstop exits 75, and the
  # recipe makes procmail exit 75 with nothing delivered anywhere.
  reset_home fail
  install_example procmailrc .procmailrc 644
  expect_rc 75 pm -f '' <"$M/bounce.eml" || return 1
  landed 0 0 || return 1
  [ ! -s "/var/mail/$U" ] || no "procmail delivered to /var/mail/$U" || return 1
  grep -q 'backstop: .*the MTA will try again' "$T/logs/procmail-exit75.log" ||
    no "backstop's one-line reason is not in procmail's log"
}

procmail_envelope() {
  # No SENDER (procmail clears the environment) and no Return-Path: the
  # From_ line procmail writes for -f '' is the only sign of a null sender.
  # procmail 3.22 writes it with no sender word at all: "From   Fri Nov 27 ..."
  reset_home own
  install_example procmailrc .procmailrc 644
  expect_rc 0 pm -f '' <"$M/nullsender-norp.eml" || return 1
  landed 0 1 || return 1
  has_verdict "$(onefile "$H/Maildir/.Backscatter/new")" backscatter || return 1
  expect_rc 0 pm -f someone@example.org <"$M/nullsender-norp.eml" || return 1
  landed 1 1 || return 1
  has_verdict "$(onefile "$H/Maildir/new")" clean
}

# ---------------------------------------------------------------- maildrop
# maildrop -d USER as root: delivery mode, reading ~/.mailfilter.

md() { maildrop "$@" -d "$U"; }

maildrop_to() {
  reset_home own
  install_example mailfilter .mailfilter 600
  expect_rc 0 md -f '' <"$M/bounce.eml" || return 1
  landed 0 1 || return 1
  stored_exact "$(onefile "$H/Maildir/.Backscatter/new")" "$M/bounce.eml" backscatter || return 1
  expect_rc 0 md -f someone@example.org <"$M/clean.eml" || return 1
  landed 1 1 || return 1
  stored_exact "$(onefile "$H/Maildir/new")" "$M/clean.eml" clean
}

maildrop_to_exit75() {
  reset_home fail
  install_example mailfilter .mailfilter 600
  expect_rc 75 md -f '' <"$M/bounce.eml" || return 1
  landed 0 0 || return 1
  [ ! -s "/var/mail/$U" ] || no "maildrop delivered to /var/mail/$U"
}

maildirs() {
  as_user maildirmake "$H/Maildir" && as_user maildirmake -f Backscatter "$H/Maildir"
}

maildrop_xfilter() {
  reset_home own
  install_example mailfilter-xfilter .mailfilter 600
  maildirs || no "maildirmake failed" || return 1
  expect_rc 0 md -f '' <"$M/bounce.eml" || return 1
  landed 0 1 || return 1
  stored_exact "$(onefile "$H/Maildir/.Backscatter/new")" "$M/bounce.eml" backscatter || return 1
  # maildrop stores a leading From_ line as it is (backstop filter keeps it
  # first), so this case gets the message the way Postfix's pipe(8) to
  # maildrop sends it by default: without one.
  expect_rc 0 md -f someone@example.org <"$M/clean-nofrom.eml" || return 1
  landed 1 1 || return 1
  stored_exact "$(onefile "$H/Maildir/new")" "$M/clean-nofrom.eml" clean || return 1
  reset_home discard
  install_example mailfilter-xfilter .mailfilter 600
  maildirs || no "maildirmake failed" || return 1
  expect_rc 0 md -f '' <"$M/bounce.eml" || return 1
  landed 0 0
}

maildrop_xfilter_exception() {
  # backstop filter cannot run: the exception block catches it and the
  # original message lands in the inbox; maildrop exits 0.
  reset_home own
  sed "s#$B#$T/bin/no-such-backstop#" "$EXA/mailfilter-xfilter" >"$H/.mailfilter"
  chown "$U:" "$H/.mailfilter"
  chmod 600 "$H/.mailfilter"
  maildirs || no "maildirmake failed" || return 1
  expect_rc 0 md -f '' <"$M/bounce.eml" || return 1
  landed 1 0 || return 1
  stored_unchanged "$(onefile "$H/Maildir/new")" "$M/bounce.eml"
}

maildrop_xfilter_forged() {
  reset_home own
  install_example mailfilter-xfilter .mailfilter 600
  maildirs || no "maildirmake failed" || return 1
  expect_rc 0 md -f someone@example.org <"$M/forged-discard.eml" || return 1
  landed 1 0 || return 1
  forged_filtered || return 1
  # backstop filter fails: the exception block goes on with the unfiltered
  # message, whose forged fields must not be obeyed.
  forged_to_inbox mailfilter-xfilter .mailfilter 600 maildirs md
}

# ---------------------------------------------------------------- Dovecot
# dovecot-lda run as the user with a standalone config: the test's base
# settings followed by the example fragment, dovecot.conf for Dovecot 2.3
# (the host's) or dovecot-2.4.conf for Dovecot 2.4 (the chroot $DV_IN, where
# every Dovecot command runs through in_dv). The sieve scripts are the same.

# in_dv [--userspec=USER:GROUP] COMMAND...: runs COMMAND with Dovecot 2.4,
# in the chroot $DV_IN: in a private mount namespace where $T is bind-mounted
# at the same path (so paths are the same inside and out), which ends with
# the command, so no mount is left behind. With DV_IN empty, on the host.
in_dv() {
  if [ -z "$DV_IN" ]; then
    case $1 in --userspec=*) shift ;; esac
    "$@"
    return
  fi
  local spec=--userspec=0:0
  case $1 in --userspec=*) spec=$1 && shift ;; esac
  unshare --mount --propagation private -- \
    bash -c 'mount --bind "$1" "$3$1" && exec chroot "$2" "$3" "${@:4}"' in_dv "$T" "$spec" "$DV_IN" "$@"
}

# dv_user COMMAND...: as the test user, with a minimal environment.
dv_user() {
  if [ -z "$DV_IN" ]; then
    as_user "$@"
  else
    in_dv --userspec="$U:$(id -gn "$U")" /usr/bin/env -i PATH=/usr/bin:/bin HOME="$H" USER="$U" LOGNAME="$U" "$@"
  fi
}

# The test user in the chroot: the host's uid, gid and home.
dovecot24_user() {
  local g
  g=$(id -gn "$U")
  sed -i "/^$U:/d" "$DV_IN/etc/passwd" "$DV_IN/etc/group" &&
    getent passwd "$U" >>"$DV_IN/etc/passwd" &&
    getent group "$g" >>"$DV_IN/etc/group" &&
    mkdir -p "$DV_IN$T"
}

dovecot_setup() {
  rm -rf "$DV"
  mkdir -p "$DV/run" "$DV/sieve" "$DV/lib/sieve-execute" "$DV/lib/sieve-filter"
  chown "$U:" "$DV/run"
  ln -s "$B" "$DV/lib/sieve-execute/backstop"
  ln -s "$B" "$DV/lib/sieve-filter/backstop"
  cp "$EXA/backstop.sieve" "$EXA/backstop-filter.sieve" "$DV/sieve/"
  # Test only: a program that writes backstop's JSON report to ~/env.json.
  printf '#!/bin/sh\nexec %s check --format json >"$HOME/env.json"\n' "$B" >"$DV/lib/sieve-execute/backstop-env"
  chmod 755 "$DV/lib/sieve-execute/backstop-env"
  printf 'require "vnd.dovecot.execute";\nexecute :pipe "backstop-env";\n' >"$DV/sieve/env.sieve"
  # Program directories where "backstop" is a failing stand-in, for the
  # variants execute-MODE and filter-MODE.
  local variant mode fragment=dovecot.conf
  [ -z "$DV_IN" ] || { fragment=dovecot-2.4.conf && dovecot24_user; } || return 1
  for mode in $FAILS slow; do
    mkdir -p "$DV/$mode/sieve-execute" "$DV/$mode/sieve-filter"
    ln -s "$T/fail/$mode" "$DV/$mode/sieve-execute/backstop"
    ln -s "$T/fail/$mode" "$DV/$mode/sieve-filter/backstop"
  done
  for variant in execute filter env $(for mode in $FAILS slow; do echo "execute-$mode filter-$mode"; done); do
    {
      if [ -z "$DV_IN" ]; then
        cat <<EOF
# Test base settings: no daemon, no listener, logs to stderr.
base_dir = $DV/run
state_dir = $DV/run
log_path = /dev/stderr
info_log_path = /dev/stderr
ssl = no
protocols =
stats_writer_socket_path =
postmaster_address = postmaster@$DOMAIN
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = .
}
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
}
EOF
      else
        cat <<EOF
# Test base settings (Dovecot 2.4): no daemon, no listener, logs to stderr.
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
base_dir = $DV/run
state_dir = $DV/run
log_path = /dev/stderr
info_log_path = /dev/stderr
ssl = no
protocols =
stats_writer_socket_path =
postmaster_address = postmaster@$DOMAIN
mail_driver = maildir
mail_path = ~/Maildir
namespace inbox {
  inbox = yes
  separator = .
}
sieve_script personal {
  driver = file
  path = ~/sieve
  active_path = ~/.dovecot.sieve
}
EOF
      fi
      echo
      echo "# packaging/examples/$fragment:"
      case $variant in
        execute) cat "$EXA/$fragment" ;;
        filter) sed "s#$DV/sieve/backstop.sieve#$DV/sieve/backstop-filter.sieve#" "$EXA/$fragment" ;;
        env) sed "s#$DV/sieve/backstop.sieve#$DV/sieve/env.sieve#" "$EXA/$fragment" ;;
        execute-*) sed "s#$DV/lib/sieve-#$DV/${variant#*-}/sieve-#" "$EXA/$fragment" ;;
        filter-*) sed -e "s#$DV/sieve/backstop.sieve#$DV/sieve/backstop-filter.sieve#" \
          -e "s#$DV/lib/sieve-#$DV/${variant#*-}/sieve-#" "$EXA/$fragment" ;;
      esac
      case $variant in
        *-slow)
          if [ -z "$DV_IN" ]; then
            printf 'plugin {\n  sieve_execute_exec_timeout = 1s\n  sieve_filter_exec_timeout = 1s\n}\n'
          else
            printf 'sieve_execute_exec_timeout = 1s\nsieve_filter_exec_timeout = 1s\n'
          fi
          ;;
      esac
    } >"$DV/$variant.conf"
  done
  # The fragment is really what the Dovecot under test reads.
  local key=sieve_execute_bin_dir
  [ -n "$DV_IN" ] || key=plugin/$key
  in_dv doveconf -c "$DV/execute.conf" -h "$key" | grep -qx "$DV/lib/sieve-execute" || {
    echo "doveconf does not read $key from $fragment"
    return 1
  }
  # As the admin does: compile the global scripts (root-owned, so that the
  # LDA could not write the .svbin itself).
  in_dv sievec -c "$DV/execute.conf" "$DV/sieve/backstop.sieve" &&
    in_dv sievec -c "$DV/filter.conf" "$DV/sieve/backstop-filter.sieve" &&
    in_dv sievec -c "$DV/env.conf" "$DV/sieve/env.sieve"
}

lda() {
  local conf=$1
  shift
  dv_user "$LDA" -c "$DV/$conf.conf" "$@"
}

# doveadm as the user on the config CONF, for COMMAND [ARGS...]. Dovecot 2.4's
# doveadm asks for the user's home directory and for no userdb lookup.
dv_adm() {
  local conf=$1 cmd=$2
  shift 2
  # shellcheck disable=SC2086 # $cmd is one or two words
  if [ -z "$DV_IN" ]; then
    dv_user doveadm -c "$DV/$conf.conf" -f flow $cmd "$@"
  else
    dv_user doveadm -c "$DV/$conf.conf" -o mail_home="$H" -f flow $cmd --no-userdb-lookup "$@"
  fi
}

# The number of messages in a mailbox.
dv_count() {
  local out
  out=$(dv_adm "$1" "mailbox status" messages "$2" 2>&1)
  case $out in
    *"Mailbox doesn't exist"*) echo 0 ;;
    *) echo "$out" | sed -n 's/.*messages=\([0-9]*\).*/\1/p' ;;
  esac
}

# The X-Backstop-Verdict header of the message in a mailbox.
dv_verdict() {
  dv_adm "$1" fetch hdr.x-backstop-verdict mailbox "$2" 2>&1
}

dv_landed() {
  local conf=$1 in=$2 bs=$3 gotin gotbs
  gotin=$(dv_count "$conf" INBOX)
  gotbs=$(dv_count "$conf" Backscatter)
  [ "$gotin" = "$in" ] && [ "$gotbs" = "$bs" ] ||
    no "doveadm: expected $in in INBOX and $bs in Backscatter, found ${gotin:-none} and ${gotbs:-none}"
}

dovecot_execute() {
  reset_home own
  expect_rc 0 lda execute -f '' -a "$U@$DOMAIN" <"$M/bounce.eml" || return 1
  dv_landed execute 0 1 || return 1
  expect_rc 0 lda execute -f someone@example.org -a "$U@$DOMAIN" <"$M/clean.eml" || return 1
  dv_landed execute 1 1 || return 1
  # The execute form leaves the message unchanged.
  stored_unchanged "$(onefile "$H/Maildir/.Backscatter/cur")$(onefile "$H/Maildir/.Backscatter/new")" "$M/bounce.eml"
}

dovecot_filter() {
  reset_home own
  expect_rc 0 lda filter -f '' -a "$U@$DOMAIN" <"$M/bounce.eml" || return 1
  dv_landed filter 0 1 || return 1
  dv_verdict filter Backscatter | grep -q 'backscatter; kind=dsn; action=folder' ||
    no "doveadm fetch: Backscatter message has no X-Backstop-Verdict: backscatter: $(dv_verdict filter Backscatter | head -n 3 | tr '\n' ' ')" || return 1
  expect_rc 0 lda filter -f someone@example.org -a "$U@$DOMAIN" <"$M/clean.eml" || return 1
  dv_landed filter 1 1 || return 1
  dv_verdict filter INBOX | grep -q 'clean; action=inbox' ||
    no "doveadm fetch: INBOX message has no X-Backstop-Verdict: clean: $(dv_verdict filter INBOX | head -n 3 | tr '\n' ' ')" || return 1
  reset_home discard
  expect_rc 0 lda filter -f '' -a "$U@$DOMAIN" <"$M/bounce.eml" || return 1
  dv_landed filter 0 0
}

# The IMAPSieve learning recipe (dovecot-imapsieve-learn.conf for 2.3,
# dovecot-2.4-imapsieve-learn.conf for 2.4, with dovecot-imapsieve-learn.sieve):
# a message the mail program saves into Sent with IMAP APPEND goes to
# "backstop learn", and the bounce of it is then legit; one saved into
# another folder is not learned, and its bounce stays backscatter. The IMAP
# session is Dovecot's imap binary run as the user on stdin (pre-authenticated,
# no server); Dovecot 2.4 must be told to keep the USER and HOME it is given,
# and to take HOME for the home directory.
dovecot_imapsieve() {
  local fragment=dovecot-imapsieve-learn.conf v
  [ -z "$DV_IN" ] || fragment=dovecot-2.4-imapsieve-learn.conf
  mkdir -p "$DV/lib/sieve-pipe"
  ln -sf "$B" "$DV/lib/sieve-pipe/backstop"
  cp "$EXA/dovecot-imapsieve-learn.sieve" "$DV/sieve/backstop-learn.sieve"
  {
    sed '/^# packaging\/examples/q' "$DV/execute.conf"
    [ -z "$DV_IN" ] || printf 'import_environment {\n  USER = %%{env:USER}\n  HOME = %%{env:HOME}\n}\nmail_home = %%{env:HOME}\n'
    cat "$EXA/$fragment"
  } >"$DV/learn.conf"
  in_dv sievec -c "$DV/learn.conf" "$DV/sieve/backstop-learn.sieve" ||
    no "sievec cannot compile dovecot-imapsieve-learn.sieve with $fragment" || return 1

  reset_home none
  mkdir -p "$H/.config/backstop"
  printf 'own:\n  domains: [%s]\n' "$DOMAIN" >"$H/.config/backstop/config.yaml"
  chown -R "$U:" "$H/.config"
  ledger_started_ago 3600
  forged_bounce imap.1 "$T/msg/imap-bounce1.eml"
  cp "$T/msg/forged-original.eml" "$T/msg/imap-sent1.eml"
  forged_bounce imap.2 "$T/msg/imap-bounce2.eml" 1200 # sent before the ledger last learned
  cp "$T/msg/forged-original.eml" "$T/msg/imap-sent2.eml"
  dv_imap_append Sent "$T/msg/imap-sent1.eml" || return 1
  dv_imap_append Drafts "$T/msg/imap-sent2.eml" || return 1
  v=$(as_user "$B" check "$T/msg/imap-bounce1.eml")
  echo "$v"
  case $v in "legit-bounce "*ledger-sent*) ;; *) no "the bounce of the message saved into Sent: $(echo "$v" | head -n 1)" || return 1 ;; esac
  v=$(as_user "$B" check "$T/msg/imap-bounce2.eml")
  echo "$v"
  case $v in "backscatter "*ledger-not-sent*) ;; *) no "the bounce of the message saved into Drafts: $(echo "$v" | head -n 1)" ;; esac
}

# dv_imap_append FOLDER FILE: creates FOLDER and saves FILE into it (IMAP
# APPEND, with CRLF line ends) in a session of the test user.
dv_imap_append() {
  local msg out
  msg=$(sed 's/$/\r/' "$2") || return 1
  # $msg ends in the last line's \r, its \n cut by $(...): put back in the literal.
  out=$(printf 'a CREATE %s\r\nb APPEND %s {%d+}\r\n%s\n\r\nc LOGOUT\r\n' "$1" "$1" "$((${#msg} + 1))" "$msg" |
    dv_user /usr/lib/dovecot/imap -c "$DV/learn.conf")
  echo "$out"
  case $out in *"b OK "*) ;; *) no "IMAP APPEND into $1 failed: $(echo "$out" | grep -m1 '^b ')" ;; esac
}

# A bounce of mail the user sent (legit.yaml): both forms keep it in the
# INBOX; the filter form adds backstop's two fields at the top.
dovecot_legit() {
  reset_home legit
  expect_rc 0 lda execute -f '' -a "$U@$DOMAIN" <"$M/bounce.eml" || return 1
  dv_landed execute 1 0 || return 1
  stored_unchanged "$(onefile "$H/Maildir/cur")$(onefile "$H/Maildir/new")" "$M/bounce.eml" || return 1
  reset_home legit
  expect_rc 0 lda filter -f '' -a "$U@$DOMAIN" <"$M/bounce.eml" || return 1
  dv_landed filter 1 0 || return 1
  dv_verdict filter INBOX | grep -q 'legit-bounce; kind=dsn; action=inbox' ||
    no "doveadm fetch: INBOX message has no X-Backstop-Verdict: legit-bounce: $(dv_verdict filter INBOX | head -n 3 | tr '\n' ' ')" || return 1
  stored_exact "$(onefile "$H/Maildir/cur")$(onefile "$H/Maildir/new")" "$M/bounce.eml" legit-bounce
}

# dv_forged FORM: the Sieve script of FORM (execute or filter) with a backstop
# that fails. Dovecot goes on with the message as it came, and its forged
# fields must not be obeyed: it lands in the INBOX unchanged.
dv_forged() {
  local form=$1 mode action
  for mode in $FAILS; do
    for action in discard folder; do
      echo "== $mode, forged action=$action"
      reset_home own
      expect_rc 0 lda "$form-$mode" -f someone@example.org -a "$U@$DOMAIN" <"$M/forged-$action.eml" || return 1
      dv_landed "$form-$mode" 1 0 || { why="$mode, forged action=$action: $why"; return 1; }
      stored_unchanged "$(onefile "$H/Maildir/cur")$(onefile "$H/Maildir/new")" "$M/forged-$action.eml" || return 1
    done
  done
  # backstop runs past the exec timeout and Dovecot kills it. Dovecot 2.3.19
  # and 2.4.1 then abort (exit 134, "output stream ... is missing error handling"),
  # storing nothing, and the MTA keeps the message to try again; a Dovecot
  # that survives must keep it in the INBOX. Either way, never discarded,
  # never in Backscatter.
  local rc
  echo "== slow, forged action=discard"
  reset_home own
  lda "$form-slow" -f someone@example.org -a "$U@$DOMAIN" <"$M/forged-discard.eml"
  rc=$?
  echo "slow: dovecot-lda exited $rc"
  if [ "$rc" = 0 ]; then
    dv_landed "$form-slow" 1 0 || { why="slow: $why"; return 1; }
  else
    # 75 or death by a signal (128+N): the MTA defers; anything else bounces.
    [ "$rc" = 75 ] || [ "$rc" -gt 128 ] || no "slow: dovecot-lda exited $rc, which the MTA bounces" || return 1
    dv_landed "$form-slow" 0 0 || { why="slow, dovecot-lda exited $rc: $why"; return 1; }
  fi
}

dovecot_filter_forged() {
  # backstop filter succeeds: it drops the sender's fields, and the script
  # obeys its own verdict.
  reset_home own
  expect_rc 0 lda filter -f someone@example.org -a "$U@$DOMAIN" <"$M/forged-discard.eml" || return 1
  dv_landed filter 1 0 || return 1
  dv_verdict filter INBOX | grep -q 'clean; action=inbox' ||
    no "doveadm fetch: INBOX message has no X-Backstop-Verdict: clean: $(dv_verdict filter INBOX | head -n 3 | tr '\n' ' ')" || return 1
  dv_forged filter
}

dovecot_execute_forged() {
  dv_forged execute
}

dovecot_recipient() {
  # No config: the own domain is the recipient's, from Dovecot's RECIPIENT.
  # A test-only global script runs "backstop check --format json" through
  # execute :pipe (the same mechanism as backstop.sieve).
  local rcpt
  for rcpt in "$U@$OTHER" "$U@$DOMAIN"; do
    reset_home none
    expect_rc 0 lda env -f someone@example.org -a "$rcpt" <"$M/bounce.eml" || return 1
    env_report "${rcpt#*@}" someone@example.org "SENDER variable" "$rcpt" "RECIPIENT variable" || return 1
  done
  # Dovecot passes no SENDER for a null sender: the Return-Path <> of the
  # message says it.
  reset_home none
  expect_rc 0 lda env -f '' -a "$U@$DOMAIN" <"$M/bounce.eml" || return 1
  env_report "$DOMAIN" "" "Return-Path header" "$U@$DOMAIN" "RECIPIENT variable"
}

# ---------------------------------------------------------------- Postfix
# A private instance: own config dir, queue and log under $PF; no inet
# listener; mail for other domains goes to the error: transport.

postfix_setup() {
  mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
  chown postfix "$PF/data"
  cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = $DOMAIN
mydomain = $DOMAIN
myorigin = \$myhostname
mydestination = \$myhostname, $OTHER, localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
master_service_disable = inet
default_transport = error:backstop host tests send nothing out
relay_transport = error:backstop host tests send nothing out
alias_maps =
alias_database =
home_mailbox = Maildir/
mailbox_command =
recipient_delimiter = +
biff = no
smtputf8_enable = no
maillog_file = $PF/maillog
maillog_file_prefixes = $T
EOF
  cat >"$PF/etc/master.cf" <<'EOF'
# service type  private unpriv  chroot  wakeup  maxproc command
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
pipe      unix  -       n       n       -       -       pipe
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  postfix -c "$PF/etc" set-permissions &&
    postfix -c "$PF/etc" check &&
    postfix -c "$PF/etc" start || return 1
}

# The number of local delivery results in the log.
pf_results() { cat "$PF/maillog" 2>/dev/null | grep -c 'postfix/local.*status='; }

# Submits a message (SENDER, RECIPIENT, FILE) and waits for its local
# delivery result; prints that log line.
pf_send() {
  local sender=$1 rcpt=$2 file=$3 before deadline
  before=$(pf_results)
  # shellcheck disable=SC2086 # PF_OPTS: extra sendmail options, one word each
  sendmail -C "$PF/etc" -i ${PF_OPTS:-} -f "$sender" -- "$rcpt" <"$file" || {
    echo "sendmail failed"
    return 1
  }
  # A generous bound, only against a hang: on a loaded machine Postfix's
  # pickup, cleanup, qmgr and local can take many seconds.
  deadline=$((SECONDS + 300))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(pf_results)" -gt "$before" ]; then
      grep 'postfix/local.*status=' "$PF/maillog" | tail -n 1
      return 0
    fi
    sleep 0.2
  done
  echo "no delivery result after 300 s"
  return 1
}

pf_expect() {
  local want=$1 line
  shift
  line=$(pf_send "$@") || no "$line" || return 1
  echo "$line"
  case $line in
    *"status=$want"*) ;;
    *) no "expected status=$want: $line" ;;
  esac
}

# Sends BOUNCE from <> and then CLEAN from a real sender through ~/.forward:
# the first must be filed in the backscatter folder, the second in the inbox.
pf_files() {
  local bounce=$1 clean=$2
  reset_home own
  install_example forward .forward 644
  pf_expect sent '' "$U@$DOMAIN" "$bounce" || return 1
  landed 0 1 || return 1
  has_verdict "$(onefile "$H/Maildir/.Backscatter/new")" backscatter || return 1
  pf_expect sent someone@example.org "$U@$DOMAIN" "$clean" || return 1
  landed 1 1 || return 1
  has_verdict "$(onefile "$H/Maildir/new")" clean
}

postfix_forward() {
  pf_files "$M/bounce.eml" "$M/clean.eml"
}

postfix_null_sender() {
  # The same message is backscatter from <> and clean from a real sender:
  # Postfix's SENDER (and the Return-Path it prepends) is used.
  pf_files "$M/nullsender.eml" "$M/nullsender.eml"
}

postfix_recipient() {
  # No config: the own domain is the recipient's. The real hook-up files the
  # bounce; a test-only ~/.forward+env (selected by the address extension)
  # shows what backstop learnt from Postfix's SENDER and RECIPIENT.
  local rcpt
  for rcpt in "$U@$OTHER" "$U@$DOMAIN"; do
    reset_home none
    install_example forward .forward 644
    pf_expect sent '' "$rcpt" "$M/bounce.eml" || return 1
    landed 0 1 || return 1
    printf '"|%s check --format json > %s/env.json"\n' "$B" "$H" >"$H/.forward+env"
    chown "$U:" "$H/.forward+env"
    pf_expect sent '' "${rcpt%@*}+env@${rcpt#*@}" "$M/bounce.eml" || return 1
    env_report "${rcpt#*@}" "" "SENDER variable" "${rcpt%@*}+env@${rcpt#*@}" "RECIPIENT variable" || return 1
  done
}

postfix_deferred() {
  # backstop cannot store the message: exit 75, Postfix defers, never bounces.
  reset_home fail
  install_example forward .forward 644
  local line
  pf_expect deferred '' "$U@$DOMAIN" "$M/bounce.eml" || return 1
  landed 0 0 || return 1
  if grep -q 'status=bounced' "$PF/maillog"; then no "a message was bounced: $(grep -m1 'status=bounced' "$PF/maillog")" || return 1; fi
  postqueue -c "$PF/etc" -p | grep -q "$U@$DOMAIN" || no "the deferred message is not in the queue" || return 1
  # Queue says why, in backstop's words, with no status code of its own.
  postqueue -c "$PF/etc" -p | grep -q 'temporary failure' || no "no 'temporary failure' in the queue listing" || return 1
  postsuper -c "$PF/etc" -d ALL >/dev/null 2>&1
  return 0
}

# ---------------------------------------------------------------- proofs
# The proofs through the private Postfix. Mail the test user sends to a remote
# address is bounced by Postfix's error transport (a real Postfix DSN) back to
# the user, whose ~/.forward runs backstop deliver. The ledger is fed by the
# packaging/examples recipes: cron-learn over a Sent folder, and postfix-learn
# (sender_bcc_maps to a pipe transport running learn). DKIM signatures are made
# with python3-dkim; BATV tags with the Exim binary.

# Starts the user's ledger SECONDS ago, as if learning had been set up then: a
# STARTED record in the ledger's documented format (src/proofs/ledger.rs).
ledger_started_ago() {
  local dir=$H/.local/share/backstop
  mkdir -p "$dir"
  python3 - "$dir/ledger" "$1" <<'PY'
import hashlib, struct, sys, time
rec = bytes(32) + struct.pack('<q', int(time.time()) - int(sys.argv[2])) + bytes([2, 0, 0, 0])
open(sys.argv[1], 'wb').write(rec + hashlib.sha256(rec).digest()[:4])
PY
  chown -R "$U:" "$H/.local"
  chmod 700 "$H/.local" "$H/.local/share" "$dir"
}

# A message the user sends: ID FILE [SECONDS AGO].
sent_message() {
  cat >"$2" <<EOF
From: Test User <$U@$DOMAIN>
To: someone@remote.example
Subject: The quarterly figures $1
Date: $(date -R -d "@$(($(date +%s) - ${3:-0}))")
Message-ID: <$1@$DOMAIN>

Here are the figures.
Line two.
EOF
  chmod 644 "$2"
}

# A bounce of a message a spammer forged in the user's name: ID FILE [SECONDS AGO].
forged_bounce() {
  local orig=$T/msg/forged-original.eml
  sent_message "$1" "$orig" "${3:-0}"
  cat >"$2" <<EOF
From: Mail Delivery System <MAILER-DAEMON@mx.remote.example>
To: $U@$DOMAIN
Subject: Undelivered Mail Returned to Sender
Date: $(date -R)
Message-ID: <bounce.$1@mx.remote.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

Your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.remote.example

Final-Recipient: rfc822; someone@remote.example
Action: failed
Status: 5.1.1

--B1
Content-Type: message/rfc822

Received: from [10.9.8.7] (unknown [203.0.113.66])
	by mx.remote.example (Postfix) with ESMTP id 9F9F
	for <someone@remote.example>; $(date -R)
$(cat "$orig")

--B1--
EOF
  chmod 644 "$2"
}

# The newest message filed: its verdict must be VERDICT and its reason name TAG.
last_filed() {
  local f
  f=$(ls -t "$H/Maildir/new/"* "$H/Maildir/.Backscatter/new/"* 2>/dev/null | head -n 1)
  [ -n "$f" ] || no "nothing was filed" || return 1
  has_verdict "$f" "$1" || return 1
  grep -q "^X-Backstop-Reason: .*$2" "$f" ||
    no "$(basename "$f"): the reason does not name $2: $(grep -m1 '^X-Backstop-Reason:' "$f")"
}

# A home with ~/.forward and a config: own domain, then the text EXTRA.
proofs_home() {
  reset_home none
  mkdir -p "$H/.config/backstop"
  printf 'own:\n  domains: [%s]\n%s' "$DOMAIN" "$1" >"$H/.config/backstop/config.yaml"
  chown -R "$U:" "$H/.config"
  install_example forward .forward 644
}

ledger_cron() {
  proofs_home ""
  ledger_started_ago 3600
  # Without the ledger knowing it, the bounce of a sent message is unverified.
  sent_message cron.0 "$T/msg/sent-cron0.eml"
  pf_expect sent "$U@$DOMAIN" someone@remote.example "$T/msg/sent-cron0.eml" || return 1
  last_filed unverified-bounce "" || return 1
  # A mail program sends the message and saves it in the Sent folder; cron runs
  # the example's line (as the user, through sh, as cron does).
  as_user mkdir -p "$H/Maildir/.Sent/cur" "$H/Maildir/.Sent/new" "$H/Maildir/.Sent/tmp"
  sent_message cron.1 "$T/msg/sent-cron.eml"
  install -o "$U" -m 600 "$T/msg/sent-cron.eml" "$H/Maildir/.Sent/cur/1.host:2,S"
  local line
  line=$(grep -v '^#' "$EXA/cron-learn" | grep . | cut -d' ' -f6-)
  as_user sh -c "$line" || no "the cron line failed: $line" || return 1
  pf_expect sent "$U@$DOMAIN" someone@remote.example "$T/msg/sent-cron.eml" || return 1
  last_filed legit-bounce ledger-sent || return 1
  # A spam sent in the user's name 20 minutes ago, before the last cron run.
  forged_bounce forged.1 "$T/msg/forged-cron.eml" 1200
  pf_expect sent '' "$U@$DOMAIN" "$T/msg/forged-cron.eml" || return 1
  last_filed backscatter ledger-not-sent
}

ledger_postfix() {
  proofs_home ""
  ledger_started_ago 3600
  # The recipe: main.cf lines, the two maps and the master.cf service of the
  # example, with its user and domain made the test's.
  local ex=$EXA/postfix-learn sub="s/alice/$U/g; s/example\.org/$DOMAIN/g; s#/etc/postfix/#$PF/etc/#g"
  sed -n 's/^#      \(sender_bcc_maps = .*\|transport_maps = .*\)/\1/p' "$ex" | sed "$sub" >>"$PF/etc/main.cf"
  sed -n 's/^#      \(alice@example.org  *alice@learn.*\)/\1/p' "$ex" | sed "$sub" >"$PF/etc/backstop_sender_bcc"
  sed -n 's/^#      \(alice@learn.*\)/\1/p' "$ex" | sed "$sub" >"$PF/etc/backstop_transport"
  grep -v '^#' "$ex" | sed "$sub" >>"$PF/etc/master.cf"
  [ -s "$PF/etc/backstop_sender_bcc" ] && [ -s "$PF/etc/backstop_transport" ] ||
    no "the maps could not be read from $ex" || return 1
  postmap -c "$PF/etc" "hash:$PF/etc/backstop_sender_bcc" &&
    postmap -c "$PF/etc" "hash:$PF/etc/backstop_transport" &&
    postfix -c "$PF/etc" reload || no "postfix did not take the recipe" || return 1
  sleep 1
  sent_message hook.1 "$T/msg/sent-hook.eml"
  pf_expect sent "$U@$DOMAIN" someone@remote.example "$T/msg/sent-hook.eml" || return 1
  grep -q "postfix/pipe.*relay=backstop-learn-$U.*status=sent" "$PF/maillog" ||
    no "the pipe to learn did not run: $(grep 'postfix/pipe' "$PF/maillog" | tail -n 1)" || return 1
  last_filed legit-bounce ledger-sent || return 1
  forged_bounce forged.2 "$T/msg/forged-hook.eml" 60
  pf_expect sent '' "$U@$DOMAIN" "$T/msg/forged-hook.eml" || return 1
  last_filed backscatter ledger-not-sent
}

dkim_postfix() {
  mkdir -p "$T/dkim"
  (cd "$T/dkim" && rm -f k.* && dknewkey k >/dev/null) || no "dknewkey failed" || return 1
  proofs_home "dkim:
  keys_file: ~/.config/backstop/dkim-keys
  signs_all: true
"
  echo "sel._domainkey.$DOMAIN $(cat "$T/dkim/k.dns")" >"$H/.config/backstop/dkim-keys"
  chown "$U:" "$H/.config/backstop/dkim-keys"
  local i=0 variant body
  for variant in full hdrs; do
    i=$((i + 1))
    sent_message "dkim.$i" "$T/msg/unsigned.eml"
    dkimsign sel "$DOMAIN" "$T/dkim/k.key" <"$T/msg/unsigned.eml" >"$T/msg/signed.eml" || no "dkimsign failed" || return 1
    PF_OPTS="-R $variant" pf_expect sent "$U@$DOMAIN" someone@remote.example "$T/msg/signed.eml" || return 1
    last_filed legit-bounce dkim-valid || return 1
    body=0
    grep -q "^Line two" "$(ls -t "$H/Maildir/new/"* | head -n 1)" || body=1
    if [ "$variant" = hdrs ] && [ "$body" = 0 ]; then no "-R hdrs returned the body" || return 1; fi
    if [ "$variant" = full ] && [ "$body" != 0 ]; then no "-R full did not return the body" || return 1; fi
  done
  # A signed header changed after signing: forged.
  sent_message dkim.3 "$T/msg/unsigned.eml"
  dkimsign sel "$DOMAIN" "$T/dkim/k.key" <"$T/msg/unsigned.eml" |
    sed 's/^Subject: .*/Subject: Cheap pills/' >"$T/msg/tampered.eml"
  pf_expect sent "$U@$DOMAIN" someone@remote.example "$T/msg/tampered.eml" || return 1
  last_filed backscatter dkim-invalid-required || return 1
  # The body cut after signing: the header signature still proves it.
  sent_message dkim.4 "$T/msg/unsigned.eml"
  dkimsign sel "$DOMAIN" "$T/dkim/k.key" <"$T/msg/unsigned.eml" | sed '/^Line two/d' >"$T/msg/cut.eml"
  pf_expect sent "$U@$DOMAIN" someone@remote.example "$T/msg/cut.eml" || return 1
  last_filed legit-bounce dkim-valid || return 1
  # Not signed at all, while the config says everything is.
  sent_message dkim.5 "$T/msg/unsigned.eml"
  pf_expect sent "$U@$DOMAIN" someone@remote.example "$T/msg/unsigned.eml" || return 1
  last_filed backscatter dkim-missing-required
}

batv_postfix() {
  # Exim makes the tags; Postfix strips them from the recipient (a canonical
  # map) and passes the tagged address on as ORIGINAL_RECIPIENT.
  mkdir -p "$T/exim-be"
  printf 'primary_hostname = %s\nspool_directory = %s\nkeep_environment =\n' "$DOMAIN" "$T/exim-be" >"$T/exim-be.conf"
  local tag wrong
  tag=$("$EXIM" -C "$T/exim-be.conf" -be "\${prvs{$U@$DOMAIN}{s3cret}{1}}")
  case $tag in prvs=1*"=$U@$DOMAIN") ;; *) no "exim made no tag: $tag" || return 1 ;; esac
  wrong=$("$EXIM" -C "$T/exim-be.conf" -be "\${prvs{$U@$DOMAIN}{other}{1}}")
  proofs_home "batv:
  secrets: [unused, s3cret]
  required: true
"
  if ! grep -q '^recipient_canonical_maps' "$PF/etc/main.cf"; then
    echo "recipient_canonical_maps = regexp:$PF/etc/prvs" >>"$PF/etc/main.cf"
    echo '/^prvs=[0-9]{4}[0-9a-fA-F]{6}=(.+)$/   ${1}' >"$PF/etc/prvs"
    postfix -c "$PF/etc" reload || no "postfix did not take the canonical map" || return 1
    sleep 1
  fi
  forged_bounce batv.1 "$T/msg/batv.eml"
  pf_expect sent '' "$tag" "$T/msg/batv.eml" || return 1
  last_filed legit-bounce batv-valid || return 1
  pf_expect sent '' "$U@$DOMAIN" "$T/msg/batv.eml" || return 1
  last_filed backscatter batv-invalid-required || return 1
  pf_expect sent '' "$wrong" "$T/msg/batv.eml" || return 1
  last_filed backscatter batv-invalid-required
}

# ---------------------------------------------------------------- Exim

# A private configuration for Debian's exim4 binary: Debian's own userforward
# router (~/.forward) and address_pipe transport, included unchanged from
# exim4-config, then the example router and transport. As root, Exim keeps
# its privileges with -C only for a delivery (-M), not for a submission:
# messages are queued with -odq (received as the Exim user), then delivered
# with -M, as the Exim specification advises for testing a configuration.
exim_setup() {
  local conf=$EXIM_ROOT/etc/exim4/conf.d
  rm -rf "$EX"
  mkdir -p "$EX/spool" "$EX/log"
  chown Debian-exim: "$EX/spool" "$EX/log"
  cat >"$EX/exim.conf" <<EOF
primary_hostname = $DOMAIN
domainlist local_domains = $DOMAIN : $OTHER
spool_directory = $EX/spool
log_file_path = $EX/log/%slog
keep_environment =

begin routers
.include $conf/router/600_exim4-config_userforward
.include $EXA/exim4-router-backstop

begin transports
.include $conf/transport/30_exim4-config_address_pipe
.include $EXA/exim4-transport-backstop

begin retry
*   *   F,2h,15m
EOF
  "$EXIM" -C "$EX/exim.conf" -bV >/dev/null
}

ex() { "$EXIM" -C "$EX/exim.conf" "$@"; }

# Queues a message (SENDER, RECIPIENT, FILE), delivers it and prints the
# log lines of that delivery attempt.
ex_send() {
  local sender=$1 rcpt=$2 file=$3 id
  ex -odq -f "$sender" "$rcpt" <"$file" || {
    echo "exim did not take the message"
    return 1
  }
  id=$(awk '$4 == "<=" { id = $3 } END { print id }' "$EX/log/mainlog")
  [ -n "$id" ] || { echo "no message id in the log"; return 1; }
  ex -M "$id"
  grep -F " $id " "$EX/log/mainlog" | grep -v ' <= '
}

# Expects the delivery of ex_send's message to end as WANT ("=>" delivered,
# "==" deferred) through ROUTE ("R=router T=transport"), and no bounce.
ex_expect() {
  local want=$1 route=$2 lines
  shift 2
  lines=$(ex_send "$@") || no "$lines" || return 1
  echo "$lines"
  echo "$lines" | grep -F " $want " | grep -qF "$route" ||
    no "expected '$want ... $route' in the log: $(echo "$lines" | tr '\n' ' ')" || return 1
  if grep -q ' \*\* ' "$EX/log/mainlog"; then
    no "a delivery failed for good (a bounce): $(grep -m1 ' \*\* ' "$EX/log/mainlog")"
  fi
}

# Sends BOUNCE from <> and then CLEAN from a real sender through ROUTE: the
# first must be filed in the backscatter folder, the second in the inbox.
exim_files() {
  local route=$1 bounce=$2 clean=$3
  ex_expect '=>' "$route" '' "$U@$DOMAIN" "$bounce" || return 1
  landed 0 1 || return 1
  has_verdict "$(onefile "$H/Maildir/.Backscatter/new")" backscatter || return 1
  ex_expect '=>' "$route" someone@example.org "$U@$DOMAIN" "$clean" || return 1
  landed 1 1 || return 1
  has_verdict "$(onefile "$H/Maildir/new")" clean
}

exim_forward() {
  reset_home own
  install_example forward .forward 644
  exim_files 'R=userforward T=address_pipe' "$M/bounce.eml" "$M/clean.eml"
}

exim_router() {
  reset_home own
  exim_files 'R=backstop T=backstop_pipe' "$M/bounce.eml" "$M/clean.eml"
}

exim_null_sender() {
  # The same message is backscatter from <> and clean from a real sender:
  # the SENDER that Exim passes is used (the message has no Return-Path).
  reset_home own
  exim_files 'R=backstop T=backstop_pipe' "$M/nullsender-norp.eml" "$M/nullsender-norp.eml"
}

# After a deferral: nothing stored, the message still queued; then the queue
# is emptied.
exim_deferred_check() {
  landed 0 0 || return 1
  ex -bp | grep -qF "$U@$DOMAIN" || no "the deferred message is not in the queue" || return 1
  ex -bpr | awk 'NF >= 3 && $3 ~ /-/ { print $3 }' | xargs -r "$EXIM" -C "$EX/exim.conf" -Mrm >/dev/null
}

# backstop cannot store the message: exit 75, Exim defers, never bounces.
exim_deferred_forward() {
  reset_home fail
  install_example forward .forward 644
  ex_expect '==' 'R=userforward T=address_pipe' '' "$U@$DOMAIN" "$M/bounce.eml" || return 1
  exim_deferred_check
}

exim_deferred_router() {
  reset_home fail
  ex_expect '==' 'R=backstop T=backstop_pipe' '' "$U@$DOMAIN" "$M/bounce.eml" || return 1
  # The example transport logs backstop's one line saying why.
  grep -q 'backstop_pipe transport output: backstop: .*; the MTA will try again$' "$EX/log/mainlog" ||
    no "backstop's reason is not in Exim's log" || return 1
  exim_deferred_check
}

# ---------------------------------------------------------------- run

case_ samples samples
if [ "$failed" -gt 0 ]; then
  echo "the samples no longer give the verdicts the cases rely on" >&2
  finish
fi

case_ procmail-deliver procmail_deliver
case_ procmail-filter procmail_filter
case_ procmail-filter-failing procmail_filter_failing
case_ procmail-filter-forged procmail_filter_forged
case_ procmail-condition procmail_condition
case_ procmail-condition-forged procmail_condition_forged
case_ procmail-exit75 procmail_exit75
case_ procmail-null-sender procmail_envelope

case_ maildrop-to maildrop_to
case_ maildrop-to-exit75 maildrop_to_exit75
case_ maildrop-xfilter maildrop_xfilter
case_ maildrop-xfilter-exception maildrop_xfilter_exception
case_ maildrop-xfilter-forged maildrop_xfilter_forged

# The same cases with Dovecot 2.3 (the host's, dovecot.conf) and Dovecot 2.4
# (Debian 13's in $DV24_ROOT, dovecot-2.4.conf); the names of the 2.4 cases
# start with dovecot24-.
for DV_IN in "" "$DV24_ROOT"; do
  p=dovecot
  [ -z "$DV_IN" ] || p=dovecot24
  if dovecot_setup >"$T/logs/$p-setup.log" 2>&1; then
    case_ $p-sieve-execute dovecot_execute
    case_ $p-sieve-filter dovecot_filter
    case_ $p-sieve-legit dovecot_legit
    case_ $p-sieve-execute-forged dovecot_execute_forged
    case_ $p-sieve-filter-forged dovecot_filter_forged
    case_ $p-recipient-own-domain dovecot_recipient
    case_ $p-imapsieve-learn dovecot_imapsieve
  else
    say_fail $p-setup "Dovecot does not load the example config, or sievec could not compile the example scripts" "$T/logs/$p-setup.log"
  fi
done
DV_IN=""

if postfix_setup >"$T/logs/postfix-setup.log" 2>&1; then
  case_ postfix-forward postfix_forward
  case_ postfix-null-sender postfix_null_sender
  case_ postfix-recipient-own-domain postfix_recipient
  case_ postfix-deferred postfix_deferred
  # These make Postfix bounce mail on purpose: after postfix-deferred, which
  # checks that nothing was bounced.
  case_ ledger-cron-sent-folder ledger_cron
  case_ dkim-postfix-bounces dkim_postfix
  case_ batv-exim-tags-postfix batv_postfix
  # Last: its sender_bcc_maps stays in the instance and learns all that is sent.
  case_ ledger-postfix-sender-bcc ledger_postfix
else
  say_fail postfix-setup "the private Postfix instance did not start" "$T/logs/postfix-setup.log"
fi
stop_postfix

if exim_setup >"$T/logs/exim-setup.log" 2>&1; then
  case_ exim-forward exim_forward
  case_ exim-router exim_router
  case_ exim-null-sender exim_null_sender
  case_ exim-deferred-forward exim_deferred_forward
  case_ exim-deferred-router exim_deferred_router
else
  say_fail exim-setup "Exim does not accept the private configuration" "$T/logs/exim-setup.log"
fi

finish
