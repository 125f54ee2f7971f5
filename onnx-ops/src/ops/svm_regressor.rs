//! ai.onnx.ml `SVMRegressor`: skl2onnx's export of SVR, NuSVR and OneClassSVM (whose
//! decision scores go through a Sign afterwards).
//!
//! Expanded into tract's own matrix products and element-wise ops. As in onnxruntime:
//! with support vectors, `y = Σ_j coef_j · K(x, sv_j) + rho`, where K is LINEAR `x·sv`,
//! POLY `(γ x·sv + c0)^d`, SIGMOID `tanh(γ x·sv + c0)` or RBF `exp(-γ |x - sv|²)` (summed
//! as squared differences, not expanded, so near-identical vectors keep their precision);
//! without, `y = x·coef + rho`. `one_class` maps scores to ±1. onnxruntime ignores
//! `post_transform` for this operator, and so does this one.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::logic::{Iff, comp_gt};
use tract_onnx::tract_core::ops::{math, nn};
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Kernel {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

#[derive(Clone, Debug)]
struct SvmRegressor {
    kernel: Kernel,
    gamma: f32,
    coef0: f32,
    degree: f32,
    /// `[F, S]`, transposed so the kernel is a plain matrix product; `None` for the
    /// linear form, where the coefficients are the weights.
    support_vectors: Option<Arc<Tensor>>,
    /// `[S, 1]`, or `[F, 1]` in the linear form.
    coefficients: Arc<Tensor>,
    rho: f32,
    one_class: bool,
    features: usize,
}

pub(crate) fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let n_supports: usize = node.get_attr_opt("n_supports")?.unwrap_or(0);
    let coefficients = node.get_attr_vec::<f32>("coefficients")?;
    node.expect_attr(
        "coefficients",
        !coefficients.is_empty(),
        "at least one value",
    )?;
    let rho = node.get_attr_vec::<f32>("rho")?;
    let rho = *rho.first().context("rho needs a value")?;
    let one_class = node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0;

    let kernel = match node
        .get_attr_opt::<&str>("kernel_type")?
        .unwrap_or("LINEAR")
    {
        "LINEAR" => Kernel::Linear,
        "POLY" => Kernel::Poly,
        "RBF" => Kernel::Rbf,
        "SIGMOID" => Kernel::Sigmoid,
        other => bail!("unknown kernel_type {other:?}"),
    };
    let params = node
        .get_attr_opt_vec::<f32>("kernel_params")?
        .unwrap_or_default();
    node.expect_attr(
        "kernel_params",
        params.is_empty() || params.len() >= 3,
        "gamma, coef0 and degree",
    )?;
    let param = |ix: usize| params.get(ix).copied().unwrap_or(0.0);

    let (support_vectors, features, kernel) = if n_supports > 0 {
        let sv = node.get_attr_vec::<f32>("support_vectors")?;
        node.expect_attr(
            "support_vectors",
            !sv.is_empty() && sv.len().is_multiple_of(n_supports),
            || {
                format!(
                    "n_supports ({n_supports}) vectors of equal length, got {} values",
                    sv.len()
                )
            },
        )?;
        node.expect_attr("coefficients", coefficients.len() == n_supports, || {
            format!(
                "one per support vector ({n_supports}), got {}",
                coefficients.len()
            )
        })?;
        let features = sv.len() / n_supports;
        let sv = tensor1(&sv)
            .into_shape(&[n_supports, features])?
            .permute_axes(&[1, 0])?;
        (Some(sv.into_arc_tensor()), features, kernel)
    } else {
        (None, coefficients.len(), Kernel::Linear)
    };
    let rows = coefficients.len();
    Ok((
        expand(SvmRegressor {
            kernel,
            gamma: param(0),
            coef0: param(1),
            degree: param(2),
            support_vectors,
            coefficients: tensor1(&coefficients)
                .into_shape(&[rows, 1])?
                .into_arc_tensor(),
            rho,
            one_class,
            features,
        }),
        vec![],
    ))
}

fn scalar(model: &mut TypedModel, name: String, v: f32) -> TractResult<OutletId> {
    model.add_const(name, rctensor2(&[[v]]))
}

fn matmul(
    prefix: String,
    model: &mut TypedModel,
    a: OutletId,
    b: OutletId,
) -> TractResult<OutletId> {
    let axes = AxesMapping::for_numpy_matmul(2, false, false, false)?;
    Ok(model.wire_node(prefix, EinSum::new(axes, f32::datum_type()), &[a, b])?[0])
}

impl SvmRegressor {
    /// `K(x, sv_j)` for every row and support vector: `[N, S]`.
    fn wire_kernel(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        x: OutletId,
        sv: &Arc<Tensor>,
    ) -> TractResult<OutletId> {
        if self.kernel == Kernel::Rbf {
            // [N, 1, F] - [1, S, F], squared and summed over F.
            let rows = model.wire_node(format!("{prefix}.rows"), AxisOp::Add(1), &[x])?[0];
            let mut vectors = sv.clone().into_tensor().permute_axes(&[1, 0])?;
            vectors.insert_axis(0)?;
            let vectors = model.add_const(format!("{prefix}.support_vectors"), vectors)?;
            let diff = model.wire_node(format!("{prefix}.diff"), math::sub(), &[rows, vectors])?;
            let square = model.wire_node(format!("{prefix}.square"), math::square(), &diff)?;
            let sum = model.wire_node(
                format!("{prefix}.sum"),
                nn::Reduce::new(tvec![2], nn::Reducer::Sum),
                &square,
            )?;
            let sum = model.wire_node(format!("{prefix}.sum_rm_axis"), AxisOp::Rm(2), &sum)?[0];
            let minus_gamma = scalar(model, format!("{prefix}.minus_gamma"), -self.gamma)?;
            let scaled =
                model.wire_node(format!("{prefix}.scaled"), math::mul(), &[sum, minus_gamma])?;
            return Ok(model.wire_node(format!("{prefix}.exp"), math::exp(), &scaled)?[0]);
        }
        let vectors = model.add_const(format!("{prefix}.support_vectors"), sv.clone())?;
        let dot = matmul(format!("{prefix}.dot"), model, x, vectors)?;
        if self.kernel == Kernel::Linear {
            return Ok(dot);
        }
        let gamma = scalar(model, format!("{prefix}.gamma"), self.gamma)?;
        let coef0 = scalar(model, format!("{prefix}.coef0"), self.coef0)?;
        let scaled = model.wire_node(format!("{prefix}.scaled"), math::mul(), &[dot, gamma])?;
        let shifted = model.wire_node(
            format!("{prefix}.shifted"),
            math::add(),
            &[scaled[0], coef0],
        )?;
        if self.kernel == Kernel::Sigmoid {
            return Ok(model.wire_node(format!("{prefix}.tanh"), math::tanh(), &shifted)?[0]);
        }
        let degree = scalar(model, format!("{prefix}.degree"), self.degree)?;
        Ok(model.wire_node(format!("{prefix}.pow"), math::pow(), &[shifted[0], degree])?[0])
    }
}

impl Expansion for SvmRegressor {
    fn name(&self) -> StaticName {
        "SVMRegressor".into()
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
        s.equals(&inputs[0].shape[1], self.features.to_dim())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], 1.to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut x = inputs[0];
        if model.outlet_fact(x)?.datum_type != f32::datum_type() {
            x = model.wire_node(format!("{prefix}.to_f32"), cast(f32::datum_type()), &[x])?[0];
        }
        let features = match &self.support_vectors {
            Some(sv) => self.wire_kernel(prefix, model, x, sv)?,
            None => x,
        };
        let coefficients =
            model.add_const(format!("{prefix}.coefficients"), self.coefficients.clone())?;
        let score = matmul(format!("{prefix}.weighted"), model, features, coefficients)?;
        let rho = scalar(model, format!("{prefix}.rho"), self.rho)?;
        let score = model.wire_node(format!("{prefix}.add_rho"), math::add(), &[score, rho])?;
        if !self.one_class {
            return Ok(score);
        }
        let zero = scalar(model, format!("{prefix}.zero"), 0.0)?;
        let plus = scalar(model, format!("{prefix}.plus_one"), 1.0)?;
        let minus = scalar(model, format!("{prefix}.minus_one"), -1.0)?;
        let inlier = model.wire_node(
            format!("{prefix}.inlier"),
            TypedBinOp(comp_gt(), None),
            &[score[0], zero],
        )?;
        model.wire_node(
            format!("{prefix}.one_class"),
            Iff,
            &[inlier[0], plus, minus],
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;
    use tract_onnx::pb::tensor_proto::DataType;

    /// Two support vectors in two features: (1, 0) and (0, 2), coefficients 2 and -1.
    fn svr(kernel: &str, extra: &[(&str, Attr)]) -> Vec<u8> {
        let mut attrs = vec![
            ("kernel_type", Attr::Str(kernel.into())),
            ("kernel_params", Attr::Floats(vec![0.5, 1.0, 3.0])),
            ("n_supports", Attr::Int(2)),
            ("support_vectors", Attr::Floats(vec![1.0, 0.0, 0.0, 2.0])),
            ("coefficients", Attr::Floats(vec![2.0, -1.0])),
            ("rho", Attr::Floats(vec![0.25])),
        ];
        attrs.extend(extra.iter().cloned());
        single_node(node("SVMRegressor", &attrs), DataType::Float, 2, &["Y"])
    }

    fn predict(bytes: &[u8], x: &[f32]) -> f32 {
        f32s(&load_ok(bytes).run(vec![rows(&[x])]).unwrap()[0])[0]
    }

    #[test]
    fn kernels_match_their_formulas() {
        let x = [3.0f32, -1.0];
        let (d1, d2) = (3.0f32, -2.0f32); // x·sv1, x·sv2
        let (n1, n2) = (4.0f32 + 1.0, 9.0f32 + 9.0); // |x - sv|²
        let cases = [
            ("LINEAR", 2.0 * d1 - d2),
            (
                "POLY",
                2.0 * (0.5 * d1 + 1.0).powi(3) - (0.5 * d2 + 1.0).powi(3),
            ),
            (
                "SIGMOID",
                2.0 * (0.5 * d1 + 1.0).tanh() - (0.5 * d2 + 1.0).tanh(),
            ),
            ("RBF", 2.0 * (-0.5 * n1).exp() - (-0.5 * n2).exp()),
        ];
        for (kernel, want) in cases {
            assert_close(&[predict(&svr(kernel, &[]), &x)], &[want + 0.25]);
        }
    }

    #[test]
    fn without_support_vectors_the_coefficients_are_weights() {
        let op = node(
            "SVMRegressor",
            &[
                ("coefficients", Attr::Floats(vec![2.0, -1.0])),
                ("rho", Attr::Floats(vec![1.0])),
            ],
        );
        let bytes = single_node(op, DataType::Float, 2, &["Y"]);
        assert_close(&[predict(&bytes, &[3.0, 4.0])], &[3.0]);
    }

    #[test]
    fn one_class_gives_signs() {
        let bytes = svr("LINEAR", &[("one_class", Attr::Int(1))]);
        assert_eq!(predict(&bytes, &[3.0, -1.0]), 1.0);
        assert_eq!(predict(&bytes, &[-3.0, 1.0]), -1.0);
    }

    #[test]
    fn inconsistent_support_vectors_are_load_errors() {
        let op = node(
            "SVMRegressor",
            &[
                ("n_supports", Attr::Int(3)),
                ("support_vectors", Attr::Floats(vec![1.0, 0.0, 0.0, 2.0])),
                ("coefficients", Attr::Floats(vec![2.0, -1.0, 0.0])),
                ("rho", Attr::Floats(vec![0.0])),
            ],
        );
        let err = crate::load(
            &single_node(op, DataType::Float, 2, &["Y"]),
            &Default::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("support_vectors"), "{err}");
    }
}
