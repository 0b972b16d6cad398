//! `cebus route` end to end: the real binary routes events from files through
//! the same matcher the broker uses, explains misses, and streams big files.

use std::io::Write;
use std::path::Path;
use std::process::Output;

use cebus_e2e::cebus_bin;

const CONFIG: &str = r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: orders
spec:
  broker: default
  filters:
    - prefix:
        type: com.example.order
  subscriber:
    uri: http://127.0.0.1:9/
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: eu
spec:
  broker: default
  filter:
    attributes:
      source: /shop/eu
  subscriber:
    uri: http://127.0.0.1:9/
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: big-orders
spec:
  broker: default
  filters:
    - cesql: "type = 'com.example.order.created' AND subject LIKE 'vip-%'"
  subscriber:
    uri: http://127.0.0.1:9/
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn route(args: &[&str]) -> Output {
    std::process::Command::new(cebus_bin())
        .arg("route")
        .args(args)
        .output()
        .expect("run cebus route")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const EVENTS: &str = r#"[
 {"specversion":"1.0","id":"1","source":"/shop/eu","type":"com.example.order.created","subject":"vip-7"},
 {"specversion":"1.0","id":"2","source":"/shop/us","type":"com.example.order.created","subject":"regular"},
 {"specversion":"1.0","id":"3","source":"/billing","type":"com.example.refund"}
]"#;

#[test]
fn routes_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "config.yaml", CONFIG);
    let events = write(dir.path(), "events.json", EVENTS);
    let single = write(
        dir.path(),
        "one.json",
        r#"{"specversion":"1.0","id":"4","source":"/shop/eu","type":"x"}"#,
    );

    let out = route(&["-f", &config, &events, &single]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "1 -> default/big-orders, default/eu, default/orders\n2 -> default/orders\n3 -> (no trigger)\n4 -> default/eu\n"
    );

    let out = route(&[
        "-f",
        &config,
        "-o",
        "json",
        "--broker",
        "default/default",
        &events,
    ]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        serde_json::json!({"id": "1", "broker": "default/default",
            "matched": ["default/big-orders", "default/eu", "default/orders"]})
    );
    assert_eq!(lines[2]["matched"], serde_json::json!([]));
}

#[test]
fn explain_says_which_part_failed() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "config.yaml", CONFIG);
    let events = write(dir.path(), "events.json", EVENTS);
    let out = route(&["-f", &config, "-o", "json", "--explain", &events]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Event 2 misses `eu` (source) and `big-orders` (the CESQL expression).
    let unmatched = lines[1]["unmatched"].as_array().unwrap();
    let eu = unmatched
        .iter()
        .find(|u| u["trigger"] == "default/eu")
        .unwrap();
    assert_eq!(eu["attribute"], "source");
    assert_eq!(eu["expected"], "\"/shop/eu\"");
    assert_eq!(eu["actual"], "/shop/us");
    let vip = unmatched
        .iter()
        .find(|u| u["trigger"] == "default/big-orders")
        .unwrap();
    assert!(vip["reason"].as_str().unwrap().contains("cesql"), "{vip}");
    assert_eq!(vip["actual"], "FALSE");
    // A matched trigger is never listed as unmatched.
    assert!(lines[0]["unmatched"].as_array().unwrap().is_empty());

    let out = route(&["-f", &config, "--explain", &events]);
    let text = stdout(&out);
    assert!(
        text.contains("  not default/eu: all[0]: source: expected \"/shop/eu\", got \"/billing\""),
        "{text}"
    );
}

#[test]
fn bad_inputs_exit_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "config.yaml", CONFIG);
    let bad_event = write(
        dir.path(),
        "bad.json",
        r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2"}]"#,
    );
    let out = route(&["-f", &config, &bad_event]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("event 1") && err.contains("source"),
        "{err}"
    );

    let not_json = write(dir.path(), "nope.json", "{not json");
    let out = route(&["-f", &config, &not_json]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.json"));

    let out = route(&["-f", &config, "--broker", "default/other", &not_json]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Broker default/other"));

    let bad_config = write(
        dir.path(),
        "bad.yaml",
        &CONFIG.replace("cesql: \"type", "cesql: \"type ="),
    );
    let out = route(&["-f", &bad_config, &not_json]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Trigger default/big-orders") && err.contains("spec.filters[0].cesql"),
        "{err}"
    );
}

#[test]
fn streams_a_large_batch_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "config.yaml", CONFIG);
    let path = dir.path().join("many.json");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let n = 200_000;
    write!(f, "[").unwrap();
    for i in 0..n {
        let sep = if i == 0 { "" } else { "," };
        let ty = if i % 2 == 0 {
            "com.example.order"
        } else {
            "other"
        };
        write!(
            f,
            r#"{sep}{{"specversion":"1.0","id":"{i}","source":"/s","type":"{ty}"}}"#
        )
        .unwrap();
    }
    write!(f, "]").unwrap();
    f.flush().unwrap();
    drop(f);
    let out = route(&["-f", &config, "-o", "json", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(text.lines().count(), n);
    let orders = text
        .lines()
        .filter(|l| l.contains("default/orders"))
        .count();
    assert_eq!(orders, n / 2);
}
