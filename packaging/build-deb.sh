#!/bin/bash
# Builds the Debian package target/debian/backstop_VERSION_ARCH.deb from this
# source tree: a release build, the generated man pages, completions and
# copyright file (examples/gen_docs.rs), laid out by install-tree.sh and packed
# with dpkg-deb. See packaging/README.md.
#
#   bash packaging/build-deb.sh
#
# Needs cargo, git (for the revision in --version), and Debian's dpkg-dev and
# binutils. CARGO_TARGET_DIR defaults to target/pkg, apart from the
# development builds in target/.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$top/target/pkg}

for tool in cargo gcc readelf dpkg-deb dpkg-parsechangelog strip gzip md5sum; do
    command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (apt-get install dpkg-dev binutils gcc libc6-dev)" >&2; exit 1; }
done

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
changelog=packaging/debian/changelog
debversion=$(dpkg-parsechangelog -l "$changelog" -S Version)
if [ "${debversion%-*}" != "$version" ]; then
    echo "build-deb: $changelog is at $debversion but Cargo.toml at $version; add an entry:" >&2
    echo "  dch -c $changelog -v $version-1" >&2
    exit 1
fi

# The revision that `backstop --version` shows: git's, or BACKSTOP_GIT_REV outside a
# checkout. It is handed to build.rs in BACKSTOP_GIT_REV, so that the build does not
# depend on .git: test-rpm.sh's build from a tarball of the tree (no .git) then finds
# this one up to date in the shared target directory and compiles nothing again.
rev=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
rev=${rev:-${BACKSTOP_GIT_REV:-}}
if [ -z "$rev" ]; then
    echo "build-deb: not a git checkout and no BACKSTOP_GIT_REV: --version will say 'unknown revision'" >&2
else
    export BACKSTOP_GIT_REV=$rev
fi
# Reproducible dates (man pages, changelog, file times): the last commit's.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)

work=$CARGO_TARGET_DIR/debian-work
out=$top/target/debian
rm -rf "$work"
mkdir -p "$work" "$out"

echo "build-deb: packaging/build-release.sh (target dir $CARGO_TARGET_DIR)" >&2
packaging/build-release.sh
# The milter is linked dynamically, as usual: a daemon starts once, so static linking buys
# it nothing, and the dynamic glibc does what a static one cannot (name lookups through
# NSS modules, for a Redis host name say) and gets glibc's security updates without a
# rebuild. Its Depends come from dpkg-shlibdeps below.
cargo build --release --locked --quiet --bin backstop-milter
cargo run --release --locked --quiet --example gen_docs -- "$work/gen" --date "$date"
bin=$CARGO_TARGET_DIR/release/backstop
milter=$CARGO_TARGET_DIR/release/backstop-milter
if [ -n "$rev" ] && ! "$bin" --version | grep -qF "$rev"; then
    echo "build-deb: '$("$bin" --version)' does not name revision $rev" >&2
    exit 1
fi

# The tree is laid out where debhelper would put it (debian/PACKAGE).
root=$work/debian/backstop
packaging/install-tree.sh "$bin" "$milter" "$work/gen" "$root" deb
install -m 0644 "$work/gen/copyright" "$root/usr/share/doc/backstop/copyright"
gzip -9n <"$changelog" >"$root/usr/share/doc/backstop/changelog.Debian.gz"
chmod 0644 "$root/usr/share/doc/backstop/changelog.Debian.gz"
install -D -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/backstop"

# The binary is linked statically (packaging/build-release.sh): it must need no shared
# library, and the package names the sources of the static libraries linked in
# (Built-Using), so that their security updates are known to need a rebuild.
dynamic=$(readelf -d "$bin")
if grep -q NEEDED <<<"$dynamic"; then
    echo "build-deb: $bin needs shared libraries; it should be static" >&2
    exit 1
fi
built_using=$(for lib in libc.a libgcc.a libgcc_eh.a; do
    file=$(gcc -print-file-name="$lib")
    pkg=$(dpkg -S "$(readlink -f "$file")" | head -1 | cut -d: -f1)
    dpkg-query -W -f='${source:Package} (= ${source:Version})\n' "$pkg"
done | sort -u | paste -sd, | sed 's/,/, /g')
[ -n "$built_using" ] || { echo "build-deb: cannot tell the static libraries' sources" >&2; exit 1; }
# The milter's shared libraries, as dh_shlibdeps finds them: dpkg-shlibdeps wants a
# debian/control beside the package tree.
printf 'Source: backstop\n\nPackage: backstop\nArchitecture: any\n' >"$work/debian/control"
depends=$(cd "$work" && dpkg-shlibdeps -O -e debian/backstop/usr/sbin/backstop-milter | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependency for backstop-milter" >&2; exit 1; }

arch=$(dpkg --print-architecture)
maintainer=$(dpkg-parsechangelog -l "$changelog" -S Maintainer)
find "$root" -type d -exec chmod 0755 {} +
size=$(du -s -k --apparent-size "$root" | cut -f1)
mkdir -m 0755 "$root/DEBIAN"
sed -e "s|@VERSION@|$debversion|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@INSTALLED_SIZE@|$size|" -e "s|@BUILT_USING@|$built_using|" -e "s|@DEPENDS@|$depends|" \
    packaging/debian/control >"$root/DEBIAN/control"
# md5sums of every file but the conffiles (as dh_md5sums: dpkg keeps theirs itself).
(cd "$root" && find usr lib -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
# The maintainer scripts: the milter's service (dh_installsystemd's snippets) and stamp key.
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

deb=$out/backstop_${debversion}_${arch}.deb
rm -f "$out"/backstop_*.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
