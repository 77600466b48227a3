#!/bin/bash
# The release build of the backstop binary that the packages ship and benches/process/peers.sh
# measures: $CARGO_TARGET_DIR/release/backstop (target/release/backstop by default).
#
#   bash packaging/build-release.sh [CARGO OPTIONS...]     e.g. --offline
#
# It is statically linked with glibc as a static PIE, with packed relative relocations:
# backstop is a new process for every message delivered, and loading libc, libm and
# libgcc_s and resolving their symbols was a fifth of a clean delivery's CPU time.
# Measured with `benches/process/peers.sh` (benches/process/RESULTS.md): clean 10 KB delivery 1.82 ms CPU
# dynamic, 1.45 ms static PIE (procmail 1.52 ms in the same run). The relocations
# packed (DT_RELR) keep 0.5 MB of the binary out of memory at no CPU cost. It stays a
# PIE, so address-space randomisation still applies.
#
# `cargo rustc` applies the flags to the binary alone: a plain RUSTFLAGS would also
# reach the proc-macro crates, which cannot be linked statically. (So would target
# rustflags in .cargo/config.toml, unless --target is given: the README's `cargo install
# --target x86_64-unknown-linux-gnu --config ...` line gets the same binary that way.)
# Needs glibc's static library (Debian's libc6-dev, Fedora's glibc-static) and binutils
# 2.38 or later.
#
# glibc linked in means a glibc security update reaches backstop only by rebuilding
# it: the .deb records the versions in Built-Using for that reason. Name-service
# lookups go through /etc/nsswitch.conf as in any glibc program; backstop makes one
# only when $HOME is unset (to find the home directory), and a static binary can use
# only the `files` source for it then.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo rustc --release --locked --bin backstop "$@" -- \
    -C target-feature=+crt-static \
    -C link-arg=-Wl,-z,pack-relative-relocs
