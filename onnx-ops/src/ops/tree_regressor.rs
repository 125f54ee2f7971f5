//! ai.onnx.ml `TreeEnsembleRegressor`: what skl2onnx emits for DecisionTreeRegressor,
//! RandomForestRegressor and GradientBoostingRegressor. tract 0.23 has no parser for it;
//! this one feeds tract-onnx-opl's tree engine and reproduces onnxruntime's aggregation.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::{math, nn};
use tract_onnx::tract_hir::internal::*;
use tract_onnx_opl::ml::tree::TreeEnsemble;

use super::tree::{self, PostTransform, Votes};

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Aggregation {
    Sum,
    /// onnxruntime divides the sum by the number of trees, not by the votes cast.
    Average {
        n_trees: usize,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Transform {
    None,
    Logistic,
    Softmax,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TreeEnsembleRegressor {
    ensemble: TreeEnsemble,
    aggregation: Aggregation,
    /// One per target, added after aggregation.
    base_values: Option<Vec<u32>>,
    transform: Transform,
}

pub(crate) fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let n_targets: usize = node.get_attr("n_targets")?;
    // The output is N x n_targets wide, so a huge n_targets is a huge allocation per row.
    // A target no leaf votes for carries no information, so the vote count bounds it.
    let n_votes = node.get_attr_slice::<i64>("target_ids")?.len();
    node.expect_attr("n_targets", n_targets >= 1 && n_targets <= n_votes, || {
        format!("between 1 and the number of leaf votes ({n_votes}), got {n_targets}")
    })?;
    let parsed = tree::parse(node, Votes::Target, n_targets)?;

    let aggregation = match node
        .get_attr_opt::<&str>("aggregate_function")?
        .unwrap_or("SUM")
    {
        "SUM" => Aggregation::Sum,
        "AVERAGE" => Aggregation::Average {
            n_trees: parsed.n_trees,
        },
        // The engine starts MIN/MAX from 0 where onnxruntime starts from the first vote,
        // so they would be silently wrong; skl2onnx never emits them.
        other => bail!("aggregate_function {other} is not supported (SUM and AVERAGE are)"),
    };

    let base_values = node.get_attr_opt_vec::<f32>("base_values")?;
    if let Some(base) = &base_values {
        node.expect_attr("base_values", base.len() == n_targets, || {
            format!("one value per target ({n_targets}), got {}", base.len())
        })?;
    }

    // onnxruntime ignores every transform but PROBIT for a single target, and applies
    // them to the row of scores otherwise.
    let transform = match (PostTransform::parse(node)?, n_targets) {
        (PostTransform::Probit, _) => bail!("post_transform PROBIT is not supported"),
        (_, 1) | (PostTransform::None, _) => Transform::None,
        (PostTransform::Logistic, _) => Transform::Logistic,
        (PostTransform::Softmax, _) => Transform::Softmax,
        (PostTransform::SoftmaxZero, _) => bail!("post_transform SOFTMAX_ZERO is not supported"),
    };

    Ok((
        expand(TreeEnsembleRegressor {
            ensemble: parsed.ensemble,
            aggregation,
            // Stored as bits: the op must be Hash + Eq, which f32 is not.
            base_values: base_values.map(|b| b.iter().map(|v| v.to_bits()).collect()),
            transform,
        }),
        vec![],
    ))
}

impl Expansion for TreeEnsembleRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.ensemble.n_classes().to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut y = tree::wire_engine(prefix, model, inputs[0], &self.ensemble)?;
        if let Aggregation::Average { n_trees } = self.aggregation {
            let n = model.add_const(format!("{prefix}.n_trees"), rctensor2(&[[n_trees as f32]]))?;
            y = model.wire_node(format!("{prefix}.average"), math::div(), &[y, n])?[0];
        }
        if let Some(base) = &self.base_values {
            let base: Vec<f32> = base.iter().map(|b| f32::from_bits(*b)).collect();
            y = tree::wire_add_row(format!("{prefix}.base_values"), model, y, &base)?;
        }
        match self.transform {
            Transform::None => {}
            Transform::Logistic => {
                y = model.wire_node(format!("{prefix}.logistic"), nn::sigmoid(), &[y])?[0];
            }
            Transform::Softmax => {
                let softmax = nn::Softmax {
                    axes: tvec![1],
                    ..Default::default()
                };
                y = model.wire_node(format!("{prefix}.softmax"), softmax, &[y])?[0];
            }
        }
        Ok(tvec![y])
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;
    use tract_onnx::pb::tensor_proto::DataType;

    /// Two stumps on feature 1 (`x1 <= 0.5`), two targets, with `extra` attributes.
    fn forest(extra: &[(&str, Attr)]) -> Vec<u8> {
        let mut attrs = vec![
            ("n_targets", Attr::Int(2)),
            ("nodes_treeids", Attr::Ints(vec![0, 0, 0, 1, 1, 1])),
            ("nodes_nodeids", Attr::Ints(vec![0, 1, 2, 0, 1, 2])),
            ("nodes_featureids", Attr::Ints(vec![1, 0, 0, 1, 0, 0])),
            (
                "nodes_values",
                Attr::Floats(vec![0.5, 0.0, 0.0, 0.5, 0.0, 0.0]),
            ),
            (
                "nodes_modes",
                Attr::Strings(
                    ["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_GTE", "LEAF", "LEAF"]
                        .map(String::from)
                        .to_vec(),
                ),
            ),
            ("nodes_truenodeids", Attr::Ints(vec![1, 0, 0, 1, 0, 0])),
            ("nodes_falsenodeids", Attr::Ints(vec![2, 0, 0, 2, 0, 0])),
            ("target_treeids", Attr::Ints(vec![0, 0, 0, 1, 1])),
            ("target_nodeids", Attr::Ints(vec![1, 2, 2, 1, 2])),
            ("target_ids", Attr::Ints(vec![0, 0, 1, 0, 1])),
            (
                "target_weights",
                Attr::Floats(vec![1.0, 10.0, 100.0, 1000.0, 10000.0]),
            ),
        ];
        for (name, value) in extra {
            match attrs.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value.clone(),
                None => attrs.push((name, value.clone())),
            }
        }
        single_node(
            node("TreeEnsembleRegressor", &attrs),
            DataType::Float,
            2,
            &["Y"],
        )
    }

    fn predict(bytes: &[u8], x: &[&[f32]]) -> Vec<f32> {
        f32s(&load_ok(bytes).run(vec![rows(x)]).unwrap()[0])
    }

    #[test]
    fn sums_the_votes_of_every_tree() {
        // Tree 0 (x1 <= 0.5): leaf 1 gives t0 += 1; leaf 2 gives t0 += 10, t1 += 100.
        // Tree 1 (x1 >= 0.5): leaf 1 gives t0 += 1000; leaf 2 gives t1 += 10000.
        let got = predict(&forest(&[]), &[&[9.0, 0.0], &[9.0, 1.0], &[9.0, 0.5]]);
        assert_close(&got, &[1.0, 10000.0, 1010.0, 100.0, 1001.0, 0.0]);
    }

    #[test]
    fn averages_over_trees_then_adds_base_values() {
        let extra = [
            ("aggregate_function", Attr::Str("AVERAGE".into())),
            ("base_values", Attr::Floats(vec![0.25, -0.25])),
        ];
        let got = predict(&forest(&extra), &[&[9.0, 0.0]]);
        assert_close(&got, &[1.0 / 2.0 + 0.25, 10000.0 / 2.0 - 0.25]);
    }

    #[test]
    fn nan_follows_the_missing_value_flag() {
        let extra = [(
            "nodes_missing_value_tracks_true",
            Attr::Ints(vec![1, 0, 0, 0, 0, 0]),
        )];
        // Tree 0 sends NaN to its true leaf (flag set); tree 1 is a `>=`, so NaN goes to
        // its false leaf unless flagged.
        let got = predict(&forest(&extra), &[&[0.0, f32::NAN]]);
        assert_close(&got, &[1.0, 10000.0]);
    }

    #[test]
    fn softmax_applies_across_targets() {
        let extra = [
            ("post_transform", Attr::Str("SOFTMAX".into())),
            (
                "target_weights",
                Attr::Floats(vec![1.0, 10.0, 100.0, 2.0, 3.0]),
            ),
        ];
        // Raw scores [1, 3] for this row.
        let got = predict(&forest(&extra), &[&[9.0, 0.0]]);
        let (e1, e3) = ((1.0f32 - 3.0).exp(), 1.0f32);
        assert_close(&got, &[e1 / (e1 + e3), e3 / (e1 + e3)]);
    }

    #[test]
    fn unsupported_aggregates_and_inconsistent_base_values_are_load_errors() {
        use crate::{LoadLimits, load};
        let max = forest(&[("aggregate_function", Attr::Str("MAX".into()))]);
        let err = load(&max, &LoadLimits::default()).unwrap_err().to_string();
        assert!(err.contains("aggregate_function MAX"), "{err}");
        let base = forest(&[("base_values", Attr::Floats(vec![1.0]))]);
        let err = load(&base, &LoadLimits::default()).unwrap_err().to_string();
        assert!(err.contains("base_values"), "{err}");
        let wide = forest(&[("n_targets", Attr::Int(1 << 40))]);
        let err = load(&wide, &LoadLimits::default()).unwrap_err().to_string();
        assert!(err.contains("n_targets"), "{err}");
    }

    #[test]
    fn a_model_testing_a_missing_feature_is_a_load_error() {
        use crate::{LoadLimits, load};
        let attrs = [("nodes_featureids", Attr::Ints(vec![7, 0, 0, 1, 0, 0]))];
        let err = load(&forest(&attrs), &LoadLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("feature"), "{err}");
    }
}
