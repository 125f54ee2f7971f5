//! ai.onnx.ml `ZipMap`, which skl2onnx puts after every classifier by default.
//!
//! ZipMap turns the `[N, C]` probability matrix into a sequence of N `{label: probability}`
//! maps. tract has no map or sequence values, so here it is the identity on the matrix:
//! the output keeps its ONNX name (`output_probability`) and column `j` is the probability
//! of the `j`-th label in ZipMap's `classlabels_*` attribute, which
//! `LoadedModel::class_labels` exposes so callers can build the maps themselves.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::tree_classifier::class_labels;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ZipMap {
    n_labels: usize,
}

pub(crate) fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let labels = class_labels(node, "classlabels_int64s")?;
    Ok((
        expand(ZipMap {
            n_labels: labels.len(),
        }),
        vec![],
    ))
}

impl Expansion for ZipMap {
    fn name(&self) -> StaticName {
        "ZipMap".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        // A label without a column (or the reverse) would make the maps meaningless.
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[0].shape[1], self.n_labels.to_dim())?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        _prefix: &str,
        _model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        Ok(inputs.into())
    }
}

#[cfg(test)]
mod tests {
    use crate::ClassLabels;
    use crate::test_util::*;
    use tract_onnx::pb::tensor_proto::DataType;

    fn zipmap(labels: Vec<String>) -> Vec<u8> {
        let op = node("ZipMap", &[("classlabels_strings", Attr::Strings(labels))]);
        single_node(op, DataType::Float, 2, &["output_probability"])
    }

    #[test]
    fn passes_probabilities_through_and_exposes_labels() {
        let model = load_ok(&zipmap(vec!["cat".into(), "dog".into()]));
        let out = model.run(vec![rows(&[&[0.25, 0.75]])]).unwrap();
        assert_close(&f32s(&out[0]), &[0.25, 0.75]);
        assert_eq!(model.outputs()[0].name, "output_probability");
        assert_eq!(
            model.class_labels(),
            Some(&ClassLabels::Strings(vec!["cat".into(), "dog".into()]))
        );
    }

    #[test]
    fn a_label_count_that_does_not_match_the_columns_is_a_load_error() {
        let bytes = zipmap(vec!["a".into(), "b".into(), "c".into()]);
        assert!(crate::load(&bytes, &Default::default()).is_err());
    }
}
