//! ai.onnx.ml `Scaler`, `y = (x - offset) * scale` per feature: skl2onnx writes a fitted
//! StandardScaler this way. Expanded into tract's own Sub and Mul so the optimiser can
//! fuse it with what follows.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::{cast::cast, math};
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Scaler {
    /// Bits of the f32 values (the op must be Hash + Eq); one value, or one per feature.
    offset: Vec<u32>,
    scale: Vec<u32>,
}

pub(crate) fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let offset = node
        .get_attr_opt_vec::<f32>("offset")?
        .unwrap_or_else(|| vec![0.0]);
    let scale = node
        .get_attr_opt_vec::<f32>("scale")?
        .unwrap_or_else(|| vec![1.0]);
    node.expect_attr("offset", !offset.is_empty(), "at least one value")?;
    node.expect_attr("scale", !scale.is_empty(), "at least one value")?;
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect();
    Ok((
        expand(Scaler {
            offset: bits(offset),
            scale: bits(scale),
        }),
        vec![],
    ))
}

/// A constant shaped to broadcast along the last axis of a rank-`rank` input.
fn row(values: &[u32], rank: usize) -> TractResult<Tensor> {
    let mut shape = vec![1; rank];
    if let Some(last) = shape.last_mut() {
        *last = values.len();
    }
    tensor1(
        &values
            .iter()
            .map(|b| f32::from_bits(*b))
            .collect::<Vec<f32>>(),
    )
    .into_shape(&shape)
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank();
        ensure!(
            rank == 1 || rank == 2,
            "Scaler takes [N, C] or [C] inputs, got rank {rank}"
        );
        let width = fact.shape[rank - 1].as_i64();
        for (name, values) in [("offset", &self.offset), ("scale", &self.scale)] {
            ensure!(
                values.len() == 1 || width.is_none_or(|w| w == values.len() as i64),
                "Scaler {name} has {} values for {} features",
                values.len(),
                fact.shape[rank - 1]
            );
        }
        let mut x = inputs[0];
        if fact.datum_type != f32::datum_type() {
            x = model.wire_node(format!("{prefix}.to_f32"), cast(f32::datum_type()), &[x])?[0];
        }
        let offset = model.add_const(format!("{prefix}.offset"), row(&self.offset, rank)?)?;
        let scale = model.add_const(format!("{prefix}.scale"), row(&self.scale, rank)?)?;
        let centred = model.wire_node(format!("{prefix}.sub"), math::sub(), &[x, offset])?;
        model.wire_node(format!("{prefix}.mul"), math::mul(), &[centred[0], scale])
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;
    use tract_onnx::pb::tensor_proto::DataType;

    #[test]
    fn centres_and_scales_each_feature() {
        let op = node(
            "Scaler",
            &[
                ("offset", Attr::Floats(vec![1.0, -2.0])),
                ("scale", Attr::Floats(vec![0.5, 4.0])),
            ],
        );
        let model = load_ok(&single_node(op, DataType::Float, 2, &["Y"]));
        let out = model.run(vec![rows(&[&[3.0, 0.0], &[1.0, -2.5]])]).unwrap();
        assert_close(&f32s(&out[0]), &[1.0, 8.0, 0.0, -2.0]);
    }

    #[test]
    fn single_values_broadcast_and_doubles_become_f32() {
        let op = node(
            "Scaler",
            &[
                ("offset", Attr::Floats(vec![1.0])),
                ("scale", Attr::Floats(vec![2.0])),
            ],
        );
        let model = load_ok(&single_node(op, DataType::Double, 3, &["Y"]));
        let x = tract_onnx::prelude::IntoTValue::into_tvalue(tract_onnx::prelude::tensor2(&[[
            1.0f64, 2.0, 3.5,
        ]]));
        let out = model.run(vec![x]).unwrap();
        assert_close(&f32s(&out[0]), &[0.0, 2.0, 5.0]);
    }

    #[test]
    fn a_length_mismatch_is_a_load_error() {
        let op = node(
            "Scaler",
            &[
                ("offset", Attr::Floats(vec![1.0, 2.0])),
                ("scale", Attr::Floats(vec![1.0])),
            ],
        );
        let err = crate::load(
            &single_node(op, DataType::Float, 3, &["Y"]),
            &Default::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("offset has 2 values for 3 features"),
            "{err}"
        );
    }
}
