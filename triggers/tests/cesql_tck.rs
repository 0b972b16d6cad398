//! The CloudEvents SQL conformance kit (TCK): every case in the shared folder
//! must parse (or fail to parse) and evaluate exactly as the case says.
//!
//! The folder is `CESQL_TCK_DIR`, else `../../shared/cesql-tck` from this crate when it exists, else the vendored `tests/cesql-tck`.
//! A missing folder fails the test: a conformance suite that silently skips
//! cannot catch anything.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cebus_events::{AttrValue, Event};
use cebus_triggers::cesql::{self, ErrorKind, Value};
use serde::Deserialize;

/// How many cases the published kit has; a different count means a file was
/// lost or not read.
const EXPECTED_CASES: usize = 275;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    name: String,
    tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    /// Any scalar: `TRUE` and `10` are expressions too.
    expression: serde_json::Value,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    event: Option<serde_json::Value>,
    #[serde(default)]
    event_overrides: Option<BTreeMap<String, serde_json::Value>>,
}

fn tck_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CESQL_TCK_DIR") {
        return PathBuf::from(dir);
    }
    // The team's shared copy beside the checkout when there is one; otherwise the
    // copy vendored in this repository (the same 275 cases, Apache-2.0, see its
    // README), so a clean checkout on a fresh CI machine runs them too.
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/cesql-tck");
    if shared.is_dir() {
        shared
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cesql-tck")
    }
}

/// A scalar as the text of an expression.
fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        other => panic!("expression is not a scalar: {other}"),
    }
}

fn expected_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Integer(
            n.as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .unwrap_or_else(|| panic!("result {n} is not a 32-bit integer")),
        ),
        serde_json::Value::String(s) => Value::String(s.clone()),
        other => panic!("result is not a scalar: {other}"),
    }
}

fn error_kind(name: &str) -> ErrorKind {
    match name {
        "parse" => ErrorKind::Parse,
        "math" => ErrorKind::Math,
        "cast" => ErrorKind::Cast,
        "missingFunction" => ErrorKind::MissingFunction,
        "functionEvaluation" => ErrorKind::FunctionEvaluation,
        "missingAttribute" => ErrorKind::MissingAttribute,
        "generic" => ErrorKind::Generic,
        other => panic!("unknown error kind {other:?}"),
    }
}

/// The case's input event: `event` as structured JSON, or `eventOverrides`
/// set on a valid event with only the required attributes.
fn event_of(case: &Case) -> Result<Event, String> {
    if let Some(json) = &case.event {
        return cebus_events::from_json(json.to_string().as_bytes())
            .map_err(|e| format!("event does not decode: {e}"));
    }
    let mut event = Event::with_required("myId", "localhost.localdomain", "myType");
    for (name, value) in case.event_overrides.iter().flatten() {
        let value = match value {
            serde_json::Value::String(s) => AttrValue::String(s.clone()),
            serde_json::Value::Bool(b) => AttrValue::Boolean(*b),
            serde_json::Value::Number(n) => AttrValue::Integer(
                n.as_i64()
                    .ok_or_else(|| format!("override {name} is not an integer"))?,
            ),
            other => return Err(format!("override {name} is not a scalar: {other}")),
        };
        event.set(name.clone(), value);
    }
    Ok(event)
}

/// Runs one case; `Err` says how it failed.
fn run(case: &Case) -> Result<(), String> {
    let expression = scalar_text(&case.expression);
    let want_error = case.error.as_deref().map(error_kind);
    let expr = match cesql::parse(&expression) {
        Ok(expr) => expr,
        Err(e) if want_error == Some(ErrorKind::Parse) => {
            // The position must point inside (or just past) the expression.
            return if e.position <= expression.chars().count() {
                Ok(())
            } else {
                Err(format!("parse error position {} out of range", e.position))
            };
        }
        Err(e) => return Err(format!("{expression:?} does not parse: {e}")),
    };
    if want_error == Some(ErrorKind::Parse) {
        return Err(format!(
            "{expression:?} parsed as {expr:?}, expected a parse error"
        ));
    }
    let event = event_of(case)?;
    let got = cesql::evaluate(&expr, &event);
    let mut problems = Vec::new();
    if let Some(want) = &case.result {
        let want = expected_value(want);
        if got.value != want {
            problems.push(format!("value {:?}, expected {want:?}", got.value));
        }
    }
    match want_error {
        None if !got.errors.is_empty() => {
            problems.push(format!("unexpected errors {:?}", got.errors));
        }
        Some(kind) if got.errors.is_empty() || got.errors.iter().any(|e| e.kind != kind) => {
            problems.push(format!("errors {:?}, expected only {kind:?}", got.errors));
        }
        _ => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{expression:?}: {}", problems.join("; ")))
    }
}

#[test]
fn every_tck_case_passes() {
    let dir = tck_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        panic!(
            "CESQL TCK folder {} cannot be read ({e}){}; set CESQL_TCK_DIR to the folder \
             holding the TCK YAML files",
            dir.display(),
            if ci { " under CI" } else { "" }
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no TCK YAML files in {}", dir.display());

    let mut ran = 0;
    let mut failures = Vec::new();
    for path in &files {
        let file = path.file_name().expect("file name").to_string_lossy();
        let text = std::fs::read_to_string(path).expect("read TCK file");
        let suite: Suite = match serde_saphyr::from_str(&text) {
            Ok(suite) => suite,
            Err(e) => {
                failures.push(format!("{file}: does not load: {e}"));
                continue;
            }
        };
        for case in &suite.tests {
            ran += 1;
            if let Err(why) = run(case) {
                failures.push(format!("{file} / {} / {}: {why}", suite.name, case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} TCK cases failed (from {}):\n{}",
        failures.len(),
        dir.display(),
        failures.join("\n")
    );
    assert_eq!(ran, EXPECTED_CASES, "TCK cases run from {}", dir.display());
    println!("CESQL TCK: {ran}/{EXPECTED_CASES} cases passed");
}
