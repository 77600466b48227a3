#!/bin/bash
# Builds the Debian 13 (trixie) chroot in which tests/hosts/run.sh tests the
# Dovecot 2.4 examples (packaging/examples/dovecot-2.4.conf and
# dovecot-2.4-imapsieve-learn.conf): mmdebstrap, variant minbase, plus
# dovecot-core, dovecot-imapd, dovecot-lmtpd and dovecot-sieve from Debian's
# archive. About 190 MB; it takes 30 to 60 s (network bound).
#
#   bash tests/hosts/install-dovecot24.sh        (as root; DV24_ROOT to move it)
#
# Debian 12, as root: mmdebstrap (which tests/hosts/install.sh installs) runs
# in root mode. It starts nothing (mmdebstrap keeps services from starting
# inside the chroot) and changes nothing outside $DV24_ROOT. Idempotent: when
# the chroot is there with Dovecot 2.4 and the extprograms plugin it does
# nothing (no network needed). The chroot is built beside, in a fresh
# directory, and renamed into place only when complete, so an interrupted
# build leaves no half chroot to be taken for a whole one.
set -euo pipefail

DV24_ROOT=${DV24_ROOT:-/opt/backstop-tests/trixie}
packages=dovecot-core,dovecot-imapd,dovecot-lmtpd,dovecot-sieve

ready() {
  [ -x "$DV24_ROOT/usr/lib/dovecot/dovecot-lda" ] && [ -x "$DV24_ROOT/usr/lib/dovecot/imap" ] &&
    [ -e "$DV24_ROOT/usr/lib/dovecot/modules/sieve/lib90_sieve_extprograms_plugin.so" ] &&
    chroot "$DV24_ROOT" dovecot --version 2>/dev/null | grep -q '^2\.4\.'
}

if ready; then
  echo "install-dovecot24.sh: Dovecot $(chroot "$DV24_ROOT" dovecot --version) already in $DV24_ROOT"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-dovecot24.sh: must run as root to build the chroot $DV24_ROOT" >&2
  exit 1
fi
if ! command -v mmdebstrap >/dev/null; then
  echo "install-dovecot24.sh: no mmdebstrap (tests/hosts/install.sh installs it)" >&2
  exit 1
fi

mkdir -p "$(dirname "$DV24_ROOT")"
new=$(mktemp -d "$DV24_ROOT.new.XXXXXX")
trap 'rm -rf "$new"' EXIT
started=$(date +%s)
mmdebstrap --mode=root --variant=minbase --include="$packages" trixie "$new"
rm -rf "$DV24_ROOT"
chmod 755 "$new"
mv "$new" "$DV24_ROOT"
trap - EXIT
if ! ready; then
  echo "install-dovecot24.sh: $DV24_ROOT holds no Dovecot 2.4 with the extprograms plugin" >&2
  exit 1
fi
echo "install-dovecot24.sh: Dovecot $(chroot "$DV24_ROOT" dovecot --version) in $DV24_ROOT ($(($(date +%s) - started)) s)"
