//! Records the git revision for `backstop --version`, and turns the built-in rules
//! (rules/default.yaml) into static data, checked here, so that no process parses them again:
//! reading the YAML and parsing the patterns cost more than all the rest of a clean delivery.
//! `rules::tests::static_defaults_equal_the_yaml` proves the data equal to what reading
//! rules/default.yaml at run time gives.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[allow(dead_code)]
#[path = "src/rules/pattern/mod.rs"]
mod pattern;

fn main() {
    // The revision: BACKSTOP_GIT_REV when set (the packages set it, and it is all a tarball
    // has), else git's. Taken from the variable, the revision does not depend on .git: a
    // build from the tree and one from its tarball (the RPM's) then see the same inputs,
    // and cargo reuses the first for the second instead of compiling backstop again.
    println!("cargo:rerun-if-env-changed=BACKSTOP_GIT_REV");
    let rev = std::env::var("BACKSTOP_GIT_REV")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            println!("cargo:rerun-if-changed=.git/HEAD");
            println!("cargo:rerun-if-changed=.git/refs/heads");
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown revision".to_string());
    println!("cargo:rustc-env=BACKSTOP_GIT_REV={rev}");
    println!("cargo:rerun-if-changed=rules/default.yaml");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"),
    );
    // The files of src/rules/pattern, each (the directory itself would also be judged by its
    // own mtime, which a tarball unpacked from a list of files, as test-rpm.sh's, renews).
    let mut pattern_files: Vec<_> = std::fs::read_dir(manifest.join("src/rules/pattern"))
        .expect("src/rules/pattern")
        .map(|e| e.expect("src/rules/pattern entry").file_name())
        .collect();
    pattern_files.sort();
    for f in pattern_files {
        println!("cargo:rerun-if-changed=src/rules/pattern/{}", f.display());
    }
    let yaml =
        std::fs::read_to_string(manifest.join("rules/default.yaml")).expect("rules/default.yaml");
    let code = default_rules(&yaml);
    std::fs::write(out.join("default_rules.rs"), code).expect("write default_rules.rs");
}

/// A rule as rules/default.yaml writes it (the fields of `rules::RuleSpec`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    id: Spanned<String>,
    #[serde(default)]
    describe: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default, rename = "match")]
    patterns: Vec<String>,
    #[serde(default)]
    exists: Option<bool>,
    #[serde(default)]
    empty: Option<bool>,
    #[serde(default)]
    score: Option<i32>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    disabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    rules: Vec<Spec>,
}

const FIELDS: &[&str] = &[
    "envelope-sender",
    "subject",
    "from",
    "content-type",
    "report-type",
    "part-type",
    "body",
];

/// The Rust source of a `&[StaticRule]` for the default rules.
fn default_rules(text: &str) -> String {
    let options = serde_saphyr::options! { strict_booleans: true };
    let file: File = serde_saphyr::from_str_with_options(text, options)
        .unwrap_or_else(|e| panic!("rules/default.yaml: {e}"));
    let mut out = String::from("&[\n");
    for spec in file.rules.iter().filter(|s| !s.disabled) {
        let id = spec.id.value.trim();
        let at = format!(
            "rules/default.yaml:{}:{}",
            spec.id.referenced.line(),
            spec.id.referenced.column()
        );
        assert!(
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{at}: bad rule id {id:?}"
        );
        let field = spec
            .field
            .as_deref()
            .unwrap_or_else(|| panic!("{at}: rule {id} needs a field"));
        let lower = field.trim().to_ascii_lowercase();
        assert!(
            FIELDS.contains(&lower.as_str())
                || lower
                    .strip_prefix("header:")
                    .map(str::trim)
                    .is_some_and(|h| {
                        !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    }),
            "{at}: unknown field {field:?}"
        );
        let score = spec
            .score
            .unwrap_or_else(|| panic!("{at}: rule {id} needs a score"));
        let ways = usize::from(!spec.patterns.is_empty())
            + usize::from(spec.exists.is_some())
            + usize::from(spec.empty == Some(true));
        assert_eq!(
            ways, 1,
            "{at}: rule {id} needs exactly one of match, exists or empty: true"
        );
        let kind = match spec.kind.as_deref() {
            None => "None".to_string(),
            Some(k) => {
                let variant = match k {
                    "dsn" => "Dsn",
                    "ndr" => "Ndr",
                    "auto-reply" => "AutoReply",
                    "challenge-response" => "ChallengeResponse",
                    "virus-notice" => "VirusNotice",
                    "feedback-report" => "FeedbackReport",
                    _ => panic!("{at}: unknown kind {k:?}"),
                };
                format!("Some(Kind::{variant})")
            }
        };
        let matcher = if let Some(want) = spec.exists {
            format!("StaticMatcher::Exists({want})")
        } else if spec.empty == Some(true) {
            "StaticMatcher::Empty".to_string()
        } else {
            let pieces: Vec<String> = spec.patterns.iter().map(|p| format!("(?:{p})")).collect();
            let fast: Option<Vec<pattern::Pattern>> = spec
                .patterns
                .iter()
                .map(|p| pattern::Pattern::parse(p, !spec.case_sensitive))
                .collect();
            let fast = match fast {
                Some(list) if list.iter().map(|p| p.bound).sum::<usize>() <= 8 << 20 => {
                    let mut s = String::from("Some(&[");
                    for p in &list {
                        s.push_str(&pattern_code(p));
                        s.push_str(", ");
                    }
                    s.push_str("])");
                    s
                }
                _ => "None".to_string(),
            };
            let list: Vec<String> = pieces
                .iter()
                .map(|p| format!("Cow::Borrowed({p:?})"))
                .collect();
            format!(
                "StaticMatcher::Regex {{ source: {:?}, pieces: &[{}], case_sensitive: {}, fast: {fast} }}",
                pieces.join("|"),
                list.join(", "),
                spec.case_sensitive
            )
        };
        let _ = writeln!(
            out,
            "    StaticRule {{ id: {id:?}, describe: {:?}, field: {field:?}, score: {score}, kind: {kind}, origin: {at:?}, matcher: {matcher} }},",
            spec.describe.as_deref().unwrap_or(""),
        );
    }
    out.push(']');
    out
}

/// A parsed pattern as a Rust constant expression.
fn pattern_code(p: &pattern::Pattern) -> String {
    use pattern::{Inst, Look, Needle};
    let mut s = String::from("Pattern { prog: Cow::Borrowed(&[");
    for inst in p.prog.iter() {
        let _ = match inst {
            Inst::Set(bits) => write!(s, "Inst::Set({bits:#x}), "),
            Inst::Look(l) => {
                let l = match l {
                    Look::LineStart => "LineStart",
                    Look::LineEnd => "LineEnd",
                    Look::WordBoundary => "WordBoundary",
                    Look::NotWordBoundary => "NotWordBoundary",
                };
                write!(s, "Inst::Look(Look::{l}), ")
            }
            Inst::Split(a, b) => write!(s, "Inst::Split({a}, {b}), "),
            Inst::Jmp(a) => write!(s, "Inst::Jmp({a}), "),
            Inst::Match => write!(s, "Inst::Match, "),
        };
    }
    s.push_str("]), needles: ");
    match &p.needles {
        None => s.push_str("None"),
        Some(ns) => {
            s.push_str("Some(Cow::Borrowed(&[");
            for n in ns.iter() {
                let _ = match n {
                    Needle::Text(t) => write!(s, "Needle::Text(Cow::Borrowed({:?})), ", t.as_ref()),
                    Needle::NonAscii => write!(s, "Needle::NonAscii, "),
                };
            }
            s.push_str("]))");
        }
    }
    let _ = write!(s, ", bound: {}, lazy: None }}", p.bound);
    s
}
