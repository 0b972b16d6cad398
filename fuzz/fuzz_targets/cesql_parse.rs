//! Fuzzes the CESQL parser, printer and evaluator: parsing arbitrary UTF-8 must
//! not panic; whatever parses must print to text that parses to the same tree
//! and must evaluate against a fixed event without panicking.

#![no_main]

use cebus_events::{AttrValue, Event};
use cebus_triggers::cesql;
use libfuzzer_sys::fuzz_target;

fn event() -> Event {
    let mut e = Event::with_required("id-1", "/source", "com.example.created");
    e.set("subject", "orders/42");
    e.set("time", "2018-04-26T14:48:09+02:00");
    e.set("count", AttrValue::Integer(5));
    e.set("huge", AttrValue::Integer(1 << 40));
    e.set("flag", AttrValue::Boolean(true));
    e.set("seq", "7");
    e
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(expr) = cesql::parse(text) else {
        return;
    };
    let printed = expr.to_string();
    match cesql::parse(&printed) {
        Ok(again) => assert_eq!(again, expr, "{text:?} printed as {printed:?}"),
        Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
    }
    let _ = cesql::evaluate(&expr, &event());
});
