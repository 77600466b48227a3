#!/bin/bash
# CI test of the RPM spec: installs Debian's rpm, fetches the crates of
# Cargo.lock into cargo's cache, makes a source tarball of the tree, builds
# packaging/rpm/backstop.spec with rpmbuild -bb (cargo offline inside), and
# checks the package: its files, its license line, and the packaged binary,
# installed into a scratch root. One line per check, then "N passed, M
# failed"; exits non-zero on any failure.
#
#   bash packaging/test-rpm.sh
#
# The RPM lands in target/rpm/ (with rpmbuild.log). CARGO_TARGET_DIR defaults to
# target/pkg, shared with build-deb.sh: after a .deb build of the same tree,
# cargo finds the spec's build up to date (packaging/README.md, Speed).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
top=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$top/target/pkg}
NAME=rpm
# shellcheck source=packaging/test-lib.sh
. packaging/test-lib.sh

install_rpm() {
    if ! command -v rpmbuild >/dev/null || ! command -v rpmlint >/dev/null; then
        [ "$(id -u)" -eq 0 ] || { echo "rpmbuild or rpmlint is missing; as root: apt-get install rpm rpmlint"; return 1; }
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends rpm rpmlint
    fi
    rpmbuild --version && rpmlint --version
}
check "rpmbuild and rpmlint are installed (Debian's rpm and rpmlint)" install_rpm
command -v rpmbuild >/dev/null || finish

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
# The revision --version must name: git's, or BACKSTOP_GIT_REV outside a checkout (without
# either, the version check fails rather than skip the revision).
rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo "${BACKSTOP_GIT_REV:-}")
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
# rpmbuild's tree lies outside the source tree: cargo, building in
# BUILD/backstop-VERSION/, would otherwise read the tree's own Cargo.toml as a
# possible workspace root. The RPM and the build log are copied to target/rpm/.
rpmtop=$log/rpmbuild
out=$top/target/rpm
mkdir -p "$out"

# Network allowed here, before rpmbuild: afterwards everything is offline.
check "cargo fetch --locked fills the crate cache for the offline build" cargo fetch --locked

make_tarball() {
    mkdir -p "$rpmtop/SOURCES"
    local tarball=$rpmtop/SOURCES/backstop-$version.tar.gz
    if git rev-parse --git-dir >/dev/null 2>&1; then
        # The files of the work tree that git knows or would add (uncommitted
        # changes included), as in a release tarball. Their own mtimes, not one
        # date for all: cargo, finding an earlier build of the tree in the shared
        # target directory, tells by them whether a file changed since.
        git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
            [ -e "$f" ] && printf '%s\0' "$f"
        done | tar --null -T - --sort=name --owner=0 --group=0 \
            --transform "s,^,backstop-$version/," -czf "$tarball"
    else
        tar --exclude=./target --exclude=./.git --sort=name --transform "s,^\.,backstop-$version," \
            -czf "$tarball" .
    fi
    tar -tzf "$tarball" >"$log/tarball-list" && grep -qx "backstop-$version/Cargo.lock" "$log/tarball-list"
}
check "source tarball backstop-$version.tar.gz made from the tree" make_tarball

build_rpm() {
    # CARGO_NET_OFFLINE makes any network access by cargo an error, on top of
    # the spec's own --offline.
    CARGO_NET_OFFLINE=true rpmbuild -bb --nodeps \
        --define "_topdir $rpmtop" \
        --define "pkg_version $version" \
        ${rev:+--define "git_rev $rev"} \
        --define "cargo_target_dir $CARGO_TARGET_DIR" \
        packaging/rpm/backstop.spec
}
if build_rpm >"$out/rpmbuild.log" 2>&1; then
    pass "rpmbuild -bb packaging/rpm/backstop.spec (offline)"
else
    fail "rpmbuild -bb packaging/rpm/backstop.spec (offline)"
    grep -v '^warning: \|^ *|\|^ *= \|^ *--> ' "$out/rpmbuild.log" | tail -n 40 | sed 's/^/    /'
    finish
fi
copy_rpm() {
    local built
    built=$(find "$rpmtop/RPMS" -name "backstop-$version-*.rpm" | head -n 1)
    [ -s "$built" ] || return 1
    rm -f "$out"/backstop-*.rpm
    cp "$built" "$out/"
    rpm=$out/${built##*/}
}
rpm=""
check "the RPM is built" copy_rpm
[ -n "$rpm" ] && echo "    ${rpm#"$top"/}"

files_ok() {
    local list missing=0
    list=$(rpm -qlp "$rpm") || return 1
    echo "$list"
    for f in /usr/bin/backstop /usr/share/man/man1/backstop.1.gz /usr/share/man/man5/backstop.yaml.5.gz \
        /usr/sbin/backstop-milter /usr/lib/systemd/system/backstop-milter.service /etc/backstop/milter.yaml \
        /usr/share/man/man8/backstop-milter.8.gz \
        /usr/share/bash-completion/completions/backstop /usr/share/zsh/site-functions/_backstop \
        /usr/share/fish/vendor_completions.d/backstop.fish /usr/share/backstop/default.yaml \
        /usr/share/licenses/backstop/copyright /usr/share/licenses/backstop/dependency-licenses.txt \
        /usr/share/licenses/backstop/Apache-2.0.txt /usr/share/licenses/backstop/MIT.txt; do
        grep -qx "$f" <<<"$list" || { echo "missing: $f"; missing=1; }
    done
    for f in packaging/examples/*; do
        grep -qx "/usr/share/doc/backstop/examples/${f##*/}" <<<"$list" || { echo "missing example: $f"; missing=1; }
    done
    return $missing
}
check "the RPM holds the binaries, the milter's unit and site config, man pages, completions, rules, examples and licenses" files_ok
check "the site config is %config(noreplace)" bash -c "rpm -qp --configfiles '$rpm' | grep -qx /etc/backstop/milter.yaml"


run_rpmlint() {
    rpmlint -c packaging/rpm/rpmlint.toml "$rpm" 2>&1 | grep -v '^ *$' | tee "$log/rpmlint" >&2
    grep -q ' 0 errors, 0 warnings' "$log/rpmlint"
}
if run_rpmlint 2>"$log/out"; then
    pass "rpmlint: no errors and no warnings but those packaging/rpm/rpmlint.toml accepts"
else
    fail "rpmlint: no errors and no warnings but those packaging/rpm/rpmlint.toml accepts"
fi
grep -E '^[^ ]+: [EW]: |errors, ' "$log/out" | sed 's/^/    rpmlint: /'

root=$(mktemp -d /tmp/backstop-rpmroot.XXXXXX)
check "the RPM installs into a scratch root (rpm --root -i)" bash -c "
    rpm --root '$root' --initdb && rpm --root '$root' -i --nodeps --noscripts '$rpm'"
# backstop is a static PIE; backstop-milter, a daemon, is linked dynamically (build-deb.sh
# says why), so the RPM requires the shared libraries it names and none other.
shared_libraries() {
    local requires needed
    requires=$(rpm -qp --requires "$rpm") || return 1
    echo "$requires"
    readelf -d "$root/usr/bin/backstop" | grep NEEDED && { echo "backstop needs shared libraries"; return 1; }
    needed=$(readelf -d "$root/usr/sbin/backstop-milter" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p')
    echo "backstop-milter needs: $needed"
    [ -n "$needed" ] || return 1
    for lib in $(grep -o '^[^(]*\.so[.0-9]*' <<<"$requires" | sort -u); do
        grep -qx "$lib" <<<"$needed" || { echo "required but not needed by backstop-milter: $lib"; return 1; }
    done
}
check "backstop needs no shared library (static PIE); the RPM requires only backstop-milter's" shared_libraries
check "the packaged backstop-milter --version names $version" bash -c "
    v=\$('$root/usr/sbin/backstop-milter' --version) && echo \"\$v\" && [[ \$v == 'backstop-milter $version'* ]]"
version_ok() {
    local v
    v=$("$root/usr/bin/backstop" --version) || return 1
    echo "$v"
    [ -n "$rev" ] || { echo "no revision to check: not a git checkout and no BACKSTOP_GIT_REV"; return 1; }
    [[ $v == "backstop $version ("*")" ]] && [[ $v == *"$rev"* ]]
}
check "the packaged backstop --version names $version and revision ${rev:-?}" version_ok
check "the packaged backstop works: check on a bounce" bash -c "
    printf 'own:\n  domains: [example.jp]\n  hosts: [mail.example.jp]\n' >'$root/config.yaml'
    out=\$('$root/usr/bin/backstop' check -c '$root/config.yaml' --format word \
        tests/fixtures/corpus/bounces/sisimai-bsd/lhost-postfix-02.eml); echo \"\$out\"; [ \"\$out\" = backscatter ]"
check "the packaged rules are the tree's rules/default.yaml" cmp rules/default.yaml "$root/usr/share/backstop/default.yaml"
license_ok() {
    local spec_license missing=0 crates=0 name ver expr atom
    spec_license=$(rpm -qp --qf '%{LICENSE}' "$rpm") || return 1
    echo "License: $spec_license"
    # Each license named by a crate in the binary (the parts of its SPDX
    # expression between OR and AND) must be in the tag.
    while read -r name ver expr; do
        crates=$((crates + 1))
        expr=${expr//\//" OR "}
        expr=${expr//[()]/}
        while read -r atom; do
            [ -z "$atom" ] || grep -qF -- "$atom" <<<"$spec_license" ||
                { echo "$name $ver: $atom is not in the License tag"; missing=1; }
        done < <(sed -e 's/ OR /\n/g' -e 's/ AND /\n/g' <<<"$expr")
    done <"$root/usr/share/licenses/backstop/dependency-licenses.txt"
    echo "$crates crates"
    [ "$crates" -gt 1 ] && [ "$missing" -eq 0 ]
}
check "the License tag names the license of every crate in the binary" license_ok
rm -rf "$root"

finish
