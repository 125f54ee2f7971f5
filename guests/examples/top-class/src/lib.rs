//! Example: a function that runs a classifier from its own deployment package through
//! wasi-nn and does its own pre- and post-processing, where the built-in `onnx` runtime
//! would answer with raw labels and probabilities.
//!
//! Deploy it as Runtime `wasm` with `model.onnx` (any scikit-learn classifier exported by
//! skl2onnx) next to `function.wasm` in the zip, and two environment variables:
//! `FEATURES` (the model's feature names, in column order, comma-separated) and
//! optionally `CLASSES` (display names of the classes, in the model's class order).
//!
//! Request: `{"features": {"petal_length": 1.4, ...}}` (by name, any order).
//! Response: `{"class": "setosa", "confidence": 0.97, "runner_up": "versicolor"}`.

use std::cell::RefCell;

use lamina_sdk::json::{self, Value};
use lamina_sdk::models::{ClassLabels, Model, Tensor};
use lamina_sdk::{Context, Error, Handler};
use serde::Deserialize;

struct State {
    model: Model,
    features: Vec<String>,
    classes: Vec<String>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

#[derive(Deserialize)]
struct Request {
    features: serde_json::Map<String, Value>,
}

fn list(var: &str) -> Option<Vec<String>> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

impl State {
    fn start() -> Result<State, Error> {
        // Loaded by the host once per node; only its handle enters this instance.
        let model = Model::load("model.onnx")?;
        let features = list("FEATURES")
            .ok_or_else(|| Error::new("ConfigError", "set FEATURES to the feature names"))?;
        let classes = match (list("CLASSES"), &model.info.class_labels) {
            (Some(names), _) => names,
            (None, Some(ClassLabels::Int64(v))) => v.iter().map(i64::to_string).collect(),
            (None, Some(ClassLabels::Strings(v))) => v.clone(),
            (None, None) => return Err(Error::new("ConfigError", "the model is no classifier")),
        };
        Ok(State {
            model,
            features,
            classes,
        })
    }

    fn handle(&self, event: &[u8]) -> Result<Vec<u8>, Error> {
        let request: Request = json::from_event(event)?;
        // Pre-processing: named features into the model's column order.
        let mut row = Vec::with_capacity(self.features.len());
        for name in &self.features {
            let v = request
                .features
                .get(name)
                .and_then(Value::as_f64)
                .ok_or_else(|| {
                    Error::new("InvalidInput", format!("feature `{name}` must be a number"))
                })?;
            row.push(v as f32);
        }
        let input = self.model.info.inputs[0].name.clone();
        let outputs = self
            .model
            .run(vec![(input, Tensor::f32(&[1, row.len() as u32], &row))])?;
        // Post-processing: the two most likely classes from the probability output.
        let (_, probabilities) = outputs
            .iter()
            .find(|(_, t)| t.dimensions.len() == 2)
            .ok_or_else(|| Error::new("ModelError", "the model returned no probabilities"))?;
        let mut ranked: Vec<(usize, f64)> =
            probabilities.to_f64()?.into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let name = |i: usize| {
            self.classes
                .get(i)
                .cloned()
                .unwrap_or_else(|| i.to_string())
        };
        let Some(&(best, confidence)) = ranked.first() else {
            return Err(Error::new("ModelError", "the model returned no classes"));
        };
        json::to_response(&json::json!({
            "class": name(best),
            "confidence": confidence,
            "runner_up": ranked.get(1).map(|r| name(r.0)),
        }))
    }
}

struct TopClass;

impl Handler for TopClass {
    fn init() -> Result<(), Error> {
        let state = State::start()?;
        STATE.with(|s| *s.borrow_mut() = Some(state));
        Ok(())
    }

    fn handle(event: Vec<u8>, _ctx: Context) -> Result<Vec<u8>, Error> {
        STATE.with(|s| match s.borrow().as_ref() {
            Some(state) => state.handle(&event),
            None => Err(Error::new("Runtime.Uninitialized", "init did not run")),
        })
    }
}

lamina_sdk::export_handler!(TopClass);
