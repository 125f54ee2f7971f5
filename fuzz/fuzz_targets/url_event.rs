//! The function-URL mappings: an HTTP request to the 2.0 event, a guest's answer back to
//! an HTTP response, and an event to a wasi:http request, from arbitrary bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol::http::{
    HttpRequest, UrlRequestContext, event_result_to_url_response, event_to_http_request,
    url_request_to_event,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = format!("/{}", parts.next().unwrap_or_default());
    let query = parts.next().map(str::to_owned);
    let headers = parts
        .next()
        .unwrap_or_default()
        .split('&')
        .filter_map(|h| h.split_once('='))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let body = Bytes::from(parts.next().unwrap_or_default().to_owned());
    let request = HttpRequest {
        method,
        path,
        query,
        headers,
        body,
        source_ip: "127.0.0.1".into(),
        protocol: "HTTP/1.1".into(),
    };
    let context = UrlRequestContext {
        account_id: "000000000000".into(),
        url_id: "a".repeat(32),
        domain_name: "example.lambda-url.us-east-1.on.aws".into(),
        request_id: "00000000-0000-0000-0000-000000000000".into(),
        time_epoch_ms: 0,
        iam_caller: None,
    };
    let event = url_request_to_event(&request, &context);
    assert!(event.is_object());
    let _ = event_result_to_url_response(data);
    let _ = event_to_http_request(data);
});
