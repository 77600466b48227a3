#!/bin/bash
# Installs the real delivery agents that tests/hosts/run.sh drives:
# procmail, maildrop, Dovecot LDA and IMAP + Pigeonhole Sieve (extprograms
# and IMAPSieve), Postfix, and Exim; python3-dkim, whose signer makes the
# signatures the DKIM proof tests check; redis-server, the shared ledger of the
# milter fleet test (tests/hosts/milter-fleet.sh starts its own on loopback);
# and mmdebstrap, with which install-dovecot24.sh builds the Debian 13 chroot
# holding Dovecot 2.4 (run it after this script).
#
# Exim cannot be installed beside Postfix on Debian (both are the system's
# mail transport agent), so Debian's exim4-daemon-light and exim4-config
# packages are downloaded and unpacked into $EXIM_ROOT instead, the libraries
# the exim4 binary needs are installed, and the user Debian-exim that the
# binary is built to run as is created. run.sh runs that binary with a private
# configuration made of Debian's own router and transport files. The unpacked
# binary loses its set-user-id bit: the tests run it as root.
#
# Debian 12, run as root. Idempotent: when every program is already there it
# does nothing (no network needed). Nothing is started and no system mail
# config is written:
#   - /usr/sbin/policy-rc.d exiting 101 keeps invoke-rc.d from starting
#     dovecot and postfix during the install (created only for the install
#     if it is missing, then removed again);
#   - postfix is preseeded to "No configuration", so /etc/postfix/main.cf is
#     not written (otherwise, installed with procmail, Debian's postfix sets
#     mailbox_command = procmail). The tests use a private Postfix instance.
set -euo pipefail

packages=(procmail maildrop dovecot-core dovecot-imapd dovecot-sieve postfix python3-dkim redis-server mmdebstrap)
EXIM_ROOT=${EXIM_ROOT:-/opt/backstop-tests/exim4}
programs=(/usr/bin/procmail /usr/bin/formail /usr/bin/maildrop /usr/bin/maildirmake
  /usr/lib/dovecot/dovecot-lda /usr/lib/dovecot/imap /usr/bin/doveadm /usr/bin/sieve-test
  /usr/lib/dovecot/modules/sieve/lib90_sieve_extprograms_plugin.so
  /usr/sbin/postfix /usr/sbin/sendmail /usr/sbin/postqueue /usr/lib/postfix/sbin/local
  /usr/bin/dkimsign /usr/bin/dknewkey /usr/bin/redis-server /usr/bin/mmdebstrap
  "$EXIM_ROOT/usr/sbin/exim4" "$EXIM_ROOT/etc/exim4/conf.d/router/600_exim4-config_userforward")

missing=0
for p in "${programs[@]}"; do
  [ -e "$p" ] || missing=1
done
id Debian-exim >/dev/null 2>&1 || missing=1
# ldd's output taken whole: a failing ldd must not read as "nothing missing".
if [ "$missing" = 0 ] && libs_of_exim=$(ldd "$EXIM_ROOT/usr/sbin/exim4") &&
  ! grep -q 'not found' <<<"$libs_of_exim"; then
  echo "install.sh: all hosts already installed"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: must run as root to install: ${packages[*]}" >&2
  exit 1
fi

created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# added by backstop tests/hosts/install.sh: start no service\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() {
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${packages[@]}"

# Exim, unpacked beside the installed MTA.
dl=$(mktemp -d)
chown _apt "$dl" 2>/dev/null || true # apt downloads as _apt where it can
(cd "$dl" && apt-get download exim4-daemon-light exim4-config)
rm -rf "$EXIM_ROOT"
mkdir -p "$EXIM_ROOT"
for deb in "$dl"/*.deb; do
  dpkg-deb -x "$deb" "$EXIM_ROOT"
done
chmod u-s "$EXIM_ROOT/usr/sbin/exim4"
# The daemon's Depends, but the exim4-base and debconf that come with an installed Exim.
libs=$(dpkg-deb -f "$dl"/exim4-daemon-light_*.deb Depends | tr ',' '\n' |
  sed -e 's/|.*//' -e 's/(.*)//' -e 's/ //g' | grep -v -e '^exim4' -e '^debconf' -e '^$')
rm -rf "$dl"
# shellcheck disable=SC2086 # one word a package
apt-get install -y --no-install-recommends $libs
if ! id Debian-exim >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin Debian-exim
fi
libs_of_exim=$(ldd "$EXIM_ROOT/usr/sbin/exim4")
if grep 'not found' <<<"$libs_of_exim"; then
  echo "install.sh: the unpacked exim4 still misses libraries" >&2
  exit 1
fi

for p in "${programs[@]}"; do
  if [ ! -e "$p" ]; then
    echo "install.sh: $p is still missing after the install" >&2
    exit 1
  fi
done
echo "install.sh: installed ${packages[*]}, and Exim in $EXIM_ROOT"
