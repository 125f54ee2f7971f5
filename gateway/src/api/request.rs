//! What the API's operations read from a request alike: the JSON body, the `Qualifier`
//! query, list pages, and the body limit of each group of routes.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;

/// Largest CreateFunction request Lambda accepts.
pub const MAX_CREATE_REQUEST: usize = 70_167_211;
/// Invoke and function-URL bodies are read up to this, so an oversized payload gets
/// Lambda's own 413 (naming [`protocol::MAX_SYNC_PAYLOAD`]) rather than the framework's.
pub const MAX_INVOKE_READ: usize = 16 << 20;
/// Every other control-plane request.
pub const MAX_CONTROL_REQUEST: usize = 1 << 20;

#[derive(Debug, Deserialize)]
pub struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    pub qualifier: Option<String>,
}

/// `?Marker=&MaxItems=` of the List operations that take nothing else.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "Marker")]
    pub marker: Option<String>,
    #[serde(rename = "MaxItems")]
    pub max_items: Option<usize>,
}

/// How much of a body's type error the message keeps: serde quotes the offending
/// string whole, which may be most of a 1 MB body. Generous enough that the list of
/// expected variants after it survives for any short value.
const MAX_DATA_ERROR_ECHO: usize = 1024;

/// Parses a JSON request body into `T`, answering as Lambda does when it cannot.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() { &b"{}"[..] } else { body };
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            let e = e.to_string();
            let e = protocol::names::echo_within(&e, MAX_DATA_ERROR_ECHO);
            ApiError::Validation(format!("1 validation error detected: {e}"))
        } else {
            ApiError::InvalidRequestContent(format!("Could not parse request body into json: {e}"))
        }
    })
}

/// Pages a sorted list by an opaque marker (the index of the next item, base64).
pub fn page<T>(
    items: Vec<T>,
    marker: Option<&str>,
    max_items: Option<usize>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match marker {
        None => 0,
        Some(m) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(m)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::InvalidParameterValue(format!(
                    "Invalid marker: {}",
                    protocol::names::echo(m)
                ))
            })?,
    };
    let max = max_items.unwrap_or(50).clamp(1, 50);
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + page.len() < total).then(|| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode((start + page.len()).to_string())
    });
    Ok((page, next))
}

/// A List operation's answer: one page of `items` under `key`, and `NextMarker` when
/// more follow.
pub fn listing(
    key: &str,
    items: Vec<Value>,
    marker: Option<&str>,
    max_items: Option<usize>,
) -> Result<Value, ApiError> {
    let (items, next) = page(items, marker, max_items)?;
    let mut body = json!({ key: items });
    if let (Some(next), Some(obj)) = (next, body.as_object_mut()) {
        obj.insert("NextMarker".into(), Value::String(next));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_marker_to_the_end() {
        let items: Vec<Value> = (0..120).map(|i| json!(i)).collect();
        let first = listing("Things", items.clone(), None, None).unwrap();
        assert_eq!(first["Things"].as_array().map(Vec::len), Some(50));
        let marker = first["NextMarker"].as_str().unwrap().to_owned();
        let second = listing("Things", items.clone(), Some(&marker), Some(100)).unwrap();
        assert_eq!(second["Things"][0], 50);
        let last_marker = second["NextMarker"].as_str().unwrap().to_owned();
        let last = listing("Things", items, Some(&last_marker), None).unwrap();
        assert_eq!(last["Things"].as_array().map(Vec::len), Some(20));
        assert!(last.get("NextMarker").is_none());
    }

    #[test]
    fn a_marker_that_is_not_ours_is_refused() {
        assert_eq!(
            page(vec![1], Some("not base64!"), None),
            Err(ApiError::InvalidParameterValue(
                "Invalid marker: not base64!".into()
            ))
        );
    }

    #[test]
    fn an_empty_body_reads_as_an_empty_object() {
        #[derive(Deserialize)]
        struct Input {
            name: Option<String>,
        }
        let input: Input = parse_body(b"").unwrap();
        assert!(input.name.is_none());
        assert!(matches!(
            parse_body::<Input>(b"{"),
            Err(ApiError::InvalidRequestContent(_))
        ));
        assert!(matches!(
            parse_body::<Input>(br#"{"name": 3}"#),
            Err(ApiError::Validation(_))
        ));
    }

    #[test]
    fn a_mistyped_huge_string_is_not_echoed_whole() {
        #[derive(Debug, Deserialize)]
        struct Input {
            #[allow(dead_code)] // only its type matters here
            size: u32,
        }
        let body = format!(r#"{{"size": "{}"}}"#, "x".repeat(1 << 19));
        let Err(ApiError::Validation(message)) = parse_body::<Input>(body.as_bytes()) else {
            panic!("a string where a number belongs is a validation error");
        };
        assert!(message.len() < 2 * MAX_DATA_ERROR_ECHO, "{}", message.len());
        assert!(
            message.ends_with(protocol::names::ECHO_TRUNCATED),
            "{message}"
        );
    }
}
