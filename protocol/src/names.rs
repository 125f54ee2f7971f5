//! Function names, qualifiers and ARNs, parsed and validated the way Lambda does.
//!
//! Every `{FunctionName}` path segment of the API may be a bare name, `name:qualifier`,
//! a partial ARN (`123456789012:function:name`) or a full ARN. Parsing is pure and total:
//! any input yields either a [`FunctionRef`] or a [`NameError`] whose message is the one
//! Lambda sends.

use std::fmt;

/// The pattern Lambda documents for `FunctionName`; quoted in validation messages.
pub const FUNCTION_NAME_PATTERN: &str = "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?";

/// Longest bare function name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest `FunctionName` value accepted by operations that take an ARN.
pub const MAX_REF_LEN: usize = 256;
/// Longest alias name or qualifier.
pub const MAX_QUALIFIER_LEN: usize = 128;

/// The special version that always points at the mutable configuration.
pub const LATEST: &str = "$LATEST";

/// The pattern of the `?Qualifier` query parameter, as Lambda quotes it.
pub const QUALIFIER_PATTERN: &str = "(|[a-zA-Z0-9$_-]+)";

/// Characters of a client's value that a validation message quotes back. A request may
/// carry megabytes in one field; answering with all of it would let one request cost
/// its size twice and fill logs, so longer values are cut here and marked.
pub const ECHO_LIMIT: usize = 256;
/// What follows a value cut at [`ECHO_LIMIT`].
pub const ECHO_TRUNCATED: &str = "...(truncated)";

/// `value` as a validation message may quote it: whole when short, else its first
/// `limit` characters (never splitting one) followed by [`ECHO_TRUNCATED`].
pub fn echo_within(value: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(limit) {
        None => std::borrow::Cow::Borrowed(value),
        Some((cut, _)) => std::borrow::Cow::Owned(format!("{}{ECHO_TRUNCATED}", &value[..cut])),
    }
}

/// [`echo_within`] at [`ECHO_LIMIT`].
pub fn echo(value: &str) -> std::borrow::Cow<'_, str> {
    echo_within(value, ECHO_LIMIT)
}

/// A reference to a function as a client wrote it, before it is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub name: String,
    pub qualifier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Lambda answers these with a `ValidationException`-style message.
    #[error(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    )]
    Constraint {
        value: String,
        field: &'static str,
        constraint: String,
    },
}

impl NameError {
    fn pattern(value: &str, field: &'static str, pattern: &str) -> Self {
        NameError::Constraint {
            value: echo(value).into_owned(),
            field,
            constraint: format!("Member must satisfy regular expression pattern: {pattern}"),
        }
    }

    fn too_long(value: &str, field: &'static str, max: usize) -> Self {
        NameError::Constraint {
            value: echo(value).into_owned(),
            field,
            constraint: format!("Member must have length less than or equal to {max}"),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Whether `name` is a valid bare function name (what CreateFunction stores).
pub fn is_valid_function_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.chars().all(is_name_char)
}

/// Whether `q` is a valid qualifier: `$LATEST`, a version number or an alias name.
pub fn is_valid_qualifier(q: &str) -> bool {
    q == LATEST || (!q.is_empty() && q.len() <= MAX_QUALIFIER_LEN && q.chars().all(is_name_char))
}

/// Checks a `?Qualifier` query parameter against Lambda's constraints for it, before
/// anything looks it up: `../../etc` is a malformed request, not a missing version.
pub fn check_query_qualifier(q: &str) -> Result<(), NameError> {
    let field = "qualifier";
    if q.is_empty() {
        return Err(NameError::Constraint {
            value: String::new(),
            field,
            constraint: "Member must have length greater than or equal to 1".into(),
        });
    }
    if q.len() > MAX_QUALIFIER_LEN {
        return Err(NameError::too_long(q, field, MAX_QUALIFIER_LEN));
    }
    if !q
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b'_' | b'-'))
    {
        return Err(NameError::pattern(q, field, QUALIFIER_PATTERN));
    }
    Ok(())
}

/// Whether `q` names a published version (digits only).
pub fn is_version_number(q: &str) -> bool {
    !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `name` is a valid alias name: name characters, not all digits.
pub fn is_valid_alias_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUALIFIER_LEN
        && name.chars().all(is_name_char)
        && !is_version_number(name)
}

fn is_region(s: &str) -> bool {
    // [a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return false;
    }
    let two_letters = parts[0].len() == 2 && parts[0].bytes().all(|b| b.is_ascii_lowercase());
    let last = parts[parts.len() - 1];
    let digit = last.len() == 1 && last.bytes().all(|b| b.is_ascii_digit());
    let middle = &parts[1..parts.len() - 1];
    let middle_ok = match middle {
        [word] => !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()),
        [partition, word] => {
            (*partition == "gov"
                || (partition.starts_with("iso")
                    && partition.len() <= 4
                    && partition.bytes().all(|b| b.is_ascii_lowercase())))
                && !word.is_empty()
                && word.bytes().all(|b| b.is_ascii_lowercase())
        }
        _ => false,
    };
    two_letters && digit && middle_ok
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

impl FunctionRef {
    /// Parses a `FunctionName` as any API operation that accepts names and ARNs does.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        Self::parse_field(input, "functionName")
    }

    /// Like [`FunctionRef::parse`], naming `field` in error messages (`resource` for tags).
    pub fn parse_field(input: &str, field: &'static str) -> Result<Self, NameError> {
        if input.len() > MAX_REF_LEN {
            return Err(NameError::too_long(input, field, MAX_REF_LEN));
        }
        let invalid = || NameError::pattern(input, field, FUNCTION_NAME_PATTERN);
        if input.is_empty() {
            return Err(invalid());
        }
        let parts: Vec<&str> = input.split(':').collect();
        let mut rest: &[&str] = &parts;
        let mut region = None;
        let mut account_id = None;

        if rest.first() == Some(&"arn") {
            // arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]
            if rest.len() < 7 {
                return Err(invalid());
            }
            let partition = rest[1];
            if !(partition.starts_with("aws")
                && partition[3..]
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '-'))
                || rest[2] != "lambda"
            {
                return Err(invalid());
            }
            if !is_region(rest[3]) || !is_account_id(rest[4]) || rest[5] != "function" {
                return Err(invalid());
            }
            region = Some(rest[3].to_owned());
            account_id = Some(rest[4].to_owned());
            rest = &rest[6..];
        } else {
            if let Some(first) = rest.first()
                && is_region(first)
                && rest.len() > 1
            {
                region = Some((*first).to_owned());
                rest = &rest[1..];
            }
            if let Some(first) = rest.first()
                && is_account_id(first)
                && rest.len() > 1
            {
                account_id = Some((*first).to_owned());
                rest = &rest[1..];
            }
            if rest.first() == Some(&"function") && rest.len() > 1 {
                rest = &rest[1..];
            }
        }

        let (name, qualifier) = match rest {
            [name] => (*name, None),
            [name, qualifier] => (*name, Some(*qualifier)),
            _ => return Err(invalid()),
        };
        if name.is_empty() || !name.chars().all(is_name_char) {
            return Err(invalid());
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::too_long(input, field, MAX_NAME_LEN));
        }
        if let Some(q) = qualifier
            && !is_valid_qualifier(q)
        {
            return Err(invalid());
        }
        Ok(FunctionRef {
            region,
            account_id,
            name: name.to_owned(),
            qualifier: qualifier.map(str::to_owned),
        })
    }

    /// Merges the qualifier from the name with the one from `?Qualifier`, as Lambda does:
    /// both may be given only if they agree.
    pub fn with_query_qualifier(mut self, query: Option<&str>) -> Result<Self, QualifierMismatch> {
        match (self.qualifier.as_deref(), query) {
            (Some(a), Some(b)) if a != b => return Err(QualifierMismatch),
            (None, Some(b)) => self.qualifier = Some(b.to_owned()),
            _ => {}
        }
        Ok(self)
    }
}

/// `?Qualifier` disagrees with the qualifier embedded in the function name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The derived qualifier from the function name does not match the specified qualifier.")]
pub struct QualifierMismatch;

/// Builds function ARNs for one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnBuilder {
    pub partition: String,
    pub region: String,
}

impl ArnBuilder {
    pub fn new(region: impl Into<String>) -> Self {
        ArnBuilder {
            partition: "aws".into(),
            region: region.into(),
        }
    }

    pub fn function(&self, account_id: &str, name: &str) -> String {
        format!(
            "arn:{}:lambda:{}:{}:function:{}",
            self.partition, self.region, account_id, name
        )
    }

    pub fn qualified(&self, account_id: &str, name: &str, qualifier: &str) -> String {
        format!("{}:{}", self.function(account_id, name), qualifier)
    }
}

impl ArnBuilder {
    /// A layer's ARN (`LayerArn`).
    pub fn layer(&self, account_id: &str, name: &str) -> String {
        format!(
            "arn:{}:lambda:{}:{}:layer:{}",
            self.partition, self.region, account_id, name
        )
    }

    /// A layer version's ARN (`LayerVersionArn`).
    pub fn layer_version(&self, account_id: &str, name: &str, version: u64) -> String {
        format!("{}:{version}", self.layer(account_id, name))
    }
}

/// botocore's pattern for `LayerName`, which the messages refusing one quote.
pub const LAYER_NAME_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+";

/// botocore's pattern for `LayerVersionArn`, which the messages refusing one quote.
pub const LAYER_VERSION_ARN_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)";

/// A layer named by a client: its name, with the region and account when it came as an
/// ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub name: String,
}

impl LayerRef {
    /// A `LayerName`: a name, or a layer's ARN without a version.
    pub fn parse_name(s: &str) -> Option<LayerRef> {
        if s.len() > 140 {
            return None;
        }
        if !s.starts_with("arn:") {
            return layer_name_ok(s).then(|| LayerRef {
                region: None,
                account_id: None,
                name: s.to_owned(),
            });
        }
        match parse_layer_arn(s)? {
            (layer, None) => Some(layer),
            (_, Some(_)) => None,
        }
    }

    /// A `LayerVersionArn`: the layer's ARN and a version number.
    pub fn parse_version_arn(s: &str) -> Option<(LayerRef, u64)> {
        if s.len() > 2048 {
            return None;
        }
        match parse_layer_arn(s)? {
            (layer, Some(version)) => Some((layer, version)),
            (_, None) => None,
        }
    }
}

fn layer_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `arn:<partition>:lambda:<region>:<account>:layer:<name>[:<version>]`.
fn parse_layer_arn(s: &str) -> Option<(LayerRef, Option<u64>)> {
    let parts: Vec<&str> = s.split(':').collect();
    let (partition, region, account, name, version) = match parts.as_slice() {
        ["arn", partition, "lambda", region, account, "layer", name] => {
            (*partition, *region, *account, *name, None)
        }
        [
            "arn",
            partition,
            "lambda",
            region,
            account,
            "layer",
            name,
            version,
        ] => (*partition, *region, *account, *name, Some(*version)),
        _ => return None,
    };
    let partition_ok = partition.is_empty()
        || partition
            .strip_prefix("aws")
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'));
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    if !(partition_ok && region_ok && account_ok && layer_name_ok(name)) {
        return None;
    }
    let version = match version {
        None => None,
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Some(v.parse().ok()?),
        Some(_) => return None,
    };
    Some((
        LayerRef {
            region: Some(region.to_owned()),
            account_id: Some(account.to_owned()),
            name: name.to_owned(),
        },
        version,
    ))
}

impl fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.qualifier {
            write!(f, ":{q}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input, then the account, region, name and qualifier it must parse to.
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
    );

    #[test]
    fn accepts_every_form_lambda_accepts() {
        let table: &[Case] = &[
            ("my-fn", None, None, "my-fn", None),
            ("my_fn:prod", None, None, "my_fn", Some("prod")),
            ("my-fn:$LATEST", None, None, "my-fn", Some("$LATEST")),
            ("my-fn:7", None, None, "my-fn", Some("7")),
            (
                "123456789012:function:my-fn",
                None,
                Some("123456789012"),
                "my-fn",
                None,
            ),
            (
                "123456789012:function:my-fn:2",
                None,
                Some("123456789012"),
                "my-fn",
                Some("2"),
            ),
            (
                "arn:aws:lambda:us-east-1:123456789012:function:my-fn",
                Some("us-east-1"),
                Some("123456789012"),
                "my-fn",
                None,
            ),
            (
                "arn:aws:lambda:us-gov-west-1:123456789012:function:f:live",
                Some("us-gov-west-1"),
                Some("123456789012"),
                "f",
                Some("live"),
            ),
        ];
        for (input, region, account, name, qualifier) in table {
            let r = FunctionRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.region.as_deref(), *region, "{input}");
            assert_eq!(r.account_id.as_deref(), *account, "{input}");
            assert_eq!(r.name, *name, "{input}");
            assert_eq!(r.qualifier.as_deref(), *qualifier, "{input}");
        }
    }

    #[test]
    fn rejects_what_lambda_rejects() {
        for input in [
            "",
            "a b",
            "fn:",
            ":q",
            "fn:a:b",
            "arn:aws:lambda:us-east-1:123:function:f",
            "arn:aws:s3:us-east-1:123456789012:function:f",
            "arn:aws:lambda:us-east-1:123456789012:layer:f",
            "fn:bad qualifier",
            "fn/other",
            "f\u{e9}",
        ] {
            assert!(FunctionRef::parse(input).is_err(), "{input:?} was accepted");
        }
        let long = "a".repeat(65);
        match FunctionRef::parse(&long) {
            Err(NameError::Constraint { constraint, .. }) => {
                assert!(constraint.contains("less than or equal to 64"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn query_qualifier_must_agree() {
        let r = FunctionRef::parse("f:prod").unwrap();
        assert!(r.clone().with_query_qualifier(Some("prod")).is_ok());
        assert_eq!(
            r.with_query_qualifier(Some("1")),
            Err(QualifierMismatch),
            "mismatch"
        );
        let r = FunctionRef::parse("f").unwrap();
        assert_eq!(
            r.with_query_qualifier(Some("3"))
                .unwrap()
                .qualifier
                .as_deref(),
            Some("3")
        );
    }

    #[test]
    fn query_qualifiers_follow_lambdas_pattern() {
        for ok in ["$LATEST", "7", "live", "a-b_c", &"q".repeat(128)] {
            assert_eq!(check_query_qualifier(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_query_qualifier("../../etc").unwrap_err().to_string(),
            "1 validation error detected: Value '../../etc' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"
        );
        for bad in ["", "a b", "a/b", "%2e", "v1.2", &"q".repeat(129)] {
            assert!(check_query_qualifier(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn echoed_values_are_capped() {
        assert_eq!(echo("short"), "short");
        let exact = "x".repeat(ECHO_LIMIT);
        assert_eq!(echo(&exact), exact.as_str());
        let long = "\u{e9}".repeat(10 * 1024 * 1024);
        let shown = echo(&long);
        assert_eq!(
            shown,
            format!("{}{ECHO_TRUNCATED}", "\u{e9}".repeat(ECHO_LIMIT))
        );
        let e = FunctionRef::parse(&"a".repeat(10_000))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 600, "{} bytes", e.len());
        assert!(
            e.contains(&format!("'{}{ECHO_TRUNCATED}'", "a".repeat(ECHO_LIMIT))),
            "{e}"
        );
    }

    #[test]
    fn alias_names_are_not_numbers() {
        assert!(is_valid_alias_name("prod"));
        assert!(is_valid_alias_name("v1"));
        assert!(!is_valid_alias_name("12"));
        assert!(!is_valid_alias_name("$LATEST"));
    }

    #[test]
    fn layer_names_and_version_arns_parse_as_botocore_allows() {
        let arn = "arn:aws:lambda:us-east-1:123456789012:layer:my-deps_2";
        let layer = LayerRef::parse_name(arn).unwrap();
        assert_eq!(layer.name, "my-deps_2");
        assert_eq!(layer.account_id.as_deref(), Some("123456789012"));
        assert_eq!(layer.region.as_deref(), Some("us-east-1"));
        assert_eq!(LayerRef::parse_name("deps").unwrap().account_id, None);
        for bad in ["", "a b", "x.y", &format!("{arn}:3"), &"n".repeat(141)] {
            assert_eq!(LayerRef::parse_name(bad), None, "{bad:?}");
        }
        let (layer, version) = LayerRef::parse_version_arn(&format!("{arn}:3")).unwrap();
        assert_eq!((layer.name.as_str(), version), ("my-deps_2", 3));
        for bad in [
            arn,
            "deps:1",
            "arn:aws:lambda:us-east-1:12345678901:layer:d:1",
            "arn:aws:lambda:us-east-1:123456789012:function:d:1",
            "arn:aws:lambda:us-east-1:123456789012:layer:d:1a",
            "arn:aws:lambda:us-east-1:123456789012:layer:d:",
        ] {
            assert_eq!(LayerRef::parse_version_arn(bad), None, "{bad:?}");
        }
        let arns = ArnBuilder::new("eu-west-1");
        assert_eq!(
            arns.layer_version("123456789012", "d", 7),
            "arn:aws:lambda:eu-west-1:123456789012:layer:d:7"
        );
    }
}
