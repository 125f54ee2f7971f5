//! Lambda's answers to a few requests that every client depends on.

use axum::body::Body;
use http::{Method, Request};
use serde_json::json;

use crate::{ACCOUNT, Gateway};

#[tokio::test]
async fn an_unsigned_request_is_refused_with_lambdas_403() {
    let g = Gateway::new().await;
    let request = Request::get("/2015-03-31/functions/")
        .header("host", "localhost")
        .body(Body::empty())
        .unwrap();
    let reply = g.send(request).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.header("x-amzn-ErrorType"),
        Some("MissingAuthenticationTokenException")
    );
    assert_eq!(
        reply.json(),
        json!({"Type": "User", "message": "Missing Authentication Token"})
    );
    assert!(reply.header("x-amzn-RequestId").is_some());
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_secret_is_refused() {
    let mut g = Gateway::new().await;
    g.key.secret = "not-the-secret".into();
    let reply = g
        .send(g.signed(Method::GET, "/2016-08-19/account-settings", b""))
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.header("x-amzn-ErrorType"),
        Some("InvalidSignatureException")
    );
}

#[tokio::test]
async fn get_account_settings_answers_lambdas_shape() {
    let g = Gateway::new().await;
    let reply = g
        .send(g.signed(Method::GET, "/2016-08-19/account-settings", b""))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let limit = &body["AccountLimit"];
    for field in ["TotalCodeSize", "CodeSizeUnzipped", "CodeSizeZipped"] {
        assert!(
            limit[field].as_u64().is_some_and(|n| n > 0),
            "{field}: {body}"
        );
    }
    assert_eq!(limit["ConcurrentExecutions"], 1000);
    assert_eq!(limit["UnreservedConcurrentExecutions"], 1000);
    assert_eq!(
        body["AccountUsage"],
        json!({"TotalCodeSize": 0, "FunctionCount": 0})
    );
}

#[tokio::test]
async fn invoking_a_missing_function_is_a_404_naming_its_arn() {
    let g = Gateway::new().await;
    let reply = g
        .send(g.signed(
            Method::POST,
            "/2015-03-31/functions/nope/invocations",
            b"{}",
        ))
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.header("x-amzn-ErrorType"),
        Some("ResourceNotFoundException")
    );
    assert_eq!(
        reply.json(),
        json!({
            "Type": "User",
            "Message": format!(
                "Function not found: arn:aws:lambda:us-east-1:{ACCOUNT}:function:nope:$LATEST"
            ),
        })
    );
    assert!(g.fake.seen().is_empty());
}

#[tokio::test]
async fn invoke_runs_the_function_and_answers_its_payload() {
    let g = Gateway::new().await;
    g.function("echo").await;
    let reply = g
        .send(g.signed(
            Method::POST,
            "/2015-03-31/functions/echo/invocations",
            br#"{"hello":"world"}"#,
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"hello": "world"}));
    assert_eq!(reply.header("X-Amz-Executed-Version"), Some("$LATEST"));
    let seen = g.fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        reply.header("x-amzn-RequestId"),
        Some(seen[0].request_id.as_str())
    );
    assert_eq!(
        seen[0].invoked_arn,
        format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:echo")
    );
}

#[tokio::test]
async fn metrics_show_the_schedulers_counters_and_the_edges_gauges_together() {
    let g = Gateway::new().await;
    g.function("echo").await;
    let invoked = g
        .send(g.signed(
            Method::POST,
            "/2015-03-31/functions/echo/invocations",
            b"{}",
        ))
        .await;
    assert_eq!(invoked.status, 200, "{}", invoked.text());

    let request = Request::get("/metrics")
        .header("host", "localhost")
        .body(Body::empty())
        .unwrap();
    let reply = g.send(request).await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    for line in [
        // Moved by the scheduler as the invocation ended.
        "lamina_invocations_total{account=\"111111111111\",function=\"echo\",outcome=\"success\",start=\"cold\",version=\"$LATEST\"} 1",
        // Filled by the HTTP edge at this scrape.
        "lamina_environments{account=\"111111111111\",function=\"echo\",state=\"idle\",version=\"$LATEST\"} 1",
        "lamina_async_queue_depth 0",
        // Counted by the HTTP edge per route template.
        "lamina_http_requests_total{method=\"POST\",route=\"/2015-03-31/functions/{name}/invocations\",status=\"200\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // No ledger writer runs here: the invocation's rows wait in the spool.
    assert!(text.contains("lamina_ledger_backlog_records "), "{text}");
    assert!(!text.contains("lamina_ledger_backlog_records 0"), "{text}");
}
