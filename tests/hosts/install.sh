#!/bin/bash
# Installs the real delivery agents that tests/hosts/run.sh drives:
# procmail, maildrop, Dovecot LDA + Pigeonhole Sieve (extprograms), Postfix.
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

packages=(procmail maildrop dovecot-core dovecot-sieve postfix)
programs=(/usr/bin/procmail /usr/bin/formail /usr/bin/maildrop /usr/bin/maildirmake
  /usr/lib/dovecot/dovecot-lda /usr/bin/doveadm /usr/bin/sieve-test
  /usr/lib/dovecot/modules/sieve/lib90_sieve_extprograms_plugin.so
  /usr/sbin/postfix /usr/sbin/sendmail /usr/sbin/postqueue /usr/lib/postfix/sbin/local)

missing=0
for p in "${programs[@]}"; do
  [ -e "$p" ] || missing=1
done
if [ "$missing" = 0 ]; then
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

for p in "${programs[@]}"; do
  if [ ! -e "$p" ]; then
    echo "install.sh: $p is still missing after the install" >&2
    exit 1
  fi
done
echo "install.sh: installed ${packages[*]}"
