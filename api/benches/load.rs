//! Time to load a broker with 10,000 triggers from YAML text: parse, validate and
//! compile every trigger's filter into one matcher, as a cold start or
//! `cebus route` does. Each stage is also measured alone.
//!
//! `cargo bench -p cebus-api --bench load`

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use cebus_api::{Config, load_sources, validate};
use cebus_triggers::{Filter, Matcher};
use criterion::{Criterion, criterion_group, criterion_main};

/// Triggers in the loaded config.
const TRIGGERS: usize = 10_000;

/// A broker and `n` triggers in two files, as `cebus-bench` writes them: most
/// triggers use the legacy `filter.attributes`, every fourth the `filters`
/// dialects (exact, prefix, and a CESQL expression in one of a hundred).
fn sources(n: usize) -> Vec<(PathBuf, String)> {
    let broker =
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n  \
                  namespace: default\nspec:\n  delivery:\n    retry: 3\n    backoffDelay: PT0.2S\n"
            .to_owned();
    let mut triggers = String::with_capacity(n * 300);
    for i in 0..n {
        let filter = if i % 100 == 99 {
            format!(
                "  filters:\n    - cesql: \"type = 'com.example.t{i}' AND subject LIKE 'vip-%'\"\n"
            )
        } else if i % 4 == 3 {
            format!(
                "  filters:\n    - exact:\n        type: com.example.t{i}\n    - prefix:\n        \
                 source: /shop/\n"
            )
        } else {
            format!("  filter:\n    attributes:\n      type: com.example.t{i}\n")
        };
        triggers.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t-{i}\n  \
             namespace: default\nspec:\n  broker: default\n{filter}  subscriber:\n    \
             uri: http://127.0.0.1:9/t-{i}\n  delivery:\n    timeout: PT5S\n"
        ));
    }
    vec![
        (PathBuf::from("broker.yaml"), broker),
        (PathBuf::from("triggers.yaml"), triggers),
    ]
}

fn parse(files: &[(PathBuf, String)]) -> Config {
    load_sources(files.iter().cloned()).expect("bench config loads")
}

fn check(config: &Config) {
    let errors = validate(config);
    assert!(errors.is_empty(), "{errors:?}");
}

fn compile(config: &Config) -> Matcher {
    let filters = config
        .triggers
        .iter()
        .map(|t| Filter::compile(&t.object.spec).expect("bench filters compile"))
        .collect();
    Matcher::new(filters)
}

fn load(c: &mut Criterion) {
    let files = sources(TRIGGERS);
    let config = parse(&files);
    assert_eq!(config.triggers.len(), TRIGGERS);
    let mut group = c.benchmark_group("load_10000_triggers");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("parse", |b| b.iter(|| parse(black_box(&files))));
    group.bench_function("validate", |b| b.iter(|| check(black_box(&config))));
    group.bench_function("compile_matcher", |b| {
        b.iter(|| compile(black_box(&config)).len())
    });
    group.bench_function("total", |b| {
        b.iter(|| {
            let config = parse(black_box(&files));
            check(&config);
            compile(&config).len()
        })
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
