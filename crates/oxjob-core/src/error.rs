//! One error type for the core, split into the four cases callers treat differently.

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
    /// Memory for data of a legitimate size could not be had (the binding raises
    /// `MemoryError`). Sizes that the input cannot justify are [`Error::Corrupt`].
    Memory(String),
}

impl Error {
    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        Error::Corrupt(msg.into())
    }

    /// `bytes` could not be allocated for `purpose` (for example "section 1").
    pub fn no_memory(bytes: u64, purpose: &str) -> Self {
        Error::Memory(format!("cannot allocate {bytes} bytes for {purpose}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Corrupt(msg) | Error::Invalid(msg) | Error::Memory(msg) => f.write_str(msg),
            Error::Io(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        if err.raw_os_error() == Some(libc::ENOMEM) {
            return Error::Memory(err.to_string());
        }
        Error::Io(err)
    }
}
