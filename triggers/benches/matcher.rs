//! Time per event to find every matching trigger, by number of triggers, and the
//! time to build a matcher. Mix: mostly exact `type` filters, 10 % prefix, 1 % CESQL.
//!
//! `cargo bench -p cebus-triggers --bench matcher`

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use cebus_api::{SubscriptionsApiFilter, TriggerSpec};
use cebus_events::Event;
use cebus_triggers::{Filter, Matcher};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Filter `i` of a broker with `n` triggers.
fn filter(i: usize) -> Filter {
    let mut entry = SubscriptionsApiFilter::default();
    if i % 100 == 99 {
        entry.cesql = Some(format!(
            "type = 'com.example.t{i}' AND subject LIKE 'vip-%'"
        ));
    } else if i % 10 == 9 {
        entry
            .prefix
            .insert("type".into(), format!("com.example.p{i}."));
    } else {
        entry
            .exact
            .insert("type".into(), format!("com.example.t{i}"));
    }
    let spec = TriggerSpec {
        broker: "default".into(),
        filters: vec![entry],
        ..TriggerSpec::default()
    };
    Filter::compile(&spec).expect("bench filters compile")
}

fn matchers(c: &mut Criterion) {
    let mut group = c.benchmark_group("match_one_event");
    for n in [1usize, 10, 100, 1_000, 10_000] {
        let matcher = Matcher::new((0..n).map(filter).collect());
        // An event that matches exactly one exact-type trigger (the middle one).
        let target = (n / 2) / 10 * 10;
        let mut event =
            Event::with_required("id-1", "/bench/source", &format!("com.example.t{target}"));
        event.set("subject", "vip-42");
        let mut out = Vec::with_capacity(16);
        matcher.matches_into(&event, &mut out);
        assert_eq!(out, vec![target as u32], "n = {n}");
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                matcher.matches_into(black_box(&event), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();

    let filters: Vec<Filter> = (0..10_000).map(filter).collect();
    c.bench_function("build_10000_triggers", |b| {
        b.iter(|| Matcher::new(black_box(filters.clone())))
    });
}

criterion_group!(benches, matchers);
criterion_main!(benches);
