//! `lamina feedback`: sends the ground truth of a past prediction to a running Lamina,
//! for the model's quality scores (`lamina quality`).

use clap::Args;
use hyper::Method;
use serde_json::{Value, json};

use crate::options::EndpointArgs;
use crate::remote::{Remote, query_value};

#[derive(Debug, Clone, Args)]
pub struct FeedbackArgs {
    /// Function name or ARN.
    pub function: String,
    /// The request id of the prediction (the `x-amzn-RequestId` of its response).
    pub request_id: String,
    /// The true value or class label, as JSON (`3.5`, `"setosa"`, `1`), or a JSON list
    /// with one per row of a batch request; a bare word is taken as a label.
    pub ground_truth: String,
    #[command(flatten)]
    pub remote: EndpointArgs,
}

pub async fn run(args: FeedbackArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote.endpoint, &args.remote.region)?;
    let truth = ground_truth(&args.ground_truth);
    let answer = remote
        .send_json(
            Method::POST,
            &format!("/lamina/functions/{}/feedback", query_value(&args.function)),
            Some(&json!({"RequestId": args.request_id, "GroundTruth": truth})),
        )
        .await?;
    println!(
        "recorded {} row(s) of ground truth for version {} of {}",
        answer["Rows"],
        answer["Version"].as_str().unwrap_or("?"),
        answer["FunctionName"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// JSON as typed; anything that is not JSON is a class label spelled without quotes.
fn ground_truth(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_is_json_or_a_bare_label() {
        assert_eq!(ground_truth("3.5"), json!(3.5));
        assert_eq!(ground_truth("[1, 0]"), json!([1, 0]));
        assert_eq!(ground_truth("\"setosa\""), json!("setosa"));
        assert_eq!(ground_truth("setosa"), json!("setosa"));
    }
}
