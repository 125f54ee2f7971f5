//! Integration tests of onnx-ops, in one binary: scikit-learn fixtures checked against
//! onnxruntime, hostile models, and sharing a model between threads.

// clippy.toml allows unwrap inside #[test] functions; the helpers that read fixtures and
// build models for them are test code too.
#![allow(clippy::unwrap_used)]

mod fixtures;
mod hostile;
mod sharing;
