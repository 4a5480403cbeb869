//! One error type for the whole crate. The C ABI maps each variant to a status code.

use std::fmt;

/// Everything that can go wrong in libfewlabels.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// No GPU adapter (hardware or software) could be found or opened.
    NoAdapter(String),
    /// The device reported a validation, out-of-memory or internal error, or was lost.
    Device(String),
    /// A caller passed a value outside what the call accepts.
    InvalidArgument(String),
    /// Tensor shapes or dtypes do not fit the operation.
    Shape(String),
    /// A file could not be read or written.
    Io(String),
    /// A file was read but its contents are not what was expected.
    Format(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no GPU adapter: {m}"),
            Error::Device(m) => write!(f, "device error: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::Io(m) => write!(f, "i/o error: {m}"),
            Error::Format(m) => write!(f, "format error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Result with the crate's error type.
pub type Result<T> = std::result::Result<T, Error>;

/// Return `Err(Error::Shape(..))` unless `cond` holds.
#[macro_export]
macro_rules! ensure_shape {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::Error::Shape(format!($($arg)*)));
        }
    };
}
