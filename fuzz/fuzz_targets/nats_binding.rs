//! Fuzzes the NATS protocol binding decoder: binary (`ce-` headers, percent-encoded
//! or quoted values) and structured (JSON payload) messages, and `Nats-Msg-Id`.
//! Decoding must never panic; a valid event must survive binary mode exactly, and
//! its message id must be a valid header value.
//!
//! Input layout: byte 0 holds flags (bit 7: prefix header names with `ce-`); then
//! up to 8 header lines `name:value\n` end at an empty line; the rest is the payload.

#![no_main]

use bytes::Bytes;
use cebus_channels::nats::binding::{
    NatsMessage, decode, encode_binary, encode_structured, msg_id,
};
use cebus_events::{AttrValue, from_json, to_json, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, mut rest)) = input.split_first() else {
        return;
    };
    let mut headers = Vec::new();
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
        let mut name = String::from_utf8_lossy(name).into_owned();
        if flags & 0x80 != 0 {
            name.insert_str(0, "ce-");
        }
        headers.push((name, String::from_utf8_lossy(value).into_owned()));
    }
    let message = NatsMessage {
        headers,
        payload: Bytes::copy_from_slice(rest),
    };

    let Ok(event) = decode(&message) else {
        return;
    };
    let id = msg_id(&event);
    assert!(
        id.bytes().all(|b| (b'!'..=b'~').contains(&b)),
        "Nats-Msg-Id {id:?} is a valid header value"
    );
    let structured = decode(&encode_structured(&event)).expect("encode_structured output decodes");
    assert_eq!(
        structured,
        from_json(&to_json(&event)).expect("to_json output decodes"),
        "structured mode is the JSON format"
    );
    // Binary mode is exact for valid events (header-safe names) with string
    // attributes and no or non-empty data.
    let binary_exact = validate(&event).is_ok()
        && event
            .attributes()
            .all(|(_, v)| matches!(v, AttrValue::String(_)))
        && event.data().is_none_or(|d| !d.is_empty());
    if binary_exact {
        let again = decode(&encode_binary(&event)).expect("encode_binary output decodes");
        assert_eq!(again, event, "binary mode round trip");
    }
});
