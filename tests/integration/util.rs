//! Helpers shared by the integration tests: the binary, fixtures, and running it.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The backstop binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_backstop"))
}

/// The project's top folder.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// Reads a fixture's bytes.
pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// A command for the binary with a clean environment: no SENDER/RECIPIENT, HOME set to `home`,
/// and no site config (whatever this machine has in /etc/backstop).
pub fn backstop(home: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .env("BACKSTOP_SITE_CONFIG", "");
    cmd
}

/// Runs `cmd` with `input` on stdin and returns its output.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backstop");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for backstop");
    let _ = writer.join();
    out
}

/// Files directly inside `dir` (empty when it does not exist), sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A fresh temporary folder under `std::env::temp_dir()`, removed when dropped.
pub fn temp_home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("backstop-test-")
        .tempdir_in(std::env::temp_dir())
        .expect("temporary folder")
}

/// The input as a mailbox must store it: without a leading mbox `From ` line (ended by LF, CRLF
/// or a lone CR). Written from the spec, independently of the code under test.
pub fn without_from_line(input: &[u8]) -> &[u8] {
    if !input.starts_with(b"From ") {
        return input;
    }
    match input.iter().position(|&b| b == b'\n' || b == b'\r') {
        Some(i) if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') => &input[i + 2..],
        Some(i) => &input[i + 1..],
        None => &[],
    }
}

/// The line end a header added to `input` must use: CRLF when the message's first line (after
/// any From_ line) ends with CRLF, else LF.
pub fn line_end_of(input: &[u8]) -> &'static [u8] {
    let rest = without_from_line(input);
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && rest[i - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    }
}

/// Splits `n` header lines (each ended by LF) off the front of `bytes`.
pub fn split_lines(bytes: &[u8], n: usize) -> (Vec<&[u8]>, &[u8]) {
    let mut lines = Vec::new();
    let mut rest = bytes;
    for _ in 0..n {
        let Some(i) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        lines.push(&rest[..=i]);
        rest = &rest[i + 1..];
    }
    (lines, rest)
}

/// Asserts that `out` says nothing an MTA could mistake for a status: nothing on stdout, and no
/// stderr line starting with a digit (an enhanced status code such as 5.7.1 makes Postfix bounce).
pub fn assert_quiet_for_mta(out: &Output, what: &str) {
    assert!(
        out.stdout.is_empty(),
        "{what}: stdout must be empty, got {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines() {
        assert!(
            !line.trim_start().starts_with(|c: char| c.is_ascii_digit()),
            "{what}: a stderr line starts with a digit: {line:?}"
        );
    }
}

/// A small PRNG (xorshift64*) for tests that need random choices. The seed comes from
/// BACKSTOP_TEST_SEED when set, else from the clock, and is printed so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var("BACKSTOP_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{what}: BACKSTOP_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
