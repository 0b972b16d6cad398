//! The generated load: binary-mode CloudEvents with a send-timestamp extension,
//! sizes, and the process-wide clock that generator and sink share.

use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;

/// The send-timestamp extension: nanoseconds since [`epoch`], set by the generator
/// and read by the sink (they run in one process, so they share the clock).
pub const BENCH_SENT: HeaderName = HeaderName::from_static("ce-benchsent");
/// `ce-specversion`.
pub const CE_SPECVERSION: HeaderName = HeaderName::from_static("ce-specversion");
/// `ce-id`.
pub const CE_ID: HeaderName = HeaderName::from_static("ce-id");
/// `ce-source`.
pub const CE_SOURCE: HeaderName = HeaderName::from_static("ce-source");
/// `ce-type`.
pub const CE_TYPE: HeaderName = HeaderName::from_static("ce-type");
/// The `source` of every generated event.
pub const SOURCE: &str = "/cebus-bench";

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The shared epoch of every `ce-benchsent` value (fixed on first use).
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// `t` as nanoseconds since [`epoch`] (0 for instants before it).
pub fn nanos_since_epoch(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// Parses an event data size: `0`, `1024`, `1k`/`1KiB`, `64KiB`, `1MiB` (binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("size {s:?}: expected a number of bytes such as 0, 1KiB or 64KiB"))?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        other => {
            return Err(format!(
                "size {s:?}: unknown unit {other:?}; use B, KiB or MiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// What every generated event looks like: the types to rotate through and the data.
#[derive(Debug, Clone)]
pub struct EventShape {
    types: Vec<HeaderValue>,
    body: Bytes,
}

impl EventShape {
    /// Events of `size` bytes of data whose `type` rotates through `types` by sequence number.
    pub fn try_new(types: &[String], size: usize) -> anyhow::Result<EventShape> {
        anyhow::ensure!(!types.is_empty(), "at least one event type is needed");
        let types = types
            .iter()
            .map(|t| HeaderValue::from_str(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EventShape {
            types,
            body: Bytes::from(vec![b'x'; size]),
        })
    }

    /// The `type` of event number `seq`.
    pub fn type_of(&self, seq: u64) -> &HeaderValue {
        // usize fits any index of a Vec; the modulo keeps it in range.
        &self.types[(seq % self.types.len() as u64) as usize]
    }

    /// The binary-mode request for event `seq`, sent (or intended to be sent) at
    /// `sent_ns` since [`epoch`], to `path` on `host`.
    pub fn request(
        &self,
        host: &HeaderValue,
        path: &str,
        seq: u64,
        sent_ns: u64,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = path.parse().unwrap_or_default();
        let h = req.headers_mut();
        h.insert(HOST, host.clone());
        h.insert(CE_SPECVERSION, HeaderValue::from_static("1.0"));
        h.insert(CE_ID, HeaderValue::from(seq));
        h.insert(CE_SOURCE, HeaderValue::from_static(SOURCE));
        h.insert(CE_TYPE, self.type_of(seq).clone());
        h.insert(BENCH_SENT, HeaderValue::from(sent_ns));
        if !self.body.is_empty() {
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        req
    }
}

/// The `ce-benchsent` value of a received event, if present and numeric.
pub fn sent_ns(headers: &HeaderMap) -> Option<u64> {
    headers.get(BENCH_SENT)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64 KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("KiB").is_err());
    }

    #[test]
    fn request_is_a_binary_cloudevent_with_the_send_timestamp() {
        let shape = EventShape::try_new(&["a".into(), "b".into()], 3).unwrap();
        let host = HeaderValue::from_static("127.0.0.1:1");
        let req = shape.request(&host, "/default/default", 7, 123_456);
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().path(), "/default/default");
        let h = req.headers();
        assert_eq!(h[&CE_SPECVERSION], "1.0");
        assert_eq!(h[&CE_ID], "7");
        assert_eq!(h[&CE_SOURCE], SOURCE);
        assert_eq!(h[&CE_TYPE], "b");
        assert_eq!(h[&CONTENT_TYPE], "application/octet-stream");
        assert_eq!(sent_ns(h), Some(123_456));
    }

    #[test]
    fn types_rotate_by_sequence_number() {
        let types: Vec<String> = (0..3).map(|i| format!("t{i}")).collect();
        let shape = EventShape::try_new(&types, 0).unwrap();
        let seen: Vec<_> = (0..6).map(|s| shape.type_of(s).clone()).collect();
        assert_eq!(seen, ["t0", "t1", "t2", "t0", "t1", "t2"]);
    }

    #[test]
    fn empty_data_has_no_content_type() {
        let shape = EventShape::try_new(&["a".into()], 0).unwrap();
        let req = shape.request(&HeaderValue::from_static("h"), "/", 0, 0);
        assert!(req.headers().get(CONTENT_TYPE).is_none());
    }

    #[test]
    fn timestamps_round_trip_through_the_epoch() {
        let t = epoch() + Duration::from_micros(1500);
        assert_eq!(nanos_since_epoch(t), 1_500_000);
        assert_eq!(nanos_since_epoch(epoch() - Duration::from_nanos(1)), 0);
        assert_eq!(sent_ns(&HeaderMap::new()), None);
    }
}
