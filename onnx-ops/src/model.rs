//! Loading a model once and running it from many threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use prost::Message;
use tract_onnx::model::ParseResult;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_hir::internal::{Factoid, bail, ensure};
use tract_onnx_opl::ml::tree_ensemble_classifier::TreeEnsembleClassifier as TreeEngine;

use crate::error::chain;
use crate::{ModelError, guard};

/// Bounds on what [`load`] accepts. A model is untrusted input; these keep a hostile or
/// broken one from exhausting the node that loads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadLimits {
    /// Largest accepted ONNX file, in bytes.
    pub max_model_bytes: usize,
    /// Most nodes in the graph, If/Loop/Scan bodies included.
    pub max_nodes: usize,
    /// Largest tensor the model may declare, make tract build while loading, or produce
    /// anywhere for a one-row batch. Larger batches scale from there and are bounded by
    /// the caller's own memory limits.
    pub max_tensor_bytes: u64,
}

impl Default for LoadLimits {
    /// Room for scikit-learn forests of a few hundred deep trees and neural nets as large
    /// as Lambda lets a package be (250 MB unzipped): a model never outgrows its package.
    fn default() -> Self {
        LoadLimits {
            max_model_bytes: 262_144_000,
            max_nodes: 10_000,
            max_tensor_bytes: 256 << 20,
        }
    }
}

/// One axis of a model input or output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(usize),
    /// Chosen at run time by the inputs, like the batch axis `N` that skl2onnx declares
    /// as `None`. The string is tract's expression for it (`N`, or `2*N` downstream).
    Symbolic(String),
}

/// Name, element type and shape of a model input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub datum_type: DatumType,
    pub shape: Vec<Dim>,
}

/// A classifier's labels, in the order of its probability columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassLabels {
    Int64(Vec<i64>),
    Strings(Vec<String>),
}

/// A model parsed, type-checked and optimised once, ready to run.
///
/// Cloning is cheap and clones share the plan: load once per node, hand a clone to every
/// environment. `run` takes `&self` and keeps no state between calls, so concurrent calls
/// from several threads are fine.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    class_labels: Option<ClassLabels>,
    resident_bytes: usize,
}

/// Parses, checks, type-checks and optimises an ONNX model held in memory.
///
/// Never panics on bad input: limits are checked before tract sees the model, and a
/// panic inside tract is caught and returned as [`ModelError::Panicked`]. Models that
/// point to external data files are refused (the bytes are all there is).
pub fn load(bytes: &[u8], limits: &LoadLimits) -> Result<LoadedModel, ModelError> {
    if bytes.len() > limits.max_model_bytes {
        return Err(ModelError::TooLarge {
            size: bytes.len(),
            limit: limits.max_model_bytes,
        });
    }
    let proto = catch("decoding", || pb::ModelProto::decode(bytes))?
        .map_err(|e| ModelError::Malformed(e.to_string()))?;
    let framework = crate::onnx();
    guard::check_proto(&proto, limits, &framework.op_register)?;
    let class_labels = class_labels(&proto)?;
    catch("loading", || {
        prepare(&framework, &proto, limits, class_labels)
    })?
}

fn prepare(
    framework: &tract_onnx::Onnx,
    proto: &pb::ModelProto,
    limits: &LoadLimits,
    class_labels: Option<ClassLabels>,
) -> Result<LoadedModel, ModelError> {
    let invalid = |e: TractError| ModelError::Invalid(chain(&e));
    // No model directory: a reference to external data is an error, not a file read.
    let ParseResult {
        mut model,
        unresolved_inputs,
        ..
    } = framework.parse(proto, None).map_err(invalid)?;
    if !unresolved_inputs.is_empty() {
        return Err(ModelError::Invalid(format!(
            "nodes read undefined values: {}",
            unresolved_inputs.join(", ")
        )));
    }
    name_free_dims(&mut model).map_err(invalid)?;

    let mut typed = model.into_typed().map_err(invalid)?;
    integer_outputs(&mut typed).map_err(invalid)?;
    guard::check_facts(&typed, limits)?;
    let optimized = typed.into_optimized().map_err(invalid)?;
    guard::check_facts(&optimized, limits)?;

    let inputs = optimized
        .input_outlets()
        .map_err(invalid)?
        .iter()
        .map(|o| {
            Ok(describe(
                optimized.node(o.node).name.clone(),
                optimized.outlet_fact(*o)?,
            ))
        })
        .collect::<TractResult<Vec<_>>>()
        .map_err(invalid)?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::Malformed("the model has no graph".into()))?;
    let outputs = optimized
        .output_outlets()
        .map_err(invalid)?
        .iter()
        .zip(&graph.output)
        .map(|(o, info)| Ok(describe(info.name.clone(), optimized.outlet_fact(*o)?)))
        .collect::<TractResult<Vec<_>>>()
        .map_err(invalid)?;
    let resident_bytes = resident_bytes(&optimized);
    let plan = optimized.into_runnable().map_err(invalid)?;
    Ok(LoadedModel {
        plan,
        inputs,
        outputs,
        class_labels,
        resident_bytes,
    })
}

/// skl2onnx declares the batch axis as a dimension with no value, which tract leaves
/// unknown and then refuses to type. Such axes become symbols: `N` for the first axis
/// (shared by every input, as a batch is), a symbol of their own for any other.
fn name_free_dims(model: &mut InferenceModel) -> TractResult<()> {
    for ix in 0..model.inputs.len() {
        let fact = model.input_fact(ix)?.clone();
        let name = &model.node(model.inputs[ix].node).name;
        ensure!(!fact.shape.is_open(), "input `{name}` has no declared rank");
        let Some(dt) = fact.datum_type.concretize() else {
            bail!("input `{name}` has no declared type")
        };
        let dims: TVec<TDim> = fact
            .shape
            .dims()
            .enumerate()
            .map(|(axis, d)| {
                d.concretize().unwrap_or_else(|| {
                    let sym = if axis == 0 {
                        "N".to_string()
                    } else {
                        format!("in{ix}_axis{axis}")
                    };
                    model.symbols.sym(&sym).into()
                })
            })
            .collect();
        model.set_input_fact(ix, InferenceFact::dt_shape(dt, dims))?;
    }
    Ok(())
}

/// tract-onnx reads every ONNX cast to int64 as a cast to its symbolic dimension type,
/// since such casts mostly compute shapes; the labels skl2onnx casts to int64 come out as
/// that type too. Callers get plain int64 back.
fn integer_outputs(model: &mut TypedModel) -> TractResult<()> {
    let mut outputs = model.output_outlets()?.to_vec();
    for (ix, outlet) in outputs.iter_mut().enumerate() {
        if model.outlet_fact(*outlet)?.datum_type == TDim::datum_type() {
            let name = format!("onnx_ops.output_{ix}_as_i64");
            *outlet = model.wire_node(name, cast(i64::datum_type()), &[*outlet])?[0];
        }
    }
    model.select_output_outlets(&outputs)
}

fn describe(name: String, fact: &TypedFact) -> TensorInfo {
    let shape = fact
        .shape
        .iter()
        .map(|d| match d.as_i64() {
            Some(v) => Dim::Fixed(v.max(0) as usize),
            None => Dim::Symbolic(d.to_string()),
        })
        .collect();
    TensorInfo {
        name,
        datum_type: fact.datum_type,
        shape,
    }
}

/// The labels of the (first) classifier: ZipMap's if there is one, since its order is the
/// order of the probability columns the model returns, else the classifier node's.
fn class_labels(proto: &pb::ModelProto) -> Result<Option<ClassLabels>, ModelError> {
    let Some(graph) = &proto.graph else {
        return Ok(None);
    };
    let sources = [
        ("ZipMap", "classlabels_int64s"),
        ("TreeEnsembleClassifier", "classlabels_int64s"),
        ("LinearClassifier", "classlabels_ints"),
        ("SVMClassifier", "classlabels_ints"),
    ];
    for (op, ints_attr) in sources {
        let Some(node) = graph.node.iter().find(|n| n.op_type == op) else {
            continue;
        };
        let malformed = |e: TractError| ModelError::Malformed(chain(&e));
        if let Some(ints) = node
            .get_attr_opt_slice::<i64>(ints_attr)
            .map_err(malformed)?
        {
            return Ok(Some(ClassLabels::Int64(ints.to_vec())));
        }
        if let Some(strings) = node
            .get_attr_opt_vec::<String>("classlabels_strings")
            .map_err(malformed)?
        {
            return Ok(Some(ClassLabels::Strings(strings)));
        }
    }
    Ok(None)
}

fn tensor_bytes(
    t: &Tensor,
    exotic: Option<&dyn tract_onnx::tract_core::internal::ExoticFact>,
) -> usize {
    let plain = t.len().saturating_mul(t.datum_type().size_of());
    exotic
        .and_then(|f| f.mem_size().as_i64())
        .map_or(plain, |b| b.max(0) as usize)
}

/// Constants (weights, packed or not) and tree tables, plus a fixed cost per node for the
/// op itself. An estimate for admission and eviction, not an accounting.
fn resident_bytes(model: &TypedModel) -> usize {
    const PER_NODE: usize = 512;
    model
        .nodes()
        .iter()
        .map(|node| {
            let data = if let Some(k) = node.op_as::<Const>() {
                tensor_bytes(k.val(), k.exotic_fact())
            } else if let Some(trees) = node.op_as::<TreeEngine>() {
                let d = &trees.ensemble.data;
                [&d.trees, &d.nodes, &d.leaves]
                    .iter()
                    .map(|t| tensor_bytes(t, None))
                    .sum()
            } else {
                0
            };
            data + PER_NODE
        })
        .sum()
}

fn catch<T>(stage: &'static str, f: impl FnOnce() -> T) -> Result<T, ModelError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        ModelError::Panicked { stage, message }
    })
}

impl LoadedModel {
    /// The inputs `run` expects, in order.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// The outputs `run` returns, in order, named as in the ONNX graph. For a skl2onnx
    /// classifier these are `output_label` (`[N]`) and `output_probability` (`[N, C]`,
    /// columns in [`class_labels`](Self::class_labels) order, see the crate docs on ZipMap).
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// The class labels if the model is a classifier.
    pub fn class_labels(&self) -> Option<&ClassLabels> {
        self.class_labels.as_ref()
    }

    /// Approximate memory held by the loaded model, for deciding how many fit on a node.
    pub fn resident_bytes(&self) -> usize {
        self.resident_bytes
    }

    /// Runs the model on one batch. Inputs must match [`inputs`](Self::inputs) in number,
    /// element type and fixed dimensions; symbolic dimensions take the inputs' sizes.
    pub fn run(&self, inputs: Vec<TValue>) -> Result<Vec<TValue>, ModelError> {
        if inputs.len() != self.inputs.len() {
            return Err(ModelError::BadInput(format!(
                "the model takes {} input(s), got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        for (value, spec) in inputs.iter().zip(&self.inputs) {
            check_input(value, spec)?;
        }
        let outputs = catch("running", || self.plan.run(inputs.into_iter().collect()))?
            .map_err(|e| ModelError::Inference(chain(&e)))?;
        Ok(outputs.into_vec())
    }
}

fn check_input(value: &Tensor, spec: &TensorInfo) -> Result<(), ModelError> {
    let bad = |what: String| {
        Err(ModelError::BadInput(format!(
            "input `{}`: {what}",
            spec.name
        )))
    };
    if value.datum_type() != spec.datum_type {
        return bad(format!(
            "expected {:?} values, got {:?}",
            spec.datum_type,
            value.datum_type()
        ));
    }
    if value.rank() != spec.shape.len() {
        return bad(format!(
            "expected rank {}, got shape {:?}",
            spec.shape.len(),
            value.shape()
        ));
    }
    for (axis, (dim, got)) in spec.shape.iter().zip(value.shape()).enumerate() {
        if let Dim::Fixed(want) = dim
            && want != got
        {
            return bad(format!(
                "axis {axis} must be {want}, got shape {:?}",
                value.shape()
            ));
        }
    }
    Ok(())
}
