#!/bin/bash
# Runs every test of backstop: formatting and lints, the unit and integration tests
# (real procmail, maildrop, Dovecot and Postfix included), a bounded fuzz run, the
# corpus accuracy check, and the Debian and RPM package builds.
#
# Debian 12 with Rust 1.95, as root (it installs the delivery agents, lintian and
# rpm with apt-get, mounts a tmpfs for the disk-full test, and adds a test user).
# Usage: bash tests/run-all.sh        (FUZZ_SECONDS=60 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
start=$(date +%s)

step "install what the tests drive"
bash tests/hosts/install.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test (unit, integration, real hosts, property tests)"
cargo test --locked

step "fuzz the evaluation (cargo-fuzz, ${FUZZ_SECONDS:-60} s)"
bash fuzz/run.sh "${FUZZ_SECONDS:-60}"

corpus=../shared/corpus
if [ -f "$corpus/manifest.tsv" ]; then
  step "accuracy on the DEV corpus ($corpus)"
  cargo build --release --locked --example corpus_eval
  ./target/release/examples/corpus_eval "$corpus" | tee target/corpus_eval.txt
  # The issue's floors: any regression fails the run.
  awk '
    /^ham: clean/ { if ($(NF) != "100.00%") bad = bad "\n  ham false positives: " $0 }
    /^dsn\+inline: recognised/ { v = $(NF); sub("%", "", v); if (v + 0 < 99) bad = bad "\n  " $0 }
    /^backscatter scenario \(original with Received/ { v = $(NF); sub("%", "", v); if (v + 0 < 98) bad = bad "\n  " $0 }
    /^forged-relay variant of those backscatter/ { if ($(NF) != "100.00%") bad = bad "\n  " $0 }
    END { if (bad != "") { print "corpus floors not met:" bad; exit 1 } print "corpus floors met" }
  ' target/corpus_eval.txt
else
  step "no shared corpus at $corpus: its accuracy check needs it (the fixture tests above ran)"
fi

step "Debian package: build, lintian, install, run through procmail, remove"
bash packaging/test-deb.sh

step "RPM spec: rpmbuild"
bash packaging/test-rpm.sh

printf '\nall tests passed in %s s\n' "$(( $(date +%s) - start ))"
