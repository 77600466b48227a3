//! Writes the packages' generated files: the man pages, the shell completions and the
//! Debian copyright file.
//!
//! ```text
//! cargo run --example gen_docs -- OUTDIR [--date YYYY-MM-DD]
//! ```
//!
//! OUTDIR receives `man/backstop.1`, `man/backstop.yaml.5`, `man/backstop-milter.8`,
//! `completions/backstop.bash`, `completions/_backstop`, `completions/backstop.fish`,
//! `copyright` (Debian's format) and `dependency-licenses.txt` (one line per crate in the
//! binary: name, version, SPDX license).
//!
//! The command parts of backstop(1) come from the clap definition (`backstop::cli::Cli`), so a
//! new subcommand appears in the page and the completions without any change here. The prose
//! comes from the templates in `packaging/man/`, where a roff comment line `.\" @NAME@` marks
//! each generated part. backstop.yaml(5) is written by hand; this program fails when a config or
//! rule key that `src/config.rs` or `src/rules/mod.rs` accepts is not in it, so the page cannot fall
//! behind the code. The copyright file names every crate compiled into the binary (from
//! `cargo metadata`), its authors and its license, with the license texts from
//! `packaging/licenses/`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use backstop::cli::Cli;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_docs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut date: Option<String> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--date" => date = Some(args.next().ok_or("--date needs YYYY-MM-DD")?),
            "-h" | "--help" => {
                println!("usage: gen_docs OUTDIR [--date YYYY-MM-DD]");
                return Ok(());
            }
            _ if out.is_none() && !a.starts_with('-') => out = Some(PathBuf::from(a)),
            _ => {
                return Err(format!(
                    "unexpected argument {a:?} (usage: gen_docs OUTDIR [--date YYYY-MM-DD])"
                ));
            }
        }
    }
    let out = out.ok_or("usage: gen_docs OUTDIR [--date YYYY-MM-DD]")?;
    let date = match date {
        Some(d) => d,
        None => doc_date()?,
    };
    let packaging = Path::new(MANIFEST_DIR).join("packaging");
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    for d in [&man_dir, &comp_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }

    let page = backstop_1(&read(&packaging.join("man/backstop.1.in"))?, &date)?;
    write(&man_dir.join("backstop.1"), &page)?;
    let page = fill_title(&read(&packaging.join("man/backstop.yaml.5.in"))?, &date);
    check_config_page(&page)?;
    write(&man_dir.join("backstop.yaml.5"), &page)?;
    let page = fill_title(&read(&packaging.join("man/backstop-milter.8.in"))?, &date);
    write(&man_dir.join("backstop-milter.8"), &page)?;

    for (shell, name) in [
        (Shell::Bash, "backstop.bash"),
        (Shell::Zsh, "_backstop"),
        (Shell::Fish, "backstop.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "backstop", &mut buf);
        write(
            &comp_dir.join(name),
            &String::from_utf8(buf).map_err(|e| e.to_string())?,
        )?;
    }

    let (own, crates) = linked_crates()?;
    write(
        &out.join("copyright"),
        &copyright(&own, &crates, &packaging.join("licenses"))?,
    )?;
    let list: String = std::iter::once(&own)
        .chain(&crates)
        .map(|c| format!("{} {} {}\n", c.name, c.version, c.license))
        .collect();
    write(&out.join("dependency-licenses.txt"), &list)?;
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The page date: SOURCE_DATE_EPOCH (reproducible builds), else today.
fn doc_date() -> Result<String, String> {
    let when = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: u64 = s
                .trim()
                .parse()
                .map_err(|_| format!("SOURCE_DATE_EPOCH {s:?} is not a number"))?;
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
        }
        Err(_) => std::time::SystemTime::now(),
    };
    Ok(backstop::util::dates::rfc3339(when)[..10].to_string())
}

fn fill_title(template: &str, date: &str) -> String {
    template
        .replace("@DATE@", date)
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
}

/// Renders one clap_mangen section and drops its `.SH` heading line, so that the body can be
/// placed under a heading of the template's own.
fn body(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> Result<String, String> {
    let mut buf = Vec::new();
    render(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8(buf).map_err(|e| e.to_string())?;
    // The `Aq` string that every clap_mangen section defines is defined once in the template.
    Ok(text
        .lines()
        .filter(|l| {
            !l.starts_with(".SH ")
                && !l.starts_with(".ie \\n(.g .ds Aq")
                && !l.starts_with(".el .ds Aq")
        })
        .map(|l| format!("{}\n", l.trim_end()))
        .collect())
}

/// backstop(1): the template with NAME, SYNOPSIS, OPTIONS and COMMANDS filled in from clap.
fn backstop_1(template: &str, date: &str) -> Result<String, String> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let top = Man::new(cmd.clone());
    let name = body(|w| top.render_name_section(w))?;
    let options = body(|w| top.render_options_section(w))?;
    let mut synopsis = String::new();
    let mut commands = String::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone());
        let syn = body(|w| man.render_synopsis_section(w))?;
        if !synopsis.is_empty() {
            synopsis.push_str(".br\n");
        }
        synopsis.push_str(&syn);
        let _ = writeln!(commands, ".SS {}", sub.get_name());
        commands.push_str(&syn);
        commands.push_str(".PP\n");
        commands.push_str(&body(|w| man.render_description_section(w))?);
        commands.push_str(&body(|w| man.render_options_section(w))?);
    }
    let mut page = fill_title(template, date);
    for (marker, text) in [
        ("NAME", &name),
        ("SYNOPSIS", &synopsis),
        ("OPTIONS", &options),
        ("COMMANDS", &commands),
    ] {
        let line = format!(".\\\" @{marker}@\n");
        if !page.contains(&line) {
            return Err(format!(
                "packaging/man/backstop.1.in lacks the line {}",
                line.trim_end()
            ));
        }
        page = page.replace(&line, text);
    }
    Ok(page)
}

/// Fails unless every key the config and rule parsers accept is in backstop.yaml(5) in bold.
fn check_config_page(page: &str) -> Result<(), String> {
    use backstop::config::{Action, Actions, ConfigFile, KindActions, OwnSpec};
    use backstop::rules::{Kind, RuleSpec};
    use backstop::store::maildir::Layout;
    use backstop::store::mbox::Lock;
    let mut names = Vec::new();
    names.extend(names_of::<ConfigFile>());
    names.extend(names_of::<OwnSpec>());
    names.extend(names_of::<Actions>());
    names.extend(names_of::<KindActions>());
    names.extend(names_of::<RuleSpec>());
    names.extend(names_of::<Action>());
    names.extend(names_of::<Kind>());
    names.extend(names_of::<Layout>());
    names.extend(names_of::<Lock>());
    {
        use backstop::proofs::spec::{
            AlarmSpec, BatvSpec, DkimKeySpec, DkimSpec, LedgerSpec, MilterBackscatter,
            MilterOnError, MilterSpec, StampSpec,
        };
        names.extend(names_of::<LedgerSpec>());
        names.extend(names_of::<DkimSpec>());
        names.extend(names_of::<DkimKeySpec>());
        names.extend(names_of::<BatvSpec>());
        names.extend(names_of::<AlarmSpec>());
        names.extend(names_of::<StampSpec>());
        names.extend(names_of::<MilterSpec>());
        names.extend(names_of::<MilterBackscatter>());
        names.extend(names_of::<MilterOnError>());
    }
    let escaped = |n: &str| n.replace('-', "\\-");
    let missing: Vec<&str> = names
        .into_iter()
        .filter(|n| {
            let e = escaped(n);
            ![
                format!("\\fB{e}"),
                format!("\\fB{n}"),
                format!("\n.B {e}"),
                format!("\n.BR {e} "),
                format!("\n.B {n}"),
            ]
            .iter()
            .any(|form| page.contains(form.as_str()))
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "packaging/man/backstop.yaml.5.in does not document (in bold) these keys or values the code accepts: {}",
            missing.join(", ")
        ))
    }
}

/// The field names of a struct, or the variant names of an enum, as its derived
/// `Deserialize` announces them.
fn names_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    let mut names = Vec::new();
    let _ = T::deserialize(NameProbe(&mut names));
    names
}

/// A deserializer that records the names a derived `Deserialize` asks for, then stops.
struct NameProbe<'a>(&'a mut Vec<&'static str>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe only")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Stop {
        Stop
    }
}

impl<'de> Deserializer<'de> for NameProbe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.extend_from_slice(fields);
        Err(Stop)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.extend_from_slice(variants);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// Licenses whose full text Debian ships in /usr/share/common-licenses.
const COMMON_LICENSES: &[(&str, &str)] = &[("Apache-2.0", "Apache-2.0"), ("MPL-2.0", "MPL-2.0")];

/// Holders named in a crate's license files but not among its authors.
const EXTRA_HOLDERS: &[(&str, &str)] = &[
    ("encoding_rs", "WHATWG (Apple, Google, Mozilla, Microsoft)"),
    ("unicode-ident", "1991-2023 Unicode, Inc."),
];

/// One crate compiled into the binary.
struct Crate {
    name: String,
    version: String,
    authors: Vec<String>,
    license: String,
    repository: Option<String>,
}

/// The Debian copyright file (machine-readable format 1.0) for everything in the binary.
fn copyright(own: &Crate, crates: &[Crate], license_dir: &Path) -> Result<String, String> {
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut text = String::new();
    text.push_str("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n");
    text.push_str("Upstream-Name: backstop\n");
    text.push_str(
        "Comment: /usr/bin/backstop is statically linked with the Rust crates listed below (as\n \
         pinned by Cargo.lock); a path registry/NAME-VERSION/ stands for the source of that crate\n \
         as published on crates.io. Build-time tools that leave no code in the binary (build\n \
         scripts' dependencies, dev-dependencies) are not listed. The test fixtures of the\n \
         source tree are not in this package.\n",
    );
    let own_license = dep5_expression(&own.license, &mut used)?;
    let _ = write!(
        text,
        "\nFiles: *\nCopyright: The backstop authors\nLicense: {own_license}\n\n\
         Files: rules/default.yaml\n\
         Copyright: The backstop authors\n\
         License: {own_license}\n\
         Comment: installed as /usr/share/backstop/default.yaml and compiled into the binary.\n \
         Its patterns are short phrases that mail systems write in their reports, collected\n \
         from published bounce samples and from the rule sets the file's header names.\n"
    );
    for c in crates {
        let license = dep5_expression(&c.license, &mut used)?;
        let mut holders = if c.authors.is_empty() {
            vec![format!("The {} authors", c.name)]
        } else {
            c.authors.clone()
        };
        holders.extend(
            EXTRA_HOLDERS
                .iter()
                .filter(|(n, _)| *n == c.name)
                .map(|(_, h)| h.to_string()),
        );
        let _ = write!(
            text,
            "\nFiles: registry/{}-{}/*\nCopyright: {}\nLicense: {license}\n",
            c.name,
            c.version,
            holders.join("\n "),
        );
        if let Some(repo) = &c.repository {
            let _ = writeln!(text, "Comment: crate {} {}, {repo}", c.name, c.version);
        } else {
            let _ = writeln!(text, "Comment: crate {} {}", c.name, c.version);
        }
    }
    for name in &used {
        let _ = write!(text, "\nLicense: {name}\n");
        if let Some((_, file)) = COMMON_LICENSES.iter().find(|(n, _)| n == name) {
            let _ = writeln!(
                text,
                " On Debian systems, the complete text of this license can be found in\n \
                 \"/usr/share/common-licenses/{file}\"."
            );
            continue;
        }
        let path = license_dir.join(format!("{}.txt", name.replace(' ', "_")));
        let body = read(&path).map_err(|e| {
            format!(
                "{e}: a crate in the binary uses license {name:?}; add its text as {}",
                path.display()
            )
        })?;
        for line in body.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                text.push_str(" .\n");
            } else {
                let _ = writeln!(text, " {line}");
            }
        }
    }
    Ok(text)
}

/// Turns an SPDX expression into the DEP-5 form, recording each license name it uses.
/// `A OR B` becomes `A or B`, the old `A/B` becomes `A or B`, and `A WITH X-exception`
/// becomes the single name `A with X exception`.
fn dep5_expression(spdx: &str, used: &mut BTreeSet<String>) -> Result<String, String> {
    let spaced = spdx
        .replace('/', " OR ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        match t {
            "OR" | "or" => out.push("or".into()),
            "AND" | "and" => out.push("and".into()),
            "(" | ")" => out.push(t.into()),
            _ => {
                let mut name = t.to_string();
                if tokens
                    .get(i + 1)
                    .is_some_and(|w| w.eq_ignore_ascii_case("with"))
                {
                    let exception = tokens
                        .get(i + 2)
                        .ok_or_else(|| format!("bad license {spdx:?}"))?;
                    name = format!(
                        "{t} with {} exception",
                        exception.trim_end_matches("-exception")
                    );
                    i += 2;
                }
                used.insert(name.clone());
                out.push(name);
            }
        }
        i += 1;
    }
    Ok(out.join(" ").replace("( ", "(").replace(" )", ")"))
}

/// The crate itself and every crate its binary is built from: the normal dependencies for
/// the host platform, transitively (procedural macros included: their output is in the
/// binary), without build-only and dev-only dependencies.
fn linked_crates() -> Result<(Crate, Vec<Crate>), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let vv = std::process::Command::new(&rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run {rustc} -vV: {e}"))?;
    let host = String::from_utf8_lossy(&vv.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or("rustc -vV names no host")?;
    let out = std::process::Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host,
            "--manifest-path",
        ])
        .arg(Path::new(MANIFEST_DIR).join("Cargo.toml"))
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let packages: BTreeMap<&str, &serde_json::Value> = meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata: no resolve graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = meta["resolve"]["root"]
        .as_str()
        .ok_or("cargo metadata: no root package")?;
    let mut seen: BTreeSet<&str> = BTreeSet::from([root]);
    let mut queue = VecDeque::from([root]);
    while let Some(id) = queue.pop_front() {
        let node = nodes
            .get(id)
            .ok_or_else(|| format!("cargo metadata: no node {id}"))?;
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
            if let Some(pkg) = dep["pkg"].as_str().filter(|_| normal)
                && seen.insert(pkg)
            {
                queue.push_back(pkg);
            }
        }
    }
    let to_crate = |id: &str| -> Result<Crate, String> {
        let p = packages
            .get(id)
            .ok_or_else(|| format!("cargo metadata: no package {id}"))?;
        let s = |k: &str| p[k].as_str().map(str::to_string);
        Ok(Crate {
            name: s("name").unwrap_or_default(),
            version: s("version").unwrap_or_default(),
            authors: p["authors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            license: s("license").ok_or_else(|| format!("crate {id} declares no license"))?,
            repository: s("repository"),
        })
    };
    let own = to_crate(root)?;
    let mut crates: Vec<Crate> = seen
        .iter()
        .filter(|id| **id != root)
        .map(|id| to_crate(id))
        .collect::<Result<_, _>>()?;
    crates.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok((own, crates))
}
