//! Plain HTTP requests and responses, and Lambda's function-URL mapping between them
//! and events (API Gateway payload format 2.0).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// An HTTP request as a function sees it. Header names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// The path below the function URL's root, always starting with `/`.
    pub path: String,
    /// The raw query string without `?`, if any.
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub source_ip: String,
    pub protocol: String,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response produced by a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }
}

/// Where a function-URL request arrived; fills the event's `requestContext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRequestContext {
    pub account_id: String,
    pub url_id: String,
    pub domain_name: String,
    pub request_id: String,
    /// Milliseconds since the Unix epoch.
    pub time_epoch_ms: i64,
    /// Filled for `AWS_IAM` URLs: the caller's access key and account.
    pub iam_caller: Option<IamCaller>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamCaller {
    pub access_key: String,
    pub account_id: String,
}

/// Whether a body with this content type travels as text rather than base64.
pub fn is_text_content_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("/json")
        || essence.ends_with("+json")
        || essence.ends_with("/xml")
        || essence.ends_with("+xml")
        || essence == "application/javascript"
        || essence == "application/x-www-form-urlencoded"
}

fn join_repeated(pairs: impl Iterator<Item = (String, String)>) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        match out.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                out.insert(k, Value::String(v));
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Builds the payload-format-2.0 event Lambda sends for a function-URL request.
pub fn url_request_to_event(req: &HttpRequest, ctx: &UrlRequestContext) -> Value {
    let mut cookies: Vec<Value> = Vec::new();
    let headers = join_repeated(req.headers.iter().filter_map(|(k, v)| {
        if k == "cookie" {
            cookies.extend(
                v.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_owned())),
            );
            None
        } else {
            Some((k.to_ascii_lowercase(), v.clone()))
        }
    }));
    let query = req.query.clone().unwrap_or_default();
    let query_params = join_repeated(query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    }));
    let user_agent = req.header("user-agent").unwrap_or("").to_owned();
    let time = chrono::DateTime::from_timestamp_millis(ctx.time_epoch_ms)
        .unwrap_or_default()
        .format("%d/%b/%Y:%H:%M:%S +0000")
        .to_string();
    let authorizer = match &ctx.iam_caller {
        Some(caller) => json!({"iam": {
            "accessKey": caller.access_key,
            "accountId": caller.account_id,
            "callerId": caller.access_key,
            "cognitoIdentity": null,
            "principalOrgId": null,
            "userArn": format!("arn:aws:iam::{}:root", caller.account_id),
            "userId": caller.account_id,
        }}),
        None => Value::Null,
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": req.path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": ctx.account_id,
            "apiId": ctx.url_id,
            "authentication": null,
            "authorizer": authorizer,
            "domainName": ctx.domain_name,
            "domainPrefix": ctx.url_id,
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": req.protocol,
                "sourceIp": req.source_ip,
                "userAgent": user_agent,
            },
            "requestId": ctx.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time,
            "timeEpoch": ctx.time_epoch_ms,
        },
        "pathParameters": null,
        "isBase64Encoded": false,
        "stageVariables": null,
    });
    if let Some(obj) = event.as_object_mut() {
        if !cookies.is_empty() {
            obj.insert("cookies".into(), Value::Array(cookies));
        }
        if !query_params.is_empty() {
            obj.insert("queryStringParameters".into(), Value::Object(query_params));
        }
        if !req.body.is_empty() {
            let text = is_text_content_type(req.header("content-type"))
                .then(|| std::str::from_utf8(&req.body).ok())
                .flatten();
            match text {
                Some(t) => {
                    obj.insert("body".into(), Value::String(t.to_owned()));
                }
                None => {
                    obj.insert("body".into(), Value::String(B64.encode(&req.body)));
                    obj.insert("isBase64Encoded".into(), Value::Bool(true));
                }
            }
        }
    }
    event
}

/// Maps a function's answer to a function-URL response by Lambda's rules: an object
/// with `statusCode` is an explicit response; any other JSON is a 200 JSON body; a
/// JSON string is sent without quotes.
pub fn event_result_to_url_response(result: &[u8]) -> HttpResponse {
    let json_response = |body: Bytes| HttpResponse::new(200, "application/json", body);
    let value: Value = match serde_json::from_slice(result) {
        Ok(v) => v,
        Err(_) => return json_response(Bytes::copy_from_slice(result)),
    };
    match value {
        Value::Object(obj) if obj.contains_key("statusCode") => explicit_response(&obj),
        Value::String(s) => json_response(Bytes::from(s)),
        other => json_response(Bytes::from(other.to_string())),
    }
}

fn explicit_response(obj: &Map<String, Value>) -> HttpResponse {
    let status = obj
        .get("statusCode")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|s| (100..=599).contains(s))
        .unwrap_or(500) as u16;
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(h)) = obj.get("headers") {
        for (k, v) in h {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            headers.push((k.to_ascii_lowercase(), v));
        }
    }
    if let Some(Value::Array(cookies)) = obj.get("cookies") {
        for c in cookies.iter().filter_map(Value::as_str) {
            headers.push(("set-cookie".into(), c.to_owned()));
        }
    }
    if !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let base64 = obj
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match obj.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if base64 => B64.decode(s).map(Bytes::from).unwrap_or_default(),
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Turns an Invoke payload into the request an HTTP guest receives: a function-URL
/// event is unpacked back into its request; anything else is `POST /` with the payload.
pub fn event_to_http_request(payload: &[u8]) -> HttpRequest {
    let fallback = || HttpRequest {
        method: "POST".into(),
        path: "/".into(),
        query: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::copy_from_slice(payload),
        source_ip: "127.0.0.1".into(),
        protocol: "HTTP/1.1".into(),
    };
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(payload) else {
        return fallback();
    };
    if event.get("version").and_then(Value::as_str) != Some("2.0") {
        return fallback();
    }
    let http = event
        .get("requestContext")
        .and_then(|c| c.get("http"))
        .cloned()
        .unwrap_or(Value::Null);
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let mut headers: Vec<(String, String)> = event
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.to_ascii_lowercase(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Array(cookies)) = event.get("cookies") {
        let joined: Vec<&str> = cookies.iter().filter_map(Value::as_str).collect();
        if !joined.is_empty() {
            headers.push(("cookie".into(), joined.join("; ")));
        }
    }
    let base64 = event
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match event.get("body").and_then(Value::as_str) {
        Some(s) if base64 => B64.decode(s).map(Bytes::from).unwrap_or_default(),
        Some(s) => Bytes::from(s.to_owned()),
        None => Bytes::new(),
    };
    let query = str_of(event.get("rawQueryString")).filter(|q| !q.is_empty());
    HttpRequest {
        method: str_of(http.get("method")).unwrap_or_else(|| "GET".into()),
        path: str_of(event.get("rawPath")).unwrap_or_else(|| "/".into()),
        query,
        headers,
        body,
        source_ip: str_of(http.get("sourceIp")).unwrap_or_else(|| "127.0.0.1".into()),
        protocol: str_of(http.get("protocol")).unwrap_or_else(|| "HTTP/1.1".into()),
    }
}

/// The Invoke payload for an HTTP guest's response: `{statusCode, headers, body,
/// isBase64Encoded}`, the shape a function URL maps back unchanged.
pub fn http_response_to_event(resp: &HttpResponse) -> Bytes {
    let headers: Map<String, Value> = join_repeated(resp.headers.iter().cloned());
    let content_type = resp
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    let (body, base64) = match std::str::from_utf8(&resp.body) {
        Ok(t) if is_text_content_type(content_type) => (t.to_owned(), false),
        _ => (B64.encode(&resp.body), true),
    };
    let value = json!({
        "statusCode": resp.status,
        "headers": headers,
        "body": body,
        "isBase64Encoded": base64,
    });
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str, content_type: Option<&str>) -> HttpRequest {
        let mut headers = vec![
            ("user-agent".to_string(), "curl/8".to_string()),
            ("x-multi".to_string(), "a".to_string()),
            ("x-multi".to_string(), "b".to_string()),
            ("cookie".to_string(), "c1=v1; c2=v2".to_string()),
        ];
        if let Some(ct) = content_type {
            headers.push(("content-type".into(), ct.into()));
        }
        HttpRequest {
            method: "POST".into(),
            path: "/my/path".into(),
            query: Some("a=1&a=2&b=x%20y".into()),
            headers,
            body: Bytes::from(body.to_owned()),
            source_ip: "10.0.0.1".into(),
            protocol: "HTTP/1.1".into(),
        }
    }

    fn ctx() -> UrlRequestContext {
        UrlRequestContext {
            account_id: "123456789012".into(),
            url_id: "abc".into(),
            domain_name: "abc.lambda-url.us-east-1.on.aws".into(),
            request_id: "rid".into(),
            time_epoch_ms: 1_583_348_638_390,
            iam_caller: None,
        }
    }

    #[test]
    fn event_has_the_2_0_shape() {
        let e = url_request_to_event(&request("{\"a\":1}", Some("application/json")), &ctx());
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["rawPath"], "/my/path");
        assert_eq!(e["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(e["queryStringParameters"]["a"], "1,2");
        assert_eq!(e["queryStringParameters"]["b"], "x y");
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["cookies"][1], "c2=v2");
        assert_eq!(e["body"], "{\"a\":1}");
        assert_eq!(e["isBase64Encoded"], false);
        assert_eq!(e["requestContext"]["http"]["sourceIp"], "10.0.0.1");
        assert_eq!(e["requestContext"]["time"], "04/Mar/2020:19:03:58 +0000");
        assert_eq!(e["requestContext"]["timeEpoch"], 1_583_348_638_390_i64);
    }

    #[test]
    fn binary_bodies_are_base64() {
        let e = url_request_to_event(
            &request("\u{1}\u{2}", Some("application/octet-stream")),
            &ctx(),
        );
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], B64.encode([1u8, 2]));
    }

    #[test]
    fn results_map_back_by_lambdas_rules() {
        let table: &[(&str, u16, &str)] = &[
            (r#"{"hello": "world"}"#, 200, r#"{"hello":"world"}"#),
            (r#"{"statusCode": 201, "body": "body123"}"#, 201, "body123"),
            (
                r#"{"statusCode": 200, "body": "{\"hello\": \"world\"}"}"#,
                200,
                r#"{"hello": "world"}"#,
            ),
            (r#"["hello", 3, true]"#, 200, r#"["hello",3,true]"#),
            (r#""hello""#, 200, "hello"),
            ("3.1", 200, "3.1"),
            ("true", 200, "true"),
            (
                r#"{"statusCode": 200, "body": "aGk=", "isBase64Encoded": true}"#,
                200,
                "hi",
            ),
        ];
        for (result, status, body) in table {
            let r = event_result_to_url_response(result.as_bytes());
            assert_eq!(r.status, *status, "{result}");
            assert_eq!(std::str::from_utf8(&r.body).unwrap(), *body, "{result}");
        }
    }

    #[test]
    fn url_events_round_trip_to_http_requests() {
        let original = request("payload", Some("text/plain"));
        let event = url_request_to_event(&original, &ctx());
        let back = event_to_http_request(event.to_string().as_bytes());
        assert_eq!(back.method, "POST");
        assert_eq!(back.path, "/my/path");
        assert_eq!(back.query.as_deref(), Some("a=1&a=2&b=x%20y"));
        assert_eq!(back.body, Bytes::from("payload"));
        assert_eq!(back.header("cookie"), Some("c1=v1; c2=v2"));
        let plain = event_to_http_request(b"{\"input\":[1]}");
        assert_eq!(plain.method, "POST");
        assert_eq!(plain.path, "/");
        assert_eq!(plain.body, Bytes::from("{\"input\":[1]}"));
    }
}
