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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // About the file as a whole: no position to give.
            return write!(f, "{}: {}", self.file, self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
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
        }
    }

    /// An error about the file as a whole (it cannot be read, say): line and column 0.
    pub fn whole(file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: 0,
            column: 0,
            message: message.into(),
            untrusted: false,
        }
    }

    /// Turns a YAML error into ours, keeping its line and column.
    pub fn from_yaml(file: &str, err: &serde_saphyr::Error) -> ConfigError {
        let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
        let text = err.without_snippet().to_string();
        // serde-saphyr prefixes "line L column C: "; we say it our way.
        let message = match text.split_once(": ") {
            Some((head, rest)) if head.starts_with("line ") => rest.to_string(),
            _ => text,
        };
        // serde-saphyr may also end with " at line L, column C": the prefix says it already.
        let message = match message.rfind(" at line ") {
            Some(i) if message[i..].contains(", column ") => message[..i].to_string(),
            _ => message,
        };
        ConfigError {
            file: file.to_string(),
            line,
            column,
            message,
            untrusted: false,
        }
    }
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
