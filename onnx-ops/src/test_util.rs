//! Builds tiny one-operator ONNX models in memory, so each operator's arithmetic can be
//! checked on hand-computed cases through the same `load` path real models take.

use prost::Message;
use tract_onnx::pb::{self, attribute_proto::AttributeType, tensor_proto::DataType};
use tract_onnx::prelude::*;

use crate::{LoadLimits, LoadedModel, load};

#[derive(Clone, Debug)]
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Floats(Vec<f32>),
    Str(String),
    Strings(Vec<String>),
}

pub(crate) fn attr(name: &str, value: Attr) -> pb::AttributeProto {
    let mut a = pb::AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    let ty = match value {
        Attr::Int(i) => {
            a.i = i;
            AttributeType::Int
        }
        Attr::Ints(v) => {
            a.ints = v;
            AttributeType::Ints
        }
        Attr::Float(f) => {
            a.f = f;
            AttributeType::Float
        }
        Attr::Floats(v) => {
            a.floats = v;
            AttributeType::Floats
        }
        Attr::Str(s) => {
            a.s = s.into_bytes();
            AttributeType::String
        }
        Attr::Strings(v) => {
            a.strings = v.into_iter().map(String::into_bytes).collect();
            AttributeType::Strings
        }
    };
    a.r#type = ty as i32;
    a
}

pub(crate) fn node(op_type: &str, attrs: &[(&str, Attr)]) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op_type.to_string(),
        domain: "ai.onnx.ml".to_string(),
        name: format!("{op_type}_0"),
        attribute: attrs.iter().map(|(n, v)| attr(n, v.clone())).collect(),
        ..Default::default()
    }
}

/// A dimension of a graph input or output: `None` is a batch dimension with no value, the
/// way skl2onnx writes `[None, n_features]`.
pub(crate) fn value_info(name: &str, dt: DataType, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: d.map(Value::DimValue),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: dt as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn model_bytes(
    nodes: Vec<pb::NodeProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    initializers: Vec<pb::TensorProto>,
) -> Vec<u8> {
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![
            pb::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            },
            pb::OperatorSetIdProto {
                domain: "ai.onnx.ml".to_string(),
                version: 3,
            },
        ],
        graph: Some(pb::GraphProto {
            name: "test".to_string(),
            node: nodes,
            input: inputs,
            output: outputs,
            initializer: initializers,
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// One ai.onnx.ml node reading `X` (`[N, features]` of `dt`) and writing `outputs`.
pub(crate) fn single_node(
    mut op: pb::NodeProto,
    dt: DataType,
    features: i64,
    outputs: &[&str],
) -> Vec<u8> {
    op.input = vec!["X".to_string()];
    op.output = outputs.iter().map(|s| s.to_string()).collect();
    let outs = outputs
        .iter()
        .map(|o| value_info(o, DataType::Float, &[]))
        .collect();
    model_bytes(
        vec![op],
        vec![value_info("X", dt, &[None, Some(features)])],
        outs,
        vec![],
    )
}

pub(crate) fn load_ok(bytes: &[u8]) -> LoadedModel {
    match load(bytes, &LoadLimits::default()) {
        Ok(model) => model,
        Err(e) => panic!("model failed to load: {e}"),
    }
}

pub(crate) fn rows(data: &[&[f32]]) -> TValue {
    let width = data.first().map_or(0, |r| r.len());
    let flat: Vec<f32> = data.iter().flat_map(|r| r.iter().copied()).collect();
    tract_ndarray::Array2::from_shape_vec((data.len(), width), flat)
        .unwrap()
        .into_tvalue()
}

pub(crate) fn f32s(value: &TValue) -> Vec<f32> {
    value
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

pub(crate) fn i64s(value: &TValue) -> Vec<i64> {
    value
        .to_plain_array_view::<i64>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

pub(crate) fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "got {got:?}, want {want:?}"
        );
    }
}
