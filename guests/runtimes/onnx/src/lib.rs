//! Lamina's built-in `onnx` runtime: a handler guest that serves the ONNX model at the
//! function's Handler the way scikit-learn's `predict` and `predict_proba` answer.
//!
//! The model is loaded by the host (once per node, shared) and reached through
//! `wasi:nn/graph.load-by-name`; its signature comes from `lamina:function/models`. This
//! guest only turns JSON into tensors and tensors into JSON.
//!
//! Requests:
//! - `{"input": [x1, x2, ...]}`: one row; `{"input": [[...], [...]]}`: a batch.
//! - `{"inputs": {"name": ..., ...}}`: models with several inputs, each the same way.
//!
//! Responses:
//! - regressors: `{"output": [y1, ...]}`, one prediction per row (a list of one for a
//!   single row, as `predict` on a one-row matrix); rows of a multi-output model are
//!   lists of their own.
//! - classifiers: `{"label": [...], "probabilities": [{"label": p, ...}, ...]}`.
//!
//! An optional `lamina-model.json` next to the model overrides what the model says:
//! `input` (which input `"input"` feeds), `output` (the prediction or label output),
//! `probabilities` (the probability output), `class_labels` (names for the classes, in
//! the model's class order).
//!
//! Mistakes in a request are `InvalidInput` function errors naming the expected shape.
//!
//! Called through a function URL, the request is the HTTP body of the URL event, and a
//! mistake in it is an HTTP 400 whose body is that error, as a plain HTTP client expects,
//! rather than a function error (502).

use std::cell::RefCell;
use std::collections::BTreeMap;

use lamina_sdk::json::{self, Value};
use lamina_sdk::models::{ClassLabels, ElementType, Model, Tensor, TensorInfo};
use lamina_sdk::{Context, Error, Handler};
use serde::Deserialize;

const CONFIG_PATH: &str = "/var/task/lamina-model.json";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    input: Option<String>,
    output: Option<String>,
    probabilities: Option<String>,
    class_labels: Option<Vec<String>>,
}

/// What the model predicts and how its outputs become JSON.
enum Kind {
    Regressor {
        output: usize,
    },
    Classifier {
        label: usize,
        probabilities: Option<usize>,
        /// The model's classes, in probability-column order, as JSON values for `label`.
        classes: Vec<Value>,
        /// The same as keys of the probability maps.
        keys: Vec<String>,
        /// The model's own int labels, to find a predicted label's class; None when the
        /// labels arrive as indices (string classes).
        int_labels: Option<Vec<i64>>,
    },
}

struct Runtime {
    model: Model,
    /// The input `{"input": ...}` feeds, if the model lets one be chosen.
    default_input: Option<usize>,
    kind: Kind,
}

thread_local! {
    static RUNTIME: RefCell<Option<Runtime>> = const { RefCell::new(None) };
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new("InvalidInput", message)
}

fn unsupported(message: impl Into<String>) -> Error {
    Error::new("UnsupportedModel", message)
}

fn read_config() -> Result<Config, Error> {
    match std::fs::read(CONFIG_PATH) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                "InvalidModelConfig",
                format!("lamina-model.json is not valid: {e}"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(Error::new(
            "InvalidModelConfig",
            format!("lamina-model.json cannot be read: {e}"),
        )),
    }
}

fn position(tensors: &[TensorInfo], name: &str, what: &str) -> Result<usize, Error> {
    tensors.iter().position(|t| t.name == name).ok_or_else(|| {
        Error::new(
            "InvalidModelConfig",
            format!(
                "lamina-model.json names {what} `{name}`, but the model's are: {}",
                list_names(tensors)
            ),
        )
    })
}

fn list_names(tensors: &[TensorInfo]) -> String {
    tensors
        .iter()
        .map(|t| format!("`{}`", t.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_numeric(t: ElementType) -> bool {
    matches!(
        t,
        ElementType::F32 | ElementType::F64 | ElementType::S32 | ElementType::S64
    )
}

impl Runtime {
    fn start() -> Result<Runtime, Error> {
        let name = std::env::var("_HANDLER")
            .map_err(|_| unsupported("the runtime was started without a Handler"))?;
        let config = read_config()?;
        let model = Model::load(&name)?;
        let info = &model.info;
        for input in &info.inputs {
            if !is_numeric(input.element_type) {
                return Err(unsupported(format!(
                    "input `{}` takes {:?} values; the onnx runtime feeds numbers only",
                    input.name, input.element_type
                )));
            }
        }
        let default_input = match &config.input {
            Some(n) => Some(position(&info.inputs, n, "input")?),
            None if info.inputs.len() == 1 => Some(0),
            None => None,
        };
        let model_labels = info.class_labels.clone();
        let kind = match (&model_labels, &config.class_labels) {
            (None, None) => {
                let output = match &config.output {
                    Some(n) => position(&info.outputs, n, "output")?,
                    None if !info.outputs.is_empty() => 0,
                    None => return Err(unsupported("the model has no outputs")),
                };
                Kind::Regressor { output }
            }
            _ => Self::classifier(info, &config, model_labels)?,
        };
        Ok(Runtime {
            model,
            default_input,
            kind,
        })
    }

    fn classifier(
        info: &lamina_sdk::models::ModelInfo,
        config: &Config,
        model_labels: Option<ClassLabels>,
    ) -> Result<Kind, Error> {
        let label = match &config.output {
            Some(n) => position(&info.outputs, n, "output")?,
            // skl2onnx's `output_label`: one integer (or string) per row.
            None => info
                .outputs
                .iter()
                .position(|o| {
                    matches!(o.element_type, ElementType::S64 | ElementType::String)
                        && o.shape.len() == 1
                })
                .ok_or_else(|| unsupported("the classifier has no label output"))?,
        };
        let probabilities = match &config.probabilities {
            Some(n) => Some(position(&info.outputs, n, "probabilities")?),
            // skl2onnx's `output_probability`: [N, classes].
            None => info.outputs.iter().enumerate().position(|(i, o)| {
                i != label
                    && matches!(o.element_type, ElementType::F32 | ElementType::F64)
                    && o.shape.len() == 2
            }),
        };
        let (classes, int_labels): (Vec<Value>, Option<Vec<i64>>) = match &model_labels {
            Some(ClassLabels::Int64(v)) => {
                (v.iter().map(|&l| Value::from(l)).collect(), Some(v.clone()))
            }
            Some(ClassLabels::Strings(v)) => {
                (v.iter().map(|l| Value::from(l.as_str())).collect(), None)
            }
            None => (Vec::new(), None),
        };
        let classes = match &config.class_labels {
            Some(names) => {
                if !classes.is_empty() && names.len() != classes.len() {
                    return Err(Error::new(
                        "InvalidModelConfig",
                        format!(
                            "lamina-model.json gives {} class_labels; the model has {} classes",
                            names.len(),
                            classes.len()
                        ),
                    ));
                }
                names.iter().map(|n| Value::from(n.as_str())).collect()
            }
            None => classes,
        };
        let keys = classes
            .iter()
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        Ok(Kind::Classifier {
            label,
            probabilities,
            classes,
            keys,
            int_labels,
        })
    }

    /// The usual request, `{"input": [...]}` with one row or a batch of rows of numbers
    /// for a model whose only input is `f32` of shape `[N, features]`, read straight into
    /// the tensor's values. Anything else (or anything wrong) takes the general path,
    /// which also words the errors.
    fn rows_tensor(&self, event: &[u8]) -> Option<Tensor> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct OneRow {
            input: Vec<f32>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Rows {
            input: Vec<Vec<f32>>,
        }
        let [spec] = self.model.info.inputs.as_slice() else {
            return None;
        };
        let (ElementType::F32, [None, Some(features)]) = (spec.element_type, spec.shape.as_slice())
        else {
            return None;
        };
        let features = *features as usize;
        let (values, rows) = match serde_json::from_slice::<OneRow>(event) {
            Ok(one) => (one.input, 1),
            Err(_) => {
                let batch = serde_json::from_slice::<Rows>(event).ok()?;
                if batch.input.is_empty() || batch.input.iter().any(|r| r.len() != features) {
                    return None;
                }
                let n = batch.input.len();
                (batch.input.concat(), n)
            }
        };
        if values.len() != rows * features || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some(Tensor::f32(
            &[u32::try_from(rows).ok()?, features as u32],
            &values,
        ))
    }

    fn handle(&self, event: &[u8]) -> Result<Vec<u8>, Error> {
        if let Some(tensor) = self.rows_tensor(event) {
            let name = self.model.info.inputs[0].name.clone();
            return self.answer(vec![(name, tensor)]);
        }
        let request: Value = json::from_event(event)?;
        let Value::Object(mut request) = request else {
            return Err(invalid(self.usage()));
        };
        let inputs = &self.model.info.inputs;
        let mut feeds: Vec<Option<Value>> = vec![None; inputs.len()];
        if let Some(all) = request.remove("inputs") {
            let Value::Object(all) = all else {
                return Err(invalid(
                    "\"inputs\" must be an object mapping input names to values",
                ));
            };
            for (name, value) in all {
                let ix = inputs.iter().position(|i| i.name == name).ok_or_else(|| {
                    let wanted: Vec<String> = inputs
                        .iter()
                        .map(|i| format!("`{}` ({})", i.name, shape_text(i)))
                        .collect();
                    invalid(format!(
                        "the model has no input `{name}`; its inputs are {}",
                        wanted.join(", ")
                    ))
                })?;
                feeds[ix] = Some(value);
            }
        } else if let Some(value) = request.remove("input") {
            let Some(ix) = self.default_input else {
                return Err(invalid(format!(
                    "the model has several inputs ({}): send {{\"inputs\": {{\"name\": [...], ...}}}}",
                    list_names(inputs)
                )));
            };
            feeds[ix] = Some(value);
        } else {
            return Err(invalid(self.usage()));
        }
        let mut tensors = Vec::with_capacity(inputs.len());
        let mut rows = None;
        for (spec, feed) in inputs.iter().zip(feeds) {
            let value = feed.ok_or_else(|| {
                invalid(format!(
                    "input `{}` is missing; the model takes {}",
                    spec.name,
                    list_names(inputs)
                ))
            })?;
            let (tensor, n) = to_tensor(&value, spec, inputs.len() == 1)?;
            match rows {
                Some(r) if r != n => {
                    return Err(invalid(format!(
                        "inputs have different numbers of rows ({r} and {n})"
                    )));
                }
                _ => rows = Some(n),
            }
            tensors.push((spec.name.clone(), tensor));
        }
        self.answer(tensors)
    }

    /// Runs the model and shapes its outputs as scikit-learn's `predict` would.
    fn answer(&self, tensors: Vec<(String, Tensor)>) -> Result<Vec<u8>, Error> {
        let outputs = self.model.run(tensors)?;
        let response = match &self.kind {
            Kind::Regressor { output } => {
                let t = &outputs
                    .get(*output)
                    .ok_or_else(|| Error::new("ModelError", "the model returned no output"))?
                    .1;
                json::json!({ "output": predictions(t)? })
            }
            Kind::Classifier {
                label,
                probabilities,
                classes,
                keys,
                int_labels,
            } => {
                let t = &outputs
                    .get(*label)
                    .ok_or_else(|| Error::new("ModelError", "the model returned no labels"))?
                    .1;
                let labels = t
                    .to_i64()?
                    .into_iter()
                    .map(|l| {
                        let class = match int_labels {
                            Some(ints) => ints.iter().position(|&i| i == l),
                            None => usize::try_from(l).ok(),
                        };
                        class
                            .and_then(|c| classes.get(c).cloned())
                            .unwrap_or(Value::from(l))
                    })
                    .collect::<Vec<_>>();
                let mut body = BTreeMap::new();
                body.insert("label", Value::from(labels));
                if let Some(p) = probabilities
                    && let Some((_, t)) = outputs.get(*p)
                {
                    body.insert("probabilities", probability_maps(t, keys)?);
                }
                json::json!(body)
            }
        };
        json::to_response(&response)
    }

    fn usage(&self) -> String {
        let inputs = &self.model.info.inputs;
        match self.default_input {
            Some(ix) => format!(
                "expected {{\"input\": [...]}} with {}",
                shape_text(&inputs[ix])
            ),
            None => format!(
                "expected {{\"inputs\": {{...}}}} with the inputs {}",
                list_names(inputs)
            ),
        }
    }
}

/// "a list of 10 numbers (one row) or a list of rows of 10 numbers (a batch)", or the
/// general form for other ranks.
fn shape_text(spec: &TensorInfo) -> String {
    let dims: Vec<String> = spec
        .shape
        .iter()
        .map(|d| d.map_or("N".to_owned(), |n| n.to_string()))
        .collect();
    match spec.shape.as_slice() {
        [None, Some(f)] => format!(
            "a list of {f} numbers (one row) or a list of rows of {f} numbers each (a batch)"
        ),
        [None, rest @ ..] => {
            let row: Vec<String> = rest
                .iter()
                .map(|d| d.map_or("any".to_owned(), |n| n.to_string()))
                .collect();
            format!(
                "shape [{}] (a batch) or [{}] (one row)",
                dims.join(", "),
                row.join(", ")
            )
        }
        _ => format!("shape [{}]", dims.join(", ")),
    }
}

fn describe_value(shape: &[usize]) -> String {
    match shape {
        [] => "a single number".to_owned(),
        [n] => format!("a list of {n} numbers"),
        [n, m] => format!("{n} rows of {m} numbers"),
        _ => format!("shape {shape:?}"),
    }
}

/// Nested JSON lists of numbers as a flat list and a shape; ragged lists are refused.
fn flatten(value: &Value, name: &str, out: &mut Vec<f64>) -> Result<Vec<usize>, Error> {
    match value {
        Value::Number(n) => {
            out.push(n.as_f64().ok_or_else(|| {
                invalid(format!("input `{name}`: {n} is not a representable number"))
            })?);
            Ok(Vec::new())
        }
        Value::Array(items) => {
            let Some(first) = items.first() else {
                return Err(invalid(format!("input `{name}` is an empty list")));
            };
            let inner = flatten(first, name, out)?;
            for (i, item) in items.iter().enumerate().skip(1) {
                let shape = flatten(item, name, out)?;
                if shape != inner {
                    return Err(invalid(format!(
                        "input `{name}`: item {i} is {} but item 0 is {}; rows must all have the same length",
                        describe_value(&shape),
                        describe_value(&inner)
                    )));
                }
            }
            let mut shape = vec![items.len()];
            shape.extend(inner);
            Ok(shape)
        }
        other => Err(invalid(format!(
            "input `{name}` must contain numbers only, found {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::String(_) => "a string",
                _ => "an object",
            }
        ))),
    }
}

/// The tensor for one input and its number of rows. A value one axis short of the
/// model's rank is a single row (when the first axis is the free batch axis).
fn to_tensor(value: &Value, spec: &TensorInfo, only: bool) -> Result<(Tensor, usize), Error> {
    let label = if only {
        "\"input\"".to_owned()
    } else {
        format!("input `{}`", spec.name)
    };
    let wrong = |got: &str| invalid(format!("{label} must be {}; got {got}", shape_text(spec)));
    let mut values = Vec::new();
    let mut shape = flatten(value, &spec.name, &mut values).map_err(|e| {
        // Keep the expected shape in view when the value is not even numbers.
        Error::new(
            e.error_type,
            format!("{}; expected {}", e.error_message, shape_text(spec)),
        )
    })?;
    let given = describe_value(&shape);
    if shape.len() + 1 == spec.shape.len() && spec.shape.first() == Some(&None) {
        shape.insert(0, 1);
    }
    if shape.len() != spec.shape.len() {
        return Err(wrong(&given));
    }
    for (want, got) in spec.shape.iter().zip(&shape) {
        if let Some(w) = want
            && *w as usize != *got
        {
            return Err(wrong(&given));
        }
    }
    let dims = shape
        .iter()
        .map(|&d| u32::try_from(d).map_err(|_| invalid(format!("{label} is too large"))))
        .collect::<Result<Vec<u32>, Error>>()?;
    let integers = || -> Result<Vec<i64>, Error> {
        values
            .iter()
            .map(|&v| {
                if v.fract() == 0.0 && v.is_finite() {
                    Ok(v as i64)
                } else {
                    Err(invalid(format!("{label} takes integers; got {v}")))
                }
            })
            .collect()
    };
    let tensor = match spec.element_type {
        ElementType::F32 => {
            Tensor::f32(&dims, &values.iter().map(|&v| v as f32).collect::<Vec<_>>())
        }
        ElementType::F64 => Tensor::f64(&dims, &values),
        ElementType::S64 => Tensor::i64(&dims, &integers()?),
        ElementType::S32 => Tensor::i32(
            &dims,
            &integers()?
                .into_iter()
                .map(|v| {
                    i32::try_from(v)
                        .map_err(|_| invalid(format!("{label}: {v} does not fit in 32 bits")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        other => {
            return Err(unsupported(format!(
                "input `{}` takes {other:?} values",
                spec.name
            )));
        }
    };
    Ok((tensor, shape[0]))
}

/// One prediction per row: a number when the model gives one value per row, a list
/// when it gives several.
fn predictions(t: &Tensor) -> Result<Value, Error> {
    let values = t.to_f64()?;
    let dims: Vec<usize> = t.dimensions.iter().map(|&d| d as usize).collect();
    Ok(match dims.as_slice() {
        [_] | [_, 1] => Value::from(values),
        [rows, cols] => Value::from(
            values
                .chunks(*cols)
                .take(*rows)
                .map(|r| Value::from(r.to_vec()))
                .collect::<Vec<_>>(),
        ),
        _ => nest(&values, &dims),
    })
}

fn nest(values: &[f64], dims: &[usize]) -> Value {
    match dims {
        [] => values.first().copied().map_or(Value::Null, Value::from),
        [_] => Value::from(values.to_vec()),
        [n, rest @ ..] => {
            let step = rest.iter().product::<usize>().max(1);
            Value::from(
                (0..*n)
                    .map(|i| nest(&values[i * step..(i + 1) * step], rest))
                    .collect::<Vec<_>>(),
            )
        }
    }
}

fn probability_maps(t: &Tensor, keys: &[String]) -> Result<Value, Error> {
    let values = t.to_f64()?;
    let cols = t.dimensions.get(1).copied().unwrap_or(1) as usize;
    if cols != keys.len() {
        return Err(Error::new(
            "ModelError",
            format!(
                "the model returned {cols} probabilities per row for {} classes",
                keys.len()
            ),
        ));
    }
    Ok(Value::from(
        values
            .chunks(cols.max(1))
            .map(|row| {
                let map: serde_json::Map<String, Value> = keys
                    .iter()
                    .zip(row)
                    .map(|(k, p)| (k.clone(), Value::from(*p)))
                    .collect();
                Value::Object(map)
            })
            .collect::<Vec<_>>(),
    ))
}

struct OnnxRuntime;

impl Handler for OnnxRuntime {
    fn init() -> Result<(), Error> {
        let runtime = Runtime::start()?;
        RUNTIME.with(|r| *r.borrow_mut() = Some(runtime));
        Ok(())
    }

    fn handle(event: Vec<u8>, _ctx: Context) -> Result<Vec<u8>, Error> {
        RUNTIME.with(|r| match r.borrow().as_ref() {
            Some(runtime) => match url_request_body(&event) {
                Some(body) => http_answer(body.and_then(|b| runtime.handle(&b))),
                None => runtime.handle(&event),
            },
            None => Err(Error::new(
                "Runtime.Uninitialized",
                "the model was not loaded",
            )),
        })
    }
}

/// The HTTP body of a function-URL event; `None` for an Invoke payload.
fn url_request_body(event: &[u8]) -> Option<Result<Vec<u8>, Error>> {
    // An Invoke payload of this runtime never carries `requestContext`; the cheap byte
    // check spares the usual request a second parse.
    if !event.windows(16).any(|w| w == b"\"requestContext\"") {
        return None;
    }
    let Ok(Value::Object(mut url_event)) = json::from_event::<Value>(event) else {
        return None;
    };
    url_event.get("requestContext")?.get("http")?;
    let base64 = url_event.get("isBase64Encoded") == Some(&Value::Bool(true));
    Some(match url_event.remove("body") {
        Some(Value::String(text)) if base64 => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| invalid("the request body is not valid base64"))
        }
        Some(Value::String(text)) => Ok(text.into_bytes()),
        _ => Err(invalid(
            "POST a JSON body: {\"input\": [x1, x2, ...]} for one row, {\"input\": [[...], ...]} for a batch",
        )),
    })
}

/// A function URL's answer: the prediction as the 200 body, a mistake in the request as
/// a 400 with the error as its body. Other failures stay function errors (502).
fn http_answer(result: Result<Vec<u8>, Error>) -> Result<Vec<u8>, Error> {
    match result {
        Err(e) if e.error_type == "InvalidInput" || e.error_type == "Runtime.UnmarshalError" => {
            let body = json::to_response(&json::json!({
                "errorType": e.error_type,
                "errorMessage": e.error_message,
            }))?;
            json::to_response(&json::json!({
                "statusCode": 400,
                "headers": {"content-type": "application/json"},
                "body": String::from_utf8_lossy(&body),
            }))
        }
        other => other,
    }
}

lamina_sdk::export_handler!(OnnxRuntime);
