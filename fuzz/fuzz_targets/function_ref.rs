//! Function names, partial and full ARNs, and qualifiers: parsing never panics, and a
//! parsed reference always names a function.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::names::FunctionRef;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, qualifier) = match text.split_once('\n') {
        Some((n, q)) => (n, Some(q)),
        None => (text, None),
    };
    if let Ok(r) = FunctionRef::parse(name) {
        assert!(!r.name.is_empty());
        let _ = r.with_query_qualifier(qualifier);
    }
});
