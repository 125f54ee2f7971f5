//! Checks a model against its [`LoadLimits`] before and while tract works on it.
//!
//! tract folds constants while it type-checks a graph, allocating whatever a constant
//! shape asks for, and an allocation failure inside ndarray aborts the process rather than
//! unwinding. So the sizes a hostile model can request are bounded here first: declared
//! tensors, graph inputs and outputs, and the shape-making operators whose shape is a
//! constant of the file. After type-checking, every intermediate tensor of a one-row batch
//! is bounded too, which catches shapes that only tract's inference could compute.
//!
//! A shape computed from constants (a Concat feeding a ConstantOfShape) is folded before
//! that second check can see it. There tract's own checks refuse shapes that overflow,
//! and its tensor allocator panics (caught by `load`) when the system refuses the memory,
//! as Linux's default overcommit policy does beyond RAM plus swap. A memory limit on the
//! loading process remains the last line of defence.

use std::collections::{BTreeSet, HashMap};

use tract_onnx::model::OnnxOpRegister;
use tract_onnx::pb::{self, tensor_proto::DataType};
use tract_onnx::prelude::*;

use crate::{LoadLimits, ModelError};

/// Domains whose operators tract implements; anything else (vendor domains, model-local
/// functions) would be matched to a tract operator by name alone, or not at all.
const KNOWN_DOMAINS: &[&str] = &["", "ai.onnx", "ai.onnx.ml"];

/// Every graph of the model: the main one and the bodies of If/Loop/Scan nodes. prost
/// refuses messages nested deeper than 100 levels, so walking them cannot run away.
fn graphs(main: &pb::GraphProto) -> Vec<&pb::GraphProto> {
    let mut all = vec![main];
    let mut next = 0;
    while let Some(graph) = all.get(next).copied() {
        next += 1;
        for node in &graph.node {
            for attr in &node.attribute {
                all.extend(attr.g.iter());
                all.extend(attr.graphs.iter());
            }
        }
    }
    all
}

pub(crate) fn check_proto(
    proto: &pb::ModelProto,
    limits: &LoadLimits,
    ops: &OnnxOpRegister,
) -> Result<(), ModelError> {
    let main = proto
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::Malformed("the model has no graph".into()))?;
    let graphs = graphs(main);

    let count: usize = graphs.iter().map(|g| g.node.len()).sum();
    if count > limits.max_nodes {
        return Err(ModelError::TooManyNodes {
            count,
            limit: limits.max_nodes,
        });
    }

    let unsupported: BTreeSet<String> = graphs
        .iter()
        .flat_map(|g| &g.node)
        .filter(|n| !KNOWN_DOMAINS.contains(&n.domain.as_str()) || !ops.0.contains_key(&n.op_type))
        .map(|n| {
            let domain = if n.domain.is_empty() {
                "ai.onnx"
            } else {
                &n.domain
            };
            format!("{domain}:{}", n.op_type)
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(ModelError::UnsupportedOperators(
            unsupported.into_iter().collect(),
        ));
    }

    // tract indexes its table of values by each output's name without checking.
    let defined: BTreeSet<&str> = main
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(main.initializer.iter().map(|t| t.name.as_str()))
        .chain(
            main.node
                .iter()
                .flat_map(|n| n.output.iter().map(String::as_str)),
        )
        .collect();
    if let Some(missing) = main
        .output
        .iter()
        .find(|o| !defined.contains(o.name.as_str()))
    {
        return Err(ModelError::Malformed(format!(
            "graph output `{}` is not computed by the graph",
            missing.name
        )));
    }

    for graph in &graphs {
        check_graph(graph, limits)?;
    }
    Ok(())
}

fn elem_size(data_type: i32) -> u128 {
    match DataType::try_from(data_type) {
        Ok(DataType::Double | DataType::Int64 | DataType::Uint64 | DataType::Complex64) => 8,
        Ok(DataType::Complex128) => 16,
        Ok(DataType::Float | DataType::Int32 | DataType::Uint32) => 4,
        Ok(DataType::Float16 | DataType::Bfloat16 | DataType::Int16 | DataType::Uint16) => 2,
        // Strings are at least a pointer each once loaded.
        Ok(DataType::String) => 24,
        _ => 1,
    }
}

fn bounded(
    what: impl FnOnce() -> String,
    elements: u128,
    size: u128,
    limits: &LoadLimits,
) -> Result<(), ModelError> {
    let bytes = elements.saturating_mul(size);
    if bytes > u128::from(limits.max_tensor_bytes) {
        return Err(ModelError::TensorTooLarge {
            what: what(),
            bytes,
            limit: limits.max_tensor_bytes,
        });
    }
    Ok(())
}

/// Product of dimensions, saturating: the limit check only needs to know it is huge.
fn volume<'a>(dims: impl IntoIterator<Item = &'a i64>) -> Result<u128, ModelError> {
    dims.into_iter()
        .try_fold(1u128, |acc, &d| match u128::try_from(d) {
            Ok(d) => Ok(acc.saturating_mul(d)),
            Err(_) => Err(ModelError::Malformed(format!("negative dimension {d}"))),
        })
}

fn check_tensor(t: &pb::TensorProto, limits: &LoadLimits) -> Result<(), ModelError> {
    bounded(
        || format!("tensor `{}`", t.name),
        volume(&t.dims)?,
        elem_size(t.data_type),
        limits,
    )
}

/// The integer values of a constant tensor, if it is small enough to be a shape.
fn ints_of(t: &pb::TensorProto) -> Option<Vec<i64>> {
    const MAX_SHAPE_RANK: usize = 64;
    let vals: Vec<i64> = match DataType::try_from(t.data_type).ok()? {
        DataType::Int64 if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(8)
            .map(|c| c.try_into().map(i64::from_le_bytes))
            .collect::<Result<_, _>>()
            .ok()?,
        DataType::Int64 => t.int64_data.clone(),
        DataType::Int32 if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(4)
            .map(|c| c.try_into().map(|b| i64::from(i32::from_le_bytes(b))))
            .collect::<Result<_, _>>()
            .ok()?,
        DataType::Int32 => t.int32_data.iter().map(|v| i64::from(*v)).collect(),
        _ => return None,
    };
    (vals.len() <= MAX_SHAPE_RANK).then_some(vals)
}

fn scalar_f64(t: &pb::TensorProto) -> Option<f64> {
    match DataType::try_from(t.data_type).ok()? {
        DataType::Float if t.raw_data.len() == 4 => Some(f64::from(f32::from_le_bytes(
            t.raw_data[..].try_into().ok()?,
        ))),
        DataType::Float => t.float_data.first().map(|v| f64::from(*v)),
        DataType::Double if t.raw_data.len() == 8 => {
            Some(f64::from_le_bytes(t.raw_data[..].try_into().ok()?))
        }
        DataType::Double => t.double_data.first().copied(),
        _ => ints_of(t).and_then(|v| v.first().map(|x| *x as f64)),
    }
}

fn check_graph(graph: &pb::GraphProto, limits: &LoadLimits) -> Result<(), ModelError> {
    let mut constants: HashMap<&str, &pb::TensorProto> = HashMap::new();
    for t in &graph.initializer {
        check_tensor(t, limits)?;
        constants.insert(&t.name, t);
    }
    for sparse in &graph.sparse_initializer {
        let name = sparse.values.as_ref().map_or("", |v| v.name.as_str());
        bounded(
            || format!("sparse tensor `{name}`"),
            volume(&sparse.dims)?,
            8,
            limits,
        )?;
    }
    for node in &graph.node {
        for attr in &node.attribute {
            for t in attr.t.iter().chain(&attr.tensors) {
                check_tensor(t, limits)?;
            }
        }
        if node.op_type == "Constant"
            && let (Some(out), Some(t)) = (
                node.output.first(),
                node.attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref()),
            )
        {
            constants.insert(out, t);
        }
    }

    for info in graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
    {
        if let Some(pb::type_proto::Value::TensorType(t)) =
            info.r#type.as_ref().and_then(|t| t.value.as_ref())
        {
            let fixed: Vec<i64> = t
                .shape
                .iter()
                .flat_map(|s| &s.dim)
                .filter_map(|d| match d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
                    _ => None,
                })
                .collect();
            bounded(
                || format!("`{}`", info.name),
                volume(&fixed)?,
                elem_size(t.elem_type),
                limits,
            )?;
        }
    }

    // Operators whose output size is read from a constant: tract evaluates them while it
    // type-checks, so a constant asking for terabytes is an allocation of terabytes.
    for node in &graph.node {
        let what = || format!("output of {} node `{}`", node.op_type, node.name);
        let input = |ix: usize| {
            node.input
                .get(ix)
                .and_then(|name| constants.get(name.as_str()).copied())
        };
        match node.op_type.as_str() {
            // The constant is the output shape, or a lower bound of it (Tile's repeats).
            "ConstantOfShape" | "Expand" | "Tile" | "Resize" => {
                let ix = match node.op_type.as_str() {
                    "ConstantOfShape" => 0,
                    "Resize" => 3,
                    _ => 1,
                };
                if let Some(shape) = input(ix).and_then(ints_of) {
                    bounded(
                        what,
                        volume(&shape.iter().map(|d| (*d).max(0)).collect::<Vec<_>>())?,
                        4,
                        limits,
                    )?;
                }
            }
            "Range" => {
                if let (Some(start), Some(limit), Some(delta)) = (
                    input(0).and_then(scalar_f64),
                    input(1).and_then(scalar_f64),
                    input(2).and_then(scalar_f64),
                ) && delta != 0.0
                {
                    let count = ((limit - start) / delta).ceil().max(0.0);
                    bounded(
                        what,
                        if count.is_finite() {
                            count as u128
                        } else {
                            u128::MAX
                        },
                        4,
                        limits,
                    )?;
                }
            }
            "OneHot" => {
                if let Some(depth) = input(1).and_then(scalar_f64) {
                    bounded(
                        what,
                        if depth.is_finite() {
                            depth.max(0.0) as u128
                        } else {
                            u128::MAX
                        },
                        4,
                        limits,
                    )?;
                }
            }
            "RandomNormal" | "RandomUniform" => {
                if let Some(shape) = node.attribute.iter().find(|a| a.name == "shape") {
                    bounded(what, volume(&shape.ints)?, 4, limits)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Bounds every tensor of a type-checked model, with each symbolic dimension (the batch
/// size) set to 1: a model whose single row already needs more than the limit is refused
/// before it can be run.
pub(crate) fn check_facts(model: &TypedModel, limits: &LoadLimits) -> Result<(), ModelError> {
    let mut one_row = SymbolValues::default();
    for sym in model.symbols.all_symbols() {
        one_row.set(&sym, 1);
    }
    for node in model.nodes() {
        for output in &node.outputs {
            let fact = &output.fact;
            let mut elements = 1u128;
            for dim in fact.shape.iter() {
                // An expression tract cannot evaluate stays unbounded here; run time
                // allocations are the caller's memory limits' job.
                let Ok(d) = dim.eval_to_i64(&one_row) else {
                    continue;
                };
                elements = elements.saturating_mul(u128::try_from(d.max(0)).unwrap_or(0));
            }
            let size = fact.datum_type.size_of() as u128;
            bounded(
                || format!("output of node `{}`", node.name),
                elements,
                size,
                limits,
            )?;
        }
    }
    Ok(())
}
