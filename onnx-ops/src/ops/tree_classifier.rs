//! ai.onnx.ml `TreeEnsembleClassifier`, replacing tract's own parser for it.
//!
//! tract 0.23's version trusts the node ids it is given (out-of-range ids reach the
//! engine's unchecked indexing), rejects the single `base_values` entry that skl2onnx
//! writes for binary GradientBoostingClassifier, and labels binary RandomForest and
//! DecisionTree rows by an argmax over a padding column. This one validates the trees
//! (see `tree`) and follows onnxruntime's two output layouts:
//!
//! * one score column per class (three or more classes, or two classes that both get
//!   votes): label = argmax of the scores plus `base_values`, probabilities = the
//!   post-transformed scores;
//! * the binary layout (two labels, votes for class 0 only, which is how skl2onnx writes
//!   every binary tree model): the summed votes `s` are the positive class's score. With
//!   non-negative votes they are a probability: label = `s > 0.5`, probabilities
//!   `[1 - s, s]`, and onnxruntime applies no post-transform. With signed votes (boosting)
//!   they are a margin: label = `s > 0`, probabilities `[σ(-s), σ(s)]` under LOGISTIC and
//!   `[-|s|, |s|]` otherwise.
//!
//! When two classes both get votes, this follows the spec's argmax, where onnxruntime
//! would test the sign of the second score; skl2onnx does not produce such models.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::{Slice, TypedConcat};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::logic::comp_gt;
use tract_onnx::tract_core::ops::{cast::cast, math, nn};
use tract_onnx::tract_hir::internal::*;
use tract_onnx_opl::ml::DirectLookup;
use tract_onnx_opl::ml::tree::TreeEnsemble;

use super::tree::{self, PostTransform, Votes};

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Transform {
    None,
    Logistic,
    Softmax,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Layout {
    PerClass {
        /// Bits of the per-class base values (the op must be Hash + Eq).
        base_values: Option<Vec<u32>>,
        /// Classes no leaf votes for are left out of the argmax, as onnxruntime does,
        /// unless base values give every class a score.
        unvoted: Vec<bool>,
        transform: Transform,
    },
    Binary {
        base_value: u32,
        /// Votes are probabilities (RandomForest, DecisionTree) rather than margins.
        probabilities: bool,
        logistic: bool,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct TreeEnsembleClassifier {
    ensemble: TreeEnsemble,
    labels: Arc<Tensor>,
    layout: Layout,
}

/// Reads `classlabels_int64s` or `classlabels_strings` (exactly one must be present).
pub(crate) fn class_labels(node: &NodeProto, ints_attr: &str) -> TractResult<Arc<Tensor>> {
    let ints = node.get_attr_opt_slice::<i64>(ints_attr)?;
    let strings = node.get_attr_opt_tvec::<String>("classlabels_strings")?;
    match (ints, strings) {
        (Some(ints), None) => Ok(rctensor1(ints)),
        (None, Some(strings)) => Ok(rctensor1(&strings)),
        (None, None) => bail!("neither {ints_attr} nor classlabels_strings is set"),
        (Some(_), Some(_)) => bail!("both {ints_attr} and classlabels_strings are set"),
    }
}

pub(crate) fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let labels = class_labels(node, "classlabels_int64s")?;
    let n_classes = labels.len();
    node.expect(n_classes >= 2, "at least two class labels")?;
    let parsed = tree::parse(node, Votes::Class, n_classes)?;
    let base_values = node
        .get_attr_opt_vec::<f32>("base_values")?
        .unwrap_or_default();
    let post_transform = PostTransform::parse(node)?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();

    let voted: Vec<usize> = (0..n_classes).filter(|&c| parsed.voted[c]).collect();
    let layout = if n_classes == 2 && voted.len() == 1 {
        node.expect(
            voted == [0],
            "binary ensembles to vote for class 0 (the positive score), as skl2onnx writes them",
        )?;
        node.expect_attr(
            "base_values",
            base_values.len() <= 1,
            "at most one value in a binary ensemble",
        )?;
        if post_transform == PostTransform::Probit {
            bail!("post_transform PROBIT is not supported");
        }
        Layout::Binary {
            base_value: base_values.first().copied().unwrap_or(0.0).to_bits(),
            probabilities: parsed.weights_non_negative,
            logistic: post_transform == PostTransform::Logistic,
        }
    } else {
        node.expect_attr(
            "base_values",
            base_values.is_empty() || base_values.len() == n_classes,
            || {
                format!(
                    "one value per class ({n_classes}) or none, got {}",
                    base_values.len()
                )
            },
        )?;
        let transform = match post_transform {
            PostTransform::None => Transform::None,
            PostTransform::Logistic => Transform::Logistic,
            PostTransform::Softmax => Transform::Softmax,
            other => bail!("post_transform {other:?} is not supported"),
        };
        Layout::PerClass {
            unvoted: if base_values.is_empty() {
                parsed.voted.iter().map(|v| !v).collect()
            } else {
                vec![false; n_classes]
            },
            base_values: (!base_values.is_empty()).then(|| bits(&base_values)),
            transform,
        }
    };
    Ok((
        expand(TreeEnsembleClassifier {
            ensemble: parsed.ensemble,
            labels,
            layout,
        }),
        vec![],
    ))
}

/// Maps `[N]` i32 class indices to the labels tensor's values.
pub(crate) fn wire_labels(
    prefix: &str,
    model: &mut TypedModel,
    index: OutletId,
    labels: &Arc<Tensor>,
) -> TractResult<OutletId> {
    // Never used (indices come from an argmax over the labels), but required; strings have
    // no zero, which is why tract's own version cannot label with strings.
    let fallback = if labels.datum_type() == String::datum_type() {
        rctensor0(String::new())
    } else {
        Tensor::zero_dt(labels.datum_type(), &[])?.into_arc_tensor()
    };
    let lookup = DirectLookup::new(labels.clone(), fallback)?;
    Ok(model.wire_node(format!("{prefix}.labels"), lookup, &[index])?[0])
}

fn f32_const(model: &mut TypedModel, name: String, v: f32) -> TractResult<OutletId> {
    model.add_const(name, rctensor2(&[[v]]))
}

impl TreeEnsembleClassifier {
    fn wire_per_class(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        scores: OutletId,
        base_values: &Option<Vec<u32>>,
        unvoted: &[bool],
        transform: &Transform,
    ) -> TractResult<(OutletId, OutletId)> {
        let mut scores = scores;
        if let Some(base) = base_values {
            let base: Vec<f32> = base.iter().map(|b| f32::from_bits(*b)).collect();
            scores = tree::wire_add_row(format!("{prefix}.base_values"), model, scores, &base)?;
        }
        let mut ranked = scores;
        if unvoted.iter().any(|u| *u) {
            let mask: Vec<f32> = unvoted
                .iter()
                .map(|u| if *u { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            ranked = tree::wire_add_row(format!("{prefix}.mask_unvoted"), model, scores, &mask)?;
        }
        let winner = model.wire_node(
            format!("{prefix}.argmax"),
            nn::Reduce::new(tvec![1], nn::Reducer::ArgMax(false)),
            &[ranked],
        )?;
        let winner = model.wire_node(format!("{prefix}.argmax_rm_axis"), AxisOp::Rm(1), &winner)?;
        let winner = model.wire_node(
            format!("{prefix}.argmax_i32"),
            cast(i32::datum_type()),
            &winner,
        )?[0];
        let label = wire_labels(prefix, model, winner, &self.labels)?;
        let probabilities = match transform {
            Transform::None => scores,
            Transform::Logistic => {
                model.wire_node(format!("{prefix}.logistic"), nn::sigmoid(), &[scores])?[0]
            }
            Transform::Softmax => {
                let softmax = nn::Softmax {
                    axes: tvec![1],
                    ..Default::default()
                };
                model.wire_node(format!("{prefix}.softmax"), softmax, &[scores])?[0]
            }
        };
        Ok((label, probabilities))
    }

    fn wire_binary(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        scores: OutletId,
        base_value: f32,
        probabilities: bool,
        logistic: bool,
    ) -> TractResult<(OutletId, OutletId)> {
        let s = model.wire_node(format!("{prefix}.positive"), Slice::new(1, 0, 1), &[scores])?[0];
        let s = tree::wire_add_row(format!("{prefix}.base_value"), model, s, &[base_value])?;

        let threshold = f32_const(
            model,
            format!("{prefix}.threshold"),
            if probabilities { 0.5 } else { 0.0 },
        )?;
        let positive = model.wire_node(
            format!("{prefix}.is_positive"),
            TypedBinOp(comp_gt(), None),
            &[s, threshold],
        )?;
        let positive = model.wire_node(
            format!("{prefix}.is_positive_rm_axis"),
            AxisOp::Rm(1),
            &positive,
        )?;
        let index = model.wire_node(
            format!("{prefix}.is_positive_i32"),
            cast(i32::datum_type()),
            &positive,
        )?[0];
        let label = wire_labels(prefix, model, index, &self.labels)?;

        let (negative_column, positive_column) = if probabilities {
            let one = f32_const(model, format!("{prefix}.one"), 1.0)?;
            let complement =
                model.wire_node(format!("{prefix}.complement"), math::sub(), &[one, s])?[0];
            (complement, s)
        } else if logistic {
            let minus_s = model.wire_node(format!("{prefix}.neg"), math::neg(), &[s])?[0];
            let negative =
                model.wire_node(format!("{prefix}.neg_logistic"), nn::sigmoid(), &[minus_s])?[0];
            let positive = model.wire_node(format!("{prefix}.logistic"), nn::sigmoid(), &[s])?[0];
            (negative, positive)
        } else {
            let magnitude = model.wire_node(format!("{prefix}.abs"), math::abs(), &[s])?[0];
            let negative =
                model.wire_node(format!("{prefix}.neg_abs"), math::neg(), &[magnitude])?[0];
            (negative, magnitude)
        };
        let probabilities = model.wire_node(
            format!("{prefix}.binary_probabilities"),
            TypedConcat::new(1),
            &[negative_column, positive_column],
        )?[0];
        Ok((label, probabilities))
    }
}

impl Expansion for TreeEnsembleClassifier {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 2)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&outputs[0].datum_type, self.labels.datum_type())?;
        s.equals(&outputs[0].rank, 1)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[1].datum_type, f32::datum_type())?;
        s.equals(&outputs[1].rank, 2)?;
        s.equals(&outputs[1].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[1].shape[1], self.labels.len().to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let scores = tree::wire_engine(prefix, model, inputs[0], &self.ensemble)?;
        let (label, probabilities) = match &self.layout {
            Layout::PerClass {
                base_values,
                unvoted,
                transform,
            } => self.wire_per_class(prefix, model, scores, base_values, unvoted, transform)?,
            Layout::Binary {
                base_value,
                probabilities,
                logistic,
            } => self.wire_binary(
                prefix,
                model,
                scores,
                f32::from_bits(*base_value),
                *probabilities,
                *logistic,
            )?,
        };
        Ok(tvec![label, probabilities])
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;
    use tract_onnx::pb::tensor_proto::DataType;

    /// One stump on feature 0 (`x0 <= 0`): leaf 1 votes `left`, leaf 2 votes `right`,
    /// each a list of (class, weight).
    fn stump(
        labels: Attr,
        left: &[(i64, f32)],
        right: &[(i64, f32)],
        extra: &[(&str, Attr)],
    ) -> Vec<u8> {
        let votes: Vec<(i64, i64, f32)> = left
            .iter()
            .map(|(c, w)| (1, *c, *w))
            .chain(right.iter().map(|(c, w)| (2, *c, *w)))
            .collect();
        let label_attr = match labels {
            Attr::Strings(_) => "classlabels_strings",
            _ => "classlabels_int64s",
        };
        let mut attrs = vec![
            (label_attr, labels),
            ("nodes_treeids", Attr::Ints(vec![0, 0, 0])),
            ("nodes_nodeids", Attr::Ints(vec![0, 1, 2])),
            ("nodes_featureids", Attr::Ints(vec![0, 0, 0])),
            ("nodes_values", Attr::Floats(vec![0.0, 0.0, 0.0])),
            (
                "nodes_modes",
                Attr::Strings(["BRANCH_LEQ", "LEAF", "LEAF"].map(String::from).to_vec()),
            ),
            ("nodes_truenodeids", Attr::Ints(vec![1, 0, 0])),
            ("nodes_falsenodeids", Attr::Ints(vec![2, 0, 0])),
            ("class_treeids", Attr::Ints(vec![0; votes.len()])),
            (
                "class_nodeids",
                Attr::Ints(votes.iter().map(|v| v.0).collect()),
            ),
            ("class_ids", Attr::Ints(votes.iter().map(|v| v.1).collect())),
            (
                "class_weights",
                Attr::Floats(votes.iter().map(|v| v.2).collect()),
            ),
        ];
        attrs.extend(extra.iter().cloned());
        single_node(
            node("TreeEnsembleClassifier", &attrs),
            DataType::Float,
            1,
            &["label", "probabilities"],
        )
    }

    fn classify(bytes: &[u8], x: &[f32]) -> (TValue, Vec<f32>) {
        let rows: Vec<&[f32]> = x.iter().map(std::slice::from_ref).collect();
        let out = load_ok(bytes).run(vec![self::rows(&rows)]).unwrap();
        (out[0].clone(), f32s(&out[1]))
    }

    use tract_onnx::prelude::TValue;

    #[test]
    fn multiclass_takes_the_argmax_and_applies_softmax() {
        let model = stump(
            Attr::Ints(vec![10, 20, 30]),
            &[(0, 1.0), (1, 3.0), (2, 2.0)],
            &[(0, 0.5), (1, 0.0), (2, 0.0)],
            &[
                ("post_transform", Attr::Str("SOFTMAX".into())),
                ("base_values", Attr::Floats(vec![0.0, 0.0, 2.0])),
            ],
        );
        let (label, probs) = classify(&model, &[-1.0, 1.0]);
        // Row 0: scores [1, 3, 4] -> class 2; row 1: [0.5, 0, 2] -> class 2.
        assert_eq!(i64s(&label), vec![30, 30]);
        let softmax = |s: [f32; 3]| {
            let m = s.iter().cloned().fold(f32::MIN, f32::max);
            let e = s.map(|v| (v - m).exp());
            let t: f32 = e.iter().sum();
            e.map(|v| v / t)
        };
        let want: Vec<f32> = [softmax([1.0, 3.0, 4.0]), softmax([0.5, 0.0, 2.0])].concat();
        assert_close(&probs, &want);
    }

    #[test]
    fn classes_without_votes_never_win_the_argmax() {
        // Class 1 gets no vote; every voted score is negative, so a zero for class 1
        // would win a plain argmax.
        let model = stump(
            Attr::Ints(vec![0, 1, 2]),
            &[(0, -2.0), (2, -1.0)],
            &[(0, -1.0), (2, -3.0)],
            &[],
        );
        let (label, probs) = classify(&model, &[-1.0, 1.0]);
        assert_eq!(i64s(&label), vec![2, 0]);
        assert_close(&probs, &[-2.0, 0.0, -1.0, -1.0, 0.0, -3.0]);
    }

    #[test]
    fn binary_probability_votes_threshold_at_one_half() {
        // skl2onnx's RandomForest layout: class 0 carries P(positive).
        let model = stump(Attr::Ints(vec![0, 1]), &[(0, 0.3)], &[(0, 0.8)], &[]);
        let (label, probs) = classify(&model, &[-1.0, 1.0]);
        assert_eq!(i64s(&label), vec![0, 1]);
        assert_close(&probs, &[0.7, 0.3, 0.2, 0.8]);
    }

    #[test]
    fn binary_margins_go_through_the_logistic() {
        // skl2onnx's GradientBoosting layout: signed margins plus one base value.
        let model = stump(
            Attr::Strings(vec!["no".into(), "yes".into()]),
            &[(0, -0.5)],
            &[(0, 0.25)],
            &[
                ("base_values", Attr::Floats(vec![0.1])),
                ("post_transform", Attr::Str("LOGISTIC".into())),
            ],
        );
        let (label, probs) = classify(&model, &[-1.0, 1.0]);
        let labels: Vec<String> = label
            .to_plain_array_view::<String>()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert_eq!(labels, vec!["no", "yes"]);
        let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
        assert_close(
            &probs,
            &[sigmoid(0.4), sigmoid(-0.4), sigmoid(-0.35), sigmoid(0.35)],
        );
    }

    #[test]
    fn binary_margins_without_transform_are_signed_magnitudes() {
        let model = stump(Attr::Ints(vec![0, 1]), &[(0, -0.5)], &[(0, 0.25)], &[]);
        let (label, probs) = classify(&model, &[-1.0, 1.0]);
        assert_eq!(i64s(&label), vec![0, 1]);
        assert_close(&probs, &[-0.5, 0.5, -0.25, 0.25]);
    }
}
