//! Why a filter did not match an event: the first part of the filter that failed,
//! with the attribute, what was expected and what the event had.

use std::fmt;

use cebus_events::Event;

use crate::cesql;
use crate::filter::Filter;

/// The part of a filter that failed for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Where in the compiled filter, e.g. `all[1].any` (empty for the root).
    pub path: String,
    /// The attribute compared, when the failing part compares one.
    pub attribute: Option<String>,
    /// What the filter required, e.g. `exact "com.example.order"`.
    pub expected: String,
    /// What the event had: the attribute's value (or, for `any`, `not` and
    /// `cesql`, what happened instead); `None` when the attribute is missing.
    pub actual: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if let Some(a) = &self.attribute {
            write!(f, "{a}: ")?;
        }
        write!(f, "expected {}, ", self.expected)?;
        match &self.actual {
            // An attribute value is quoted; a description is not.
            Some(v) if self.attribute.is_some() => write!(f, "got {v:?}"),
            Some(v) => write!(f, "got {v}"),
            None => write!(f, "attribute missing"),
        }
    }
}

/// A short rendering of a filter, for messages.
pub fn describe(filter: &Filter) -> String {
    match filter {
        Filter::All(list) if list.is_empty() => "match everything".to_owned(),
        Filter::All(list) => format!(
            "all({})",
            list.iter().map(describe).collect::<Vec<_>>().join(", ")
        ),
        Filter::Any(list) => format!(
            "any({})",
            list.iter().map(describe).collect::<Vec<_>>().join(", ")
        ),
        Filter::Not(inner) => format!("not({})", describe(inner)),
        Filter::Exact { attribute, value } => format!("{attribute} = {value:?}"),
        Filter::Prefix { attribute, value } => format!("{attribute} starts with {value:?}"),
        Filter::Suffix { attribute, value } => format!("{attribute} ends with {value:?}"),
        Filter::Exists { attribute } => format!("{attribute} present and non-empty"),
        Filter::Cesql(expr) => format!("cesql {expr}"),
    }
}

fn join(path: &str, part: &str) -> String {
    if path.is_empty() {
        part.to_owned()
    } else {
        format!("{path}.{part}")
    }
}

/// `None` when `filter` matches `event`; otherwise the first failing part.
pub fn explain(filter: &Filter, event: &Event) -> Option<Mismatch> {
    explain_at(filter, event, "")
}

fn compare(
    path: &str,
    attribute: &str,
    event: &Event,
    expected: String,
    ok: impl Fn(&str) -> bool,
) -> Option<Mismatch> {
    let actual = event.get_str(attribute);
    if actual.as_deref().is_some_and(ok) {
        return None;
    }
    Some(Mismatch {
        path: path.to_owned(),
        attribute: Some(attribute.to_owned()),
        expected,
        actual: actual.map(|v| v.into_owned()),
    })
}

fn explain_at(filter: &Filter, event: &Event, path: &str) -> Option<Mismatch> {
    match filter {
        Filter::All(list) => list
            .iter()
            .enumerate()
            .find_map(|(i, f)| explain_at(f, event, &join(path, &format!("all[{i}]")))),
        Filter::Any(list) => {
            let reasons: Vec<String> = list
                .iter()
                .enumerate()
                .map(|(i, f)| explain_at(f, event, &format!("any[{i}]")).map(|m| m.to_string()))
                .collect::<Option<Vec<_>>>()?;
            Some(Mismatch {
                path: join(path, "any"),
                attribute: None,
                expected: format!("one of {} alternatives to match", list.len()),
                actual: Some(if reasons.is_empty() {
                    "an empty any (never matches)".to_owned()
                } else {
                    format!("none did: {}", reasons.join("; "))
                }),
            })
        }
        Filter::Not(inner) => {
            if explain_at(inner, event, "").is_some() {
                return None;
            }
            Some(Mismatch {
                path: join(path, "not"),
                attribute: None,
                expected: format!("not({})", describe(inner)),
                actual: Some("it matched".to_owned()),
            })
        }
        Filter::Exact { attribute, value } => {
            compare(path, attribute, event, format!("{value:?}"), |v| v == value)
        }
        Filter::Prefix { attribute, value } => {
            compare(path, attribute, event, format!("prefix {value:?}"), |v| {
                v.starts_with(value.as_str())
            })
        }
        Filter::Suffix { attribute, value } => {
            compare(path, attribute, event, format!("suffix {value:?}"), |v| {
                v.ends_with(value.as_str())
            })
        }
        Filter::Exists { attribute } => compare(
            path,
            attribute,
            event,
            "a non-empty value".to_owned(),
            |v| !v.is_empty(),
        ),
        Filter::Cesql(expr) => {
            let eval = cesql::evaluate(expr, event);
            if eval.value == cesql::Value::Boolean(true) && eval.errors.is_empty() {
                return None;
            }
            let mut actual = eval.value.to_string();
            if !eval.errors.is_empty() {
                let errors: Vec<String> = eval
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.kind, e.message))
                    .collect();
                actual = format!("{actual} with errors: {}", errors.join("; "));
            }
            Some(Mismatch {
                path: join(path, "cesql"),
                attribute: None,
                expected: format!("`{expr}` to be true"),
                actual: Some(actual),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(a: &str, v: &str) -> Filter {
        Filter::Exact {
            attribute: a.into(),
            value: v.into(),
        }
    }

    #[test]
    fn explains_the_first_failing_part() {
        let e = Event::with_required("1", "/shop/eu", "com.example.refund");
        let cases: Vec<(Filter, Option<&str>)> = vec![
            (exact("type", "com.example.refund"), None),
            (
                exact("type", "com.example.order"),
                Some(r#"type: expected "com.example.order", got "com.example.refund""#),
            ),
            (
                exact("subject", "x"),
                Some(r#"subject: expected "x", attribute missing"#),
            ),
            (
                Filter::All(vec![
                    exact("source", "/shop/eu"),
                    Filter::Prefix {
                        attribute: "type".into(),
                        value: "org.".into(),
                    },
                ]),
                Some(r#"all[1]: type: expected prefix "org.", got "com.example.refund""#),
            ),
            (
                Filter::Not(Box::new(Filter::Suffix {
                    attribute: "source".into(),
                    value: "/eu".into(),
                })),
                Some(r#"not: expected not(source ends with "/eu"), got it matched"#),
            ),
            (
                Filter::Any(vec![exact("type", "a"), exact("type", "b")]),
                Some(
                    r#"any: expected one of 2 alternatives to match, got none did: any[0]: type: expected "a", got "com.example.refund"; any[1]: type: expected "b", got "com.example.refund""#,
                ),
            ),
            (
                Filter::Exists {
                    attribute: "region".into(),
                },
                Some("region: expected a non-empty value, attribute missing"),
            ),
        ];
        for (f, want) in cases {
            assert_eq!(
                explain(&f, &e).map(|m| m.to_string()).as_deref(),
                want,
                "{f:?}"
            );
            assert_eq!(
                explain(&f, &e).is_none(),
                f.matches(&e),
                "explain agrees with matches: {f:?}"
            );
        }
    }
}
