//! One error type for the core, split into the three cases callers treat differently.

use std::fmt;

/// Result alias used across the core.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong in the core.
#[derive(Debug)]
pub enum Error {
    /// The bytes are not a valid container: the message says what check failed.
    Corrupt(String),
    /// The caller asked for something the core cannot do (unknown codec, bad level).
    Invalid(String),
    /// The operating system refused a read or write.
    Io(std::io::Error),
}

impl Error {
    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        Error::Corrupt(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Corrupt(msg) | Error::Invalid(msg) => f.write_str(msg),
            Error::Io(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Io(err)
    }
}
