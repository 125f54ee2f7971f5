//! ai.onnx.ml `Binarizer`: 1 where `x > threshold`, else 0, in the input's type (NaN
//! gives 0, as a comparison with NaN is false).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::logic::{Iff, comp_gt};
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Binarizer {
    /// Bits of the f32 threshold (the op must be Hash + Eq).
    threshold: u32,
}

pub(crate) fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold = node.get_attr_opt::<f32>("threshold")?.unwrap_or(0.0);
    Ok((
        expand(Binarizer {
            threshold: threshold.to_bits(),
        }),
        vec![],
    ))
}

/// A scalar of `dt`, reshaped to broadcast against a rank-`rank` tensor.
pub(crate) fn broadcast_scalar(value: f32, dt: DatumType, rank: usize) -> TractResult<Tensor> {
    tensor0(value)
        .cast_to_dt(dt)?
        .into_owned()
        .into_shape(&vec![1; rank])
}

impl Expansion for Binarizer {
    fn name(&self) -> StaticName {
        "Binarizer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        let dt = fact.datum_type;
        ensure!(
            dt.is_float() || dt.is_integer(),
            "Binarizer takes numbers, got {dt:?}"
        );
        let rank = fact.rank();
        // Compared in the input's type, as onnxruntime does: an integer input meets a
        // truncated threshold.
        let threshold = broadcast_scalar(f32::from_bits(self.threshold), dt, rank)?;
        let threshold = model.add_const(format!("{prefix}.threshold"), threshold)?;
        let one = model.add_const(format!("{prefix}.one"), broadcast_scalar(1.0, dt, rank)?)?;
        let zero = model.add_const(format!("{prefix}.zero"), broadcast_scalar(0.0, dt, rank)?)?;
        let above = model.wire_node(
            format!("{prefix}.above"),
            TypedBinOp(comp_gt(), None),
            &[inputs[0], threshold],
        )?;
        model.wire_node(format!("{prefix}.select"), Iff, &[above[0], one, zero])
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;
    use tract_onnx::pb::tensor_proto::DataType;

    #[test]
    fn ones_strictly_above_the_threshold() {
        let op = node("Binarizer", &[("threshold", Attr::Float(0.5))]);
        let model = load_ok(&single_node(op, DataType::Float, 4, &["Y"]));
        let out = model
            .run(vec![rows(&[&[0.4, 0.5, 0.6, f32::NAN]])])
            .unwrap();
        assert_close(&f32s(&out[0]), &[0.0, 0.0, 1.0, 0.0]);
    }
}
