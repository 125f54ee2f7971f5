//! What can go wrong when the catalog is read or changed, and which class of failure each
//! error is, so that the HTTP edge answers with Lambda's status without knowing every case.

use crate::db::StoreError;

/// Why a catalog operation failed. Callers that need the detail (the alias names behind
/// `VersionInUse`, the current digest behind `CodeShaMismatch`) match the variant; callers
/// that only need the answer's class ask [`CatalogError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The function does not exist, including when a concurrent delete removed it between
    /// the caller's lookup and its write.
    #[error("function not found")]
    FunctionNotFound,
    #[error("version not found")]
    VersionNotFound,
    #[error("alias not found")]
    AliasNotFound,
    #[error("function already exists")]
    FunctionExists,
    #[error("alias already exists")]
    AliasExists,
    #[error("url config already exists")]
    UrlExists,
    #[error("url config not found")]
    UrlNotFound,
    #[error("revision id does not match")]
    RevisionMismatch,
    #[error("code sha256 does not match: current {current}")]
    CodeShaMismatch { current: String },
    /// A version is still referenced by these aliases.
    #[error("version is referenced by aliases")]
    VersionInUse(Vec<String>),
    #[error("statement already exists")]
    StatementExists,
    #[error("statement not found")]
    StatementNotFound,
    /// A per-qualifier setting (provisioned concurrency, event invoke config) is absent.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The class of a [`CatalogError`]: who is to blame and how Lambda answers it. Every
/// class but `Platform` is the client's doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogErrorKind {
    /// What the request names does not exist (Lambda's 404 `ResourceNotFoundException`).
    NotFound,
    /// What the request would create exists already, or what it would delete is still in
    /// use (409 `ResourceConflictException`).
    Conflict,
    /// A condition the client attached no longer holds: a `RevisionId` (412
    /// `PreconditionFailedException`) or a `CodeSha256`, which Lambda answers with 400
    /// `InvalidParameterValueException`; the variant tells the two apart.
    Precondition,
    /// The database failed or holds data it cannot read back: the platform's fault (500).
    Platform,
}

impl CatalogError {
    /// The class of this error, for the HTTP status and the blame.
    pub fn kind(&self) -> CatalogErrorKind {
        use CatalogError as E;
        match self {
            E::FunctionNotFound
            | E::VersionNotFound
            | E::AliasNotFound
            | E::UrlNotFound
            | E::StatementNotFound
            | E::NotFound => CatalogErrorKind::NotFound,
            E::FunctionExists
            | E::AliasExists
            | E::UrlExists
            | E::StatementExists
            | E::VersionInUse(_) => CatalogErrorKind::Conflict,
            E::RevisionMismatch | E::CodeShaMismatch { .. } => CatalogErrorKind::Precondition,
            E::Store(_) => CatalogErrorKind::Platform,
        }
    }
}

impl From<sqlx::Error> for CatalogError {
    fn from(e: sqlx::Error) -> Self {
        CatalogError::Store(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_class_lambda_answers_with() {
        use CatalogErrorKind::*;
        let table = [
            (CatalogError::FunctionNotFound, NotFound),
            (CatalogError::VersionNotFound, NotFound),
            (CatalogError::AliasNotFound, NotFound),
            (CatalogError::UrlNotFound, NotFound),
            (CatalogError::StatementNotFound, NotFound),
            (CatalogError::NotFound, NotFound),
            (CatalogError::FunctionExists, Conflict),
            (CatalogError::AliasExists, Conflict),
            (CatalogError::UrlExists, Conflict),
            (CatalogError::StatementExists, Conflict),
            (CatalogError::VersionInUse(vec!["live".into()]), Conflict),
            (CatalogError::RevisionMismatch, Precondition),
            (
                CatalogError::CodeShaMismatch {
                    current: "ab".into(),
                },
                Precondition,
            ),
            (
                CatalogError::Store(StoreError::Unavailable("down".into())),
                Platform,
            ),
            (
                CatalogError::Store(StoreError::Corrupt("tags".into())),
                Platform,
            ),
            (CatalogError::from(sqlx::Error::PoolTimedOut), Platform),
        ];
        for (error, kind) in table {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }
}
