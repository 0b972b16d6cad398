//! What ingress and delivery pay per event in the HTTP binding: decoding a
//! binary-mode request (and validating it), and encoding an event for delivery.
//! `cargo bench -p cebus-events --bench codec`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use cebus_events::http::{Decoded, decode_and_validate, encode_binary};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};

/// The headers `cebus-bench` sends: the required attributes, `time`, an
/// extension and a content type.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "4f1c0a5e-7b7d-4f55-9d6e-1b2c3d4e5f60"),
        ("ce-source", "/bench/generator"),
        ("ce-type", "dev.cebus.bench"),
        ("ce-time", "2026-11-26T10:00:00.123456Z"),
        ("ce-sendtime", "1732615200123456789"),
        ("content-type", "application/octet-stream"),
    ] {
        h.insert(n, HeaderValue::from_static(v));
    }
    h
}

fn codec(c: &mut Criterion) {
    let headers = request_headers();
    let body = Bytes::from(vec![b'x'; 1024]);
    c.bench_function("decode binary 1KiB", |b| {
        b.iter(|| decode_and_validate(black_box(&headers), body.clone()).unwrap())
    });
    let Decoded::Single(event) = decode_and_validate(&headers, body.clone()).unwrap() else {
        unreachable!("one binary-mode event")
    };
    c.bench_function("encode binary 1KiB", |b| {
        b.iter(|| {
            let mut out = HeaderMap::new();
            black_box(encode_binary(black_box(&event), &mut out));
            out
        })
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
