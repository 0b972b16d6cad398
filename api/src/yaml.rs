//! A fast reader for the plain block YAML that generated configs are written in
//! (`key: value` lines, `- ` lists, plain, single- and double-quoted one-line
//! scalars, comments): a tree of [`Node`]s borrowed from the text, which types
//! deserialize from directly, and which converts to the same `serde_json::Value`
//! serde-saphyr produces.
//!
//! Why: serde-saphyr spends about 30 µs per Trigger document, most of a config's
//! load time; a file of 10,000 triggers took a third of a second to parse. This
//! reader does the same documents in a fraction of that. It is a fast path only:
//! on anything outside its subset (anchors, tags, flow collections, block
//! scalars, multi-line scalars, scalars that YAML could read as a boolean,
//! number or null other than a plain decimal integer, duplicate keys, odd
//! indentation, errors of any kind) it gives up and the caller parses the whole
//! file with serde-saphyr, so results and error messages stay serde-saphyr's.

use serde::de::value::{BorrowedStrDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use serde_json::Value;

/// One YAML node of the subset, borrowing its text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    /// A mapping, in document order (keys are distinct).
    Map(Vec<(&'a str, Node<'a>)>),
    /// A sequence.
    Seq(Vec<Node<'a>>),
    /// A string scalar.
    Str(&'a str),
    /// A plain decimal integer.
    Int(u64),
    /// An empty value.
    Null,
}

impl<'a> Node<'a> {
    /// The string under `key` of a mapping.
    pub(crate) fn str_at(&self, key: &str) -> Option<&'a str> {
        match self {
            Node::Map(entries) => entries.iter().find_map(|(k, v)| match v {
                Node::Str(s) if *k == key => Some(*s),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The node as serde-saphyr would have produced it.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.to_value()))
                    .collect(),
            ),
            Node::Seq(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Str(s) => Value::String((*s).to_owned()),
            Node::Int(n) => Value::from(*n),
            Node::Null => Value::Null,
        }
    }
}

/// The YAML parser's budget. Its defaults (1,024 documents, 250,000 nodes) guard
/// untrusted input, but a broker with thousands of triggers in one file is a
/// normal config; these limits still stop alias bombs and runaway input.
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1_000_000,
            max_nodes: 50_000_000,
            max_events: 200_000_000,
        },
    }
}

/// One line with content: its indentation and its text after it.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// The non-empty documents of `text`, or `None` when `text` is not entirely in
/// the subset this reader understands (then serde-saphyr must parse it).
pub(crate) fn parse_plain(text: &str) -> Option<Vec<Node<'_>>> {
    if !text.chars().all(is_plain_char) {
        return None;
    }
    let mut docs = Vec::new();
    let mut lines: Vec<Line<'_>> = Vec::new();
    for raw in text.split('\n') {
        if raw == "---" {
            docs.extend(document(&mut lines)?);
            lines.clear();
            continue;
        }
        let content = raw.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.starts_with("---") || content.starts_with("...") || raw.starts_with('%') {
            return None;
        }
        lines.push(Line {
            indent: raw.len() - content.len(),
            text: content.trim_end_matches(' '),
        });
    }
    docs.extend(document(&mut lines)?);
    Some(docs)
}

/// Characters the subset allows anywhere: no tabs, carriage returns, byte-order
/// marks or other characters YAML treats specially or rejects.
fn is_plain_char(c: char) -> bool {
    match c {
        '\n' => true,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => false,
        '\u{feff}' | '\u{fffe}' | '\u{ffff}' => false,
        _ => true,
    }
}

/// One document's lines to its value; `Some(None)` for an empty document (which
/// serde-saphyr skips too).
fn document<'a>(lines: &mut [Line<'a>]) -> Option<Option<Node<'a>>> {
    let Some(first) = lines.first() else {
        return Some(None);
    };
    if first.indent != 0 {
        return None;
    }
    let mut at = 0;
    let value = block(lines, &mut at)?;
    (at == lines.len() && matches!(value, Node::Map(_))).then_some(Some(value))
}

/// The mapping or sequence starting at `lines[*at]`, at that line's indentation.
fn block<'a>(lines: &mut [Line<'a>], at: &mut usize) -> Option<Node<'a>> {
    let line = lines[*at];
    if is_item(line.text) {
        sequence(lines, at, line.indent)
    } else {
        mapping(lines, at, line.indent)
    }
}

/// Whether a line's text starts a sequence item.
fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// The mapping whose keys sit at `indent`, from `lines[*at]` on.
fn mapping<'a>(lines: &mut [Line<'a>], at: &mut usize, indent: usize) -> Option<Node<'a>> {
    let mut map: Vec<(&'a str, Node<'a>)> = Vec::new();
    while let Some(line) = lines.get(*at).copied() {
        if line.indent < indent {
            break;
        }
        if line.indent > indent || is_item(line.text) {
            return None;
        }
        let (key, rest) = entry(line.text)?;
        *at += 1;
        let value = if rest.is_empty() {
            match lines.get(*at).copied() {
                Some(next) if next.indent > indent => block(lines, at)?,
                // A list may sit at its key's own indentation.
                Some(next) if next.indent == indent && is_item(next.text) => {
                    sequence(lines, at, indent)?
                }
                _ => Node::Null,
            }
        } else {
            scalar(rest)?
        };
        if map.iter().any(|(k, _)| *k == key) {
            return None;
        }
        map.push((key, value));
    }
    Some(Node::Map(map))
}

/// The sequence whose `- ` markers sit at `indent`, from `lines[*at]` on.
fn sequence<'a>(lines: &mut [Line<'a>], at: &mut usize, indent: usize) -> Option<Node<'a>> {
    let mut items = Vec::new();
    while let Some(line) = lines.get(*at).copied() {
        if line.indent < indent || (line.indent == indent && !is_item(line.text)) {
            break;
        }
        if line.indent > indent {
            return None;
        }
        let body = line.text.strip_prefix("- ")?;
        let text = body.trim_start_matches(' ');
        if is_item(text) {
            return None;
        }
        if !text.starts_with(['"', '\'']) && entry(text).is_some() {
            // `- key: value`: a mapping whose keys sit where `key` does.
            let inner = indent + 2 + (body.len() - text.len());
            lines[*at] = Line {
                indent: inner,
                text,
            };
            items.push(mapping(lines, at, inner)?);
        } else {
            *at += 1;
            items.push(scalar(text)?);
        }
    }
    Some(Node::Seq(items))
}

/// A `key: rest` line split at its colon; `rest` is empty for `key:`. `None`
/// when the line is not such an entry or its key is not a plain string.
fn entry(text: &str) -> Option<(&str, &str)> {
    let (key, rest) = match text.find(": ") {
        Some(i) => (&text[..i], text[i + 2..].trim_start_matches(' ')),
        None => (text.strip_suffix(':')?, ""),
    };
    // `key: # note` has no value on its line.
    let rest = if rest.starts_with('#') { "" } else { rest };
    let plain_key = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && !is_special_word(key);
    plain_key.then_some((key, rest))
}

/// A one-line scalar (already trimmed, maybe followed by ` # comment`) as
/// serde-saphyr reads it, when that is certain: quoted strings without escapes,
/// plain strings, decimal integers.
fn scalar(text: &str) -> Option<Node<'_>> {
    for quote in ['"', '\''] {
        if let Some(rest) = text.strip_prefix(quote) {
            let (inner, after) = rest.split_once(quote)?;
            let simple = !(quote == '"' && inner.contains('\\'))
                && (after.is_empty()
                    || after.starts_with(' ') && after.trim_start_matches(' ').starts_with('#'));
            return simple.then_some(Node::Str(inner));
        }
    }
    let text = match text.find(" #") {
        Some(i) => text[..i].trim_end_matches(' '),
        None => text,
    };
    let first = text.bytes().next()?;
    if first.is_ascii_digit() {
        let integer = text.bytes().all(|b| b.is_ascii_digit()) && (first != b'0' || text == "0");
        return integer
            .then(|| text.parse::<u64>().ok())
            .flatten()
            .map(Node::Int);
    }
    // `.5`, `.inf` and `.nan` are numbers; `.tmp` is a string.
    let number_like = first == b'.'
        && (text.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
            || [".inf", ".nan"]
                .iter()
                .any(|w| text.eq_ignore_ascii_case(w)));
    let plain = !b"-?:,[]{}#&*!|>'\"%@`+~=<\\".contains(&first)
        && !number_like
        && !text.contains(": ")
        && !text.ends_with(':')
        && !is_special_word(text);
    plain.then_some(Node::Str(text))
}

/// Words YAML may read as a boolean or null rather than a string.
fn is_special_word(text: &str) -> bool {
    ["y", "yes", "n", "no", "true", "false", "on", "off", "null"]
        .iter()
        .any(|w| text.eq_ignore_ascii_case(w))
}

// === impl Deserializer for a Node ===

/// Deserializes a type from a [`Node`] as `serde_json::Value` would from the
/// node's value, for every input the types accept; any error only means "read
/// this document the thorough way", so its message does not matter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeDeserializer<'n, 'a>(pub(crate) &'n Node<'a>);

impl<'n, 'a> IntoDeserializer<'a, de::value::Error> for NodeDeserializer<'n, 'a> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'n, 'de> de::Deserializer<'de> for NodeDeserializer<'n, 'de> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Node::Map(entries) => {
                let mut map = MapDeserializer::new(
                    entries
                        .iter()
                        .map(|(k, v)| (BorrowedStrDeserializer::new(k), NodeDeserializer(v))),
                );
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
            Node::Seq(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(NodeDeserializer));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Node::Str(s) => visitor.visit_borrowed_str(s),
            Node::Int(n) => visitor.visit_u64(*n),
            Node::Null => visitor.visit_unit(),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Node::Str(s) => visitor.visit_enum(BorrowedStrDeserializer::new(s)),
            _ => Err(de::Error::custom("not a unit variant")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde-saphyr makes of `text`, with the loader's options.
    fn saphyr(text: &str) -> Result<Vec<Value>, String> {
        serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|e| e.to_string())
    }

    /// The fast path either declines or agrees with serde-saphyr exactly.
    fn agrees(text: &str) -> bool {
        match parse_plain(text) {
            None => false,
            Some(fast) => {
                let fast: Vec<Value> = fast.iter().map(Node::to_value).collect();
                assert_eq!(Ok(fast), saphyr(text), "for {text:?}");
                true
            }
        }
    }

    #[test]
    fn generated_triggers_take_the_fast_path() {
        let text = "# Generated by cebus-bench.\n---\napiVersion: eventing.knative.dev/v1\n\
                    kind: Trigger\nmetadata:\n  name: t-0\n  namespace: default\nspec:\n  \
                    broker: default\n  filter:\n    attributes:\n      type: bench.t0\n  \
                    subscriber:\n    uri: http://127.0.0.1:9/t-0\n  delivery:\n    retry: 3\n\
                    ---\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  \
                    name: t-1\n  annotations:\n    cebus.dev/delivery-order: ordered\nspec:\n  \
                    broker: default\n  filters:\n    - exact:\n        type: a.b\n      \
                    prefix:\n        source: /shop/\n    - cesql: \"type = 'x' AND subject LIKE \
                    'vip-%'\"\n    -   not:\n          suffix:   \n            subject: '.tmp'  \
                    # why\n  subscriber:\n    uri: http://x/#frag\n";
        assert!(agrees(text));
        assert_eq!(parse_plain(text).unwrap().len(), 2);
    }

    #[test]
    fn lists_at_their_keys_indentation_and_comments_are_read() {
        let text = "a:\n- b: 1\n  c: x\n- d\n# note\n  # indented note\ne:\n  - f\n\n  - g h\n";
        assert!(agrees(text));
    }

    #[test]
    fn anything_outside_the_subset_is_declined() {
        let declined = [
            "a: |\n  text\n",
            "a: >\n  text\n",
            "a: &x b\nc: *x\n",
            "a: !tag b\n",
            "a: {}\n",
            "a: [b]\n",
            "a: yes\n",
            "a: Off\n",
            "a: ~\n",
            "a: null\n",
            "a: 1.5\n",
            "a: 007\n",
            "a: -1\n",
            "a: .inf\n",
            "a: 127.0.0.1:9092\n",
            "a: b: c\n",
            "a: b:\n",
            "a: \"b\\\"c\"\n",
            "a: 'it''s'\n",
            "a: b\n  c\n",
            "a: b\na: c\n",
            "a:\n  b: 1\n   c: 2\n",
            "a:\n    b: 1\n  c: 2\n",
            "\"a\": b\n",
            "1: b\n",
            "true: b\n",
            "a:\tb\n",
            "a: b\r\n",
            "\u{feff}a: b\n",
            "--- a: b\n",
            "a: b\n...\n",
            "%YAML 1.2\n---\na: b\n",
            "- a\n- b\n",
            "scalar\n",
            "  a: b\n",
            "a:\n  - - b\n",
            "a:\n  -\n    b: c\n",
            "a:\n  - b\n    c: d\n",
        ];
        for text in declined {
            assert_eq!(parse_plain(text), None, "{text:?}");
        }
    }

    /// A small deterministic generator (xorshift), so the comparison below covers
    /// many shapes without a property-testing dependency in this crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const KEYS: &[&str] = &[
        "a",
        "name",
        "type",
        "eventing.knative.dev/broker.class",
        "b_c",
        "x-y",
        "K8s",
        "on",
        "Yes",
        "a.b",
        "z/",
    ];
    const SCALARS: &[&str] = &[
        "x",
        "com.example.t1",
        "http://127.0.0.1:9/t-1",
        "PT0.2S",
        "0",
        "7",
        "10",
        "007",
        "12.5",
        "1e3",
        "-1",
        "+1",
        ".inf",
        "y",
        "Yes",
        "on",
        "OFF",
        "null",
        "Null",
        "~",
        "true",
        "False",
        "a: b",
        "a #b",
        "a#b",
        "\"q\"",
        "'s'",
        "\"a\\\"b\"",
        "'it''s'",
        "\"\"",
        "''",
        "[a]",
        "{a: 1}",
        "&a x",
        "*a",
        "!t x",
        "@x",
        "`x",
        "%x",
        "a,b",
        "a, b",
        "-x",
        "?x",
        ".tmp",
        ".5",
        ".Inf",
        ".NaN",
        ".",
        "..",
        ":x",
        "x:",
        "ä ö",
        "a b",
        "a  b",
        "\"a: b\"",
        "'x # y'",
        "\"it's\"",
        "=x",
        "<x",
        "18446744073709551616",
        "0x1F",
        "a{b}",
        "a[b]",
        "\\x",
    ];

    fn scalar_text(rng: &mut Rng) -> String {
        // Half the time one of the first few, which the fast path reads, so
        // documents with several scalars still take it often.
        let s = match rng.next(2) {
            0 => SCALARS[rng.next(6)],
            _ => SCALARS[rng.next(SCALARS.len())],
        };
        match rng.next(4) {
            0 => format!("{s}  "),
            1 => format!("{s} # comment"),
            _ => s.to_owned(),
        }
    }

    fn mapping_text(rng: &mut Rng, out: &mut String, indent: usize, depth: usize) {
        let pad = " ".repeat(indent);
        for _ in 0..1 + rng.next(4) {
            let key = KEYS[rng.next(KEYS.len())];
            if rng.next(8) == 0 {
                out.push_str(&format!("{pad}# a comment\n\n"));
            }
            match if depth > 2 { 0 } else { rng.next(4) } {
                0 | 1 => out.push_str(&format!("{pad}{key}: {}\n", scalar_text(rng))),
                2 => {
                    out.push_str(&format!("{pad}{key}:\n"));
                    let inner = indent + 1 + rng.next(3);
                    mapping_text(rng, out, inner, depth + 1);
                }
                _ => {
                    out.push_str(&format!("{pad}{key}:\n"));
                    let at = indent + 2 * rng.next(2);
                    for _ in 0..1 + rng.next(3) {
                        let dash = " ".repeat(at);
                        if rng.next(2) == 0 {
                            out.push_str(&format!("{dash}- {}\n", scalar_text(rng)));
                        } else {
                            let mut item = String::new();
                            mapping_text(rng, &mut item, at + 2, depth + 1);
                            out.push_str(&format!("{dash}- {}", &item[at + 2..]));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn agrees_with_serde_saphyr_on_generated_documents() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut fast = 0;
        for _ in 0..10_000 {
            let mut text = String::new();
            for doc in 0..1 + rng.next(3) {
                if doc > 0 || rng.next(2) == 0 {
                    text.push_str("---\n");
                }
                if rng.next(6) == 0 {
                    continue;
                }
                mapping_text(&mut rng, &mut text, 0, 0);
            }
            fast += usize::from(agrees(&text));
        }
        // The comparison means something only if the fast path was taken often.
        assert!(fast > 1_000, "fast path taken {fast} times");
    }
}
