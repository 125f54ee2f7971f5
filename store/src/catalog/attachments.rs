//! What hangs off a function: records kept one per qualifier or alias name (aliases, URL
//! configs, provisioned concurrency, event invoke configs), resource-policy statements, and
//! the function's own settings (reserved concurrency, tags).
//!
//! The keyed records share one shape, [`Attachment`], so putting and deleting any of them
//! is written once; the public methods only say which record and which errors Lambda
//! gives for it. The two settings Lambda replaces whole, provisioned concurrency and
//! event invoke configs, share their public methods too ([`QualifierSetting`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::entries::*;
use super::write::{Row, Write};
use super::{Catalog, CatalogError};

/// Where an entry keeps the records of one kind, by key.
type Shelf<R> = fn(&mut FunctionEntry) -> &mut BTreeMap<String, R>;

/// A record attached to a function under a key (a qualifier or an alias name), at most
/// one per key. Public only to bound [`QualifierSetting`]; its module is private, so no
/// other crate can implement it.
pub trait Attachment: Clone {
    /// The entry's records of this kind, by key.
    const SHELF: Shelf<Self>;
    /// The row that stores a record.
    const ROW: fn(&Self) -> Row;
    fn key(&self) -> &str;
    /// The revision a caller may require of the record it replaces, if it has one.
    fn revision(&self) -> Option<&str> {
        None
    }
}

impl Attachment for Arc<AliasRecord> {
    const SHELF: Shelf<Self> = |e| &mut e.aliases;
    const ROW: fn(&Self) -> Row = |a| Row::Alias(a.clone());
    fn key(&self) -> &str {
        &self.name
    }
    fn revision(&self) -> Option<&str> {
        Some(&self.revision_id)
    }
}

impl Attachment for Arc<UrlConfigRecord> {
    const SHELF: Shelf<Self> = |e| &mut e.urls;
    const ROW: fn(&Self) -> Row = |u| Row::Url(u.clone());
    fn key(&self) -> &str {
        &self.qualifier
    }
}

impl Attachment for ProvisionedRecord {
    const SHELF: Shelf<Self> = |e| &mut e.provisioned;
    const ROW: fn(&Self) -> Row = |p| Row::Provisioned(p.clone());
    fn key(&self) -> &str {
        &self.qualifier
    }
}

impl Attachment for EventInvokeRecord {
    const SHELF: Shelf<Self> = |e| &mut e.event_configs;
    const ROW: fn(&Self) -> Row = |c| Row::EventConfig(c.clone());
    fn key(&self) -> &str {
        &self.qualifier
    }
}

/// A record kept once per qualifier and replaced whole by its Put operation: provisioned
/// concurrency (`PutProvisionedConcurrencyConfig`) and asynchronous-invocation settings
/// (`PutFunctionEventInvokeConfig`). A missing one is [`CatalogError::NotFound`].
pub trait QualifierSetting: Attachment {}

impl QualifierSetting for ProvisionedRecord {}
impl QualifierSetting for EventInvokeRecord {}

/// What a put requires to find under the record's key.
enum Expect<'a> {
    /// Create*: nothing; else `exists`.
    Absent { exists: CatalogError },
    /// Update*: a record, else `missing`, whose revision is `revision` when one is given.
    Present {
        missing: CatalogError,
        revision: Option<&'a str>,
    },
    /// Put*: anything; the record replaces what is there.
    Anything,
}

impl<'a> Expect<'a> {
    /// Create* when `create`, else Update*.
    fn create_or_update(
        create: bool,
        exists: CatalogError,
        missing: CatalogError,
        revision: Option<&'a str>,
    ) -> Self {
        if create {
            Expect::Absent { exists }
        } else {
            Expect::Present { missing, revision }
        }
    }

    fn check<R: Attachment>(self, found: Option<&R>) -> Result<(), CatalogError> {
        match (self, found) {
            (Expect::Absent { exists }, Some(_)) => Err(exists),
            (Expect::Present { missing, .. }, None) => Err(missing),
            (Expect::Present { revision, .. }, Some(r))
                if revision.is_some_and(|wanted| Some(wanted) != r.revision()) =>
            {
                Err(CatalogError::RevisionMismatch)
            }
            _ => Ok(()),
        }
    }
}

/// Removes every record kept under `qualifier` (its URL config and settings), for a
/// deleted alias or version; returns the rows to delete.
pub(super) fn detach_qualifier(e: &mut FunctionEntry, qualifier: &str) -> Vec<Write> {
    fn take<R: Attachment>(e: &mut FunctionEntry, key: &str) -> Option<Write> {
        (R::SHELF)(e)
            .remove(key)
            .map(|r| Write::Delete((R::ROW)(&r)))
    }
    [
        take::<Arc<UrlConfigRecord>>(e, qualifier),
        take::<ProvisionedRecord>(e, qualifier),
        take::<EventInvokeRecord>(e, qualifier),
    ]
    .into_iter()
    .flatten()
    .collect()
}

impl Catalog {
    /// Puts `record` under its key once `expect` holds; returns the record.
    async fn attach<R: Attachment>(
        &self,
        account_id: &str,
        name: &str,
        record: R,
        expect: Expect<'_>,
    ) -> Result<R, CatalogError> {
        self.update(account_id, name, |e| {
            let shelf = (R::SHELF)(e);
            expect.check(shelf.get(record.key()))?;
            shelf.insert(record.key().to_owned(), record.clone());
            let write = Write::Put((R::ROW)(&record));
            Ok((record, vec![write]))
        })
        .await
        .map(|(r, _)| r)
    }

    /// Deletes the record of kind `R` under `key`, or fails with `missing`.
    async fn detach<R: Attachment>(
        &self,
        account_id: &str,
        name: &str,
        key: &str,
        missing: CatalogError,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            let record = (R::SHELF)(e).remove(key).ok_or(missing)?;
            Ok(((), vec![Write::Delete((R::ROW)(&record))]))
        })
        .await
        .map(drop)
    }

    /// Changes the function's own settings, which live in its row.
    async fn edit(
        &self,
        account_id: &str,
        name: &str,
        edit: impl FnOnce(&mut FunctionEntry),
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| Ok((edit(e), vec![])))
            .await
            .map(drop)
    }

    /// Creates (`create`) or replaces an alias, checking its revision on update.
    pub async fn put_alias(
        &self,
        account_id: &str,
        name: &str,
        alias: AliasRecord,
        create: bool,
        expected_revision: Option<&str>,
    ) -> Result<Arc<AliasRecord>, CatalogError> {
        use CatalogError::{AliasExists, AliasNotFound};
        let expect =
            Expect::create_or_update(create, AliasExists, AliasNotFound, expected_revision);
        self.attach(account_id, name, Arc::new(alias), expect).await
    }

    /// Deletes an alias with its URL config and settings; deleting an alias that does not
    /// exist changes nothing, as in Lambda.
    pub async fn delete_alias(
        &self,
        account_id: &str,
        name: &str,
        alias: &str,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        self.update(account_id, name, |e| {
            let Some(record) = e.aliases.remove(alias) else {
                return Ok(((), vec![]));
            };
            let mut writes = vec![Write::Delete(Row::Alias(record))];
            writes.extend(detach_qualifier(e, alias));
            Ok(((), writes))
        })
        .await
        .map(|(_, e)| e)
    }

    /// Creates (`create`) or updates the URL config of a qualifier.
    pub async fn put_url(
        &self,
        account_id: &str,
        name: &str,
        url: UrlConfigRecord,
        create: bool,
    ) -> Result<Arc<UrlConfigRecord>, CatalogError> {
        use CatalogError::{UrlExists, UrlNotFound};
        let expect = Expect::create_or_update(create, UrlExists, UrlNotFound, None);
        self.attach(account_id, name, Arc::new(url), expect).await
    }

    /// Deletes the URL config of a qualifier; the URL stops answering at once.
    pub async fn delete_url(
        &self,
        account_id: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<(), CatalogError> {
        let missing = CatalogError::UrlNotFound;
        self.detach::<Arc<UrlConfigRecord>>(account_id, name, qualifier, missing)
            .await
    }

    /// Puts a qualifier's setting, replacing the one there.
    pub async fn put_setting<S: QualifierSetting>(
        &self,
        account_id: &str,
        name: &str,
        setting: S,
    ) -> Result<(), CatalogError> {
        self.attach(account_id, name, setting, Expect::Anything)
            .await
            .map(drop)
    }

    /// Deletes a qualifier's setting of kind `S`, or fails with `NotFound`.
    pub async fn delete_setting<S: QualifierSetting>(
        &self,
        account_id: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<(), CatalogError> {
        self.detach::<S>(account_id, name, qualifier, CatalogError::NotFound)
            .await
    }

    /// Adds a resource-policy statement; its id is unique within its qualifier.
    pub async fn add_statement(
        &self,
        account_id: &str,
        name: &str,
        statement: PolicyStatement,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            let same = |s: &PolicyStatement| {
                s.qualifier == statement.qualifier && s.statement_id == statement.statement_id
            };
            if e.policy.iter().any(same) {
                return Err(CatalogError::StatementExists);
            }
            e.policy.push(statement.clone());
            Ok(((), vec![Write::Put(Row::Statement(statement))]))
        })
        .await
        .map(drop)
    }

    /// Removes a resource-policy statement by qualifier and id.
    pub async fn remove_statement(
        &self,
        account_id: &str,
        name: &str,
        qualifier: &str,
        statement_id: &str,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            let at = e
                .policy
                .iter()
                .position(|s| s.qualifier == qualifier && s.statement_id == statement_id)
                .ok_or(CatalogError::StatementNotFound)?;
            let removed = e.policy.remove(at);
            Ok(((), vec![Write::Delete(Row::Statement(removed))]))
        })
        .await
        .map(drop)
    }

    /// Sets the function's reserved concurrency; None returns it to the unreserved pool.
    pub async fn set_reserved(
        &self,
        account_id: &str,
        name: &str,
        reserved: Option<u32>,
    ) -> Result<(), CatalogError> {
        self.edit(account_id, name, |e| e.reserved_concurrency = reserved)
            .await
    }

    /// Replaces the function's tags.
    pub async fn set_tags(
        &self,
        account_id: &str,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<(), CatalogError> {
        self.edit(account_id, name, |e| e.tags = tags).await
    }
}
