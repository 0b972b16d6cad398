//! Evaluation of a CESQL tree against one event (CESQL v1 §3).
//!
//! Every subexpression yields a value; errors are collected, never thrown. An
//! operator or function whose operand failed (an error in it or in a cast)
//! returns the zero value of its own return type without computing, so
//! `missing / 0` is `0` with a MissingAttribute error and no Math error.

use cebus_events::{AttrValue, Event};

use super::ast::{BinaryOp, Expr, UnaryOp};
use super::functions;
use super::like;
use super::value::{Type, Value};
use super::{ErrorKind, EvalError, Evaluation};

/// Evaluates `expr` against `event`.
pub(crate) fn evaluate(expr: &Expr, event: &Event) -> Evaluation {
    let mut cx = Cx {
        event,
        errors: Vec::new(),
    };
    let out = cx.eval(expr);
    Evaluation {
        value: out.value,
        errors: cx.errors,
    }
}

/// A subexpression's value, and whether an error happened inside it.
pub(crate) struct Out {
    pub(crate) value: Value,
    pub(crate) ok: bool,
}

impl Out {
    pub(crate) fn ok(value: Value) -> Out {
        Out { value, ok: true }
    }

    pub(crate) fn failed(value: Value) -> Out {
        Out { value, ok: false }
    }
}

/// The evaluation context: the event and the errors collected so far.
pub(crate) struct Cx<'a> {
    event: &'a Event,
    errors: Vec<EvalError>,
}

impl Cx<'_> {
    pub(crate) fn error(&mut self, kind: ErrorKind, message: impl Into<String>) {
        self.errors.push(EvalError {
            kind,
            message: message.into(),
        });
    }

    /// Casts, recording a Cast error on failure.
    pub(crate) fn cast(&mut self, value: Value, to: Type) -> Option<Value> {
        match value.cast(to) {
            Ok(v) => Some(v),
            Err(message) => {
                self.error(ErrorKind::Cast, message);
                None
            }
        }
    }

    /// Evaluates `expr` and casts it to `to`; `None` when either failed.
    fn operand(&mut self, expr: &Expr, to: Type) -> Option<Value> {
        let out = self.eval(expr);
        if !out.ok {
            return None;
        }
        self.cast(out.value, to)
    }

    fn boolean(&mut self, expr: &Expr) -> Option<bool> {
        match self.operand(expr, Type::Boolean)? {
            Value::Boolean(b) => Some(b),
            _ => unreachable!("cast to Boolean"),
        }
    }

    fn integer(&mut self, expr: &Expr) -> Option<i32> {
        match self.operand(expr, Type::Integer)? {
            Value::Integer(i) => Some(i),
            _ => unreachable!("cast to Integer"),
        }
    }

    pub(crate) fn eval(&mut self, expr: &Expr) -> Out {
        match expr {
            Expr::Literal(v) => Out::ok(v.clone()),
            Expr::Attribute(name) => match attribute(self.event, name) {
                Some(v) => Out::ok(v),
                None => {
                    self.error(
                        ErrorKind::MissingAttribute,
                        format!("the event has no attribute {name:?}"),
                    );
                    // The type is unknown: the spec says to assume Boolean.
                    Out::failed(Value::Boolean(false))
                }
            },
            Expr::Exists(name) => Out::ok(Value::Boolean(self.event.get_str(name).is_some())),
            Expr::Unary {
                op: UnaryOp::Not,
                expr,
            } => match self.boolean(expr) {
                Some(b) => Out::ok(Value::Boolean(!b)),
                None => Out::failed(Value::Boolean(false)),
            },
            Expr::Unary {
                op: UnaryOp::Minus,
                expr,
            } => match self.integer(expr) {
                Some(i) => match i.checked_neg() {
                    Some(n) => Out::ok(Value::Integer(n)),
                    None => {
                        self.error(
                            ErrorKind::Math,
                            format!("-({i}) overflows a 32-bit integer"),
                        );
                        Out::failed(Value::Integer(i32::MAX))
                    }
                },
                None => Out::failed(Value::Integer(0)),
            },
            Expr::Binary { op, left, right } => self.binary(*op, left, right),
            Expr::Like {
                expr,
                pattern,
                negated,
            } => match self.operand(expr, Type::String) {
                Some(Value::String(s)) => {
                    Out::ok(Value::Boolean(like::matches(&s, pattern) != *negated))
                }
                _ => Out::failed(Value::Boolean(false)),
            },
            Expr::In { expr, set, negated } => self.in_set(expr, set, *negated),
            Expr::Call { name, args } => functions::call(self, name, args),
        }
    }

    fn binary(&mut self, op: BinaryOp, left: &Expr, right: &Expr) -> Out {
        let fail_bool = || Out::failed(Value::Boolean(false));
        match op {
            // Short-circuit: the right side is not evaluated (so cannot fail)
            // once the left side decides.
            BinaryOp::And | BinaryOp::Or => {
                let Some(l) = self.boolean(left) else {
                    return fail_bool();
                };
                if l == (op == BinaryOp::Or) {
                    return Out::ok(Value::Boolean(l));
                }
                match self.boolean(right) {
                    Some(r) => Out::ok(Value::Boolean(r)),
                    None => fail_bool(),
                }
            }
            BinaryOp::Xor => {
                let l = self.boolean(left);
                let r = self.boolean(right);
                match (l, r) {
                    (Some(l), Some(r)) => Out::ok(Value::Boolean(l != r)),
                    _ => fail_bool(),
                }
            }
            BinaryOp::Eq | BinaryOp::NotEq => {
                let l = self.eval(left);
                let r = self.eval(right);
                if !l.ok || !r.ok {
                    return fail_bool();
                }
                // `=` is overloaded for all three types: the right operand's
                // type picks the overload and the left one is cast to it.
                let ty = r.value.ty();
                match self.cast(l.value, ty) {
                    Some(l) => Out::ok(Value::Boolean((l == r.value) == (op == BinaryOp::Eq))),
                    None => fail_bool(),
                }
            }
            BinaryOp::Lt | BinaryOp::LtEq | BinaryOp::Gt | BinaryOp::GtEq => {
                let l = self.integer(left);
                let r = self.integer(right);
                let (Some(l), Some(r)) = (l, r) else {
                    return fail_bool();
                };
                Out::ok(Value::Boolean(match op {
                    BinaryOp::Lt => l < r,
                    BinaryOp::LtEq => l <= r,
                    BinaryOp::Gt => l > r,
                    _ => l >= r,
                }))
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
                let l = self.integer(left);
                let r = self.integer(right);
                let (Some(l), Some(r)) = (l, r) else {
                    return Out::failed(Value::Integer(0));
                };
                self.arithmetic(op, l, r)
            }
        }
    }

    /// Integer arithmetic. Division and modulo by zero give 0 and a Math
    /// error (spec); an overflow gives the saturated result and a Math error,
    /// as the spec has `ABS(-2147483648)` do.
    fn arithmetic(&mut self, op: BinaryOp, l: i32, r: i32) -> Out {
        if matches!(op, BinaryOp::Div | BinaryOp::Mod) && r == 0 {
            let what = if op == BinaryOp::Div {
                "division"
            } else {
                "modulo"
            };
            self.error(
                ErrorKind::Math,
                format!("{what} by zero: {l} {} 0", op.symbol()),
            );
            return Out::failed(Value::Integer(0));
        }
        let (checked, wide) = match op {
            BinaryOp::Add => (l.checked_add(r), i64::from(l) + i64::from(r)),
            BinaryOp::Sub => (l.checked_sub(r), i64::from(l) - i64::from(r)),
            BinaryOp::Mul => (l.checked_mul(r), i64::from(l) * i64::from(r)),
            BinaryOp::Div => (l.checked_div(r), i64::from(l) / i64::from(r)),
            // Truncated remainder: the sign of the dividend. MIN % -1 is 0.
            _ => (Some(l.wrapping_rem(r)), 0),
        };
        match checked {
            Some(v) => Out::ok(Value::Integer(v)),
            None => {
                self.error(
                    ErrorKind::Math,
                    format!("{l} {} {r} overflows a 32-bit integer", op.symbol()),
                );
                let saturated = wide.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
                Out::failed(Value::Integer(
                    i32::try_from(saturated).expect("clamped into range"),
                ))
            }
        }
    }

    /// `x IN (y1, ...)`: `x = y1 OR x = y2 ...` with each `y` cast to the type
    /// of `x`, stopping at the first match or the first failure.
    fn in_set(&mut self, expr: &Expr, set: &[Expr], negated: bool) -> Out {
        let x = self.eval(expr);
        if !x.ok {
            return Out::failed(Value::Boolean(false));
        }
        let ty = x.value.ty();
        for candidate in set {
            let Some(y) = self.operand(candidate, ty) else {
                return Out::failed(Value::Boolean(false));
            };
            if y == x.value {
                return Out::ok(Value::Boolean(!negated));
            }
        }
        Out::ok(Value::Boolean(negated))
    }
}

/// An attribute's CESQL value. Core attributes other than `specversion` are
/// Strings (URI and Timestamp as their original text); extensions keep their
/// type, an Integer outside the 32-bit range becomes its decimal String.
fn attribute(event: &Event, name: &str) -> Option<Value> {
    if name == "specversion" {
        return event.get_str(name).map(|s| Value::String(s.into_owned()));
    }
    let value = event.get(name)?;
    if event.specversion().is_core_attribute(name) {
        return Some(Value::String(value.as_str().into_owned()));
    }
    Some(match value {
        AttrValue::String(s) => Value::String(s.clone()),
        AttrValue::Boolean(b) => Value::Boolean(*b),
        AttrValue::Integer(i) => match i32::try_from(*i) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::String(i.to_string()),
        },
    })
}
