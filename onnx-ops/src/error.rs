//! Why a model could not be loaded or run.

/// Every way [`load`](crate::load) and [`LoadedModel::run`](crate::LoadedModel::run) fail.
///
/// The load-time variants are the model's fault (its owner uploaded something unusable),
/// `BadInput` is the caller's, `Inference` and `Panicked` point at the engine. Messages
/// name the reason and are safe to show to the model's owner: they carry tract's
/// explanation, never memory addresses or host paths.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("the model is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },

    #[error("the model has {count} nodes, over the limit of {limit}")]
    TooManyNodes { count: usize, limit: usize },

    #[error("{what} would take {bytes} bytes, over the limit of {limit}")]
    TensorTooLarge {
        what: String,
        bytes: u128,
        limit: u64,
    },

    #[error("not a valid ONNX model: {0}")]
    Malformed(String),

    #[error("unsupported operator(s): {}", .0.join(", "))]
    UnsupportedOperators(Vec<String>),

    #[error("the model cannot be prepared for inference: {0}")]
    Invalid(String),

    #[error("bad input: {0}")]
    BadInput(String),

    #[error("inference failed: {0}")]
    Inference(String),

    /// tract panicked; the message is the panic payload. Only reachable where panics
    /// unwind (not on wasm32, where they abort).
    #[error("the inference engine panicked while {stage}: {message}")]
    Panicked {
        stage: &'static str,
        message: String,
    },
}

/// Formats a tract error with its whole context chain, which is where the reason lives
/// ("Building node X (Scaler)": "offset has 2 values for 3 features").
pub(crate) fn chain(e: &tract_onnx::prelude::TractError) -> String {
    format!("{e:#}")
}
