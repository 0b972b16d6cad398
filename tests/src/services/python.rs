//! The CloudEvents Python SDK's interpreter (`$CEBUS_PYTHON`).

/// The Python interpreter that has the CloudEvents Python SDK (PyPI `cloudevents`,
/// the `cloudevents.http` API): `$CEBUS_PYTHON` (set by `scripts/test`, or by hand
/// as `CEBUS_PYTHON=$(scripts/python-env)`), else `python3` if it can import the
/// SDK. Panics otherwise, in CI and locally alike: a test that needs the SDK never
/// silently skips.
pub fn cloudevents_python() -> String {
    static PYTHON: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(find_cloudevents_python)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn find_cloudevents_python() -> Result<String, String> {
    fn has_sdk(python: &str) -> Result<(), String> {
        match std::process::Command::new(python)
            .args(["-c", "import cloudevents.http"])
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no output")
                .to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }
    let hint = "run scripts/test, which installs the CloudEvents Python SDK \
                (or set CEBUS_PYTHON=$(scripts/python-env) when running cargo test by hand)";
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match std::env::var("CEBUS_PYTHON") {
        Ok(python) if !python.is_empty() => {
            has_sdk(&python).map(|()| python.clone()).map_err(|e| {
                format!("CEBUS_PYTHON={python} cannot import cloudevents.http ({e}): {hint}")
            })
        }
        _ => match has_sdk("python3") {
            Ok(()) => Ok("python3".to_owned()),
            Err(e) => Err(format!(
                "the CloudEvents Python SDK is missing: CEBUS_PYTHON is unset and python3 \
                 cannot import cloudevents.http ({e}){}: {hint}",
                if ci { " in CI" } else { "" }
            )),
        },
    }
}
