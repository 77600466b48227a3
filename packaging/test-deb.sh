#!/bin/bash
# CI test of the Debian package: installs the tools it needs, builds the .deb
# (build-deb.sh), runs lintian on it, installs it with dpkg -i, runs the
# installed /usr/bin/backstop through procmail on a bounce and on a ham
# message, checks the man pages, completions and files, and removes it with
# dpkg -r. One line per check, then "N passed, M failed"; exits non-zero on any
# failure. Runs as root (dpkg -i); it is meant for CI and throwaway machines.
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
        apt-get install -y -qq --no-install-recommends lintian procmail dpkg-dev binutils gcc libc6-dev man-db git
}
check "apt-get installs lintian, procmail, dpkg-dev, libc6-dev, man-db" install_tools

# A package left installed by an earlier run would hide a broken install.
if dpkg -s backstop >/dev/null 2>&1; then
    dpkg -r backstop >/dev/null 2>&1
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

check "dpkg -r removes the package" dpkg -r backstop
gone() {
    local left=0 status
    for f in /usr/bin/backstop /usr/share/backstop /usr/share/doc/backstop /usr/share/man/man1/backstop.1.gz \
        /usr/share/man/man5/backstop.yaml.5.gz /usr/share/bash-completion/completions/backstop; do
        [ -e "$f" ] && { echo "still there: $f"; left=1; }
    done
    status=$(dpkg-query -W -f '${Status}' backstop 2>&1) && [ "$status" = "install ok installed" ] &&
        { echo "still installed: $status"; left=1; }
    [ $left -eq 0 ]
}
check "after dpkg -r, /usr/bin/backstop and the package's files are gone" gone

finish
