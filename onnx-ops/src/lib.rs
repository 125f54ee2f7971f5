//! Makes tract run the ONNX files scikit-learn users actually have.
//!
//! skl2onnx, with its default options, writes ai.onnx.ml operators that tract-onnx 0.23
//! does not implement: `TreeEnsembleRegressor` for every tree regressor, `Scaler` for
//! StandardScaler, and `ZipMap` after every classifier. This crate adds them to tract's
//! ONNX registry ([`onnx`]), along with `SVMRegressor`, `Binarizer` and `Imputer`. It also
//! replaces tract's `TreeEnsembleClassifier` with one that validates its trees and matches
//! onnxruntime on binary models, and lets tract's `LinearClassifier` carry string labels
//! (see [`OPERATORS`]). Everything else (linear models, MLPs, plain neural graphs) is
//! tract's own. `SVMClassifier`, `LabelEncoder`, `OneHotEncoder` and the opset-5
//! `TreeEnsemble` are still missing; [`load`] names them in
//! [`ModelError::UnsupportedOperators`].
//!
//! [`load`] is the one way in for untrusted bytes: bounded by [`LoadLimits`], it returns a
//! [`ModelError`] naming the reason for anything it cannot run, and a [`LoadedModel`] that
//! is `Send + Sync` and cheap to share between the environments of a node.
//!
//! # Batches
//!
//! skl2onnx declares inputs as `[None, n_features]`, an axis tract cannot type as is
//! (stock tract refuses every such export for that reason alone). [`load`] makes the free
//! axis the symbol `N`, so one loaded model runs batches of any size, one row or none
//! included. int64 outputs (class labels) come back as int64, not as tract's internal
//! dimension type.
//!
//! # ZipMap
//!
//! ONNX's ZipMap turns the `[N, C]` probability matrix into N `{label: probability}` maps.
//! tract has no map values, so ZipMap is the identity here: the `output_probability`
//! output is the `[N, C]` f32 matrix, column `j` being the probability of label `j` of
//! [`LoadedModel::class_labels`]. A caller that needs onnxruntime's shape builds the maps
//! from the two.
//!
//! # Numerics
//!
//! Outputs match onnxruntime's within 1e-6 relative on the fixtures (float32 arithmetic
//! over the same terms; trees sum in the same order and are exact), and labels are
//! identical; the tests allow 1e-5. Tree ensembles are evaluated in f32, so models whose
//! thresholds are stored as doubles (`*_as_tensor` attributes) are refused rather than
//! rounded.
//!
//! # Panics and wasm
//!
//! The crate is pure Rust and builds for `wasm32-wasip2`. tract panics are caught where
//! panics unwind; on wasm32 they abort the guest instead, which its host contains.

mod error;
mod guard;
mod model;
mod ops;
#[cfg(test)]
mod test_util;

pub use error::ModelError;
pub use model::{ClassLabels, Dim, LoadLimits, LoadedModel, TensorInfo, load};
pub use ops::OPERATORS;

/// tract's ONNX framework with this crate's operators registered: for callers that drive
/// tract themselves (for instance to parse without optimising). [`load`] uses it.
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    ops::register(&mut onnx.op_register);
    onnx
}
