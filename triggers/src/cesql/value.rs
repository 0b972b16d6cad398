//! CESQL values, their types and the casts between them (CESQL v1 §3.7).

use std::fmt;

/// A CESQL value: the three types of the language.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// `TRUE` / `FALSE`.
    Boolean(bool),
    /// A 32-bit signed integer.
    Integer(i32),
    /// A string.
    String(String),
}

/// A parameter or return type; `Any` takes a value as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    Boolean,
    Integer,
    String,
    Any,
}

impl Type {
    /// The zero value an operator or function of this type returns on error
    /// (`Any` has none: the spec says to assume Boolean).
    pub(crate) fn zero(self) -> Value {
        match self {
            Type::Boolean | Type::Any => Value::Boolean(false),
            Type::Integer => Value::Integer(0),
            Type::String => Value::String(String::new()),
        }
    }
}

impl Value {
    /// The value's type.
    pub(crate) fn ty(&self) -> Type {
        match self {
            Value::Boolean(_) => Type::Boolean,
            Value::Integer(_) => Type::Integer,
            Value::String(_) => Type::String,
        }
    }

    /// The type's name, as the spec writes it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Boolean(_) => "Boolean",
            Value::Integer(_) => "Integer",
            Value::String(_) => "String",
        }
    }

    /// Casts to `to`, or says why not. Integer→String is base 10; Boolean→String
    /// is `true`/`false`; String→Integer is a 32-bit base-10 integer with an
    /// optional sign; String→Boolean is `true`/`false` in any case;
    /// Integer→Boolean is `false` for 0; Boolean→Integer is 1 or 0.
    pub(crate) fn cast(self, to: Type) -> Result<Value, String> {
        match (self, to) {
            (v, Type::Any) => Ok(v),
            (Value::Boolean(b), Type::Boolean) => Ok(Value::Boolean(b)),
            (Value::Integer(i), Type::Integer) => Ok(Value::Integer(i)),
            (Value::String(s), Type::String) => Ok(Value::String(s)),
            (Value::Integer(i), Type::String) => Ok(Value::String(i.to_string())),
            (Value::Boolean(b), Type::String) => Ok(Value::String(b.to_string())),
            (Value::Integer(i), Type::Boolean) => Ok(Value::Boolean(i != 0)),
            (Value::Boolean(b), Type::Integer) => Ok(Value::Integer(i32::from(b))),
            (Value::String(s), Type::Integer) => {
                s.parse::<i32>().map(Value::Integer).map_err(|_| {
                    format!(
                        "cannot cast String {s:?} to Integer: expected a base-10 integer \
                     between -2147483648 and 2147483647"
                    )
                })
            }
            (Value::String(s), Type::Boolean) => {
                if s.eq_ignore_ascii_case("true") {
                    Ok(Value::Boolean(true))
                } else if s.eq_ignore_ascii_case("false") {
                    Ok(Value::Boolean(false))
                } else {
                    Err(format!(
                        "cannot cast String {s:?} to Boolean: expected \"true\" or \"false\""
                    ))
                }
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Boolean(b) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
            Value::Integer(i) => write!(f, "{i}"),
            Value::String(s) => write!(f, "{s:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    /// The spec's casting table, row by row, plus the failures.
    #[test]
    fn casting_table() {
        let ok = [
            (Value::Integer(0), Type::String, s("0")),
            (Value::Integer(-42), Type::String, s("-42")),
            (Value::Integer(i32::MIN), Type::String, s("-2147483648")),
            (Value::Integer(0), Type::Boolean, Value::Boolean(false)),
            (Value::Integer(-3), Type::Boolean, Value::Boolean(true)),
            (Value::Integer(7), Type::Boolean, Value::Boolean(true)),
            (s("42"), Type::Integer, Value::Integer(42)),
            (s("+42"), Type::Integer, Value::Integer(42)),
            (s("-42"), Type::Integer, Value::Integer(-42)),
            (s("007"), Type::Integer, Value::Integer(7)),
            (s("2147483647"), Type::Integer, Value::Integer(i32::MAX)),
            (s("-2147483648"), Type::Integer, Value::Integer(i32::MIN)),
            (s("true"), Type::Boolean, Value::Boolean(true)),
            (s("TRUE"), Type::Boolean, Value::Boolean(true)),
            (s("fAlSe"), Type::Boolean, Value::Boolean(false)),
            (Value::Boolean(true), Type::Integer, Value::Integer(1)),
            (Value::Boolean(false), Type::Integer, Value::Integer(0)),
            (Value::Boolean(true), Type::String, s("true")),
            (Value::Boolean(false), Type::String, s("false")),
            (s("x"), Type::String, s("x")),
            (s("x"), Type::Any, s("x")),
        ];
        for (from, to, want) in ok {
            assert_eq!(from.clone().cast(to), Ok(want), "{from:?} -> {to:?}");
        }
        let failing = [
            (s(""), Type::Integer),
            (s("abc"), Type::Integer),
            (s(" 1"), Type::Integer),
            (s("1.5"), Type::Integer),
            (s("2147483648"), Type::Integer),
            (s("-2147483649"), Type::Integer),
            (s(""), Type::Boolean),
            (s("yes"), Type::Boolean),
            (s("1"), Type::Boolean),
            (s("true "), Type::Boolean),
        ];
        for (from, to) in failing {
            assert!(from.clone().cast(to).is_err(), "{from:?} -> {to:?}");
        }
    }
}
