//! JSON events and responses, with the error types Lambda's own runtimes report.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

pub use serde_json::{Value, json};

/// Parses the event payload, failing with `Runtime.UnmarshalError` as Lambda does
/// when a payload does not fit the handler's input type.
pub fn from_event<T: DeserializeOwned>(event: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(event).map_err(|e| {
        Error::new(
            "Runtime.UnmarshalError",
            format!("Unable to unmarshal input: {e}"),
        )
    })
}

/// Serialises a response payload, failing with `Runtime.MarshalError`.
pub fn to_response<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| {
        Error::new(
            "Runtime.MarshalError",
            format!("Unable to marshal response: {e}"),
        )
    })
}
