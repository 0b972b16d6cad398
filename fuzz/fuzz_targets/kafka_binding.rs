//! Fuzzes the Kafka protocol binding decoder: binary (`ce_` headers) and structured
//! (JSON value) records. Decoding must never panic, and whatever decodes must
//! survive binary mode exactly and structured mode as the JSON format does.
//!
//! Input layout: byte 0 holds flags (bit 0: null value, bit 1: a key, bit 7: prefix
//! header names with `ce_`); then up to 8 header lines `name:value\n` end at an
//! empty line; the rest is the value (and the key, when asked for, is its first 4
//! bytes).

#![no_main]

use bytes::Bytes;
use cebus_channels::kafka::binding::{KafkaRecord, decode, encode_binary, encode_structured};
use cebus_events::{from_json, to_json, validate};
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
            name.insert_str(0, "ce_");
        }
        headers.push((name, Bytes::copy_from_slice(value)));
    }
    let record = KafkaRecord {
        key: (flags & 2 != 0).then(|| Bytes::copy_from_slice(&rest[..rest.len().min(4)])),
        headers,
        value: (flags & 1 == 0).then(|| Bytes::copy_from_slice(rest)),
    };

    let Ok(event) = decode(&record) else {
        return;
    };
    // Binary mode is exact for every event whose attributes are strings, which is
    // every event a binary record decodes to.
    if event
        .attributes()
        .all(|(_, v)| matches!(v, cebus_events::AttrValue::String(_)))
    {
        let again = decode(&encode_binary(&event)).expect("encode_binary output decodes");
        assert_eq!(again, event, "binary mode round trip");
    }
    let structured = decode(&encode_structured(&event)).expect("encode_structured output decodes");
    assert_eq!(
        structured,
        from_json(&to_json(&event)).expect("to_json output decodes"),
        "structured mode is the JSON format"
    );
    if validate(&event).is_ok() {
        assert_eq!(structured, event, "a valid event survives structured mode");
    }
});
