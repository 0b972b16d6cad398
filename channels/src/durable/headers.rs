//! The headers cebus adds to a stored event, beside the transport's CloudEvents
//! binding, and the rules that turn a stored record back into an envelope. The
//! same for every durable backend: only the header types differ (Kafka values
//! are bytes, NATS values text), so the backends convert at the edge.

use cebus_events::{AttrValue, Event, attr};

use crate::channel::Envelope;

/// Header carrying the remaining hop budget (`knativebrokerttl`) of a stored event.
pub const TTL_HEADER: &str = "cebus-ttl";
/// Header naming the extensions whose values are integers or booleans
/// (`name=integer,other=boolean`): binary mode carries only text, and cebus
/// delivers what it was given, types included.
pub const TYPED_HEADER: &str = "cebus-typed";

/// Whether a header travels with the event to subscribers (as ingress decides).
pub(crate) fn forwarded(name: &str) -> bool {
    name == "traceparent"
        || name == "tracestate"
        || name == "x-request-id"
        || name.starts_with("knative-")
}

/// The headers cebus stores beside the binding's: the hop budget, then the
/// extension types when an attribute is not a string.
pub(crate) fn cebus_headers(envelope: &Envelope) -> impl Iterator<Item = (&'static str, String)> {
    let typed: Vec<String> = envelope
        .event
        .attributes()
        .filter_map(|(name, value)| match value {
            AttrValue::Integer(_) => Some(format!("{name}=integer")),
            AttrValue::Boolean(_) => Some(format!("{name}=boolean")),
            AttrValue::String(_) => None,
        })
        .collect();
    let typed = (!typed.is_empty()).then(|| (TYPED_HEADER, typed.join(",")));
    std::iter::once((TTL_HEADER, envelope.ttl.to_string())).chain(typed)
}

/// What a stored record carries besides the event its binding decoded.
#[derive(Debug)]
pub(crate) struct Stored<'a, H> {
    /// The [`TYPED_HEADER`] value, if any (as text).
    pub typed: Option<&'a str>,
    /// The [`TTL_HEADER`] value, if the header is there (as text).
    pub ttl: Option<&'a str>,
    /// Every header as (name, text value); the forwarded ones are kept.
    pub headers: H,
    /// Hop budget of a record from another producer without one.
    pub default_ttl: u32,
    /// When the log stored the record, for a foreign one without
    /// `knativearrivaltime`.
    pub arrival: &'a str,
}

/// A decoded record's event back into an envelope, validated as ingress would.
///
/// Records from other producers are welcome: without [`TTL_HEADER`] the hop
/// counter follows ingress's rule (absent ⇒ `default_ttl`; present ⇒
/// decremented, ≤ 0 refuses the record), and a missing `knativearrivaltime` is
/// `arrival`.
pub(crate) fn envelope<H>(mut event: Event, stored: Stored<'_, H>) -> Result<Envelope, String>
where
    H: IntoIterator<Item = (String, String)>,
{
    if let Some(typed) = stored.typed {
        for (name, kind) in typed.split(',').filter_map(|item| item.split_once('=')) {
            let Some(text) = event.get_str(name).map(|t| t.into_owned()) else {
                continue;
            };
            let value = match kind {
                "integer" => text.parse().ok().map(AttrValue::Integer),
                "boolean" => text.parse().ok().map(AttrValue::Boolean),
                _ => None,
            };
            if let Some(v) = value {
                event.set(name, v);
            }
        }
    }
    let carried = event.remove(attr::KNATIVE_BROKER_TTL);
    let foreign = stored.ttl.is_none();
    let ttl = record_ttl(stored.ttl, carried, stored.default_ttl)?;
    // cebus's own events got theirs at ingress; another producer's get the time
    // the log stored them.
    if foreign && event.get(attr::KNATIVE_ARRIVAL_TIME).is_none() {
        event.set(attr::KNATIVE_ARRIVAL_TIME, stored.arrival);
    }
    cebus_events::validate(&event).map_err(|e| e.to_string())?;
    let headers = stored
        .headers
        .into_iter()
        .filter_map(|(n, v)| {
            let lower = n.to_ascii_lowercase();
            forwarded(&lower).then_some((lower, v))
        })
        .collect();
    Ok(Envelope {
        event,
        headers,
        ttl,
    })
}

/// The hop budget of a record read back from a durable log. cebus writes the
/// remaining budget in its own header (`header`), already decremented at ingress;
/// a record from another producer has none, so its `knativebrokerttl` attribute
/// (`carried`, taken out of the event) goes through the same rule as at ingress —
/// absent ⇒ `default_ttl`, present ⇒ decremented, exhausted or not a number ⇒ refused.
fn record_ttl(
    header: Option<&str>,
    carried: Option<AttrValue>,
    default_ttl: u32,
) -> Result<u32, String> {
    match header {
        Some(t) => t
            .parse::<u32>()
            .map_err(|_| format!("header {TTL_HEADER}: {t:?} is not a hop count")),
        None => cebus_triggers::ttl_on_ingress(
            carried.as_ref().map(|v| v.as_str()).as_deref(),
            default_ttl,
        )
        .map_err(|e| format!("attribute {}: {e}", attr::KNATIVE_BROKER_TTL)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_are_trace_request_id_and_knative() {
        for (name, want) in [
            ("traceparent", true),
            ("tracestate", true),
            ("x-request-id", true),
            ("knative-foo", true),
            ("ce-id", false),
            (TTL_HEADER, false),
            ("content-type", false),
        ] {
            assert_eq!(forwarded(name), want, "{name}");
        }
    }

    #[test]
    fn cebus_headers_carry_the_budget_and_the_types() {
        let mut e = Event::with_required("1", "/s", "t");
        let plain: Vec<_> = cebus_headers(&Envelope::new(e.clone())).collect();
        assert_eq!(plain, [(TTL_HEADER, "255".to_owned())]);
        e.set("n", AttrValue::Integer(1));
        e.set("b", AttrValue::Boolean(false));
        let typed: Vec<_> = cebus_headers(&Envelope::new(e)).collect();
        assert_eq!(typed[1].0, TYPED_HEADER);
        let mut kinds: Vec<_> = typed[1].1.split(',').collect();
        kinds.sort_unstable();
        assert_eq!(kinds, ["b=boolean", "n=integer"]);
    }
}
