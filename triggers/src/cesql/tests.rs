//! Table tests for the parser, printer and evaluator, and the properties:
//! print → parse is the identity, and evaluation never panics.

use cebus_events::{AttrValue, Event};
use proptest::prelude::*;

use super::*;

/// `id` `1`, `source` `/src`, `type` `t.created`, `time` with an offset, and
/// extensions `count` = Integer 5, `flag` = Boolean true, `region` = `eu-west`,
/// `seq` = `"7"`, `huge` = Integer 2^40.
fn event() -> Event {
    let mut e = Event::with_required("1", "/src", "t.created");
    e.set("time", "2018-04-26T14:48:09+02:00");
    e.set("count", AttrValue::Integer(5));
    e.set("flag", AttrValue::Boolean(true));
    e.set("region", "eu-west");
    e.set("seq", "7");
    e.set("huge", AttrValue::Integer(1 << 40));
    e
}

fn eval(source: &str) -> Evaluation {
    let expr = parse(source).unwrap_or_else(|e| panic!("{source:?}: {e}"));
    evaluate(&expr, &event())
}

fn kinds(e: &Evaluation) -> Vec<ErrorKind> {
    e.errors.iter().map(|e| e.kind).collect()
}

fn int(i: i32) -> Value {
    Value::Integer(i)
}
fn boolean(b: bool) -> Value {
    Value::Boolean(b)
}
fn string(s: &str) -> Value {
    Value::String(s.into())
}

#[test]
fn parse_errors_carry_position_and_expectation() {
    // (input, 0-based char offset, expected, found)
    let cases = [
        ("", 0, "an expression", "end of input"),
        ("ABC(", 4, "an expression", "end of input"),
        ("a =", 3, "an expression", "end of input"),
        ("(a", 2, "`)` or an operator", "end of input"),
        ("a b", 2, "an operator or end of input", "`b`"),
        ("TRUE TRUE", 5, "an operator or end of input", "`TRUE`"),
        ("a)", 1, "an operator or end of input", "`)`"),
        (
            "x LIKE 123",
            7,
            "a string literal pattern after LIKE",
            "integer `123`",
        ),
        ("x LIKE y", 7, "a string literal pattern after LIKE", "`y`"),
        ("x NOT = 1", 6, "LIKE or IN after NOT", "`=`"),
        ("x IN 1", 5, "`(` opening the IN set", "integer `1`"),
        ("x IN ()", 6, "an expression", "`)`"),
        ("x IN (1 2)", 8, "`,` or `)` in the IN set", "integer `2`"),
        (
            "f(1 2)",
            4,
            "`,` or `)` after a function argument",
            "integer `2`",
        ),
        ("f(1,)", 4, "an expression", "`)`"),
        (
            "EXISTS 1",
            7,
            "an attribute name ([a-z0-9]+) after EXISTS",
            "integer `1`",
        ),
        (
            "EXISTS and",
            7,
            "an attribute name ([a-z0-9]+) after EXISTS",
            "`and`",
        ),
        (
            "my_ext = 1",
            0,
            "an attribute name of letters and digits only",
            "`my_ext`",
        ),
        (
            "f1(2)",
            0,
            "a function name of letters and `_`, starting with a letter",
            "`f1`",
        ),
        (
            "2147483648",
            0,
            "an integer between -2147483648 and 2147483647",
            "`2147483648`",
        ),
        (
            "1 + -2147483649",
            4,
            "an integer between -2147483648 and 2147483647",
            "`-2147483649`",
        ),
        (
            "'abc",
            4,
            "a closing ' for the string opened at column 1",
            "end of input",
        ),
        ("a = ?", 4, "an operator, a literal, a name or `(`", "`?`"),
        ("NOT", 3, "an expression", "end of input"),
        ("+ a", 0, "an expression", "`+`"),
        ("a AND OR b", 6, "an expression", "`OR`"),
    ];
    for (input, position, expected, found) in cases {
        let err = parse(input).expect_err(input);
        assert_eq!(
            (err.position, err.expected.as_str(), err.found.as_str()),
            (position, expected, found),
            "{input:?}"
        );
    }
    assert_eq!(
        parse("a =").unwrap_err().to_string(),
        "at column 4: expected an expression, found end of input"
    );
}

#[test]
fn nesting_is_bounded() {
    let ok = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(parse(&ok), Ok(Expr::Literal(int(1))));
    let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(
        parse(&deep)
            .unwrap_err()
            .expected
            .contains("nested at most")
    );
    let chain = vec!["1"; 10_000].join(" + ");
    assert!(
        parse(&chain)
            .unwrap_err()
            .expected
            .contains("nested at most")
    );
    let nots = format!("{}TRUE", "NOT ".repeat(10_000));
    assert!(parse(&nots).is_err());
    let shallow_chain = vec!["1"; MAX_DEPTH].join(" + ");
    assert_eq!(
        evaluate(&parse(&shallow_chain).unwrap(), &event()).value,
        int(64)
    );
}

#[test]
fn precedence_and_printing() {
    // (input, canonical print)
    let cases = [
        ("4 * 2 + 4 / 2", "4 * 2 + 4 / 2"),
        ("4 * (2 + 4) / 2", "4 * (2 + 4) / 2"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("a or b and c", "a OR b AND c"),
        ("a or (b and c)", "a OR (b AND c)"),
        ("not a = b", "NOT a = b"),
        ("not (a = b)", "NOT (a = b)"),
        ("-5", "-5"),
        ("-(5)", "-(5)"),
        ("--10", "-(-10)"),
        ("- -x", "--x"),
        ("+7", "7"),
        ("-2147483648", "-2147483648"),
        ("a - -1", "a - -1"),
        (
            "x not like 'a\\%' and y in (1, 'two', z)",
            "x NOT LIKE 'a\\%' AND y IN (1, 'two', z)",
        ),
        ("(a + 1) like '1%'", "(a + 1) LIKE '1%'"),
        ("a + 1 like '1%'", "a + 1 LIKE '1%'"),
        (
            "concat_ws(',', Source, \"it's\")",
            "CONCAT_WS(',', source, 'it\\'s')",
        ),
        ("NOT EXISTS Subject", "NOT EXISTS subject"),
        ("a <> b", "a != b"),
        ("'back\\\\slash'", "'back\\slash'"),
        ("'ends with \\\\'", "'ends with \\\\'"),
        ("tRuE xor FaLsE", "TRUE XOR FALSE"),
    ];
    for (input, printed) in cases {
        let expr = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(expr.to_string(), printed, "{input:?}");
        assert_eq!(parse(printed).as_ref(), Ok(&expr), "{printed:?}");
    }
    // The tree, not just the text: AND/OR/XOR are one level, left to right.
    assert_eq!(
        parse("a OR b AND c").unwrap(),
        Expr::Binary {
            op: BinaryOp::And,
            left: Box::new(Expr::Binary {
                op: BinaryOp::Or,
                left: Box::new(Expr::Attribute("a".into())),
                right: Box::new(Expr::Attribute("b".into())),
            }),
            right: Box::new(Expr::Attribute("c".into())),
        }
    );
}

#[test]
fn evaluation_table() {
    // (expression, value, error kinds)
    use ErrorKind::*;
    let cases: Vec<(&str, Value, Vec<ErrorKind>)> = vec![
        ("type = 't.created'", boolean(true), vec![]),
        ("TYPE LIKE 't.%'", boolean(true), vec![]),
        ("specversion = '1.0'", boolean(true), vec![]),
        ("time", string("2018-04-26T14:48:09+02:00"), vec![]),
        ("count + 1", int(6), vec![]),
        ("count = '5'", boolean(true), vec![]),
        ("count = 'five'", boolean(false), vec![]),
        ("'5' = count", boolean(true), vec![]),
        ("flag AND count > 4", boolean(true), vec![]),
        ("seq = 7", boolean(true), vec![]),
        ("seq < 10", boolean(true), vec![]),
        ("huge = '1099511627776'", boolean(true), vec![]),
        ("region IN ('us', 'eu-west')", boolean(true), vec![]),
        ("region NOT IN ('us')", boolean(true), vec![]),
        ("count IN ('x', 5)", boolean(false), vec![Cast]),
        ("count IN (5, 'x')", boolean(true), vec![]),
        ("missing", boolean(false), vec![MissingAttribute]),
        (
            "missing + missing2",
            int(0),
            vec![MissingAttribute, MissingAttribute],
        ),
        ("LENGTH(missing)", int(0), vec![MissingAttribute]),
        ("missing NOT IN (1)", boolean(false), vec![MissingAttribute]),
        ("EXISTS missing", boolean(false), vec![]),
        ("EXISTS specversion", boolean(true), vec![]),
        ("1 / 0", int(0), vec![Math]),
        ("-7 / 2", int(-3), vec![]),
        ("-7 % 2", int(-1), vec![]),
        ("7 % -2", int(1), vec![]),
        ("2147483647 + 1", int(i32::MAX), vec![Math]),
        ("-2147483648 - 1", int(i32::MIN), vec![Math]),
        ("65536 * 65536", int(i32::MAX), vec![Math]),
        ("-2147483648 / -1", int(i32::MAX), vec![Math]),
        ("-2147483648 % -1", int(0), vec![]),
        ("-(-2147483648)", int(i32::MAX), vec![Math]),
        ("'abc' + 1", int(0), vec![Cast]),
        ("'abc' < 1", boolean(false), vec![Cast]),
        ("NOT 'maybe'", boolean(false), vec![Cast]),
        ("'a' = 1", boolean(false), vec![Cast]),
        ("1 = 'a'", boolean(false), vec![]),
        ("TRUE = 'true' AND FALSE = 'false'", boolean(true), vec![]),
        ("TRUE = 'TRUE' OR FALSE = 'FALSE'", boolean(false), vec![]),
        ("NOPE(1)", boolean(false), vec![MissingFunction]),
        ("LENGTH()", boolean(false), vec![MissingFunction]),
        ("lower('ÀB')", string("àb"), vec![]),
        ("LENGTH('é✓')", int(2), vec![]),
        ("TRIM('\u{2003} a \n')", string("a"), vec![]),
        ("LEFT('é✓x', 2)", string("é✓"), vec![]),
        ("RIGHT('é✓x', 2)", string("✓x"), vec![]),
        ("SUBSTRING('abc', 3)", string("c"), vec![]),
        ("SUBSTRING('abc', -3, 1)", string("a"), vec![]),
        (
            "SUBSTRING('abc', 1, -1)",
            string(""),
            vec![FunctionEvaluation],
        ),
        ("ABS(-2147483648)", int(i32::MAX), vec![Math]),
        ("INT('+5')", int(5), vec![]),
        ("INT(' 5')", int(0), vec![Cast]),
        ("BOOL('yes')", boolean(false), vec![Cast]),
        ("STRING(-1)", string("-1"), vec![]),
        ("IS_INT('12')", boolean(true), vec![]),
        ("IS_INT('x')", boolean(false), vec![]),
        ("IS_BOOL('False')", boolean(true), vec![]),
        ("IS_BOOL(2)", boolean(true), vec![]),
        ("CONCAT(1, TRUE, 'x')", string("1truex"), vec![]),
        ("TRUE XOR missing", boolean(false), vec![MissingAttribute]),
    ];
    for (source, value, errors) in cases {
        let got = eval(source);
        assert_eq!(
            (&got.value, kinds(&got)),
            (&value, errors),
            "{source:?}: {got:?}"
        );
    }
}

#[test]
fn and_or_short_circuit() {
    let cases = [
        ("FALSE AND (1/0 = 0)", false, false),
        ("TRUE OR (1/0 = 0)", true, false),
        ("FALSE AND missing", false, false),
        ("TRUE OR NOPE()", true, false),
        ("TRUE AND (1/0 = 0)", false, true),
        ("FALSE OR (1/0 = 0)", false, true),
        ("missing AND TRUE", false, true),
        ("FALSE XOR (1/0 = 0)", false, true),
    ];
    for (source, value, has_errors) in cases {
        let got = eval(source);
        assert_eq!(got.value, boolean(value), "{source}");
        assert_eq!(
            !got.errors.is_empty(),
            has_errors,
            "{source}: {:?}",
            got.errors
        );
    }
    assert!(eval("FALSE AND (1/0 = 0)").errors.is_empty());
    assert!(!eval("FALSE AND (1/0 = 0)").is_match());
    assert!(eval("TRUE OR (1/0 = 0)").is_match());
}

#[test]
fn like_escapes_through_string_literals() {
    let cases = [
        (r"'a%c' LIKE 'a\%c'", true),
        (r"'abc' LIKE 'a\%c'", false),
        (r"'a_c' LIKE 'a\_c'", true),
        (r"'abc' LIKE 'a\_c'", false),
        (r"'ab\c' LIKE 'ab\c'", true),
        // `\\` in a literal is one backslash, which then escapes the `%`.
        (r"'a%' LIKE 'a\\%'", true),
        (r"'ab' LIKE 'a\\%'", false),
        (r"'it\'s' LIKE 'it_s'", true),
        ("234 LIKE '23_'", true),
        ("TRUE LIKE 'tr%'", true),
    ];
    for (source, want) in cases {
        assert_eq!(eval(source).value, boolean(want), "{source}");
    }
    // SQL's doubled quote is not CESQL: it reads as two string literals.
    assert!(parse("'it''s' LIKE 'it_s'").is_err());
}

const NAMES: [&str; 16] = [
    "LENGTH",
    "CONCAT",
    "CONCAT_WS",
    "LOWER",
    "UPPER",
    "TRIM",
    "LEFT",
    "RIGHT",
    "SUBSTRING",
    "ABS",
    "INT",
    "BOOL",
    "STRING",
    "IS_INT",
    "IS_BOOL",
    "NO_SUCH_FN",
];

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}".prop_filter("not a keyword", |n| !parser::is_keyword(n))
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        any::<bool>().prop_map(|b| Expr::Literal(Value::Boolean(b))),
        any::<i32>().prop_map(|i| Expr::Literal(Value::Integer(i))),
        (-3i32..12).prop_map(|i| Expr::Literal(Value::Integer(i))),
        "[a-c0-9 '\"\\\\%_é]{0,6}".prop_map(|s| Expr::Literal(Value::String(s))),
        prop_oneof![
            Just("count".to_owned()),
            Just("flag".to_owned()),
            Just("region".to_owned()),
            Just("seq".to_owned()),
            Just("type".to_owned()),
            name()
        ]
        .prop_map(Expr::Attribute),
        name().prop_map(Expr::Exists),
    ]
}

const BINARY: [BinaryOp; 14] = [
    BinaryOp::And,
    BinaryOp::Or,
    BinaryOp::Xor,
    BinaryOp::Eq,
    BinaryOp::NotEq,
    BinaryOp::Lt,
    BinaryOp::LtEq,
    BinaryOp::Gt,
    BinaryOp::GtEq,
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Mod,
];

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            (
                prop_oneof![Just(UnaryOp::Not), Just(UnaryOp::Minus)],
                inner.clone()
            )
                .prop_map(|(op, e)| Expr::Unary {
                    op,
                    expr: Box::new(e)
                }),
            (
                proptest::sample::select(&BINARY[..]),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, l, r)| Expr::Binary {
                    op,
                    left: Box::new(l),
                    right: Box::new(r),
                }),
            (inner.clone(), "[a-c%_\\\\']{0,5}", any::<bool>()).prop_map(
                |(e, pattern, negated)| {
                    Expr::Like {
                        expr: Box::new(e),
                        pattern,
                        negated,
                    }
                }
            ),
            (
                inner.clone(),
                prop::collection::vec(inner.clone(), 1..4),
                any::<bool>()
            )
                .prop_map(|(e, set, negated)| Expr::In {
                    expr: Box::new(e),
                    set,
                    negated,
                }),
            (
                proptest::sample::select(&NAMES[..]),
                prop::collection::vec(inner, 0..4)
            )
                .prop_map(|(name, args)| Expr::Call {
                    name: name.to_owned(),
                    args,
                }),
        ]
    })
}

fn any_event() -> impl Strategy<Value = Event> {
    let value = prop_oneof![
        any::<i64>().prop_map(AttrValue::Integer),
        any::<bool>().prop_map(AttrValue::Boolean),
        "[a-c0-9 %_-]{0,6}".prop_map(AttrValue::String),
    ];
    prop::collection::btree_map(
        prop_oneof![
            Just("count".to_owned()),
            Just("flag".to_owned()),
            Just("seq".to_owned()),
            Just("subject".to_owned()),
            name()
        ],
        value,
        0..5,
    )
    .prop_map(|attrs| {
        let mut e = Event::with_required("1", "/src", "t");
        for (k, v) in attrs {
            e.set(k, v);
        }
        e
    })
}

proptest! {
    #[test]
    fn print_then_parse_is_identity(e in expr()) {
        let printed = e.to_string();
        prop_assert_eq!(parse(&printed), Ok(e), "printed as {}", printed);
    }

    #[test]
    fn evaluation_never_panics(e in expr(), event in any_event()) {
        let got = evaluate(&e, &event);
        // The filter contract: a match is TRUE without errors.
        prop_assert_eq!(got.is_match(), got.value == Value::Boolean(true) && got.errors.is_empty());
    }

    #[test]
    fn parse_never_panics(s in "[a-zA-Z0-9 ()'\"\\\\%_,=<>!+*/-]{0,40}") {
        if let Ok(e) = parse(&s) {
            prop_assert_eq!(parse(&e.to_string()), Ok(e));
        }
    }
}
