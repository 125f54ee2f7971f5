//! The ai.onnx.ml operators this crate adds to (or replaces in) tract's ONNX registry.

use tract_onnx::model::OnnxOpRegister;

mod binarizer;
mod imputer;
mod scaler;
mod string_labels;
mod svm_regressor;
mod tree;
mod tree_classifier;
mod tree_regressor;
mod zipmap;

/// Registers every operator of this crate. tract's registry is keyed by operator name
/// alone, so `TreeEnsembleClassifier` here replaces tract's own (see `tree_classifier`),
/// and `LinearClassifier` wraps tract's own for string labels (see `string_labels`).
pub(crate) fn register(reg: &mut OnnxOpRegister) {
    reg.insert("Binarizer", binarizer::parse);
    reg.insert("Imputer", imputer::parse);
    reg.insert("LinearClassifier", string_labels::linear_classifier);
    reg.insert("Scaler", scaler::parse);
    reg.insert("SVMRegressor", svm_regressor::parse);
    reg.insert("TreeEnsembleClassifier", tree_classifier::parse);
    reg.insert("TreeEnsembleRegressor", tree_regressor::parse);
    reg.insert("ZipMap", zipmap::parse);
}

/// The operators this crate registers, for documentation and tests.
pub const OPERATORS: &[&str] = &[
    "Binarizer",
    "Imputer",
    "LinearClassifier",
    "Scaler",
    "SVMRegressor",
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "ZipMap",
];
