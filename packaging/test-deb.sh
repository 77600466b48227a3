#!/bin/bash
# CI test of the Debian package: installs the tools it needs, builds the .deb
# (build-deb.sh), runs lintian on it, installs it with dpkg -i, runs the
# installed /usr/bin/backstop through procmail on a bounce and on a ham
# message, checks the man pages, completions and files, checks the milter's
# service (systemd-analyze verify and security) and starts it as the unit
# says, answers a milter handshake on its socket, stops it, and purges the
# package with dpkg --purge. One line per check, then "N passed, M failed";
# exits non-zero on any failure. Runs as root (dpkg -i); it is meant for CI
# and throwaway machines.
#
#   bash packaging/test-deb.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
NAME=deb
# shellcheck source=packaging/test-lib.sh
. packaging/test-lib.sh

if [ "$(id -u)" -ne 0 ]; then
    fail "running as root (dpkg -i needs it)"
    finish
fi

export DEBIAN_FRONTEND=noninteractive
install_tools() {
    apt-get update -qq &&
        apt-get install -y -qq --no-install-recommends lintian procmail dpkg-dev binutils gcc libc6-dev man-db git \
            systemd util-linux python3
}
check "apt-get installs lintian, procmail, dpkg-dev, libc6-dev, man-db, systemd (its tools)" install_tools

# A package left installed by an earlier run would hide a broken install.
if dpkg -s backstop >/dev/null 2>&1; then
    dpkg --purge backstop >/dev/null 2>&1
fi

# The revision the build will see (taken now: a commit during the build would
# otherwise make the check below compare against a newer one).
# Outside a checkout it is BACKSTOP_GIT_REV (as for build-deb.sh); without either, the version
# check fails rather than skip the revision.
rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo "${BACKSTOP_GIT_REV:-}")
version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
deb=""
build() {
    bash packaging/build-deb.sh >"$log/build.out" 2>"$log/build.err" || { tail -n 40 "$log/build.err"; return 1; }
    deb=$(tail -n 1 "$log/build.out")
    [ -f "$deb" ]
}
if build >"$log/out" 2>&1; then
    pass "build-deb.sh built $(basename "$deb")"
else
    fail "build-deb.sh builds the .deb"
    sed 's/^/    /' "$log/out"
    finish
fi

# lintian: no error, and no warning that packaging/debian/lintian-overrides
# does not accept (the shipped overrides file is read from the package).
run_lintian() {
    lintian -I --pedantic --fail-on error,warning "$deb" 2>&1 | grep -v 'running with root privileges'
    return "${PIPESTATUS[0]}"
}
if run_lintian >"$log/lintian" 2>&1; then
    pass "lintian: no errors and no unaccepted warnings"
else
    fail "lintian: no errors and no unaccepted warnings"
fi
sed 's/^/    lintian: /' "$log/lintian"

check "dpkg -i installs the package" dpkg -i "$deb"

version_ok() {
    local v
    v=$(/usr/bin/backstop --version) || return 1
    echo "$v"
    [ -n "$rev" ] || { echo "no revision to check: not a git checkout and no BACKSTOP_GIT_REV"; return 1; }
    [[ $v == "backstop $version ("*")" ]] && [[ $v == *"$rev"* ]]
}
check "/usr/bin/backstop --version names $version and revision ${rev:-?}" version_ok

help_ok() {
    local h
    h=$(/usr/bin/backstop --help) || return 1
    echo "$h"
    [ "$(wc -l <<<"$h")" -le 30 ] && grep -q "man backstop" <<<"$h"
}
check "backstop --help is short and points to man backstop" help_ok

check "man -w backstop finds backstop(1)" man -w backstop
check "man -w 5 backstop.yaml finds backstop.yaml(5)" man -w 5 backstop.yaml
check "backstop(1) renders without warnings and documents every command" bash -c '
    set -o pipefail
    text=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=all backstop 2>&1 >/dev/null); [ -z "$text" ] || { echo "$text"; exit 1; }
    page=$(MANWIDTH=200 man backstop 2>/dev/null | col -b)
    for c in $(/usr/bin/backstop --help | sed -n "/^Commands:/,/^\$/s/^  \([a-z-]*\) .*/\1/p"); do
        [ "$c" = help ] && continue
        grep -q "^   $c\$" <<<"$page" || { echo "no section for command $c"; exit 1; }
    done'
check "default rules installed as /usr/share/backstop/default.yaml" cmp rules/default.yaml /usr/share/backstop/default.yaml
check "host examples installed in /usr/share/doc/backstop/examples/" diff -r packaging/examples /usr/share/doc/backstop/examples
check "copyright file names the crate's and the dependencies' licenses" bash -c '
    f=/usr/share/doc/backstop/copyright
    grep -q "^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/" $f &&
    grep -q "^Files: registry/regex-" $f && grep -q "^Files: registry/clap-" $f && grep -q "^License: MIT$" $f'
check "bash, zsh and fish completions installed" test -s /usr/share/bash-completion/completions/backstop \
    -a -s /usr/share/zsh/vendor-completions/_backstop -a -s /usr/share/fish/vendor_completions.d/backstop.fish
check "bash completion loads and completes subcommands" bash -c '
    source /usr/share/bash-completion/completions/backstop
    COMP_WORDS=(backstop de); COMP_CWORD=1; COMP_LINE="backstop de"; COMP_POINT=${#COMP_LINE}
    _backstop backstop de backstop; printf "%s\n" "${COMPREPLY[@]}"; [[ " ${COMPREPLY[*]} " == *" deliver "* ]]'

# procmail: the installed binary as a user's delivery agent, under a temp HOME.
home=$(mktemp -d /tmp/backstop-home.XXXXXX)
bounce=tests/fixtures/corpus/bounces/sisimai-bsd/lhost-postfix-02.eml
ham=tests/fixtures/corpus/ham/spamassassin-easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.eml
mkdir -p "$home/.config/backstop"
cat >"$home/.config/backstop/config.yaml" <<'EOF'
own:
  domains: [example.jp]
  hosts: [mail.example.jp]
  networks: [198.51.100.0/24]
log: ~/backstop.log
EOF
# procmail resets HOME from the password file, so the rcfile sets it; the
# config is then found in its default place, $HOME/.config/backstop/.
cat >"$home/.procmailrc" <<EOF
HOME=$home
LOGFILE=$home/procmail.log
VERBOSE=on
DEFAULT=\$HOME/Maildir/

:0 w
| /usr/bin/backstop deliver \$HOME/Maildir

EXITCODE=75
HOST
EOF
check "backstop check: the bounce is backscatter under the test config" bash -c "[ \"\$(HOME=$home /usr/bin/backstop check --format word $bounce)\" = backscatter ]"
check "backstop check: the ham message is clean" bash -c "[ \"\$(HOME=$home /usr/bin/backstop check --format word $ham)\" = clean ]"
check "procmail delivers the bounce through backstop (exit 0)" procmail -m "$home/.procmailrc" <"$bounce"
check "procmail delivers the ham message through backstop (exit 0)" procmail -m "$home/.procmailrc" <"$ham"
landed() {
    local dir=$1 want=$2 n
    n=$(find "$dir" -maxdepth 1 -type f | wc -l)
    ls -la "$dir" 2>&1
    [ "$n" -eq 1 ] && grep -q "^X-Backstop-Verdict: $want" "$dir"/*
}
check "the bounce landed in Maildir/.Backscatter/new, marked backscatter" landed "$home/Maildir/.Backscatter/new" backscatter
check "the ham message landed in Maildir/new, marked clean" landed "$home/Maildir/new" clean
check "the decision log has both messages" bash -c "[ \$(wc -l <$home/backstop.log) -eq 2 ]"
if [ "$failed" -gt 0 ] && [ -f "$home/procmail.log" ]; then
    sed 's/^/    procmail: /' "$home/procmail.log" | tail -n 30
fi
rm -rf "$home"

# ---------------------------------------------------------------- the milter
milter=/usr/sbin/backstop-milter
unit=/lib/systemd/system/backstop-milter.service
unit_key() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
check "$milter --version names $version" bash -c "v=\$($milter --version) && echo \"\$v\" && [[ \$v == 'backstop-milter $version'* ]]"
check "man -w 8 backstop-milter finds backstop-milter(8)" man -w 8 backstop-milter
check "backstop-milter(8) renders without warnings" bash -c '
    text=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=all 8 backstop-milter 2>&1 >/dev/null); [ -z "$text" ] || { echo "$text"; exit 1; }'
check "the site config /etc/backstop/milter.yaml is a conffile, as shipped" bash -c '
    dpkg-query -W -f="\${Conffiles}\n" backstop | grep " /etc/backstop/milter.yaml " &&
    cmp packaging/milter/milter.yaml /etc/backstop/milter.yaml'
check "postinst made the stamp key /etc/backstop/stamp.keys, mode 0640, group postfix" bash -c '
    ls -l /etc/backstop/stamp.keys; [ "$(stat -c "%a %U %G" /etc/backstop/stamp.keys)" = "640 root postfix" ] &&
    grep -Eq "^k1 [A-Za-z0-9+/=]{40,}$" /etc/backstop/stamp.keys'
# deb-systemd-helper enables a unit without systemd running: the symlink is made all the same.
check "postinst enabled the service (multi-user.target.wants/backstop-milter.service)" \
    test "$(readlink /etc/systemd/system/multi-user.target.wants/backstop-milter.service)" = "$unit"
examples_match() {
    local sock
    sock=$(sed -n 's/^ExecStart=.* --listen unix:\([^ ]*\).*/\1/p' "$unit")
    echo "the unit's socket: ${sock:-none}"
    [ -n "$sock" ] &&
        grep -q "^#   postconf -e 'smtpd_milters = unix:$sock'" /usr/share/doc/backstop/examples/postfix-milter &&
        grep -q "^INPUT_MAIL_FILTER(\`backstop', \`S=local:$sock," /usr/share/doc/backstop/examples/sendmail-milter.mc &&
        grep -q "ExecStart=$(unit_key ExecStart | cut -d' ' -f1) " /usr/share/doc/backstop/examples/postfix-milter
}
check "the Postfix and Sendmail examples name the unit's socket and binary" examples_match
check "systemd-analyze verify: the installed unit has no error or warning" bash -c "
    out=\$(systemd-analyze verify $unit 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
# The exposure score (0 best, 10 worst) of the unit, as systemd judges its sandboxing.
security() {
    systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1 | tail -n 1
    return "${PIPESTATUS[0]}"
}
check "systemd-analyze security: exposure at most 2.0 ($(security | sed 's/.*: //'))" security

# The service, started as systemd would start it. CI has no systemd as PID 1 (a container),
# so neither systemctl nor systemd-run can start units there. Instead the ExecStart line of
# the installed unit runs under what the unit asks for: a user of its own that no file
# belongs to (DynamicUser), its Group, its UMask, its RuntimeDirectory and StateDirectory,
# no capabilities, NoNewPrivileges, and in a mount namespace of its own with every file
# system read-only but those two directories (ProtectSystem=strict), an empty /tmp
# (PrivateTmp) and no /home or /root (ProtectHome). The system-call filter and the other
# kernel protections of the unit are not applied; systemd-analyze judges them above.
milter_pid=""
start_service() {
    local exec group gid uid umask rundir runmode statedir
    exec=$(unit_key ExecStart) group=$(unit_key Group) umask=$(unit_key UMask)
    rundir=/run/$(unit_key RuntimeDirectory) runmode=$(unit_key RuntimeDirectoryMode)
    statedir=/var/lib/$(unit_key StateDirectory)
    echo "ExecStart=$exec"
    [ "$(unit_key DynamicUser)" = yes ] && [ -n "$exec" ] && [ -n "$group" ] || return 1
    # DynamicUser: a free uid from systemd's dynamic range; the group as systemd takes it,
    # the static one of that name when it exists.
    uid=61184
    while getent passwd "$uid" >/dev/null || getent group "$uid" >/dev/null; do uid=$((uid + 1)); done
    gid=$(getent group "$group" | cut -d: -f3)
    gid=${gid:-$uid}
    echo "as uid $uid, gid $gid ($group), umask $umask"
    rm -rf "$rundir" "$statedir"
    install -d -m "${runmode:-0755}" -o "$uid" -g "$gid" "$rundir"
    install -d -m 0700 -o "$uid" -g "$gid" "$statedir"
    # One exec after the other (unshare without --fork, sh, setpriv, env), so that $! is the
    # milter itself, as systemd's main PID is.
    # shellcheck disable=SC2086 # ExecStart is split into words, as systemd does (it has no quotes)
    (umask "$umask" && exec unshare --mount --propagation private sh -c '
        rw=$1 state=$2; shift 2
        mount --bind "$rw" "$rw" && mount --bind "$state" "$state" || exit 1
        findmnt -rn -o TARGET | grep -v -e "^/proc" -e "^/sys" -e "^/dev" -e "^$rw\$" -e "^$state\$" |
            while read -r m; do mount -o remount,bind,ro "$m" 2>/dev/null; done
        for d in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
        for d in /home /root; do [ -d "$d" ] && mount -t tmpfs -o ro,mode=0755 tmpfs "$d"; done
        exec "$@"' sh "$rundir" "$statedir" \
        setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs --inh-caps=-all \
        --bounding-set=-all env -i $exec) >"$log/milter.log" 2>&1 &
    milter_pid=$!
    for _ in $(seq 1 100); do
        grep -q listening "$log/milter.log" && break
        kill -0 "$milter_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log/milter.log"
    grep -q "listening on unix:$rundir/milter.sock" "$log/milter.log" &&
        [ "$(stat -c '%a %G' "$rundir/milter.sock")" = "660 $group" ] &&
        [ "$(readlink "/proc/$milter_pid/exe")" = "$(unit_key ExecStart | cut -d' ' -f1)" ] &&
        grep -E "^(Uid|Gid|CapBnd|NoNewPrivs):" "/proc/$milter_pid/status" &&
        grep -Eq "^Uid:\s+$uid\s" "/proc/$milter_pid/status" && grep -Eq "^CapBnd:\s+0+$" "/proc/$milter_pid/status" &&
        grep -Eq "^NoNewPrivs:\s+1$" "/proc/$milter_pid/status" &&
        # The root file system is read-only for it (ProtectSystem=strict).
        awk '$5 == "/" { print "/ mounted " $6 " for the milter"; exit !($6 ~ /^ro/) }' "/proc/$milter_pid/mountinfo"
}
check "the unit's ExecStart runs as its dynamic user, group postfix, sandboxed; socket 0660 group postfix" start_service

# A milter handshake (SMFIC_OPTNEG, version 6) and a connection (SMFIC_CONNECT), as Postfix opens each session.
handshake() {
    python3 - /run/backstop/milter.sock <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
def send(cmd, data=b""):
    s.sendall(struct.pack(">I", len(data) + 1) + cmd + data)
def recv():
    head = b""
    while len(head) < 4:
        head += s.recv(4 - len(head)) or sys.exit("closed")
    n = struct.unpack(">I", head)[0]
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body)) or sys.exit("closed")
    return body[:1], body[1:]
# Offer every action but none of the no-reply steps (SMFIP_NR_*), so that CONNECT is answered.
send(b"O", struct.pack(">III", 6, 0x1FF, 0))
cmd, data = recv()
version, actions, flags = struct.unpack(">III", data[:12])
print("OPTNEG reply:", cmd, "version", version, "actions %#x" % actions, "flags %#x" % flags)
assert cmd == b"O" and version == 6, "not a milter handshake"
send(b"C", b"client.test\0" + b"4" + struct.pack(">H", 25) + b"192.0.2.1\0")
cmd, _ = recv()
print("CONNECT reply:", cmd)
assert cmd == b"c", "no continue after CONNECT"
send(b"Q")
EOF
}
check "the service answers a milter handshake (OPTNEG v6, CONNECT) on /run/backstop/milter.sock" handshake
stop_service() {
    kill -TERM "$milter_pid" 2>/dev/null || return 1
    for _ in $(seq 1 50); do
        kill -0 "$milter_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$milter_pid" 2>/dev/null; then
        echo "still running after 5 s: $milter_pid"
        kill -KILL "$milter_pid"
        return 1
    fi
    # systemd removes the RuntimeDirectory when the service stops.
    rm -rf /run/backstop /var/lib/backstop
}
check "SIGTERM stops the service (as systemctl stop does)" stop_service

check "dpkg --purge removes the package" dpkg --purge backstop
gone() {
    local left=0 status
    for f in /usr/bin/backstop /usr/share/backstop /usr/share/doc/backstop /usr/share/man/man1/backstop.1.gz \
        /usr/share/man/man5/backstop.yaml.5.gz /usr/share/bash-completion/completions/backstop \
        /usr/sbin/backstop-milter /usr/share/man/man8/backstop-milter.8.gz "$unit" /etc/backstop \
        /etc/systemd/system/multi-user.target.wants/backstop-milter.service; do
        [ -e "$f" ] || [ -L "$f" ] && { echo "still there: $f"; left=1; }
    done
    status=$(dpkg-query -W -f '${Status}' backstop 2>&1) && [ "$status" != "unknown ok not-installed" ] &&
        { echo "still known to dpkg: $status"; left=1; }
    [ $left -eq 0 ]
}
check "after dpkg --purge, the binaries, the unit, its enabling link, /etc/backstop and the key are gone" gone

finish
