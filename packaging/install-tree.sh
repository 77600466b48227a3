#!/bin/bash
# Lays out the installed files of backstop under DESTDIR, the same for the .deb
# and the RPM (build-deb.sh and rpm/backstop.spec both call it).
#
#   packaging/install-tree.sh BINARY MILTER GENDIR DESTDIR deb|rpm
#
# BINARY is the release build of backstop, MILTER that of backstop-milter;
# GENDIR is what `cargo run --example gen_docs -- GENDIR` wrote (man/,
# completions/). Run from the top of the source tree. Copies and strips; builds
# nothing. The maintainer scripts (service enabling, the stamp key) are the
# package's own: packaging/debian/, the spec's scriptlets.
set -euo pipefail

if [ $# -ne 5 ] || { [ "$5" != deb ] && [ "$5" != rpm ]; }; then
    echo "usage: $0 BINARY MILTER GENDIR DESTDIR deb|rpm" >&2
    exit 2
fi
bin=$1 milter=$2 gen=$3 dest=$4 flavor=$5
[ -f Cargo.toml ] && [ -d packaging ] || { echo "$0: run me from the top of the source tree" >&2; exit 2; }
for f in "$bin" "$milter" "$gen/man/backstop.1" "$gen/man/backstop.yaml.5" "$gen/man/backstop-milter.8" \
    "$gen/completions/backstop.bash" "$gen/completions/_backstop" "$gen/completions/backstop.fish" \
    rules/default.yaml packaging/milter/backstop-milter.service packaging/milter/milter.yaml; do
    [ -f "$f" ] || { echo "$0: missing $f" >&2; exit 1; }
done
[ -d packaging/examples ] || { echo "$0: missing packaging/examples/" >&2; exit 1; }

umask 022
doc=$dest/usr/share/doc/backstop
case $flavor in
    # Debian's zsh looks in vendor-completions; Debian 12 keeps units in /lib (debhelper's place).
    deb) zsh_dir=usr/share/zsh/vendor-completions unit_dir=lib/systemd/system ;;
    # Fedora's and openSUSE's zsh look in site-functions; %{_unitdir} is /usr/lib/systemd/system.
    rpm) zsh_dir=usr/share/zsh/site-functions unit_dir=usr/lib/systemd/system ;;
esac

install -D -m 0755 "$bin" "$dest/usr/bin/backstop"
# As dh_strip does: no symbols, no build notes (lintian: unstripped-binary-or-object).
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$dest/usr/bin/backstop"

# The milter is a daemon that only the service manager starts: /usr/sbin, section 8.
install -D -m 0755 "$milter" "$dest/usr/sbin/backstop-milter"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$dest/usr/sbin/backstop-milter"
install -D -m 0644 packaging/milter/backstop-milter.service "$dest/$unit_dir/backstop-milter.service"
# The site config, a conffile (debian/conffiles; %config(noreplace) in the spec).
install -D -m 0644 packaging/milter/milter.yaml "$dest/etc/backstop/milter.yaml"

for page in man1/backstop.1 man5/backstop.yaml.5 man8/backstop-milter.8; do
    install -D -m 0644 "$gen/man/${page#*/}" "$dest/usr/share/man/$page"
    gzip -9nf "$dest/usr/share/man/$page"
done

install -D -m 0644 "$gen/completions/backstop.bash" "$dest/usr/share/bash-completion/completions/backstop"
install -D -m 0644 "$gen/completions/_backstop" "$dest/$zsh_dir/_backstop"
install -D -m 0644 "$gen/completions/backstop.fish" "$dest/usr/share/fish/vendor_completions.d/backstop.fish"

install -D -m 0644 rules/default.yaml "$dest/usr/share/backstop/default.yaml"

# The host examples, the whole directory, as documentation: no file in it is
# executable (lintian: executable-in-usr-share-doc); users copy them.
mkdir -p "$doc/examples"
cp -R packaging/examples/. "$doc/examples/"
find "$doc/examples" -type d -exec chmod 0755 {} +
find "$doc/examples" -type f -exec chmod 0644 {} +

if [ -f README.md ]; then
    install -D -m 0644 README.md "$doc/README.md"
    # Debian policy 12.3: documentation over 4 kB is compressed (as dh_compress does).
    if [ "$flavor" = deb ] && [ "$(stat -c %s README.md)" -gt 4096 ]; then
        gzip -9nf "$doc/README.md"
    fi
fi
