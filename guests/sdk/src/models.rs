//! ONNX models from a function's deployment package, run by the host through `wasi:nn`.
//!
//! The host loads each `.onnx` file of the package once per node and shares it; a
//! function gets it by name with [`Model::load`] and never holds the model bytes itself.
//! Inference runs natively on the host, so a guest only moves tensors.
//!
//! ```rust,no_run
//! use lamina_sdk::models::{Model, Tensor};
//!
//! # fn demo() -> Result<(), lamina_sdk::Error> {
//! let model = Model::load("model.onnx")?;
//! let input = &model.info.inputs[0].name;
//! let outputs = model.run(vec![(input.clone(), Tensor::f32(&[1, 3], &[0.1, 0.2, 0.3]))])?;
//! let prediction = outputs[0].1.to_f64()?;
//! # Ok(()) }
//! ```

use crate::Error;

/// Generated from `wit/`: `lamina:function/models` and `wasi:nn`.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "model-imports",
        generate_all,
    });
}

pub use bindings::lamina::function::models::{
    ClassLabels, ElementType, ModelInfo, TensorInfo, describe, names,
};
pub use bindings::wasi::nn::{errors, graph, inference, tensor};

use tensor::TensorType;

/// A model loaded by name with an execution context, ready to run.
pub struct Model {
    pub name: String,
    pub info: ModelInfo,
    context: inference::GraphExecutionContext,
    // Held for the context's sake: a context never outlives its graph.
    _graph: graph::Graph,
}

fn nn_error(what: &str, e: errors::Error) -> Error {
    Error::new(
        "ModelError",
        format!("{what}: {:?}: {}", e.code(), e.data()),
    )
}

impl Model {
    /// Loads one of the package's models by its path inside the package.
    pub fn load(name: &str) -> Result<Model, Error> {
        let info = describe(name).ok_or_else(|| {
            Error::new(
                "ModelNotFound",
                format!(
                    "the deployment package has no model '{name}' (it has: {})",
                    names().join(", ")
                ),
            )
        })?;
        let graph = graph::load_by_name(name).map_err(|e| nn_error("loading the model", e))?;
        let context = graph
            .init_execution_context()
            .map_err(|e| nn_error("creating an execution context", e))?;
        Ok(Model {
            name: name.to_owned(),
            info,
            context,
            _graph: graph,
        })
    }

    /// Runs the model on named inputs; the outputs come back named, in the model's order.
    pub fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, Error> {
        let inputs = inputs
            .into_iter()
            .map(|(name, t)| {
                let tensor = tensor::Tensor::new(&t.dimensions, t.ty, &t.data);
                (name, tensor)
            })
            .collect();
        let outputs = self
            .context
            .compute(inputs)
            .map_err(|e| nn_error("running the model", e))?;
        Ok(outputs
            .into_iter()
            .map(|(name, t)| {
                let tensor = Tensor {
                    dimensions: t.dimensions(),
                    ty: t.ty(),
                    data: t.data(),
                };
                (name, tensor)
            })
            .collect())
    }
}

/// A tensor as plain data: row-major, little-endian values of `ty`.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub dimensions: Vec<u32>,
    pub ty: TensorType,
    pub data: Vec<u8>,
}

impl Tensor {
    pub fn f32(dimensions: &[u32], values: &[f32]) -> Tensor {
        Tensor {
            dimensions: dimensions.to_vec(),
            ty: TensorType::Fp32,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn f64(dimensions: &[u32], values: &[f64]) -> Tensor {
        Tensor {
            dimensions: dimensions.to_vec(),
            ty: TensorType::Fp64,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn i64(dimensions: &[u32], values: &[i64]) -> Tensor {
        Tensor {
            dimensions: dimensions.to_vec(),
            ty: TensorType::I64,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn i32(dimensions: &[u32], values: &[i32]) -> Tensor {
        Tensor {
            dimensions: dimensions.to_vec(),
            ty: TensorType::I32,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The values as f64, whatever numeric type they are.
    pub fn to_f64(&self) -> Result<Vec<f64>, Error> {
        fn read<const W: usize>(data: &[u8], f: impl Fn([u8; W]) -> f64) -> Vec<f64> {
            data.chunks_exact(W)
                .map(|c| {
                    let mut b = [0u8; W];
                    b.copy_from_slice(c);
                    f(b)
                })
                .collect()
        }
        Ok(match self.ty {
            TensorType::Fp32 => read(&self.data, |b| f64::from(f32::from_le_bytes(b))),
            TensorType::Fp64 => read(&self.data, f64::from_le_bytes),
            TensorType::I64 => read(&self.data, |b| i64::from_le_bytes(b) as f64),
            TensorType::I32 => read(&self.data, |b| f64::from(i32::from_le_bytes(b))),
            TensorType::U8 => self.data.iter().map(|&b| f64::from(b)).collect(),
            other => {
                return Err(Error::new(
                    "ModelError",
                    format!("the model returned {other:?} values, which this SDK cannot read"),
                ));
            }
        })
    }

    /// The values as i64; only for integer tensors.
    pub fn to_i64(&self) -> Result<Vec<i64>, Error> {
        match self.ty {
            TensorType::I64 => Ok(self
                .data
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    i64::from_le_bytes(b)
                })
                .collect()),
            TensorType::I32 => Ok(self
                .data
                .chunks_exact(4)
                .map(|c| {
                    let mut b = [0u8; 4];
                    b.copy_from_slice(c);
                    i64::from(i32::from_le_bytes(b))
                })
                .collect()),
            other => Err(Error::new(
                "ModelError",
                format!("expected integer values, the model returned {other:?}"),
            )),
        }
    }
}
