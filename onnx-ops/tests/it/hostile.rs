//! Broken and hostile models must come back as errors naming the reason, never as a
//! panic, a hang or an abort.

use onnx_ops::{LoadLimits, ModelError, load};
use prost::Message;
use tract_onnx::pb::{self, attribute_proto::AttributeType, tensor_proto::DataType};
use tract_onnx::prelude::*;

use crate::fixtures::data_dir;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(format!("{name}.onnx"))).unwrap()
}

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: d.map(Value::DimValue),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn graph_model(
    nodes: Vec<pb::NodeProto>,
    initializer: Vec<pb::TensorProto>,
    input_dims: &[Option<i64>],
) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(pb::GraphProto {
            name: "hostile".into(),
            node: nodes,
            initializer,
            input: vec![value_info("X", input_dims)],
            output: vec![value_info("Y", &[])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn op(op_type: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op_type.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn load_default(bytes: &[u8]) -> Result<onnx_ops::LoadedModel, ModelError> {
    load(bytes, &LoadLimits::default())
}

#[test]
fn truncated_models_are_malformed() {
    let bytes = fixture("random_forest_classifier");
    for cut in [1, 10, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let err = load_default(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, ModelError::Malformed(_)),
            "cut at {cut}: {err}"
        );
    }
    assert!(matches!(
        load_default(&[]).unwrap_err(),
        ModelError::Malformed(_)
    ));
}

#[test]
fn random_bytes_are_refused() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let len = (rng.next() % 4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        match load_default(&bytes) {
            Err(ModelError::Panicked { .. }) => panic!("round {round}: tract panicked"),
            Err(_) => {}
            Ok(_) => panic!("round {round}: {len} random bytes loaded as a model"),
        }
    }
}

/// Corrupting bytes of real tree and neural models reaches deeper than random bytes: most
/// still decode, and then tree ids, shapes and attributes are wrong in every way.
#[test]
fn corrupted_models_never_panic_or_hang() {
    let mut rng = XorShift(42);
    for name in [
        "random_forest_regressor",
        "gradient_boosting_classifier_binary",
        "neural_conv_net",
    ] {
        let original = fixture(name);
        for round in 0..150 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % bytes.len();
                bytes[at] = rng.next() as u8;
            }
            match load_default(&bytes) {
                Err(ModelError::Panicked { stage, message }) => {
                    panic!("{name} round {round}: tract panicked while {stage}: {message}")
                }
                Err(_) => {}
                Ok(model) => {
                    // Whatever loaded must run or refuse to, without panicking.
                    let input = model.inputs()[0].clone();
                    let dims: Vec<usize> = input
                        .shape
                        .iter()
                        .map(|d| match d {
                            onnx_ops::Dim::Fixed(n) => *n,
                            onnx_ops::Dim::Symbolic(_) => 2,
                        })
                        .collect();
                    if input.datum_type != DatumType::F32
                        || dims.iter().product::<usize>() > 1 << 20
                    {
                        continue;
                    }
                    let x = Tensor::zero::<f32>(&dims).unwrap().into_tvalue();
                    if let Err(ModelError::Panicked { message, .. }) = model.run(vec![x]) {
                        panic!("{name} round {round}: tract panicked while running: {message}");
                    }
                }
            }
        }
    }
}

#[test]
fn models_over_the_size_limit_are_refused_before_parsing() {
    let bytes = fixture("random_forest_regressor");
    let limits = LoadLimits {
        max_model_bytes: 1000,
        ..LoadLimits::default()
    };
    match load(&bytes, &limits) {
        Err(ModelError::TooLarge { size, limit: 1000 }) => assert_eq!(size, bytes.len()),
        other => panic!("{other:?}"),
    }
    // The same bytes under the default limit load fine.
    assert!(load_default(&bytes).is_ok());
}

#[test]
fn models_over_the_node_limit_are_refused() {
    let bytes = fixture("neural_conv_net");
    let limits = LoadLimits {
        max_nodes: 3,
        ..LoadLimits::default()
    };
    match load(&bytes, &limits) {
        Err(ModelError::TooManyNodes { count: 6, limit: 3 }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn huge_declared_input_dimensions_are_refused() {
    let bytes = graph_model(
        vec![op("Relu", &["X"], "Y")],
        vec![],
        &[None, Some(1 << 40)],
    );
    let err = load_default(&bytes).unwrap_err();
    assert!(matches!(err, ModelError::TensorTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("`X`"), "{err}");
}

#[test]
fn huge_tensors_without_data_are_refused() {
    let weight = pb::TensorProto {
        name: "W".into(),
        dims: vec![1 << 40, 1 << 40],
        data_type: DataType::Float as i32,
        ..Default::default()
    };
    let bytes = graph_model(
        vec![op("Add", &["X", "W"], "Y")],
        vec![weight],
        &[None, Some(4)],
    );
    let err = load_default(&bytes).unwrap_err();
    assert!(matches!(err, ModelError::TensorTooLarge { .. }), "{err}");
}

#[test]
fn constant_shapes_asking_for_terabytes_are_refused() {
    // ConstantOfShape would be evaluated while tract type-checks the graph.
    let nodes = vec![
        op("ConstantOfShape", &["shape"], "big"),
        op("Add", &["X", "big"], "Y"),
    ];
    let bytes = graph_model(
        nodes,
        vec![ints("shape", &[100_000, 100_000, 100_000])],
        &[None, Some(4)],
    );
    let err = load_default(&bytes).unwrap_err();
    assert!(matches!(err, ModelError::TensorTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("ConstantOfShape"), "{err}");
}

#[test]
fn computed_shapes_asking_for_terabytes_are_refused() {
    // The shape is only known once tract folds the Concat, so the static check cannot see
    // it: tract's own budget for folded constants or the check of typed facts must.
    let nodes = vec![
        op("Concat", &["a", "b"], "shape"),
        op("ConstantOfShape", &["shape"], "big"),
        op("Add", &["X", "big"], "Y"),
    ];
    let mut concat = nodes;
    concat[0].attribute.push(pb::AttributeProto {
        name: "axis".into(),
        r#type: AttributeType::Int as i32,
        i: 0,
        ..Default::default()
    });
    let bytes = graph_model(
        concat,
        vec![ints("a", &[1 << 20, 1 << 20]), ints("b", &[1 << 20])],
        &[None, Some(4)],
    );
    match load_default(&bytes) {
        Err(
            ModelError::TensorTooLarge { .. }
            | ModelError::Invalid(_)
            | ModelError::Panicked { .. },
        ) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_batch_expanded_to_gigabytes_per_row_is_refused() {
    // Expand's target shape comes from the input at run time, but one row of it is
    // already known to be 4 GB once typed.
    let nodes = vec![
        op("Shape", &["X"], "xs"),
        op("Concat", &["xs", "wide"], "shape"),
        op("Expand", &["X", "shape"], "Y"),
    ];
    let mut nodes = nodes;
    nodes[1].attribute.push(pb::AttributeProto {
        name: "axis".into(),
        r#type: AttributeType::Int as i32,
        i: 0,
        ..Default::default()
    });
    let bytes = graph_model(nodes, vec![ints("wide", &[1 << 30])], &[None, Some(1)]);
    match load_default(&bytes) {
        Err(ModelError::TensorTooLarge { .. } | ModelError::Invalid(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn unsupported_operators_are_named() {
    let mut svm = op("SVMClassifier", &["X"], "Y");
    svm.domain = "ai.onnx.ml".into();
    let mut custom = op("FusedThing", &["Y"], "Z");
    custom.domain = "com.example".into();
    let bytes = graph_model(vec![svm, custom], vec![], &[None, Some(4)]);
    match load_default(&bytes) {
        Err(ModelError::UnsupportedOperators(ops)) => {
            assert_eq!(
                ops,
                vec![
                    "ai.onnx.ml:SVMClassifier".to_string(),
                    "com.example:FusedThing".to_string()
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn external_data_is_never_read() {
    let weight = pb::TensorProto {
        name: "W".into(),
        dims: vec![4],
        data_type: DataType::Float as i32,
        data_location: Some(pb::tensor_proto::DataLocation::External as i32),
        external_data: vec![pb::StringStringEntryProto {
            key: "location".into(),
            value: "/etc/passwd".into(),
        }],
        ..Default::default()
    };
    let bytes = graph_model(
        vec![op("Add", &["X", "W"], "Y")],
        vec![weight],
        &[None, Some(4)],
    );
    let err = load_default(&bytes).unwrap_err();
    assert!(matches!(err, ModelError::Invalid(_)), "{err}");
}

#[test]
fn a_graph_without_input_types_is_invalid_not_a_panic() {
    let mut bytes = pb::ModelProto::decode(&fixture("linear_regression")[..]).unwrap();
    bytes.graph.as_mut().unwrap().input[0].r#type = None;
    let err = load_default(&bytes.encode_to_vec()).unwrap_err();
    assert!(matches!(err, ModelError::Invalid(_)), "{err}");
}

#[test]
fn bad_inputs_are_the_callers_fault() {
    let model = load_default(&fixture("linear_regression")).unwrap();
    let wrong_width = Tensor::zero::<f32>(&[2, 3]).unwrap().into_tvalue();
    assert!(matches!(
        model.run(vec![wrong_width]),
        Err(ModelError::BadInput(_))
    ));
    let wrong_type = Tensor::zero::<f64>(&[2, 10]).unwrap().into_tvalue();
    assert!(matches!(
        model.run(vec![wrong_type]),
        Err(ModelError::BadInput(_))
    ));
    assert!(matches!(model.run(vec![]), Err(ModelError::BadInput(_))));
    let err = model
        .run(vec![Tensor::zero::<f32>(&[10]).unwrap().into_tvalue()])
        .unwrap_err();
    assert!(err.to_string().contains("rank"), "{err}");
}
