//! Every exit status backstop gives, in one place (man backstop, EXIT STATUS).

use std::process::ExitCode;

/// An exit status. `deliver` gives only [`Exit::Success`] and [`Exit::TempFail`]: any other
/// status would make the MTA bounce the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done (for `check --exit-status`: the message is backscatter).
    Success,
    /// 1: `check --exit-status`: the message is not backscatter.
    NotBackscatter,
    /// 1: `scan`: some message could not be read or moved.
    Partial,
    /// 2: a usage or config error, an unreadable input or log, or output that cannot be
    /// written.
    Error,
    /// 75 (EX_TEMPFAIL): the MTA keeps the message and tries again later.
    TempFail,
    /// 130 (128 + SIGINT): `scan` stopped by SIGINT or SIGTERM.
    Interrupted,
}

impl Exit {
    /// The number the process exits with.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::NotBackscatter | Exit::Partial => 1,
            Exit::Error => 2,
            Exit::TempFail => 75,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}
