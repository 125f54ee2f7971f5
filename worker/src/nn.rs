//! wasi-nn in Lamina: a wasmtime-wasi-nn backend that runs ONNX models natively on the
//! host with tract (through onnx-ops), the per-environment registry behind
//! `load-by-name`, and the `lamina:function/models` interface that describes the models.
//!
//! Inference runs in the host call, on the guest's thread: epoch interruption cannot stop
//! it midway, so its length is bounded by the model (LoadLimits) and the request payload
//! (6 MB), not by the function's timeout. Its memory is the host's and is not counted
//! against the function's MemorySize; the node's model budget covers the weights.

use std::collections::HashMap;
use std::sync::Arc;

use onnx_ops::{ClassLabels, Dim, TensorInfo};
use tract_onnx::prelude::{DatumType, IntoTValue, TValue, Tensor as TractTensor};
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding, TensorType};
use wasmtime_wasi_nn::{
    Backend, ExecutionContext, Graph, GraphRegistry, Registry, Tensor, wit::WasiNnCtx,
};

use crate::models::{ModelCache, ModelTable, SharedModel};

/// Bindings of the `models` interface in the repository's `wit/` folder.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package lamina:host;
            world models-host {
                import lamina:function/models@0.1.0;
            }
        ",
        world: "models-host",
    });
}

use bindings::lamina::function::models as wit;

/// The wasi-nn state of one store: graphs by name for `load-by-name`, and a backend for
/// guests that pass model bytes to `load` themselves.
pub(crate) fn context(cache: &Arc<ModelCache>, models: &ModelTable) -> WasiNnCtx {
    let graphs = models
        .iter()
        .map(|(name, model)| (name.clone(), graph(model.clone())))
        .collect();
    let backend = Backend::from(TractBackend {
        cache: cache.clone(),
    });
    WasiNnCtx::new([backend], Registry::from(Named(graphs)))
}

fn graph(model: Arc<SharedModel>) -> Graph {
    Graph::from(Box::new(TractGraph { model }) as Box<dyn BackendGraph>)
}

/// The models of one environment, by the names the guest loads them by.
struct Named(HashMap<String, Graph>);

impl GraphRegistry for Named {
    fn get(&self, name: &str) -> Option<&Graph> {
        self.0.get(name)
    }
    fn get_mut(&mut self, name: &str) -> Option<&mut Graph> {
        self.0.get_mut(name)
    }
}

struct TractBackend {
    cache: Arc<ModelCache>,
}

/// A backend error whose text reaches the guest. wasmtime-wasi-nn shows a guest only
/// the top-level message of an error, and `BackendAccess`'s is a fixed sentence, so
/// this is the one variant that carries ours.
fn guest_visible(message: String) -> BackendError {
    BackendError::UnsupportedTensorType(message)
}

impl BackendInner for TractBackend {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }

    fn load(
        &mut self,
        builders: &[&[u8]],
        _target: ExecutionTarget,
    ) -> Result<Graph, BackendError> {
        // Every target runs on the CPU: tract is the only engine here.
        let [bytes] = builders else {
            return Err(BackendError::InvalidNumberOfBuilders(1, builders.len()));
        };
        let model = self
            .cache
            .load_bytes_blocking(bytes)
            .map_err(|e| guest_visible(e.to_string()))?;
        Ok(graph(model))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

struct TractGraph {
    model: Arc<SharedModel>,
}

impl BackendGraph for TractGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        self.model.touch();
        let inputs = vec![None; self.model.model.inputs().len()];
        Ok(ExecutionContext::from(Box::new(TractContext {
            model: self.model.clone(),
            inputs,
            outputs: Vec::new(),
        })
            as Box<dyn BackendExecutionContext>))
    }
}

struct TractContext {
    model: Arc<SharedModel>,
    /// Inputs set one by one (the witx API); `compute` with inputs ignores them.
    inputs: Vec<Option<TValue>>,
    /// Outputs of the last `compute`, for `get_output`.
    outputs: Vec<Tensor>,
}

impl TractContext {
    fn input_index(&self, id: &Id) -> Result<usize, BackendError> {
        let specs = self.model.model.inputs();
        let found = match id {
            Id::Index(i) => (*i as usize) < specs.len(),
            Id::Name(_) => false,
        };
        if found {
            return Ok(id.index().unwrap_or_default() as usize);
        }
        if let Some(name) = id.name()
            && let Some(ix) = specs.iter().position(|s| s.name == name)
        {
            return Ok(ix);
        }
        // A single-input model takes its one input under any name.
        if specs.len() == 1 {
            return Ok(0);
        }
        Err(guest_visible(format!(
            "the model has no input {id:?}; its inputs are {}",
            names(specs)
        )))
    }

    fn run(&mut self, inputs: Vec<TValue>) -> Result<Vec<Tensor>, BackendError> {
        self.model.touch();
        let outputs = self
            .model
            .model
            .run(inputs)
            .map_err(|e| guest_visible(e.to_string()))?;
        outputs
            .iter()
            .map(|t| from_tract(t, self.model.model.class_labels()))
            .collect()
    }
}

impl BackendExecutionContext for TractContext {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        let ix = self.input_index(&id)?;
        let spec = &self.model.model.inputs()[ix];
        self.inputs[ix] = Some(to_tract(tensor, spec)?);
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        let ix = match &id {
            Id::Index(i) => Some(*i as usize),
            Id::Name(n) => self.model.model.outputs().iter().position(|o| &o.name == n),
        };
        ix.and_then(|ix| self.outputs.get(ix).cloned())
            .ok_or_else(|| {
                guest_visible(format!(
                    "no output {id:?} (outputs: {}; computed: {})",
                    names(self.model.model.outputs()),
                    !self.outputs.is_empty()
                ))
            })
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        match inputs {
            None => {
                let specs = self.model.model.inputs();
                let mut ready = Vec::with_capacity(specs.len());
                for (value, spec) in self.inputs.iter().zip(specs) {
                    let Some(v) = value else {
                        return Err(guest_visible(format!("input `{}` was not set", spec.name)));
                    };
                    ready.push(v.clone());
                }
                self.outputs = self.run(ready)?;
                Ok(None)
            }
            Some(named) => {
                let specs = self.model.model.inputs();
                if named.len() != specs.len() {
                    return Err(guest_visible(format!(
                        "the model takes {} input(s) ({}), got {}",
                        specs.len(),
                        names(specs),
                        named.len()
                    )));
                }
                let mut slots: Vec<Option<TValue>> = vec![None; specs.len()];
                for t in &named {
                    let ix = self.input_index(&Id::Name(t.name.clone()))?;
                    slots[ix] = Some(to_tract(&t.tensor, &specs[ix])?);
                }
                let ready = slots
                    .into_iter()
                    .zip(specs)
                    .map(|(v, s)| {
                        v.ok_or_else(|| guest_visible(format!("input `{}` is missing", s.name)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let outputs = self.run(ready)?;
                Ok(Some(
                    self.model
                        .model
                        .outputs()
                        .iter()
                        .zip(outputs)
                        .map(|(info, tensor)| NamedTensor {
                            name: info.name.clone(),
                            tensor,
                        })
                        .collect(),
                ))
            }
        }
    }
}

fn names(specs: &[TensorInfo]) -> String {
    specs
        .iter()
        .map(|s| format!("`{}`", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn type_name(t: TensorType) -> &'static str {
    match t {
        TensorType::Fp16 => "f16",
        TensorType::Fp32 => "f32",
        TensorType::Fp64 => "f64",
        TensorType::Bf16 => "bf16",
        TensorType::U8 => "u8",
        TensorType::I32 => "i32",
        TensorType::I64 => "i64",
    }
}

/// Decodes a wasi-nn tensor (little-endian, row-major) into the type the model declares.
fn to_tract(t: &Tensor, spec: &TensorInfo) -> Result<TValue, BackendError> {
    let shape: Vec<usize> = t.dimensions.iter().map(|&d| d as usize).collect();
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| guest_visible(format!("input `{}`: shape overflows", spec.name)))?;
    let mismatch = || {
        guest_visible(format!(
            "input `{}` takes {:?} values, got a {} tensor",
            spec.name,
            spec.datum_type,
            type_name(t.ty)
        ))
    };
    let tensor = match (t.ty, spec.datum_type) {
        (TensorType::Fp32, DatumType::F32) => decode(&shape, count, &t.data, f32::from_le_bytes),
        (TensorType::Fp64, DatumType::F64) => decode(&shape, count, &t.data, f64::from_le_bytes),
        (TensorType::I64, DatumType::I64) => decode(&shape, count, &t.data, i64::from_le_bytes),
        (TensorType::I32, DatumType::I32) => decode(&shape, count, &t.data, i32::from_le_bytes),
        (TensorType::U8, DatumType::U8) => decode(&shape, count, &t.data, u8::from_le_bytes),
        (TensorType::U8, DatumType::Bool) => decode(&shape, count, &t.data, u8::from_le_bytes)
            .and_then(|u| {
                u.cast_to_dt(DatumType::Bool)
                    .map(|b| b.into_owned())
                    .map_err(|e| e.to_string())
            }),
        _ => return Err(mismatch()),
    }
    .map_err(|e| guest_visible(format!("input `{}`: {e}", spec.name)))?;
    Ok(tensor.into_tvalue())
}

fn decode<T, const W: usize>(
    shape: &[usize],
    count: usize,
    data: &[u8],
    from: fn([u8; W]) -> T,
) -> Result<TractTensor, String>
where
    T: tract_onnx::prelude::Datum + Copy,
{
    if Some(data.len()) != count.checked_mul(W) {
        return Err(format!(
            "shape {shape:?} needs {count} values of {W} bytes, got {} bytes",
            data.len()
        ));
    }
    let values: Vec<T> = data
        .chunks_exact(W)
        .map(|c| {
            let mut b = [0u8; W];
            b.copy_from_slice(c);
            from(b)
        })
        .collect();
    TractTensor::from_shape(shape, &values).map_err(|e| e.to_string())
}

/// Encodes a tract output as a wasi-nn tensor. String tensors (class labels) become i64
/// indices into the model's string labels; `models.describe` documents this.
fn from_tract(t: &TractTensor, labels: Option<&ClassLabels>) -> Result<Tensor, BackendError> {
    let dimensions = t
        .shape()
        .iter()
        .map(|&d| u32::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| guest_visible("an output axis exceeds 2^32 values".into()))?;
    let fail = |e: tract_onnx::prelude::TractError| guest_visible(format!("{e:#}"));
    let (ty, data) = match t.datum_type() {
        DatumType::F32 => (TensorType::Fp32, encode(t, f32::to_le_bytes).map_err(fail)?),
        DatumType::F64 => (TensorType::Fp64, encode(t, f64::to_le_bytes).map_err(fail)?),
        DatumType::I64 => (TensorType::I64, encode(t, i64::to_le_bytes).map_err(fail)?),
        DatumType::I32 => (TensorType::I32, encode(t, i32::to_le_bytes).map_err(fail)?),
        DatumType::U8 => (TensorType::U8, encode(t, u8::to_le_bytes).map_err(fail)?),
        DatumType::Bool => (
            TensorType::U8,
            t.to_plain_array_view::<bool>()
                .map_err(fail)?
                .iter()
                .map(|&b| u8::from(b))
                .collect(),
        ),
        DatumType::String => {
            let Some(ClassLabels::Strings(labels)) = labels else {
                return Err(guest_visible(
                    "the model returns strings, which wasi-nn cannot carry".into(),
                ));
            };
            let mut data = Vec::with_capacity(t.len() * 8);
            for s in t.to_plain_array_view::<String>().map_err(fail)?.iter() {
                let ix = labels.iter().position(|l| l == s).ok_or_else(|| {
                    guest_visible(format!("the model returned `{s}`, not one of its labels"))
                })?;
                data.extend_from_slice(&(ix as i64).to_le_bytes());
            }
            (TensorType::I64, data)
        }
        other => {
            return Err(guest_visible(format!(
                "the model returns {other:?} values, which wasi-nn cannot carry"
            )));
        }
    };
    Ok(Tensor {
        dimensions,
        ty,
        data,
    })
}

fn encode<T, const W: usize>(
    t: &TractTensor,
    to: fn(T) -> [u8; W],
) -> tract_onnx::prelude::TractResult<Vec<u8>>
where
    T: tract_onnx::prelude::Datum + Copy,
{
    let view = t.to_plain_array_view::<T>()?;
    let mut out = Vec::with_capacity(view.len() * W);
    for &v in view.iter() {
        out.extend_from_slice(&to(v));
    }
    Ok(out)
}

fn element_type(dt: DatumType) -> wit::ElementType {
    match dt {
        DatumType::F32 => wit::ElementType::F32,
        DatumType::F64 => wit::ElementType::F64,
        DatumType::I32 => wit::ElementType::S32,
        DatumType::I64 => wit::ElementType::S64,
        DatumType::U8 => wit::ElementType::U8,
        DatumType::Bool => wit::ElementType::Bool,
        DatumType::String => wit::ElementType::String,
        _ => wit::ElementType::Other,
    }
}

fn tensor_info(t: &TensorInfo) -> wit::TensorInfo {
    wit::TensorInfo {
        name: t.name.clone(),
        element_type: element_type(t.datum_type),
        shape: t
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => u32::try_from(*n).ok(),
                Dim::Symbolic(_) => None,
            })
            .collect(),
    }
}

/// The signature of a model as `models.describe` returns it.
pub(crate) fn describe(model: &SharedModel) -> wit::ModelInfo {
    let m = &model.model;
    wit::ModelInfo {
        inputs: m.inputs().iter().map(tensor_info).collect(),
        outputs: m.outputs().iter().map(tensor_info).collect(),
        class_labels: m.class_labels().map(|l| match l {
            ClassLabels::Int64(v) => wit::ClassLabels::Int64(v.clone()),
            ClassLabels::Strings(v) => wit::ClassLabels::Strings(v.clone()),
        }),
        digest: model.digest.clone(),
    }
}
