#!/bin/bash
# Lays out the installed files of backstop under DESTDIR, the same for the .deb
# and the RPM (build-deb.sh and rpm/backstop.spec both call it).
#
#   packaging/install-tree.sh BINARY GENDIR DESTDIR deb|rpm
#
# BINARY is the release build of backstop; GENDIR is what
# `cargo run --example gen_docs -- GENDIR` wrote (man/, completions/). Run from
# the top of the source tree. Copies and strips; builds nothing.
set -euo pipefail

if [ $# -ne 4 ] || { [ "$4" != deb ] && [ "$4" != rpm ]; }; then
    echo "usage: $0 BINARY GENDIR DESTDIR deb|rpm" >&2
    exit 2
fi
bin=$1 gen=$2 dest=$3 flavor=$4
[ -f Cargo.toml ] && [ -d packaging ] || { echo "$0: run me from the top of the source tree" >&2; exit 2; }
for f in "$bin" "$gen/man/backstop.1" "$gen/man/backstop.yaml.5" "$gen/completions/backstop.bash" \
    "$gen/completions/_backstop" "$gen/completions/backstop.fish" rules/default.yaml; do
    [ -f "$f" ] || { echo "$0: missing $f" >&2; exit 1; }
done
[ -d packaging/examples ] || { echo "$0: missing packaging/examples/" >&2; exit 1; }

umask 022
doc=$dest/usr/share/doc/backstop
case $flavor in
    deb) zsh_dir=usr/share/zsh/vendor-completions ;;   # Debian's zsh looks here
    rpm) zsh_dir=usr/share/zsh/site-functions ;;       # Fedora's and openSUSE's zsh look here
esac

install -D -m 0755 "$bin" "$dest/usr/bin/backstop"
# As dh_strip does: no symbols, no build notes (lintian: unstripped-binary-or-object).
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$dest/usr/bin/backstop"

for page in man1/backstop.1 man5/backstop.yaml.5; do
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
