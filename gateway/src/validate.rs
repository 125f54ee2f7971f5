//! Lambda's parameter validation, with its wording, for the fields functions carry.

use std::collections::BTreeMap;

use crate::error::ApiError;

pub const MIN_MEMORY: u32 = 128;
pub const MAX_MEMORY: u32 = 10_240;
pub const MAX_TIMEOUT: u32 = 900;
pub const MAX_ENV_BYTES: usize = 4096;
pub const MAX_TAGS: usize = 50;

/// Variables Lambda sets itself; functions may not override them.
const RESERVED_VARIABLES: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Lambda's message for a value that breaks a field's constraint. The value is quoted
/// capped (see [`protocol::names::echo`]): fields can be megabytes long.
pub fn constraint(value: impl std::fmt::Display, field: &str, what: &str) -> ApiError {
    let value = value.to_string();
    let value = protocol::names::echo(&value);
    ApiError::Validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {what}"
    ))
}

/// Several constraint failures of one request in one message, as Lambda joins them.
pub fn combine(refused: Vec<ApiError>) -> Option<ApiError> {
    if refused.len() < 2 {
        return refused.into_iter().next();
    }
    let parts: Vec<String> = refused
        .iter()
        .map(|e| {
            let message = e.to_string();
            message
                .strip_prefix("1 validation error detected: ")
                .unwrap_or(&message)
                .to_owned()
        })
        .collect();
    Some(ApiError::Validation(format!(
        "{} validation errors detected: {}",
        parts.len(),
        parts.join("; ")
    )))
}

/// How much of an over-limit environment the 4 KB message quotes: Lambda shows the
/// measured string, which is kept whole near the limit but not for a 70 MB request.
const MAX_ENV_ECHO: usize = 2 * MAX_ENV_BYTES;

/// A whole number within `min..=max` (no upper bound when `max` is `None`), each bound
/// refused in Lambda's words; values above `u32::MAX` saturate.
pub fn bounded(value: i64, field: &str, min: i64, max: Option<i64>) -> Result<u32, ApiError> {
    if value < min {
        return Err(constraint(
            value,
            field,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if let Some(max) = max
        && value > max
    {
        return Err(constraint(
            value,
            field,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(u32::try_from(value).unwrap_or(u32::MAX))
}

pub fn memory(mb: u32) -> Result<u32, ApiError> {
    bounded(
        mb.into(),
        "memorySize",
        MIN_MEMORY.into(),
        Some(MAX_MEMORY.into()),
    )
}

pub fn timeout(seconds: u32) -> Result<u32, ApiError> {
    bounded(seconds.into(), "timeout", 1, Some(MAX_TIMEOUT.into()))
}

pub fn ephemeral_storage(mb: u32) -> Result<u32, ApiError> {
    if !(512..=10_240).contains(&mb) {
        return Err(constraint(
            mb,
            "ephemeralStorage.size",
            "Member must have value between 512 and 10240",
        ));
    }
    Ok(mb)
}

pub fn runtime(value: &str) -> Result<protocol::Runtime, ApiError> {
    if let Some(runtime) = protocol::Runtime::parse(value) {
        return Ok(runtime);
    }
    Err(ApiError::InvalidParameterValue(
        if value.starts_with("python") {
            // Lambda's wording for a runtime it no longer takes, naming the one it does.
            format!(
                "The runtime parameter of {} is not supported by Lamina, which runs Python handlers on {python}. We recommend you use the new runtime ({python}) while creating or updating functions.",
                protocol::names::echo(value),
                python = protocol::Runtime::Python314.as_str(),
            )
        } else {
            format!(
                "Value {} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}] or be a valid ARN",
                protocol::names::echo(value),
                protocol::Runtime::SUPPORTED.join(", ")
            )
        },
    ))
}

/// Longest `FunctionName` CreateFunction accepts (a full ARN).
pub const MAX_CREATE_NAME: usize = 140;

/// CreateFunction's `FunctionName`. Lambda answers a bare name over 64 characters with
/// InvalidParameterValueException, and everything else that is wrong with it (a pattern
/// mismatch, an ARN over 140 characters) with ValidationException.
pub fn new_function_name(value: &str) -> Result<protocol::names::FunctionRef, ApiError> {
    if value.len() > MAX_CREATE_NAME {
        return Err(constraint(
            value,
            "functionName",
            "Member must have length less than or equal to 140",
        ));
    }
    protocol::names::FunctionRef::parse(value).map_err(|e| {
        let protocol::names::NameError::Constraint { constraint, .. } = &e;
        let too_long = format!(
            "Member must have length less than or equal to {}",
            protocol::names::MAX_NAME_LEN
        );
        if *constraint == too_long {
            ApiError::InvalidParameterValue(e.to_string())
        } else {
            ApiError::Validation(e.to_string())
        }
    })
}

pub fn handler(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > 128 || value.chars().any(char::is_whitespace) {
        return Err(constraint(
            value,
            "handler",
            "Member must satisfy regular expression pattern: [^\\s]+",
        ));
    }
    Ok(())
}

pub fn description(value: &str) -> Result<(), ApiError> {
    if value.chars().count() > 256 {
        return Err(constraint(
            value,
            "description",
            "Member must have length less than or equal to 256",
        ));
    }
    Ok(())
}

pub fn role(value: &str) -> Result<(), ApiError> {
    let ok = value.starts_with("arn:") && value.contains(":iam::") && value.contains(":role/");
    if !ok {
        return Err(constraint(
            value,
            "role",
            "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        ));
    }
    Ok(())
}

fn is_env_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && k.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn environment(vars: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if let Some(bad) = vars.keys().find(|k| !is_env_name(k)) {
        return Err(constraint(
            bad,
            "environment.variables",
            "Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+",
        ));
    }
    let reserved: Vec<&str> = vars
        .keys()
        .filter(|k| RESERVED_VARIABLES.contains(&k.as_str()))
        .map(String::as_str)
        .collect();
    if !reserved.is_empty() {
        return Err(ApiError::InvalidParameterValue(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    let measured = serde_json::to_string(vars).unwrap_or_default();
    if measured.len() > MAX_ENV_BYTES {
        return Err(ApiError::InvalidParameterValue(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {}",
            protocol::names::echo_within(&measured, MAX_ENV_ECHO)
        )));
    }
    Ok(())
}

pub fn tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::InvalidParameterValue(
            "Number of tags exceeds resource tag limit.".into(),
        ));
    }
    Ok(())
}

pub fn architectures(archs: &[String]) -> Result<Vec<String>, ApiError> {
    if archs.len() > 1 {
        return Err(constraint(
            format!("[{}]", archs.join(", ")),
            "architectures",
            "Member must have length less than or equal to 1",
        ));
    }
    match archs.first().map(String::as_str) {
        None => Ok(vec!["x86_64".into()]),
        // WebAssembly runs on either; the value is kept for clients that read it back.
        Some(a @ ("x86_64" | "arm64")) => Ok(vec![a.to_owned()]),
        Some(other) => Err(constraint(
            format!("[{other}]"),
            "architectures",
            "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_wording() {
        assert!(memory(128).is_ok() && memory(10240).is_ok());
        assert!(
            memory(127)
                .unwrap_err()
                .to_string()
                .contains("greater than or equal to 128")
        );
        assert!(memory(10241).is_err());
        assert!(timeout(0).is_err() && timeout(901).is_err() && timeout(900).is_ok());
        let e = runtime("nodejs22.x").unwrap_err();
        assert_eq!(e.error_type(), "InvalidParameterValueException");
        assert_eq!(
            e.to_string(),
            "Value nodejs22.x at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [wasm, onnx, python3.14] or be a valid ARN"
        );
        let e = runtime("python3.12").unwrap_err();
        assert_eq!(e.error_type(), "InvalidParameterValueException");
        assert!(
            e.to_string()
                .starts_with("The runtime parameter of python3.12 is not supported by Lamina")
        );
        assert_eq!(
            runtime("python3.14").ok(),
            Some(protocol::Runtime::Python314)
        );
        assert!(role("arn:aws:iam::123456789012:role/r").is_ok());
        assert!(role("nope").is_err());
    }

    #[test]
    fn create_function_names() {
        assert_eq!(new_function_name("my-fn").unwrap().name, "my-fn");
        let long = "a".repeat(65);
        let e = new_function_name(&long).unwrap_err();
        assert_eq!(e.error_type(), "InvalidParameterValueException");
        assert_eq!(
            e.to_string(),
            format!(
                "1 validation error detected: Value '{long}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 64"
            )
        );
        let arn = format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}",
            "b".repeat(100)
        );
        let e = new_function_name(&arn).unwrap_err();
        assert_eq!(e.error_type(), "ValidationException");
        assert!(e.to_string().ends_with("less than or equal to 140"), "{e}");
        let e = new_function_name("invalid:function:name").unwrap_err();
        assert_eq!(e.error_type(), "ValidationException");
        assert!(e.to_string().contains("regular expression pattern"), "{e}");
    }

    #[test]
    fn echoed_values_are_capped() {
        let huge = "d".repeat(10 * 1024 * 1024);
        let shown = format!("{}...(truncated)", "d".repeat(256));
        assert_eq!(
            description(&huge).unwrap_err().to_string(),
            format!(
                "1 validation error detected: Value '{shown}' at 'description' failed to satisfy constraint: Member must have length less than or equal to 256"
            )
        );
        for e in [
            handler(&huge).unwrap_err(),
            role(&huge).unwrap_err(),
            runtime(&huge).unwrap_err(),
            new_function_name(&huge).unwrap_err(),
        ] {
            assert!(e.to_string().len() < 1024, "{}", e.error_type());
            assert!(e.to_string().contains(&shown), "{}", e.error_type());
        }
        let mut vars = BTreeMap::new();
        vars.insert("BIG".to_string(), huge.clone());
        let e = environment(&vars).unwrap_err().to_string();
        assert!(e.len() < 2 * MAX_ENV_BYTES + 512, "{} bytes", e.len());
        let mut vars = BTreeMap::new();
        vars.insert(huge, "x".to_string());
        assert!(environment(&vars).unwrap_err().to_string().contains(&shown));
    }

    #[test]
    fn environment_rules() {
        let mut vars = BTreeMap::new();
        vars.insert("GOOD_NAME".to_string(), "x".to_string());
        assert!(environment(&vars).is_ok());
        vars.insert("AWS_REGION".into(), "x".into());
        assert!(
            environment(&vars)
                .unwrap_err()
                .to_string()
                .contains("AWS_REGION")
        );
        let mut big = BTreeMap::new();
        big.insert("BIG".to_string(), "x".repeat(4096));
        let e = environment(&big).unwrap_err();
        assert!(e.to_string().contains("exceeded the 4KB limit"));
        let mut bad = BTreeMap::new();
        bad.insert("1X".to_string(), "x".to_string());
        assert_eq!(
            environment(&bad).unwrap_err().error_type(),
            "ValidationException"
        );
    }
}
