//! A stored Kafka record: an envelope as the record cebus produces and back,
//! and a record's position (partition and offset packed in one `u64`). Pure.

use bytes::Bytes;

use super::binding::{self, KafkaRecord};
use crate::channel::Envelope;
use crate::durable::headers::{self, Stored, TTL_HEADER, TYPED_HEADER};

/// Bits of a packed position that hold the Kafka offset (2^40 ≈ 10^12 records
/// per partition); the partition number sits above them.
const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// A partition and an offset packed into a record position.
pub fn position(partition: i32, offset: i64) -> u64 {
    (u64::try_from(partition).unwrap_or(0) << OFFSET_BITS)
        | (u64::try_from(offset).unwrap_or(0) & OFFSET_MASK)
}

/// The partition and offset of a packed position.
pub fn split(position: u64) -> (i32, i64) {
    (
        i32::try_from(position >> OFFSET_BITS).unwrap_or(i32::MAX),
        i64::try_from(position & OFFSET_MASK).unwrap_or(i64::MAX),
    )
}

/// An envelope as the record cebus produces: binary mode, the hop budget, the
/// extension types, and the forwarded headers under their own names.
pub fn encode(envelope: &Envelope) -> KafkaRecord {
    let mut r = binding::encode_binary(&envelope.event);
    r.headers.extend(
        headers::cebus_headers(envelope)
            .map(|(n, v)| (n.to_owned(), Bytes::from(v)))
            .chain(
                envelope
                    .headers
                    .iter()
                    .map(|(n, v)| (n.clone(), Bytes::copy_from_slice(v.as_bytes()))),
            ),
    );
    r
}

/// A stored record back into an envelope, validated as ingress would.
///
/// Records from other producers (kcat, Knative's data plane) are welcome:
/// without `cebus-ttl` the hop counter follows ingress's rule (absent ⇒
/// `default_ttl`; present ⇒ decremented, ≤ 0 refuses the record), and a missing
/// `knativearrivaltime` is `arrival` (the record's timestamp).
pub fn decode(record: &KafkaRecord, default_ttl: u32, arrival: &str) -> Result<Envelope, String> {
    let event = binding::decode(record).map_err(|e| e.to_string())?;
    headers::envelope(
        event,
        Stored {
            typed: record
                .header(TYPED_HEADER)
                .and_then(|v| std::str::from_utf8(v).ok()),
            ttl: record
                .header(TTL_HEADER)
                .map(|t| std::str::from_utf8(t).unwrap_or("\u{FFFD}")),
            headers: record.headers.iter().filter_map(|(n, v)| {
                let value = std::str::from_utf8(v).ok()?;
                Some((n.clone(), value.to_owned()))
            }),
            default_ttl,
            arrival,
        },
    )
}

#[cfg(test)]
mod tests {
    use cebus_events::{AttrValue, Event, attr};

    use super::*;
    use crate::kafka::topic_name;

    #[test]
    fn positions_pack_partition_and_offset() {
        for (p, o) in [(0, 0), (9, 12_345), (1023, (1 << 40) - 1)] {
            assert_eq!(split(position(p, o)), (p, o));
        }
        assert!(position(0, 5) < position(0, 6));
        assert_eq!(topic_name("ns", "b"), "knative-broker-ns-b");
    }

    #[test]
    fn envelopes_round_trip_in_binary_mode() {
        let mut e = Event::with_required("id-1", "/src", "t");
        e.set("count", AttrValue::Integer(-7));
        e.set("flag", AttrValue::Boolean(true));
        e.set("partitionkey", "order-7");
        e.set(attr::KNATIVE_ARRIVAL_TIME, "2024-01-01T00:00:00.000001Z");
        e.set_data(Some(bytes::Bytes::from_static(b"\x00\xff")));
        let env = Envelope {
            event: e,
            headers: vec![("traceparent".into(), "00-a-b-01".into())],
            ttl: 9,
        };
        let r = encode(&env);
        assert_eq!(r.key.as_deref(), Some(&b"order-7"[..]));
        assert_eq!(r.header("ce_id").map(|v| v.as_ref()), Some(&b"id-1"[..]));
        assert_eq!(r.header(TTL_HEADER).map(|v| v.as_ref()), Some(&b"9"[..]));
        assert_eq!(decode(&r, 255, "unused").unwrap(), env);
    }

    #[test]
    fn foreign_records_follow_the_ingress_hop_rules() {
        let foreign = |ttl: Option<&str>| {
            let mut e = Event::with_required("x", "/kcat", "t");
            if let Some(t) = ttl {
                e.set(attr::KNATIVE_BROKER_TTL, t);
            }
            binding::encode_binary(&e)
        };
        let arrival = "2024-05-01T10:00:00.000000Z";
        let env = decode(&foreign(None), 17, arrival).unwrap();
        assert_eq!(env.ttl, 17);
        assert_eq!(
            env.event.get_str(attr::KNATIVE_ARRIVAL_TIME).as_deref(),
            Some(arrival)
        );
        assert_eq!(decode(&foreign(Some("5")), 17, arrival).unwrap().ttl, 4);
        assert!(decode(&foreign(Some("1")), 17, arrival).is_err());
        let mut no_type = binding::encode_binary(&Event::with_required("x", "/k", "t"));
        no_type.headers.retain(|(n, _)| n != "ce_type");
        assert!(decode(&no_type, 17, arrival).is_err());
    }
}
