#!/usr/bin/env bash
# Runs the cargo-fuzz target `evaluate` for $1 seconds (default 60), seeded with the fixture
# corpus. Installs cargo-fuzz first when it is missing. Works on stable Rust: no sanitizer
# (-s none), optimized (-O, which also leaves mail-parser's debug assertions off).
# A panic, a crash (stack overflow, abort) or one input taking over 10 s (Dovecot kills an
# LDA after 10 s) is a finding. Exit status: 0 when nothing was found; non-zero, with the
# input under fuzz/artifacts/evaluate/, when something was.
# `fuzz/run.sh --build-only` only builds the target, as the run would (tests/run-all.sh builds
# it while other steps run, then runs it).
set -euo pipefail
seconds="${1:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version '^0.13' --locked
fi

# The build options: `cargo fuzz run` with the same ones finds a --build-only build up to date.
build=(-O -s none evaluate)
if [ "$seconds" = --build-only ]; then
    exec cargo fuzz build "${build[@]}"
fi

# Seed corpus: the fixture messages (copied, so that the fuzzer's additions stay out of tests/).
corpus="$here/corpus/evaluate"
mkdir -p "$corpus"
fixtures="$here/../tests/fixtures/corpus"
find "$fixtures" -name '*.eml' | while read -r f; do
    rel="${f#"$fixtures"/}"
    cp -f "$f" "$corpus/${rel//\//_}"
done

cargo fuzz run "${build[@]}" "$corpus" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
