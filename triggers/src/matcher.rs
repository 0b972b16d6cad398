//! The compiled matcher: every trigger filter of a broker in one structure that
//! finds all matching triggers of an event in one pass.
//!
//! Each filter contributes *anchors*: conditions at least one of which must hold
//! whenever the filter matches (an `exact` value, a prefix, a suffix). Anchors go
//! into hash maps and byte tries keyed by attribute, so an event only meets the
//! triggers whose anchors it hits; those candidates (and the few filters without
//! anchors, such as a lone `not`) are then evaluated in full. The result is
//! therefore exactly what evaluating every filter on its own gives — the index only
//! skips filters that cannot match.

use std::collections::HashMap;

use cebus_events::Event;

use crate::cesql;
use crate::filter::Filter;

/// A condition that must hold for a filter to match.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Anchor {
    Exact(String, String),
    Prefix(String, String),
    Suffix(String, String),
}

/// Anchors of `f`: if `f` matches an event, at least one returned anchor holds for
/// it. `None` means no such set is known (the filter is always a candidate).
fn anchors(f: &Filter) -> Option<Vec<Anchor>> {
    match f {
        Filter::Exact { attribute, value } => {
            Some(vec![Anchor::Exact(attribute.clone(), value.clone())])
        }
        Filter::Prefix { attribute, value } => {
            Some(vec![Anchor::Prefix(attribute.clone(), value.clone())])
        }
        Filter::Suffix { attribute, value } => {
            Some(vec![Anchor::Suffix(attribute.clone(), value.clone())])
        }
        // Any one conjunct's anchors will do; prefer the most selective kind.
        Filter::All(list) => list
            .iter()
            .filter_map(anchors)
            .min_by_key(|a| a.iter().map(anchor_cost).max().unwrap_or(0) * 8 + a.len()),
        // Every branch must be anchored, and any branch may be the one that matched.
        Filter::Any(list) if !list.is_empty() => {
            let mut all = Vec::new();
            for branch in list {
                all.extend(anchors(branch)?);
            }
            Some(all)
        }
        // `Any([])` never matches: no anchor at all means "never a candidate".
        Filter::Any(_) => Some(Vec::new()),
        Filter::Not(_) | Filter::Exists { .. } => None,
        Filter::Cesql(expr) => cesql_anchors(expr),
    }
}

/// Context attributes that are always strings when present in every spec version
/// (`dataschema`/`schemaurl` are extensions in the other version, so not here), so CESQL `=`, `IN`
/// and `LIKE` against a string literal are plain string comparisons on them (no
/// implicit casts that a hash lookup would miss). A missing attribute makes the
/// expression fail with an error, which never matches either.
const STRING_ATTRIBUTES: &[&str] = &[
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "specversion",
];

/// Anchors of a CESQL expression: conditions one of which holds whenever the
/// expression yields `true` without errors.
fn cesql_anchors(expr: &cesql::Expr) -> Option<Vec<Anchor>> {
    use cesql::{BinaryOp, Expr, Value};
    let string_attr = |e: &Expr| match e {
        Expr::Attribute(a) if STRING_ATTRIBUTES.contains(&a.as_str()) => Some(a.clone()),
        _ => None,
    };
    let string_lit = |e: &Expr| match e {
        Expr::Literal(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    match expr {
        // `true AND x` needs both sides true: either side's anchors will do.
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => match (cesql_anchors(left), cesql_anchors(right)) {
            (Some(l), Some(r)) => Some(if r.len() < l.len() { r } else { l }),
            (l, r) => l.or(r),
        },
        // `x OR y` is true when either is: both sides must be anchored.
        Expr::Binary {
            op: BinaryOp::Or,
            left,
            right,
        } => {
            let mut l = cesql_anchors(left)?;
            l.extend(cesql_anchors(right)?);
            Some(l)
        }
        Expr::Binary {
            op: BinaryOp::Eq,
            left,
            right,
        } => {
            let (attr, value) = match (string_attr(left), string_lit(right)) {
                (Some(a), Some(v)) => (a, v),
                _ => (string_attr(right)?, string_lit(left)?),
            };
            Some(vec![Anchor::Exact(attr, value)])
        }
        Expr::In {
            expr,
            set,
            negated: false,
        } => {
            let attr = string_attr(expr)?;
            set.iter()
                .map(|e| string_lit(e).map(|v| Anchor::Exact(attr.clone(), v)))
                .collect()
        }
        Expr::Like {
            expr,
            pattern,
            negated: false,
        } => {
            let attr = string_attr(expr)?;
            // The text before the first `%`, `_` or `\` is literal however the
            // rest is read; the value must start with it.
            let literal: String = pattern
                .chars()
                .take_while(|c| !matches!(c, '%' | '_' | '\\'))
                .collect();
            if literal.len() == pattern.len() {
                Some(vec![Anchor::Exact(attr, literal)])
            } else if literal.is_empty() {
                None
            } else {
                Some(vec![Anchor::Prefix(attr, literal)])
            }
        }
        _ => None,
    }
}

/// Lower is more selective (and cheaper to look up).
fn anchor_cost(a: &Anchor) -> usize {
    match a {
        Anchor::Exact(..) => 0,
        Anchor::Prefix(..) => 1,
        Anchor::Suffix(..) => 2,
    }
}

/// A byte trie mapping keys to the triggers anchored on them; walking a value
/// collects every key that is a prefix of it.
#[derive(Debug, Default)]
struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Default)]
struct TrieNode {
    /// Sorted by byte.
    edges: Vec<(u8, u32)>,
    hits: Vec<u32>,
}

impl Trie {
    fn insert(&mut self, key: impl Iterator<Item = u8>, trigger: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut at = 0usize;
        for b in key {
            at = match self.nodes[at].edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => self.nodes[at].edges[i].1 as usize,
                Err(i) => {
                    let next = self.nodes.len() as u32;
                    self.nodes.push(TrieNode::default());
                    self.nodes[at].edges.insert(i, (b, next));
                    next as usize
                }
            };
        }
        self.nodes[at].hits.push(trigger);
    }

    fn collect(&self, value: impl Iterator<Item = u8>, out: &mut Vec<u32>) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        out.extend_from_slice(&node.hits);
        for b in value {
            match node.edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => node = &self.nodes[node.edges[i].1 as usize],
                Err(_) => return,
            }
            out.extend_from_slice(&node.hits);
        }
    }
}

/// Per-attribute indexes.
#[derive(Debug, Default)]
struct AttributeIndex {
    exact: HashMap<String, Vec<u32>>,
    prefix: Trie,
    suffix: Trie,
}

/// All filters of one broker, compiled for one-pass matching. Immutable: a
/// trigger change builds a new matcher (10,000 triggers take milliseconds) that
/// replaces the old one atomically.
#[derive(Debug, Default)]
pub struct Matcher {
    filters: Vec<Filter>,
    /// Indexes by attribute name.
    attributes: Vec<(String, AttributeIndex)>,
    /// Filters without anchors, always evaluated.
    unanchored: Vec<u32>,
}

impl Matcher {
    /// Compiles `filters`; trigger `i` of the result is `filters[i]`.
    pub fn new(filters: Vec<Filter>) -> Matcher {
        let mut by_attr: HashMap<String, AttributeIndex> = HashMap::new();
        let mut unanchored = Vec::new();
        for (i, f) in filters.iter().enumerate() {
            let i = i as u32;
            match anchors(f) {
                None => unanchored.push(i),
                Some(list) => {
                    for a in list {
                        match a {
                            Anchor::Exact(attr, v) => by_attr
                                .entry(attr)
                                .or_default()
                                .exact
                                .entry(v)
                                .or_default()
                                .push(i),
                            Anchor::Prefix(attr, v) => {
                                by_attr.entry(attr).or_default().prefix.insert(v.bytes(), i)
                            }
                            Anchor::Suffix(attr, v) => by_attr
                                .entry(attr)
                                .or_default()
                                .suffix
                                .insert(v.bytes().rev(), i),
                        }
                    }
                }
            }
        }
        let mut attributes: Vec<_> = by_attr.into_iter().collect();
        attributes.sort_by(|a, b| a.0.cmp(&b.0));
        Matcher {
            filters,
            attributes,
            unanchored,
        }
    }

    /// Number of compiled filters.
    pub fn len(&self) -> usize {
        self.filters.len()
    }

    /// Whether there are no filters.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Filter `i`.
    pub fn filter(&self, i: usize) -> &Filter {
        &self.filters[i]
    }

    /// Indices of every matching filter, ascending, appended to `out` (cleared
    /// first). Reusing `out` keeps the hot path free of allocations.
    pub fn matches_into(&self, event: &Event, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.unanchored);
        for (attr, index) in &self.attributes {
            let Some(value) = event.get_str(attr) else {
                continue;
            };
            if let Some(hits) = index.exact.get(value.as_ref()) {
                out.extend_from_slice(hits);
            }
            index.prefix.collect(value.bytes(), out);
            index.suffix.collect(value.bytes().rev(), out);
        }
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out.retain(|&i| self.filters[i as usize].matches(event));
    }

    /// Indices of every matching filter, ascending.
    pub fn matches(&self, event: &Event) -> Vec<u32> {
        let mut out = Vec::new();
        self.matches_into(event, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(a: &str, v: &str) -> Filter {
        Filter::Exact {
            attribute: a.into(),
            value: v.into(),
        }
    }
    fn prefix(a: &str, v: &str) -> Filter {
        Filter::Prefix {
            attribute: a.into(),
            value: v.into(),
        }
    }
    fn suffix(a: &str, v: &str) -> Filter {
        Filter::Suffix {
            attribute: a.into(),
            value: v.into(),
        }
    }

    fn event(ty: &str, source: &str, ext: Option<&str>) -> Event {
        let mut e = Event::with_required("1", source, ty);
        if let Some(x) = ext {
            e.set("region", x);
        }
        e
    }

    #[test]
    fn table() {
        let filters = vec![
            exact("type", "a.b"),                                             // 0
            prefix("type", "a."),                                             // 1
            suffix("source", "/eu"),                                          // 2
            Filter::All(vec![exact("type", "a.b"), suffix("source", "/eu")]), // 3
            Filter::Any(vec![exact("type", "x"), prefix("source", "/shop")]), // 4
            Filter::Not(Box::new(exact("type", "a.b"))),                      // 5
            Filter::match_all(),                                              // 6
            Filter::Any(vec![]),                                              // 7
            Filter::Exists {
                attribute: "region".into(),
            }, // 8
            exact("region", "eu"),                                            // 9
        ];
        let m = Matcher::new(filters);
        let cases: &[(Event, &[u32])] = &[
            (event("a.b", "/shop/eu", None), &[0, 1, 2, 3, 4, 6]),
            (event("a.c", "/us", Some("eu")), &[1, 5, 6, 8, 9]),
            (event("x", "/eu", Some("")), &[2, 4, 5, 6]),
            (event("zzz", "/shop", None), &[4, 5, 6]),
        ];
        for (e, want) in cases {
            assert_eq!(m.matches(e), *want, "{e:?}");
        }
    }

    #[test]
    fn unanchored_only_where_needed() {
        let m = Matcher::new(vec![
            exact("type", "a"),
            Filter::All(vec![
                Filter::Not(Box::new(exact("type", "b"))),
                prefix("source", "/x"),
            ]),
            Filter::Any(vec![
                exact("type", "a"),
                Filter::Not(Box::new(exact("type", "b"))),
            ]),
            Filter::match_all(),
        ]);
        assert_eq!(m.unanchored, vec![2, 3]);
    }

    #[test]
    fn ten_thousand_triggers_build_and_match_one() {
        let filters: Vec<Filter> = (0..10_000)
            .map(|i| exact("type", &format!("com.example.t{i}")))
            .collect();
        let m = Matcher::new(filters);
        assert_eq!(
            m.matches(&event("com.example.t4242", "/s", None)),
            vec![4242]
        );
        assert!(m.matches(&event("com.example.none", "/s", None)).is_empty());
    }

    // Small alphabets so that random filters and events actually meet.
    fn arb_attr() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["type", "source", "subject", "region"]).prop_map(str::to_owned)
    }
    fn arb_value() -> impl Strategy<Value = String> {
        "[ab/.]{1,4}"
    }

    fn arb_filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            (arb_attr(), arb_value()).prop_map(|(a, v)| Filter::Exact {
                attribute: a,
                value: v
            }),
            (arb_attr(), arb_value()).prop_map(|(a, v)| Filter::Prefix {
                attribute: a,
                value: v
            }),
            (arb_attr(), arb_value()).prop_map(|(a, v)| Filter::Suffix {
                attribute: a,
                value: v
            }),
            arb_attr().prop_map(|a| Filter::Exists { attribute: a }),
            (arb_attr(), arb_value(), arb_value(), 0..6usize).prop_map(|(a, v, w, shape)| {
                let text = match shape {
                    0 => format!("{a} = '{v}'"),
                    1 => format!("{a} LIKE '{v}%'"),
                    2 => format!("{a} IN ('{v}', '{w}')"),
                    3 => format!("{a} = '{v}' AND type LIKE '{w}%'"),
                    4 => format!("{a} = '{v}' OR source = '{w}'"),
                    _ => format!("NOT ({a} = '{v}')"),
                };
                Filter::Cesql(std::sync::Arc::new(
                    cesql::parse(&text).expect("generated CESQL parses"),
                ))
            }),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Filter::All),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Filter::Any),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            "[ab/.]{1,5}",
            "[ab/.]{1,5}",
            prop::option::of("[ab/.]{0,5}"),
            prop::option::of("[ab/.]{0,5}"),
        )
            .prop_map(|(ty, source, subject, region)| {
                let mut e = Event::with_required("1", &source, &ty);
                if let Some(s) = subject {
                    e.set("subject", s);
                }
                if let Some(r) = region {
                    e.set("region", r);
                }
                e
            })
    }

    proptest! {
        #[test]
        fn compiled_matcher_equals_naive_evaluation(
            filters in prop::collection::vec(arb_filter(), 0..40),
            events in prop::collection::vec(arb_event(), 1..20),
        ) {
            let m = Matcher::new(filters.clone());
            for e in &events {
                let naive: Vec<u32> = filters
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.matches(e))
                    .map(|(i, _)| i as u32)
                    .collect();
                prop_assert_eq!(m.matches(e), naive, "event {:?}", e);
                for f in &filters {
                    prop_assert_eq!(crate::explain(f, e).is_none(), f.matches(e), "explain vs matches: {:?}", f);
                }
            }
        }
    }
}
