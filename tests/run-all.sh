#!/bin/bash
# Runs every test of backstop: formatting and lints, the unit and integration tests
# (real procmail, maildrop, Dovecot and Postfix included), the corpus accuracy check,
# the Debian and RPM package builds, and a bounded fuzz run.
#
# Debian 12 with Rust 1.95, as root (it installs the delivery agents, lintian and
# rpm with apt-get, builds a Debian 13 chroot with Dovecot 2.4 in /opt/backstop-tests,
# mounts a tmpfs for the disk-full test, and adds a test user). The README says how
# long it takes and what it leaves behind.
# Usage: bash tests/run-all.sh        (FUZZ_SECONDS=30 by default)
#
# It needs the shared corpus at ../shared/corpus and fails without it; BACKSTOP_NO_CORPUS=1
# is the explicit opt-out (the corpus gate and the corpus part of the fast-matcher test
# are then skipped, and the last line says so).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's heading; the time the previous step took is printed before it, and all the
# step times again at the end (to see where the time goes: the README states the total).
start=$(date +%s)
step_start=$start step_name="" step_times=""
step_done() {
  if [ -n "$step_name" ]; then
    local took=$(( $(date +%s) - step_start ))
    printf '   (%s s)\n' "$took"
    step_times+=$(printf '%5s s  %s' "$took" "$step_name")$'\n'
  fi
}
step() {
  step_done
  step_name=$* step_start=$(date +%s)
  printf '\n== %s\n' "$*"
}

# The shared corpus beside the repo (CI always has it): missing, the run fails here, unless
# BACKSTOP_NO_CORPUS=1 says to go on without the corpus checks (see tests/corpus-gate.sh).
corpus=../shared/corpus
if [ -f "$corpus/manifest.tsv" ]; then
  # The fast-matcher test also compares every rule with its full regex on every corpus message.
  BACKSTOP_CORPUS=$(cd "$corpus" && pwd)
  export BACKSTOP_CORPUS
elif [ "${BACKSTOP_NO_CORPUS:-}" = 1 ]; then
  unset BACKSTOP_CORPUS
  step "no shared corpus at $corpus: going on WITHOUT the corpus checks (BACKSTOP_NO_CORPUS=1)"
else
  echo "run-all: no shared corpus at $corpus (no manifest.tsv); BACKSTOP_NO_CORPUS=1 runs the rest without it" >&2
  exit 1
fi

step "install what the tests drive"
bash tests/hosts/install.sh
# The Debian 13 chroot with Dovecot 2.4 (network bound, 30 to 60 s) builds while fmt and
# clippy run; cargo test, whose host tests use it, waits for it.
mkdir -p target
bash tests/hosts/install-dovecot24.sh >target/install-dovecot24.log 2>&1 &
dovecot24=$!

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "wait for the Dovecot 2.4 chroot (tests/hosts/install-dovecot24.sh)"
if ! wait "$dovecot24"; then
  cat target/install-dovecot24.log >&2
  echo "run-all: tests/hosts/install-dovecot24.sh failed (its log is above)" >&2
  exit 1
fi
tail -n 1 target/install-dovecot24.log

step "cargo test (unit, integration, real hosts, property tests${BACKSTOP_CORPUS:+; fast matcher on the corpus too})"
cargo test --locked

# The fuzz target's build (its own flags, so nothing shared with the other builds) runs beside
# the corpus gate and the packages, whose release builds spend most of their time on one core
# (backstop is one codegen unit, linked with LTO); the fuzzing itself runs last, alone.
step "build the fuzz target in the background (bash fuzz/run.sh --build-only)"
setsid -w bash fuzz/run.sh --build-only >target/fuzz-build.log 2>&1 &
fuzz_build=$!
# Its process group goes too if the run stops before waiting for it.
trap 'kill -- "-$fuzz_build" 2>/dev/null || true' EXIT

# The release builds from here on (corpus_eval, then the .deb's, then the RPM's from a
# tarball of the tree) share target/pkg and one revision (build.rs takes BACKSTOP_GIT_REV
# before .git; build-deb.sh sets it, test-rpm.sh passes it to the spec), so that each
# crate is compiled once: the .deb's gen_docs reuses the library corpus_eval was linked
# with, and the RPM's build finds everything up to date.
pkg_env=(CARGO_TARGET_DIR="$PWD/target/pkg")
if rev=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  pkg_env+=(BACKSTOP_GIT_REV="$rev")
fi

step "accuracy on the DEV corpus ($corpus): bash tests/corpus-gate.sh"
env "${pkg_env[@]}" bash tests/corpus-gate.sh "$corpus"

step "the fixtures: their bytes match the sha256 column, their manifest rows are the corpus's"
fixtures=tests/fixtures/corpus
awk -F'\t' -v dir="$fixtures" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
  { print $(c["sha256"]) "  " dir "/" $(c["file"]) }' "$fixtures/manifest.tsv" | sha256sum --check --quiet
if [ -n "${BACKSTOP_CORPUS:-}" ]; then
  if tail -n +2 "$fixtures/manifest.tsv" | grep -vxF -f "$corpus/manifest.tsv"; then
    echo "run-all: the rows above of $fixtures/manifest.tsv are not rows of $corpus/manifest.tsv" >&2
    exit 1
  fi
fi

step "Debian package: build, lintian, install, run through procmail, remove"
bash packaging/test-deb.sh

step "RPM spec: rpmbuild"
bash packaging/test-rpm.sh

step "fuzz the evaluation (cargo-fuzz, ${FUZZ_SECONDS:-30} s)"
if ! wait "$fuzz_build"; then
  tail -n 40 target/fuzz-build.log >&2
  echo "run-all: the fuzz target does not build (bash fuzz/run.sh --build-only; its log's tail is above)" >&2
  exit 1
fi
trap - EXIT
tail -n 1 target/fuzz-build.log
bash fuzz/run.sh "${FUZZ_SECONDS:-30}"

step_done
printf '\nstep times:\n%s' "$step_times"
if [ -n "${BACKSTOP_CORPUS:-}" ]; then
  printf '\nall tests passed in %s s\n' "$(( $(date +%s) - start ))"
else
  printf '\nall tests passed in %s s, WITHOUT the corpus checks (BACKSTOP_NO_CORPUS=1)\n' "$(( $(date +%s) - start ))"
fi
