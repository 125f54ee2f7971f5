//! Invoke payloads: any bytes are either accepted as JSON (unchanged, or `{}` when blank)
//! or refused with InvalidRequestContentException, never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match gateway::api::invoke::event_payload(Bytes::copy_from_slice(data)) {
        Ok(payload) => assert!(payload.as_ref() == data || payload.as_ref() == b"{}"),
        Err(e) => assert_eq!(e.error_type(), "InvalidRequestContentException"),
    }
});
