//! Model quality: joining a model's logged prediction with the ground truth a caller sends
//! later, and scoring a version over a window of such pairs.
//!
//! Predictions are the responses of the built-in `onnx` runtime: `{"output": [...]}` for
//! regressors, `{"label": [...], ...}` for classifiers, one entry per row of the request.
//! Scores follow scikit-learn: MAE and RMSE for regressors; accuracy and the macro
//! averages of precision, recall and F1 (`average="macro"`, `zero_division=0`) for
//! classifiers, over every class seen as a prediction or as a truth.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// What a model predicts, read off its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Regression,
    Classification,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Regression => "regression",
            Task::Classification => "classification",
        }
    }

    pub fn parse(s: &str) -> Option<Task> {
        match s {
            "regression" => Some(Task::Regression),
            "classification" => Some(Task::Classification),
            _ => None,
        }
    }
}

/// One row's prediction joined with its truth.
#[derive(Debug, Clone, PartialEq)]
pub enum Pair {
    Regression { predicted: f64, actual: f64 },
    Classification { predicted: String, actual: String },
}

/// Why ground truth cannot be joined with a prediction; the caller's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the prediction of this request is not a model's output ({0})")]
    NotAPrediction(&'static str),
    #[error(
        "the prediction has {predicted} rows but GroundTruth has {actual}; send one value per row"
    )]
    RowCount { predicted: usize, actual: usize },
    #[error("GroundTruth row {row} must be a number for a regression model, not {found}")]
    NotANumber { row: usize, found: String },
    #[error(
        "GroundTruth row {row} must be a class label (a string, number or boolean), not {found}"
    )]
    NotALabel { row: usize, found: String },
    #[error(
        "prediction row {row} has {outputs} outputs; quality is scored for single-output models"
    )]
    MultiOutput { row: usize, outputs: usize },
}

/// Pairs each row of `prediction` (a model response) with the matching `truth` (one
/// value, or a list with one value per row).
pub fn join(prediction: &Value, truth: &Value) -> Result<(Task, Vec<Pair>), JoinError> {
    let (task, rows) = if let Some(labels) = prediction.get("label") {
        (Task::Classification, labels)
    } else if let Some(output) = prediction.get("output") {
        (Task::Regression, output)
    } else {
        return Err(JoinError::NotAPrediction(
            "it has neither `label` nor `output`",
        ));
    };
    let rows = rows
        .as_array()
        .ok_or(JoinError::NotAPrediction("its rows are not a list"))?;
    let truths: Vec<&Value> = match truth {
        Value::Array(values) => values.iter().collect(),
        single => vec![single],
    };
    if truths.len() != rows.len() {
        return Err(JoinError::RowCount {
            predicted: rows.len(),
            actual: truths.len(),
        });
    }
    let pairs = rows
        .iter()
        .zip(truths)
        .enumerate()
        .map(|(row, (predicted, actual))| match task {
            Task::Regression => Ok(Pair::Regression {
                predicted: scalar_output(row, predicted)?,
                actual: actual.as_f64().ok_or_else(|| JoinError::NotANumber {
                    row,
                    found: actual.to_string(),
                })?,
            }),
            Task::Classification => Ok(Pair::Classification {
                predicted: label_text(predicted).ok_or(JoinError::NotAPrediction(
                    "a label is not a string, number or boolean",
                ))?,
                actual: label_text(actual).ok_or_else(|| JoinError::NotALabel {
                    row,
                    found: actual.to_string(),
                })?,
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((task, pairs))
}

/// A regressor's row: a number, or a list of one (scikit-learn's `(n, 1)` exports).
fn scalar_output(row: usize, value: &Value) -> Result<f64, JoinError> {
    match value {
        Value::Array(outputs) if outputs.len() == 1 => scalar_output(row, &outputs[0]),
        Value::Array(outputs) => Err(JoinError::MultiOutput {
            row,
            outputs: outputs.len(),
        }),
        other => other.as_f64().ok_or(JoinError::NotAPrediction(
            "a regression output is not a number",
        )),
    }
}

/// One spelling per class, so that the truth `1`, `1.0` and `"1"` all match the label `1`.
pub fn label_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(format!("{}", f as i64)),
            _ => Some(n.to_string()),
        },
        _ => None,
    }
}

/// Sums over a regressor's pairs, as the store aggregates them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RegressionTally {
    pub count: u64,
    pub abs_error_sum: f64,
    pub squared_error_sum: f64,
}

/// Counts of (predicted, actual) label pairs, as the store aggregates them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Confusion {
    pub counts: BTreeMap<(String, String), u64>,
}

impl Confusion {
    pub fn add(&mut self, predicted: &str, actual: &str, count: u64) {
        *self
            .counts
            .entry((predicted.to_owned(), actual.to_owned()))
            .or_default() += count;
    }
}

/// A version's scores over the window.
#[derive(Debug, Clone, PartialEq)]
pub enum Scores {
    Regression {
        samples: u64,
        mae: f64,
        rmse: f64,
    },
    Classification {
        samples: u64,
        accuracy: f64,
        precision: f64,
        recall: f64,
        f1: f64,
    },
}

impl Scores {
    pub fn samples(&self) -> u64 {
        match self {
            Scores::Regression { samples, .. } | Scores::Classification { samples, .. } => *samples,
        }
    }

    /// `(metric name, value)` pairs, the names `lamina_model_quality` labels them with.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        match *self {
            Scores::Regression { mae, rmse, .. } => vec![("mae", mae), ("rmse", rmse)],
            Scores::Classification {
                accuracy,
                precision,
                recall,
                f1,
                ..
            } => vec![
                ("accuracy", accuracy),
                ("precision", precision),
                ("recall", recall),
                ("f1", f1),
            ],
        }
    }
}

pub fn regression_scores(t: &RegressionTally) -> Option<Scores> {
    (t.count > 0).then(|| Scores::Regression {
        samples: t.count,
        mae: t.abs_error_sum / t.count as f64,
        rmse: (t.squared_error_sum / t.count as f64).sqrt(),
    })
}

pub fn classification_scores(c: &Confusion) -> Option<Scores> {
    let samples: u64 = c.counts.values().sum();
    if samples == 0 {
        return None;
    }
    let classes: BTreeSet<&str> = c
        .counts
        .keys()
        .flat_map(|(p, a)| [p.as_str(), a.as_str()])
        .collect();
    let correct: u64 = c
        .counts
        .iter()
        .filter(|((p, a), _)| p == a)
        .map(|(_, n)| n)
        .sum();
    let ratio = |num: u64, den: u64| {
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    };
    let (mut precision, mut recall, mut f1) = (0.0, 0.0, 0.0);
    for class in &classes {
        let tp = c
            .counts
            .get(&((*class).to_owned(), (*class).to_owned()))
            .copied()
            .unwrap_or(0);
        let predicted: u64 = c
            .counts
            .iter()
            .filter(|((p, _), _)| p == class)
            .map(|(_, n)| n)
            .sum();
        let actual: u64 = c
            .counts
            .iter()
            .filter(|((_, a), _)| a == class)
            .map(|(_, n)| n)
            .sum();
        let p = ratio(tp, predicted);
        let r = ratio(tp, actual);
        precision += p;
        recall += r;
        f1 += if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        };
    }
    let n = classes.len() as f64;
    Some(Scores::Classification {
        samples,
        accuracy: ratio(correct, samples),
        precision: precision / n,
        recall: recall / n,
        f1: f1 / n,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn joins_rows_of_regressors_and_classifiers() {
        let (task, pairs) = join(&json!({"output": [[1.5], [2.0]]}), &json!([1.0, 3])).unwrap();
        assert_eq!(task, Task::Regression);
        assert_eq!(
            pairs,
            vec![
                Pair::Regression {
                    predicted: 1.5,
                    actual: 1.0
                },
                Pair::Regression {
                    predicted: 2.0,
                    actual: 3.0
                }
            ]
        );
        let (task, pairs) = join(
            &json!({"label": [1], "probabilities": [{"0": 0.1, "1": 0.9}]}),
            &json!("1"),
        )
        .unwrap();
        assert_eq!(task, Task::Classification);
        assert_eq!(
            pairs,
            vec![Pair::Classification {
                predicted: "1".into(),
                actual: "1".into()
            }]
        );
    }

    #[test]
    fn refuses_truth_that_does_not_fit() {
        let cases = [
            (
                json!({"output": [1.0, 2.0]}),
                json!([1.0]),
                "has 2 rows but GroundTruth has 1",
            ),
            (json!({"output": [1.0]}), json!("x"), "must be a number"),
            (
                json!({"label": ["a"]}),
                json!({"x": 1}),
                "must be a class label",
            ),
            (json!({"output": [[1.0, 2.0]]}), json!(1.0), "single-output"),
            (
                json!({"statusCode": 200}),
                json!(1.0),
                "neither `label` nor `output`",
            ),
        ];
        for (prediction, truth, message) in cases {
            let err = join(&prediction, &truth).unwrap_err().to_string();
            assert!(err.contains(message), "{err} lacks {message}");
        }
    }

    #[test]
    fn labels_have_one_spelling() {
        assert_eq!(label_text(&json!(1)), Some("1".into()));
        assert_eq!(label_text(&json!(1.0)), Some("1".into()));
        assert_eq!(label_text(&json!(1.5)), Some("1.5".into()));
        assert_eq!(label_text(&json!("setosa")), Some("setosa".into()));
        assert_eq!(label_text(&json!(true)), Some("true".into()));
        assert_eq!(label_text(&json!(null)), None);
    }

    #[test]
    fn regression_scores_are_mae_and_rmse() {
        let t = RegressionTally {
            count: 4,
            abs_error_sum: 1.0 + 1.0 + 3.0 + 3.0,
            squared_error_sum: 1.0 + 1.0 + 9.0 + 9.0,
        };
        assert_eq!(
            regression_scores(&t),
            Some(Scores::Regression {
                samples: 4,
                mae: 2.0,
                rmse: 5.0f64.sqrt()
            })
        );
        assert_eq!(regression_scores(&RegressionTally::default()), None);
    }

    #[test]
    fn classification_scores_are_scikit_learns_macro_averages() {
        // y_true = [a, a, a, b, b, c], y_pred = [a, a, b, b, c, c]
        let mut c = Confusion::default();
        for (p, a) in [
            ("a", "a"),
            ("a", "a"),
            ("b", "a"),
            ("b", "b"),
            ("c", "b"),
            ("c", "c"),
        ] {
            c.add(p, a, 1);
        }
        let Some(Scores::Classification {
            samples,
            accuracy,
            precision,
            recall,
            f1,
        }) = classification_scores(&c)
        else {
            panic!("expected classification scores");
        };
        assert_eq!(samples, 6);
        assert!((accuracy - 4.0 / 6.0).abs() < 1e-12);
        // precision: a 2/2, b 1/2, c 1/2; recall: a 2/3, b 1/2, c 1/1
        assert!((precision - (1.0 + 0.5 + 0.5) / 3.0).abs() < 1e-12);
        assert!((recall - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        let f = |p: f64, r: f64| 2.0 * p * r / (p + r);
        let expected_f1 = (f(1.0, 2.0 / 3.0) + f(0.5, 0.5) + f(0.5, 1.0)) / 3.0;
        assert!((f1 - expected_f1).abs() < 1e-12);
    }

    #[test]
    fn a_class_never_predicted_scores_zero_precision() {
        let mut c = Confusion::default();
        c.add("a", "a", 1);
        c.add("a", "b", 1);
        let Some(Scores::Classification {
            precision, recall, ..
        }) = classification_scores(&c)
        else {
            panic!("expected classification scores");
        };
        assert!((precision - 0.25).abs() < 1e-12);
        assert!((recall - 0.5).abs() < 1e-12);
    }
}
