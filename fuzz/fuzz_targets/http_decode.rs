//! Fuzzes the HTTP binding decoders: binary, structured and batch modes, and the JSON
//! event format. None of them may panic, whatever the headers and body.
//!
//! Input layout: byte 0 picks the Content-Type; then up to 8 header lines, each
//! `name:value\n`, end at an empty line (`\n`); the rest is the body. Header names are
//! prefixed with `ce-` when byte 0 says so, to reach binary mode often.

#![no_main]

use bytes::Bytes;
use cebus_events::{
    AttrValue, Decoded, decode, decode_and_validate, encode_batch, encode_binary,
    encode_structured, from_json, to_json, validate,
};
use http::{HeaderMap, HeaderName, HeaderValue, header::CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: &[&str] = &[
    "",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/cloudevents+json; charset=utf-8",
    "Application/CloudEvents+JSON",
    "application/cloudevents+avro",
    "application/json",
    "text/plain",
];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, mut rest)) = input.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    if !content_type.is_empty() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let ce_prefix = selector & 0x80 != 0;
    for _ in 0..8 {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        let (line, tail) = (&rest[..end], &rest[end + 1..]);
        rest = tail;
        if line.is_empty() {
            break;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &b""[..]),
        };
        let name = if ce_prefix {
            [b"ce-", name].concat()
        } else {
            name.to_vec()
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&name),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let body = Bytes::copy_from_slice(rest);

    if let Ok(decoded) = decode(&headers, body.clone()) {
        // Whatever decodes must encode, and binary/JSON encodings must decode again.
        for event in decoded.clone().into_events() {
            let valid = validate(&event).is_ok();
            let mut out = HeaderMap::new();
            let structured = encode_structured(&event, &mut out);
            let again = from_json(&structured).expect("to_json output decodes");
            assert_eq!(
                again.data(),
                event.data(),
                "data survives a JSON round trip"
            );
            if valid {
                assert_eq!(again, event, "a valid event survives a JSON round trip");
            }
            let mut out = HeaderMap::new();
            let body = encode_binary(&event, &mut out);
            let binary_exact = event
                .attributes()
                .all(|(_, v)| matches!(v, AttrValue::String(_)))
                && event.data().is_none_or(|d| !d.is_empty());
            if valid && binary_exact {
                let again = decode(&out, body).expect("encode_binary output decodes");
                assert_eq!(
                    again,
                    Decoded::Single(event),
                    "a valid event survives binary mode"
                );
            }
        }
        if let Decoded::Batch(events) = &decoded {
            let _ = encode_batch(events);
        }
    }
    if let Err(e) = decode_and_validate(&headers, body) {
        let _ = e.to_json_body();
    }
    if let Ok(event) = from_json(rest) {
        let _ = to_json(&event);
    }
});
