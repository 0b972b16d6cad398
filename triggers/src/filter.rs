//! One trigger's filter, compiled from its spec, and its evaluation on an event
//! (Knative semantics: legacy `filter.attributes` and the `filters` dialects).

use std::sync::Arc;

use cebus_api::{SubscriptionsApiFilter, TriggerFilter, TriggerSpec};
use cebus_events::Event;

use crate::{Error, cesql};

/// A compiled trigger filter. Attribute values are compared in their canonical
/// string form ([`Event::get_str`]), so an Integer extension `5` equals `"5"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every inner filter matches; the empty list matches every event.
    All(Vec<Filter>),
    /// At least one inner filter matches; the empty list matches no event.
    Any(Vec<Filter>),
    /// The inner filter does not match.
    Not(Box<Filter>),
    /// The attribute exists and equals the value.
    Exact {
        /// Attribute name.
        attribute: String,
        /// Required value.
        value: String,
    },
    /// The attribute exists and starts with the value.
    Prefix {
        /// Attribute name.
        attribute: String,
        /// Required prefix.
        value: String,
    },
    /// The attribute exists and ends with the value.
    Suffix {
        /// Attribute name.
        attribute: String,
        /// Required suffix.
        value: String,
    },
    /// The attribute exists and is non-empty (legacy filter value `""`).
    Exists {
        /// Attribute name.
        attribute: String,
    },
    /// A CESQL expression: matches when it evaluates to `TRUE` without errors.
    Cesql(Arc<cesql::Expr>),
}

impl Filter {
    /// The filter that matches every event (a trigger without filters).
    pub fn match_all() -> Filter {
        Filter::All(Vec::new())
    }

    /// Compiles a trigger's filter. A non-empty `filters` list wins and is an AND;
    /// otherwise the legacy `filter.attributes`; with neither, every event matches.
    pub fn compile(spec: &TriggerSpec) -> Result<Filter, Error> {
        if !spec.filters.is_empty() {
            let list = spec
                .filters
                .iter()
                .enumerate()
                .map(|(i, f)| compile_entry(f, &format!("filters[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Filter::All(list));
        }
        match &spec.filter {
            Some(legacy) => compile_legacy(legacy),
            None => Ok(Filter::match_all()),
        }
    }

    /// Whether `event` passes this filter. A missing attribute fails `Exact`,
    /// `Prefix`, `Suffix` and `Exists` (so `Not` of them passes).
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Filter::All(list) => list.iter().all(|f| f.matches(event)),
            Filter::Any(list) => list.iter().any(|f| f.matches(event)),
            Filter::Not(inner) => !inner.matches(event),
            Filter::Exact { attribute, value } => event
                .get_str(attribute)
                .is_some_and(|v| v.as_ref() == value.as_str()),
            Filter::Prefix { attribute, value } => event
                .get_str(attribute)
                .is_some_and(|v| v.starts_with(value.as_str())),
            Filter::Suffix { attribute, value } => event
                .get_str(attribute)
                .is_some_and(|v| v.ends_with(value.as_str())),
            Filter::Exists { attribute } => event.get_str(attribute).is_some_and(|v| !v.is_empty()),
            Filter::Cesql(expr) => cesql::evaluate(expr, event).is_match(),
        }
    }
}

/// Legacy `filter.attributes`: every key equals its value; `""` means "exists
/// and is non-empty".
fn compile_legacy(legacy: &TriggerFilter) -> Result<Filter, Error> {
    let mut list = Vec::with_capacity(legacy.attributes.len());
    for (attribute, value) in &legacy.attributes {
        if attribute.is_empty() {
            return Err(invalid(
                "filter.attributes".to_owned(),
                "an attribute name is empty; write the CloudEvents attribute to compare, e.g. `type`",
            ));
        }
        list.push(if value.is_empty() {
            Filter::Exists {
                attribute: attribute.clone(),
            }
        } else {
            Filter::Exact {
                attribute: attribute.clone(),
                value: value.clone(),
            }
        });
    }
    Ok(Filter::All(list))
}

/// One entry of `filters`, found at `path`. Exactly one dialect may be set; an
/// entry with none matches everything (as in Knative).
fn compile_entry(f: &SubscriptionsApiFilter, path: &str) -> Result<Filter, Error> {
    let cesql_source = f.cesql.as_deref().filter(|s| !s.is_empty());
    let set: Vec<&str> = [
        ("exact", !f.exact.is_empty()),
        ("prefix", !f.prefix.is_empty()),
        ("suffix", !f.suffix.is_empty()),
        ("all", !f.all.is_empty()),
        ("any", !f.any.is_empty()),
        ("not", f.not.is_some()),
        ("cesql", cesql_source.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if set.len() > 1 {
        return Err(invalid(
            path.to_owned(),
            &format!(
                "sets several dialects ({}); each entry takes exactly one, \
                 combine them with `all` or `any`",
                set.join(", ")
            ),
        ));
    }
    if !f.exact.is_empty() {
        return compile_map(&f.exact, path, "exact", |attribute, value| Filter::Exact {
            attribute,
            value,
        });
    }
    if !f.prefix.is_empty() {
        return compile_map(&f.prefix, path, "prefix", |attribute, value| {
            Filter::Prefix { attribute, value }
        });
    }
    if !f.suffix.is_empty() {
        return compile_map(&f.suffix, path, "suffix", |attribute, value| {
            Filter::Suffix { attribute, value }
        });
    }
    if !f.all.is_empty() {
        return compile_list(&f.all, &format!("{path}.all")).map(Filter::All);
    }
    if !f.any.is_empty() {
        return compile_list(&f.any, &format!("{path}.any")).map(Filter::Any);
    }
    if let Some(inner) = &f.not {
        return Ok(Filter::Not(Box::new(compile_entry(
            inner,
            &format!("{path}.not"),
        )?)));
    }
    if let Some(source) = cesql_source {
        return cesql::parse(source)
            .map(|expr| Filter::Cesql(Arc::new(expr)))
            .map_err(|e| Error::InvalidFilter {
                path: format!("{path}.cesql"),
                reason: format!("CESQL expression {source:?} does not parse: {e}"),
            });
    }
    Ok(Filter::match_all())
}

fn compile_list(list: &[SubscriptionsApiFilter], path: &str) -> Result<Vec<Filter>, Error> {
    list.iter()
        .enumerate()
        .map(|(i, f)| compile_entry(f, &format!("{path}[{i}]")))
        .collect()
}

/// An `exact`/`prefix`/`suffix` map: every entry must hold. A single entry
/// compiles to the bare predicate, several to an `All`.
fn compile_map(
    map: &std::collections::BTreeMap<String, String>,
    path: &str,
    dialect: &str,
    make: impl Fn(String, String) -> Filter,
) -> Result<Filter, Error> {
    let mut list = Vec::with_capacity(map.len());
    for (attribute, value) in map {
        if attribute.is_empty() {
            return Err(invalid(
                format!("{path}.{dialect}"),
                "an attribute name is empty; write the CloudEvents attribute to compare, e.g. `type`",
            ));
        }
        if value.is_empty() {
            return Err(invalid(
                format!("{path}.{dialect}[{attribute:?}]"),
                "the value is empty; give a non-empty value (an empty one would match \
                 any value, which is what an absent filter already does)",
            ));
        }
        list.push(make(attribute.clone(), value.clone()));
    }
    if list.len() == 1 {
        Ok(list.pop().expect("one element"))
    } else {
        Ok(Filter::All(list))
    }
}

fn invalid(path: String, reason: &str) -> Error {
    Error::InvalidFilter {
        path,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cebus_api::{SubscriptionsApiFilter as F, TriggerFilter, TriggerSpec};
    use cebus_events::{AttrValue, Event, SpecVersion};

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }
    fn exact(pairs: &[(&str, &str)]) -> F {
        F {
            exact: map(pairs),
            ..F::default()
        }
    }
    fn prefix(pairs: &[(&str, &str)]) -> F {
        F {
            prefix: map(pairs),
            ..F::default()
        }
    }
    fn suffix(pairs: &[(&str, &str)]) -> F {
        F {
            suffix: map(pairs),
            ..F::default()
        }
    }
    fn all(list: Vec<F>) -> F {
        F {
            all: list,
            ..F::default()
        }
    }
    fn any(list: Vec<F>) -> F {
        F {
            any: list,
            ..F::default()
        }
    }
    fn not(inner: F) -> F {
        F {
            not: Some(Box::new(inner)),
            ..F::default()
        }
    }
    fn filters(list: Vec<F>) -> TriggerSpec {
        TriggerSpec {
            broker: "default".into(),
            filters: list,
            ..TriggerSpec::default()
        }
    }
    fn legacy(pairs: &[(&str, &str)]) -> TriggerSpec {
        TriggerSpec {
            broker: "default".into(),
            filter: Some(TriggerFilter {
                attributes: map(pairs),
            }),
            ..TriggerSpec::default()
        }
    }

    /// type `com.example.order.created`, source `/shop/eu`, subject `""`,
    /// extensions `count` = Integer 5, `flag` = Boolean true, `region` = `eu-west`.
    fn event() -> Event {
        let mut e = Event::with_required("1", "/shop/eu", "com.example.order.created");
        e.set("subject", "");
        e.set("count", AttrValue::Integer(5));
        e.set("flag", AttrValue::Boolean(true));
        e.set("region", "eu-west");
        e
    }

    fn check(cases: &[(&str, TriggerSpec, bool)]) {
        let e = event();
        for (name, spec, want) in cases {
            let f = Filter::compile(spec).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(f.matches(&e), *want, "case {name}: {f:?}");
        }
    }

    #[test]
    fn no_filter_matches_everything() {
        check(&[
            ("no filter", filters(vec![]), true),
            ("legacy, no attributes", legacy(&[]), true),
            ("empty entry", filters(vec![F::default()]), true),
        ]);
        assert_eq!(Filter::compile(&filters(vec![])), Ok(Filter::match_all()));
        assert!(Filter::match_all().matches(&Event::new(SpecVersion::V03)));
    }

    #[test]
    fn exact_prefix_suffix() {
        check(&[
            (
                "exact hit",
                filters(vec![exact(&[("type", "com.example.order.created")])]),
                true,
            ),
            (
                "exact miss",
                filters(vec![exact(&[("type", "com.example.order")])]),
                false,
            ),
            (
                "exact is case sensitive",
                filters(vec![exact(&[("region", "EU-WEST")])]),
                false,
            ),
            (
                "exact two keys both hold",
                filters(vec![exact(&[
                    ("type", "com.example.order.created"),
                    ("region", "eu-west"),
                ])]),
                true,
            ),
            (
                "exact two keys one fails",
                filters(vec![exact(&[
                    ("type", "com.example.order.created"),
                    ("region", "us"),
                ])]),
                false,
            ),
            (
                "exact specversion",
                filters(vec![exact(&[("specversion", "1.0")])]),
                true,
            ),
            (
                "exact integer extension",
                filters(vec![exact(&[("count", "5")])]),
                true,
            ),
            (
                "exact boolean extension",
                filters(vec![exact(&[("flag", "true")])]),
                true,
            ),
            (
                "exact boolean extension miss",
                filters(vec![exact(&[("flag", "True")])]),
                false,
            ),
            (
                "prefix hit",
                filters(vec![prefix(&[("type", "com.example.")])]),
                true,
            ),
            (
                "prefix whole value",
                filters(vec![prefix(&[("type", "com.example.order.created")])]),
                true,
            ),
            (
                "prefix miss",
                filters(vec![prefix(&[("type", "org.")])]),
                false,
            ),
            (
                "prefix two keys",
                filters(vec![prefix(&[("type", "com."), ("source", "/shop")])]),
                true,
            ),
            (
                "prefix two keys one fails",
                filters(vec![prefix(&[("type", "com."), ("source", "/bank")])]),
                false,
            ),
            (
                "prefix on integer",
                filters(vec![prefix(&[("count", "5")])]),
                true,
            ),
            (
                "suffix hit",
                filters(vec![suffix(&[("type", ".created")])]),
                true,
            ),
            (
                "suffix miss",
                filters(vec![suffix(&[("type", ".deleted")])]),
                false,
            ),
            (
                "suffix two keys",
                filters(vec![suffix(&[("type", "created"), ("source", "/eu")])]),
                true,
            ),
            (
                "suffix two keys one fails",
                filters(vec![suffix(&[("type", "created"), ("source", "/us")])]),
                false,
            ),
        ]);
    }

    #[test]
    fn missing_attribute_fails_every_dialect_and_not_passes() {
        check(&[
            (
                "exact missing",
                filters(vec![exact(&[("tenant", "a")])]),
                false,
            ),
            (
                "prefix missing",
                filters(vec![prefix(&[("tenant", "a")])]),
                false,
            ),
            (
                "suffix missing",
                filters(vec![suffix(&[("tenant", "a")])]),
                false,
            ),
            (
                "not exact missing",
                filters(vec![not(exact(&[("tenant", "a")]))]),
                true,
            ),
            (
                "not prefix missing",
                filters(vec![not(prefix(&[("tenant", "a")]))]),
                true,
            ),
            (
                "not suffix missing",
                filters(vec![not(suffix(&[("tenant", "a")]))]),
                true,
            ),
            // `subject` exists but is empty: exact needs the same (non-empty) value.
            (
                "exact on empty attribute",
                filters(vec![exact(&[("subject", "x")])]),
                false,
            ),
        ]);
    }

    #[test]
    fn all_any_not_and_nesting() {
        let ty = || exact(&[("type", "com.example.order.created")]);
        let miss = || exact(&[("type", "nope")]);
        check(&[
            (
                "top-level list is AND, both hold",
                filters(vec![ty(), prefix(&[("source", "/shop")])]),
                true,
            ),
            (
                "top-level list is AND, one fails",
                filters(vec![ty(), miss()]),
                false,
            ),
            (
                "all both",
                filters(vec![all(vec![ty(), suffix(&[("region", "west")])])]),
                true,
            ),
            (
                "all one fails",
                filters(vec![all(vec![ty(), miss()])]),
                false,
            ),
            (
                "any one holds",
                filters(vec![any(vec![miss(), ty()])]),
                true,
            ),
            (
                "any none holds",
                filters(vec![any(vec![miss(), exact(&[("tenant", "a")])])]),
                false,
            ),
            ("not hit", filters(vec![not(ty())]), false),
            ("not miss", filters(vec![not(miss())]), true),
            ("not not", filters(vec![not(not(ty()))]), true),
            (
                "any of all",
                filters(vec![any(vec![
                    all(vec![ty(), miss()]),
                    all(vec![ty(), exact(&[("count", "5")])]),
                ])]),
                true,
            ),
            (
                "not any",
                filters(vec![not(any(vec![miss(), exact(&[("tenant", "a")])]))]),
                true,
            ),
            (
                "all containing not",
                filters(vec![all(vec![ty(), not(prefix(&[("region", "us")]))])]),
                true,
            ),
            (
                "empty entry inside any",
                filters(vec![any(vec![miss(), F::default()])]),
                true,
            ),
        ]);
    }

    #[test]
    fn legacy_attributes() {
        check(&[
            (
                "legacy exact",
                legacy(&[("type", "com.example.order.created")]),
                true,
            ),
            (
                "legacy miss",
                legacy(&[("type", "com.example.order")]),
                false,
            ),
            (
                "legacy every key must hold",
                legacy(&[("type", "com.example.order.created"), ("region", "us")]),
                false,
            ),
            (
                "legacy two keys",
                legacy(&[("type", "com.example.order.created"), ("region", "eu-west")]),
                true,
            ),
            (
                "legacy no prefix semantics",
                legacy(&[("type", "com.example")]),
                false,
            ),
            ("legacy \"\" exists", legacy(&[("region", "")]), true),
            ("legacy \"\" missing", legacy(&[("tenant", "")]), false),
            ("legacy \"\" empty value", legacy(&[("subject", "")]), false),
            ("legacy integer", legacy(&[("count", "5")]), true),
            (
                "legacy specversion",
                legacy(&[("specversion", "1.0")]),
                true,
            ),
        ]);
    }

    #[test]
    fn non_empty_filters_override_legacy() {
        let mut spec = legacy(&[("type", "nope")]);
        spec.filters = vec![exact(&[("region", "eu-west")])];
        check(&[(
            "filters win over a failing legacy filter",
            spec.clone(),
            true,
        )]);
        spec.filters = vec![exact(&[("region", "us")])];
        let mut legacy_ok = legacy(&[("region", "eu-west")]);
        legacy_ok.filters = spec.filters.clone();
        check(&[
            ("failing filters, failing legacy", spec, false),
            ("failing filters, passing legacy", legacy_ok.clone(), false),
        ]);
        // An empty `filters` leaves the legacy filter in force.
        legacy_ok.filters = vec![];
        check(&[("empty filters keep legacy", legacy_ok, true)]);
    }

    #[test]
    fn compiled_shape() {
        let f = Filter::compile(&filters(vec![
            exact(&[("type", "t")]),
            not(prefix(&[("a", "b"), ("c", "d")])),
        ]))
        .unwrap();
        assert_eq!(
            f,
            Filter::All(vec![
                Filter::Exact {
                    attribute: "type".into(),
                    value: "t".into()
                },
                Filter::Not(Box::new(Filter::All(vec![
                    Filter::Prefix {
                        attribute: "a".into(),
                        value: "b".into()
                    },
                    Filter::Prefix {
                        attribute: "c".into(),
                        value: "d".into()
                    },
                ]))),
            ])
        );
        assert_eq!(
            Filter::compile(&legacy(&[("a", ""), ("b", "x")])).unwrap(),
            Filter::All(vec![
                Filter::Exists {
                    attribute: "a".into()
                },
                Filter::Exact {
                    attribute: "b".into(),
                    value: "x".into()
                },
            ])
        );
        assert!(!Filter::Any(vec![]).matches(&event()));
    }

    #[test]
    fn errors_carry_the_path() {
        let cesql = |source: &str| F {
            cesql: Some(source.into()),
            ..F::default()
        };
        let invalid_cesql = |spec: TriggerSpec| match Filter::compile(&spec) {
            Err(Error::InvalidFilter { path, reason }) => (path, reason),
            other => panic!("expected InvalidFilter, got {other:?}"),
        };
        let (path, reason) = invalid_cesql(filters(vec![exact(&[("a", "b")]), cesql("type = ")]));
        assert_eq!(path, "filters[1].cesql");
        assert!(
            reason.contains("at column 8: expected an expression, found end of input"),
            "{reason}"
        );
        let (path, _) = invalid_cesql(filters(vec![any(vec![not(cesql("true true"))])]));
        assert_eq!(path, "filters[0].any[0].not.cesql");

        let invalid_at = |spec: TriggerSpec| match Filter::compile(&spec) {
            Err(Error::InvalidFilter { path, .. }) => path,
            other => panic!("expected InvalidFilter, got {other:?}"),
        };
        assert_eq!(
            invalid_at(filters(vec![exact(&[("", "x")])])),
            "filters[0].exact"
        );
        assert_eq!(
            invalid_at(filters(vec![all(vec![
                exact(&[("a", "b")]),
                prefix(&[("type", "")])
            ])])),
            "filters[0].all[1].prefix[\"type\"]"
        );
        assert_eq!(
            invalid_at(filters(vec![not(suffix(&[("", "")]))])),
            "filters[0].not.suffix"
        );
        assert_eq!(invalid_at(legacy(&[("", "x")])), "filter.attributes");
        let several = F {
            exact: map(&[("a", "b")]),
            prefix: map(&[("c", "d")]),
            ..F::default()
        };
        assert_eq!(
            invalid_at(filters(vec![exact(&[("a", "b")]), several.clone()])),
            "filters[1]"
        );
        let msg = Filter::compile(&filters(vec![several]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("exact, prefix"), "{msg}");
    }

    #[test]
    fn cesql_matches_only_true_without_errors() {
        let cesql = |source: &str| {
            filters(vec![F {
                cesql: Some(source.into()),
                ..F::default()
            }])
        };
        check(&[
            (
                "cesql true",
                cesql("type = 'com.example.order.created'"),
                true,
            ),
            ("cesql false", cesql("type = 'nope'"), false),
            (
                "cesql typed extension",
                cesql("count + 1 = 6 AND flag"),
                true,
            ),
            ("cesql non-boolean result", cesql("'true'"), false),
            (
                "cesql true with an error",
                cesql("missing = '' OR TRUE"),
                false,
            ),
            (
                "cesql lowercase keywords",
                cesql("region like 'eu-%'"),
                true,
            ),
        ]);
    }

    #[test]
    fn empty_cesql_counts_as_unset() {
        // Knative's field is a plain string: "" means no CESQL.
        check(&[(
            "cesql \"\"",
            filters(vec![F {
                cesql: Some(String::new()),
                ..F::default()
            }]),
            true,
        )]);
    }
}
