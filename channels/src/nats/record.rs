//! A stored NATS message: an envelope as the message cebus publishes and
//! back. Pure.

use super::binding::{self, NatsMessage};
use crate::channel::Envelope;
use crate::durable::headers::{self, Stored, TTL_HEADER, TYPED_HEADER};

/// An envelope as the NATS message cebus publishes: binary mode (`ce-` headers,
/// data as payload), `Nats-Msg-Id`, the hop budget, the extension types, and the
/// forwarded headers under their own names.
pub fn encode(envelope: &Envelope) -> NatsMessage {
    let mut m = binding::encode_binary(&envelope.event);
    m.headers.push((
        binding::NATS_MSG_ID.to_owned(),
        binding::msg_id(&envelope.event),
    ));
    m.headers.extend(
        headers::cebus_headers(envelope)
            .map(|(n, v)| (n.to_owned(), v))
            .chain(envelope.headers.iter().cloned()),
    );
    m
}

/// A stored message back into an envelope, validated as ingress would.
///
/// Messages from other publishers are welcome: without `cebus-ttl`, the hop
/// counter follows ingress's rule (absent ⇒ `default_ttl`; present ⇒ decremented,
/// and ≤ 0 refuses the message), and a missing `knativearrivaltime` is `arrival`
/// (when JetStream stored the message).
pub fn decode(message: &NatsMessage, default_ttl: u32, arrival: &str) -> Result<Envelope, String> {
    let event = binding::decode(message).map_err(|e| e.to_string())?;
    headers::envelope(
        event,
        Stored {
            typed: message.header(TYPED_HEADER),
            ttl: message.header(TTL_HEADER),
            headers: message.headers.iter().cloned(),
            default_ttl,
            arrival,
        },
    )
}

#[cfg(test)]
mod tests {
    use cebus_events::{AttrValue, Event, attr};

    use super::*;

    #[test]
    fn envelopes_round_trip_with_types_ttl_and_headers() {
        let mut e = Event::with_required("id-1", "/src", "t");
        e.set("count", AttrValue::Integer(-7));
        e.set("flag", AttrValue::Boolean(true));
        e.set("text", "42");
        e.set(attr::KNATIVE_ARRIVAL_TIME, "2024-01-01T00:00:00.000001Z");
        e.set_data(Some(bytes::Bytes::from_static(b"\x00\xff")));
        let env = Envelope {
            event: e,
            headers: vec![("traceparent".into(), "00-a-b-01".into())],
            ttl: 9,
        };
        let m = encode(&env);
        assert_eq!(m.header(binding::NATS_MSG_ID), Some("4:/srcid-1"));
        assert_eq!(decode(&m, 255, "unused").unwrap(), env);
    }

    #[test]
    fn foreign_messages_follow_the_ingress_hop_rules() {
        let foreign = |ttl: Option<&str>| {
            let mut e = Event::with_required("x", "/py", "t");
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
        let env = decode(&foreign(Some("5")), 17, arrival).unwrap();
        assert_eq!(env.ttl, 4);
        assert!(env.event.get(attr::KNATIVE_BROKER_TTL).is_none());
        assert!(decode(&foreign(Some("1")), 17, arrival).is_err());
        assert!(decode(&foreign(Some("x")), 17, arrival).is_err());
        let mut no_type = binding::encode_binary(&Event::with_required("x", "/py", "t"));
        no_type.headers.retain(|(n, _)| n != "ce-type");
        assert!(
            decode(&no_type, 17, arrival).is_err(),
            "validated like ingress"
        );
    }
}
