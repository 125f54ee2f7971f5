//! One loaded model serves many threads at once, as it does the environments of a node.

use std::sync::Arc;

use onnx_ops::LoadedModel;
use tract_onnx::prelude::*;

use crate::fixtures::{cases, inputs};

#[test]
fn loaded_models_are_send_and_sync() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<LoadedModel>();
    shareable::<onnx_ops::ModelError>();
}

#[test]
fn concurrent_runs_give_the_same_answers_as_sequential_ones() {
    let cases: Vec<_> = cases()
        .into_iter()
        .filter(|c| {
            [
                "random_forest_classifier",
                "standard_scaler__mlp_regressor",
                "neural_conv_net",
            ]
            .contains(&c.name.as_str())
        })
        .collect();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let model = Arc::new(case.model.clone());
        let n = case.json["inputs"][0]["shape"][0].as_u64().unwrap() as usize;
        let expected: Vec<Vec<TValue>> = (0..n)
            .map(|r| model.run(inputs(&case, Some(r..r + 1))).unwrap())
            .collect();
        let per_row: Vec<Vec<TValue>> = (0..n).map(|r| inputs(&case, Some(r..r + 1))).collect();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (model, expected, per_row, name) =
                    (model.clone(), &expected, &per_row, &case.name);
                scope.spawn(move || {
                    for round in 0..25 {
                        let row = (thread * 7 + round * 3) % n;
                        let got = model.run(per_row[row].clone()).unwrap();
                        for (g, e) in got.iter().zip(&expected[row]) {
                            assert_eq!(**g, **e, "{name} row {row}");
                        }
                    }
                });
            }
        });
    }
}

#[test]
fn an_empty_batch_gives_empty_outputs() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "gradient_boosting_regressor")
        .unwrap();
    let width = case.json["inputs"][0]["shape"][1].as_u64().unwrap() as usize;
    let empty = Tensor::zero::<f32>(&[0, width]).unwrap().into_tvalue();
    let out = case.model.run(vec![empty]).unwrap();
    assert_eq!(out[0].shape(), &[0, 1]);
}
