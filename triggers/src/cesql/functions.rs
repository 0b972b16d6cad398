//! The built-in functions (CESQL v1 §3.5, plus the casting functions `INT`,
//! `BOOL`, `STRING`, `IS_INT`, `IS_BOOL` the TCK and Go SDK use).

use super::ErrorKind;
use super::ast::Expr;
use super::eval::{Cx, Out};
use super::value::{Type, Value};

/// A function's parameters: fixed ones, then optionally a variadic tail.
struct Signature {
    params: &'static [Type],
    variadic: Option<Type>,
    returns: Type,
}

const fn fixed(params: &'static [Type], returns: Type) -> Signature {
    Signature {
        params,
        variadic: None,
        returns,
    }
}

/// The signature of `name` (upper case) called with `arity` arguments.
fn signature(name: &str, arity: usize) -> Option<Signature> {
    use Type::{Any, Boolean, Integer, String};
    let sig = match (name, arity) {
        ("LENGTH", 1) => fixed(&[String], Integer),
        ("CONCAT", _) => Signature {
            params: &[],
            variadic: Some(String),
            returns: String,
        },
        ("CONCAT_WS", 1..) => Signature {
            params: &[String],
            variadic: Some(String),
            returns: String,
        },
        ("LOWER" | "UPPER" | "TRIM", 1) => fixed(&[String], String),
        ("LEFT" | "RIGHT", 2) => fixed(&[String, Integer], String),
        ("SUBSTRING", 2) => fixed(&[String, Integer], String),
        ("SUBSTRING", 3) => fixed(&[String, Integer, Integer], String),
        ("ABS", 1) => fixed(&[Integer], Integer),
        ("INT", 1) => fixed(&[Any], Integer),
        ("BOOL", 1) => fixed(&[Any], Boolean),
        ("STRING", 1) => fixed(&[Any], String),
        ("IS_INT" | "IS_BOOL", 1) => fixed(&[Any], Boolean),
        _ => return None,
    };
    Some(sig)
}

/// Calls `name(args)`: evaluates the arguments left to right, casts them to
/// the parameter types, then applies the function.
pub(crate) fn call(cx: &mut Cx<'_>, name: &str, args: &[Expr]) -> Out {
    let Some(sig) = signature(name, args.len()) else {
        cx.error(
            ErrorKind::MissingFunction,
            format!("no function {name} taking {} argument(s)", args.len()),
        );
        return Out::failed(Value::Boolean(false));
    };
    let mut values = Vec::with_capacity(args.len());
    let mut ok = true;
    for arg in args {
        let out = cx.eval(arg);
        ok &= out.ok;
        values.push(out.value);
    }
    if !ok {
        return Out::failed(sig.returns.zero());
    }
    let mut cast = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        let ty = sig
            .params
            .get(i)
            .copied()
            .or(sig.variadic)
            .expect("arity checked by signature");
        match cx.cast(value, ty) {
            Some(v) => cast.push(v),
            None => return Out::failed(sig.returns.zero()),
        }
    }
    apply(cx, name, cast)
}

fn apply(cx: &mut Cx<'_>, name: &str, args: Vec<Value>) -> Out {
    let mut args = args.into_iter();
    match name {
        "LENGTH" => {
            let n = string(args.next()).chars().count();
            Out::ok(Value::Integer(i32::try_from(n).unwrap_or(i32::MAX)))
        }
        "CONCAT" => Out::ok(Value::String(args.map(|v| string(Some(v))).collect())),
        "CONCAT_WS" => {
            let sep = string(args.next());
            let parts: Vec<String> = args.map(|v| string(Some(v))).collect();
            Out::ok(Value::String(parts.join(&sep)))
        }
        "LOWER" => Out::ok(Value::String(string(args.next()).to_lowercase())),
        "UPPER" => Out::ok(Value::String(string(args.next()).to_uppercase())),
        "TRIM" => Out::ok(Value::String(string(args.next()).trim().to_owned())),
        "LEFT" | "RIGHT" => {
            let s = string(args.next());
            let n = integer(args.next());
            left_right(cx, name, s, n)
        }
        "SUBSTRING" => {
            let s = string(args.next());
            let pos = integer(args.next());
            let len = args.next().map(|v| integer(Some(v)));
            substring(cx, s, pos, len)
        }
        "ABS" => {
            let i = integer(args.next());
            match i.checked_abs() {
                Some(a) => Out::ok(Value::Integer(a)),
                None => {
                    cx.error(
                        ErrorKind::Math,
                        "ABS(-2147483648) overflows a 32-bit integer",
                    );
                    Out::failed(Value::Integer(i32::MAX))
                }
            }
        }
        "INT" | "BOOL" | "STRING" => {
            let to = match name {
                "INT" => Type::Integer,
                "BOOL" => Type::Boolean,
                _ => Type::String,
            };
            let value = args.next().expect("one argument");
            match cx.cast(value, to) {
                Some(v) => Out::ok(v),
                None => Out::failed(to.zero()),
            }
        }
        "IS_INT" | "IS_BOOL" => {
            let to = if name == "IS_INT" {
                Type::Integer
            } else {
                Type::Boolean
            };
            let value = args.next().expect("one argument");
            Out::ok(Value::Boolean(value.cast(to).is_ok()))
        }
        _ => unreachable!("every function with a signature is applied: {name}"),
    }
}

fn string(value: Option<Value>) -> String {
    match value {
        Some(Value::String(s)) => s,
        other => unreachable!("argument cast to String, got {other:?}"),
    }
}

fn integer(value: Option<Value>) -> i32 {
    match value {
        Some(Value::Integer(i)) => i,
        other => unreachable!("argument cast to Integer, got {other:?}"),
    }
}

/// `LEFT(x, n)` / `RIGHT(x, n)`: `x` itself and an error when `n < 0`.
fn left_right(cx: &mut Cx<'_>, name: &str, s: String, n: i32) -> Out {
    let Ok(n) = usize::try_from(n) else {
        cx.error(
            ErrorKind::FunctionEvaluation,
            format!("{name}: the length must be 0 or more, got {n}"),
        );
        return Out::failed(Value::String(s));
    };
    let len = s.chars().count();
    let out = if name == "LEFT" {
        s.chars().take(n).collect()
    } else {
        s.chars().skip(len.saturating_sub(n)).collect()
    };
    Out::ok(Value::String(out))
}

/// `SUBSTRING(x, pos[, len])`: 1-based `pos`, negative counts from the end,
/// 0 gives `""`; out of range or a negative `len` give `""` and an error.
fn substring(cx: &mut Cx<'_>, s: String, pos: i32, len: Option<i32>) -> Out {
    let chars: Vec<char> = s.chars().collect();
    let total = i64::try_from(chars.len()).unwrap_or(i64::MAX);
    let pos = i64::from(pos);
    if pos > total || pos < -total {
        cx.error(
            ErrorKind::FunctionEvaluation,
            format!("SUBSTRING: position {pos} is outside a string of length {total}"),
        );
        return Out::failed(Value::String(String::new()));
    }
    if let Some(len) = len.filter(|l| *l < 0) {
        cx.error(
            ErrorKind::FunctionEvaluation,
            format!("SUBSTRING: the length must be 0 or more, got {len}"),
        );
        return Out::failed(Value::String(String::new()));
    }
    if pos == 0 {
        return Out::ok(Value::String(String::new()));
    }
    let start = if pos > 0 { pos - 1 } else { total + pos };
    let start = usize::try_from(start).expect("checked in range");
    let take = len.map_or(usize::MAX, |l| usize::try_from(l).expect("checked >= 0"));
    Out::ok(Value::String(chars[start..].iter().take(take).collect()))
}
