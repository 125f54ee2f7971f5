//! ai.onnx.ml `LinearClassifier` with `classlabels_strings`, which tract 0.23 parses but
//! cannot type (it needs a zero of the label type for its lookup, and strings have none).
//! skl2onnx writes string labels for any LogisticRegression trained on string targets.
//!
//! Rather than a second linear classifier, tract's own is built with integer labels
//! 0..n, and its label output is mapped to the strings afterwards. Integer-labelled models
//! go to tract's parser untouched.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, NodeProto, attribute_proto::AttributeType};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_hir::internal::*;

use super::tree_classifier::wire_labels;

#[derive(Clone, Debug)]
struct StringLabels {
    inner: Box<dyn Expansion>,
    labels: Arc<Tensor>,
}

pub(crate) fn linear_classifier(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let stock = tract_onnx::onnx()
        .op_register
        .0
        .get("LinearClassifier")
        .copied()
        .context("tract no longer provides LinearClassifier")?;
    let Some(strings) = node.get_attr_opt_vec::<String>("classlabels_strings")? else {
        return stock(ctx, node);
    };
    node.expect(
        node.get_attr_opt_slice::<i64>("classlabels_ints")?
            .is_none(),
        "only one of classlabels_ints and classlabels_strings",
    )?;
    let mut indexed = node.clone();
    indexed
        .attribute
        .retain(|a| a.name != "classlabels_strings");
    indexed.attribute.push(pb::AttributeProto {
        name: "classlabels_ints".into(),
        r#type: AttributeType::Ints as i32,
        ints: (0..strings.len() as i64).collect(),
        ..Default::default()
    });
    let (op, closures) = stock(ctx, &indexed)?;
    // On the trait object, so the concrete op is what is downcast, not the Box around it.
    let op: &dyn InferenceOp = &*op;
    let inner = tract_onnx::tract_core::downcast_rs::Downcast::as_any(op)
        .downcast_ref::<Box<dyn Expansion>>()
        .context("tract's LinearClassifier is no longer an expansion")?
        .clone();
    Ok((
        expand(StringLabels {
            inner,
            labels: rctensor1(&strings),
        }),
        closures,
    ))
}

impl Expansion for StringLabels {
    fn name(&self) -> StaticName {
        self.inner.name()
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
        s.equals(&outputs[0].datum_type, String::datum_type())?;
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
        let outputs = self.inner.wire(prefix, model, inputs)?;
        ensure!(
            outputs.len() == 2,
            "LinearClassifier wired {} outputs",
            outputs.len()
        );
        let index = model.wire_node(
            format!("{prefix}.label_index"),
            cast(i32::datum_type()),
            &[outputs[0]],
        )?[0];
        let label = wire_labels(&format!("{prefix}.strings"), model, index, &self.labels)?;
        Ok(tvec![label, outputs[1]])
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;
    use tract_onnx::pb::tensor_proto::DataType;

    #[test]
    fn string_labels_follow_the_winning_class() {
        let op = node(
            "LinearClassifier",
            &[
                (
                    "classlabels_strings",
                    Attr::Strings(vec!["low".into(), "mid".into(), "high".into()]),
                ),
                ("coefficients", Attr::Floats(vec![-1.0, 0.0, 1.0])),
                ("intercepts", Attr::Floats(vec![0.0, 0.5, 0.0])),
                ("multi_class", Attr::Int(1)),
            ],
        );
        let model = load_ok(&single_node(op, DataType::Float, 1, &["label", "scores"]));
        let out = model.run(vec![rows(&[&[-2.0], &[0.0], &[2.0]])]).unwrap();
        let labels: Vec<String> = out[0]
            .to_plain_array_view::<String>()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert_eq!(labels, vec!["low", "mid", "high"]);
        assert_close(
            &f32s(&out[1]),
            &[2.0, 0.5, -2.0, 0.0, 0.5, 0.0, -2.0, 0.5, 2.0],
        );
    }
}
