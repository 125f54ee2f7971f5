//! PackageError: every refusal says whose fault it is, so the HTTP edge can answer with
//! Lambda's error for it.

/// Why a package could not be taken in, stored or laid out.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The client's package or code location is unusable: Lambda's
    /// `InvalidParameterValueException`, in Lambda's wording.
    #[error("{0}")]
    Invalid(String),
    /// A direct upload above the zipped limit: Lambda's `RequestTooLargeException`.
    #[error("{0}")]
    TooLarge(String),
    /// The node failed: its disk, its code store, or a sealed package that does not open
    /// with its key.
    #[error("{0}")]
    Platform(String),
}

impl PackageError {
    pub(crate) fn platform(context: &str, cause: impl std::fmt::Display) -> PackageError {
        PackageError::Platform(format!("{context}: {cause}"))
    }
}

impl From<std::io::Error> for PackageError {
    fn from(e: std::io::Error) -> Self {
        PackageError::Platform(format!("package storage: {e}"))
    }
}
