//! The error types that cross modules: [`ConfigError`] points at a file, line and column.

use std::fmt;

use serde_saphyr::Spanned;

/// A config or rules error, with the file, line and column it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
    /// The file may have been written by someone else: nothing in it may be used, not even
    /// leniently (the inbox and log keys a broken file still gives).
    pub untrusted: bool,
    /// The other errors found in the same run, in order (each printed on its own line).
    pub more: Vec<ConfigError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // About the file as a whole: no position to give.
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        for e in &self.more {
            write!(f, "\n{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn at<T>(file: &str, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
            message: message.into(),
            untrusted: false,
            more: Vec::new(),
        }
    }

    /// All of `errors` as one (the first, with the others in `more`); None for none.
    pub fn all(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        if errors.is_empty() {
            return None;
        }
        let mut first = errors.remove(0);
        first.more.extend(errors);
        Some(first)
    }

    /// An error about the file as a whole (it cannot be read, say): line and column 0.
    pub fn whole(file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: 0,
            column: 0,
            message: message.into(),
            untrusted: false,
            more: Vec::new(),
        }
    }

    /// Turns a YAML error into ours, keeping its line and column, and saying in words what was
    /// expected (see `plain_words`); `text` is the file's text.
    pub fn from_yaml(file: &str, err: &serde_saphyr::Error, text: &str) -> ConfigError {
        let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
        let said = err.without_snippet().to_string();
        // serde-saphyr prefixes "line L column C: "; we say it our way.
        let message = match said.split_once(": ") {
            Some((head, rest)) if head.starts_with("line ") => rest.to_string(),
            _ => said,
        };
        // serde-saphyr may also end with " at line L, column C": the prefix says it already.
        let message = match message.rfind(" at line ") {
            Some(i) if message[i..].contains(", column ") => message[..i].to_string(),
            _ => message,
        };
        let key = key_before(text, line, column);
        ConfigError {
            file: file.to_string(),
            line,
            column,
            message: plain_words(&message, key.as_deref()),
            untrusted: false,
            more: Vec::new(),
        }
    }
}

/// The key whose value starts before `line`:`column` (1-based) in `text`: the last `name:`
/// on that line before the column, for `own: {domains: x}` as for `threshold: x`.
fn key_before(text: &str, line: u64, column: u64) -> Option<String> {
    let l = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let before: String = l
        .chars()
        .take(usize::try_from(column).ok()?.saturating_sub(1))
        .collect();
    let colon = before.trim_end().strip_suffix(':')?;
    let start = colon
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let key = &colon[start..];
    (!key.is_empty()).then(|| key.to_string())
}

/// An example value for a key that takes a list.
fn list_example(key: &str) -> &'static str {
    match key {
        "hosts" => "[mail.example.org]",
        "networks" => "[192.0.2.0/24]",
        "match" => "['^Undelivered']",
        "mbox_locks" => "[fcntl, dotlock]",
        "rules" => "[{id: my-rule, field: subject, match: [x], score: 6}]",
        _ => "[example.org]",
    }
}

/// The parser's message in the user's words: what was expected, with an example, and "did you
/// mean" for a near miss.
fn plain_words(message: &str, key: Option<&str>) -> String {
    let k = key.unwrap_or("the key");
    if message.starts_with("expected sequence") {
        return match key {
            Some(k) => format!("{k} takes a list, e.g. {k}: {}", list_example(k)),
            None => "expected a list, e.g. [example.org]".to_string(),
        };
    }
    if message.starts_with("expected mapping") {
        return format!(
            "{k} takes keys and values, e.g. {k}: {{name: value}} or one per line below it"
        );
    }
    if message.starts_with("invalid i") || message.starts_with("invalid u") {
        let example = match key {
            Some("threshold") => "5",
            Some("cpu_budget_ms") => "2000",
            Some("max_size") => "32M",
            _ => "10",
        };
        let what = if message.starts_with("invalid u") {
            "a whole number, 0 or more"
        } else {
            "a whole number"
        };
        return format!("{k} takes {what}, e.g. {k}: {example}");
    }
    if message.starts_with("invalid boolean") {
        return format!("{k} takes true or false (yes, no, on and off are not accepted)");
    }
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let name = rest.split(',').next().unwrap_or(rest).trim();
        return format!("{name} is given twice: give each key once");
    }
    for (what, label) in [("unknown variant", "value"), ("unknown field", "key")] {
        if let Some(rest) = message.strip_prefix(what) {
            let (given, expected) = match rest.split_once(", expected ") {
                Some((g, e)) => (g.trim().trim_matches('`'), e),
                None => (rest.trim().trim_matches('`'), ""),
            };
            let choices: Vec<&str> = expected
                .trim_start_matches("one of ")
                .trim_start_matches("a ")
                .split(", ")
                .map(|c| c.trim().trim_matches('`'))
                .filter(|c| !c.is_empty())
                .collect();
            return unknown_choice(label, given, &choices);
        }
    }
    message.to_string()
}

/// `unknown value "foldr": did you mean folder? (expected one of inbox, folder, discard)`:
/// `label` is "key" or "value".
pub fn unknown_choice(label: &str, given: &str, choices: &[&str]) -> String {
    let mut m = format!("unknown {label} {given:?}");
    if let Some(near) = nearest(given, choices) {
        m.push_str(&format!(": did you mean {near}?"));
    }
    if !choices.is_empty() {
        m.push_str(&format!(" (expected one of {})", choices.join(", ")));
    }
    m
}

/// The choice nearest to `given` when it is a near miss: at most a third of its letters off.
fn nearest<'a>(given: &str, choices: &[&'a str]) -> Option<&'a str> {
    let given = given.to_ascii_lowercase().replace('_', "-");
    choices
        .iter()
        .map(|c| {
            (
                distance(&given, &c.to_ascii_lowercase().replace('_', "-")),
                *c,
            )
        })
        .filter(|(d, c)| *d > 0 && *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
        .or_else(|| {
            // Only the spelling of the separator differs (unverified_bounce).
            choices
                .iter()
                .find(|c| c.to_ascii_lowercase().replace('_', "-") == given)
                .copied()
        })
}

/// The edit distance with a swap of two neighbours as one edit (`dns` for `dsn`), for short
/// words (keys and values) only.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Why a command could not judge the message it was given.
#[derive(Debug)]
pub enum InputError {
    /// The config or its rules did not load.
    Config(ConfigError),
    /// The message could not be read: `what` is the file, or "standard input".
    Read { what: String, error: std::io::Error },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Config(e) => e.fmt(f),
            InputError::Read { what, error } => {
                write!(f, "cannot read the message {what}: {error}")
            }
        }
    }
}

impl std::error::Error for InputError {}

impl From<ConfigError> for InputError {
    fn from(e: ConfigError) -> InputError {
        InputError::Config(e)
    }
}
