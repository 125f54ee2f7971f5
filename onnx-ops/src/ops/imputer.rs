//! ai.onnx.ml `Imputer`: replaces a sentinel value (NaN by default in skl2onnx's
//! SimpleImputer export) with a per-feature fill value.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::logic::{Iff, comp_eq, comp_ne};
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Values {
    /// Bits of the f32 values (the op must be Hash + Eq).
    Floats {
        fill: Vec<u32>,
        replaced: u32,
    },
    Ints {
        fill: Vec<i64>,
        replaced: i64,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Imputer {
    values: Values,
}

pub(crate) fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let floats = node.get_attr_opt_vec::<f32>("imputed_value_floats")?;
    let ints = node.get_attr_opt_vec::<i64>("imputed_value_int64s")?;
    let values = match (floats, ints) {
        (Some(fill), None) => {
            let replaced = node
                .get_attr_opt::<f32>("replaced_value_float")?
                .unwrap_or(0.0);
            Values::Floats {
                fill: fill.into_iter().map(f32::to_bits).collect(),
                replaced: replaced.to_bits(),
            }
        }
        (None, Some(fill)) => Values::Ints {
            fill,
            replaced: node
                .get_attr_opt::<i64>("replaced_value_int64")?
                .unwrap_or(0),
        },
        _ => bail!("exactly one of imputed_value_floats and imputed_value_int64s must be set"),
    };
    let len = match &values {
        Values::Floats { fill, .. } => fill.len(),
        Values::Ints { fill, .. } => fill.len(),
    };
    node.expect(len > 0, "at least one imputed value")?;
    Ok((expand(Imputer { values }), vec![]))
}

impl Imputer {
    fn dt(&self) -> DatumType {
        match self.values {
            Values::Floats { .. } => f32::datum_type(),
            Values::Ints { .. } => i64::datum_type(),
        }
    }
}

fn shaped(t: Tensor, rank: usize) -> TractResult<Tensor> {
    let mut shape = vec![1; rank];
    if let Some(last) = shape.last_mut() {
        *last = t.len();
    }
    t.into_shape(&shape)
}

impl Expansion for Imputer {
    fn name(&self) -> StaticName {
        "Imputer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, self.dt())?;
        s.equals(&outputs[0].datum_type, self.dt())?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = inputs[0];
        let fact = model.outlet_fact(x)?.clone();
        let rank = fact.rank();
        ensure!(rank >= 1, "Imputer takes [N, C] or [C] inputs");
        let (fill, missing) = match &self.values {
            Values::Floats { fill, replaced } => {
                let fill: Vec<f32> = fill.iter().map(|b| f32::from_bits(*b)).collect();
                let replaced = f32::from_bits(*replaced);
                let missing = if replaced.is_nan() {
                    // NaN is the only value that differs from itself.
                    model.wire_node(
                        format!("{prefix}.is_nan"),
                        TypedBinOp(comp_ne(), None),
                        &[x, x],
                    )?[0]
                } else {
                    let r = model.add_const(
                        format!("{prefix}.replaced"),
                        shaped(tensor1(&[replaced]), rank)?,
                    )?;
                    model.wire_node(
                        format!("{prefix}.is_missing"),
                        TypedBinOp(comp_eq(), None),
                        &[x, r],
                    )?[0]
                };
                (tensor1(&fill), missing)
            }
            Values::Ints { fill, replaced } => {
                let r = model.add_const(
                    format!("{prefix}.replaced"),
                    shaped(tensor1(&[*replaced]), rank)?,
                )?;
                let missing = model.wire_node(
                    format!("{prefix}.is_missing"),
                    TypedBinOp(comp_eq(), None),
                    &[x, r],
                )?[0];
                (tensor1(fill), missing)
            }
        };
        let width = fact.shape[rank - 1].as_i64();
        ensure!(
            fill.len() == 1 || width.is_none_or(|w| w == fill.len() as i64),
            "Imputer has {} fill values for {} features",
            fill.len(),
            fact.shape[rank - 1]
        );
        let fill = model.add_const(format!("{prefix}.fill"), shaped(fill, rank)?)?;
        model.wire_node(format!("{prefix}.select"), Iff, &[missing, fill, x])
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;
    use tract_onnx::pb::tensor_proto::DataType;

    #[test]
    fn fills_nan_per_feature() {
        let op = node(
            "Imputer",
            &[
                ("imputed_value_floats", Attr::Floats(vec![10.0, 20.0])),
                ("replaced_value_float", Attr::Float(f32::NAN)),
            ],
        );
        let model = load_ok(&single_node(op, DataType::Float, 2, &["Y"]));
        let out = model
            .run(vec![rows(&[&[f32::NAN, 1.0], &[2.0, f32::NAN]])])
            .unwrap();
        assert_close(&f32s(&out[0]), &[10.0, 1.0, 2.0, 20.0]);
    }

    #[test]
    fn fills_a_sentinel_integer() {
        let op = node(
            "Imputer",
            &[
                ("imputed_value_int64s", Attr::Ints(vec![7])),
                ("replaced_value_int64", Attr::Int(-1)),
            ],
        );
        let model = load_ok(&single_node(op, DataType::Int64, 3, &["Y"]));
        let x = tract_onnx::prelude::IntoTValue::into_tvalue(tract_onnx::prelude::tensor2(&[[
            -1i64, 5, -1,
        ]]));
        let out = model.run(vec![x]).unwrap();
        assert_eq!(i64s(&out[0]), vec![7, 5, 7]);
    }
}
