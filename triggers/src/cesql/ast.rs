//! The CESQL syntax tree and its printer (printing then parsing gives the same tree).

use std::fmt;

use super::value::Value;

/// A parsed CESQL expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A literal: `TRUE`, `42`, `'text'`.
    Literal(Value),
    /// A context attribute or extension, by its (lower-case) name.
    Attribute(String),
    /// `EXISTS name`: whether the event has the attribute.
    Exists(String),
    /// `NOT x` or `-x`.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        expr: Box<Expr>,
    },
    /// A binary operator: logic, comparison or arithmetic.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `x [NOT] LIKE 'pattern'`.
    Like {
        /// The string to match.
        expr: Box<Expr>,
        /// The pattern, unescaped string literal (`%`, `_`, `\` still meaningful).
        pattern: String,
        /// `NOT LIKE`.
        negated: bool,
    },
    /// `x [NOT] IN (a, b, ...)`.
    In {
        /// The value looked up.
        expr: Box<Expr>,
        /// The candidates (at least one).
        set: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// A function call, name in upper case.
    Call {
        /// Upper-case function name.
        name: String,
        /// Arguments.
        args: Vec<Expr>,
    },
}

/// A prefix operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `NOT`.
    Not,
    /// `-`.
    Minus,
}

/// An infix operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `AND`.
    And,
    /// `OR`.
    Or,
    /// `XOR`.
    Xor,
    /// `=`.
    Eq,
    /// `!=` / `<>`.
    NotEq,
    /// `<`.
    Lt,
    /// `<=`.
    LtEq,
    /// `>`.
    Gt,
    /// `>=`.
    GtEq,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Xor => "XOR",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
        }
    }

    fn precedence(self) -> u8 {
        match self {
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => LOGIC,
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq => COMPARISON,
            BinaryOp::Add | BinaryOp::Sub => ADDITIVE,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => MULTIPLICATIVE,
        }
    }
}

// Precedence levels, loosest first; they mirror the parser.
const LOGIC: u8 = 1;
const COMPARISON: u8 = 2;
const ADDITIVE: u8 = 3;
const MULTIPLICATIVE: u8 = 4;
const POSTFIX: u8 = 5;
const UNARY: u8 = 6;
const ATOM: u8 = 7;

impl Expr {
    fn precedence(&self) -> u8 {
        match self {
            Expr::Binary { op, .. } => op.precedence(),
            Expr::Like { .. } | Expr::In { .. } => POSTFIX,
            Expr::Unary { .. } => UNARY,
            // A negative literal reads as `-5`: it binds like a prefix minus.
            Expr::Literal(Value::Integer(i)) if *i < 0 => UNARY,
            Expr::Literal(_) | Expr::Attribute(_) | Expr::Exists(_) | Expr::Call { .. } => ATOM,
        }
    }

    /// Writes `self`, in parentheses when it binds looser than `min`.
    fn write_at(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

/// Prints CESQL that parses back to the same tree, with parentheses only where
/// precedence needs them. Keywords and function names in upper case, strings
/// single-quoted (see `write_string`).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(Value::Boolean(b)) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
            Expr::Literal(Value::Integer(i)) => write!(f, "{i}"),
            Expr::Literal(Value::String(s)) => write_string(f, s),
            Expr::Attribute(name) => f.write_str(name),
            Expr::Exists(name) => write!(f, "EXISTS {name}"),
            Expr::Unary {
                op: UnaryOp::Not,
                expr,
            } => {
                f.write_str("NOT ")?;
                expr.write_at(f, UNARY)
            }
            Expr::Unary {
                op: UnaryOp::Minus,
                expr,
            } => {
                f.write_str("-")?;
                // `-5` would read back as the literal -5, `--5` as -(-5).
                if matches!(**expr, Expr::Literal(Value::Integer(_))) {
                    write!(f, "({expr})")
                } else {
                    expr.write_at(f, UNARY)
                }
            }
            Expr::Binary { op, left, right } => {
                let level = op.precedence();
                left.write_at(f, level)?;
                write!(f, " {} ", op.symbol())?;
                right.write_at(f, level + 1)
            }
            Expr::Like {
                expr,
                pattern,
                negated,
            } => {
                expr.write_at(f, POSTFIX)?;
                f.write_str(if *negated { " NOT LIKE " } else { " LIKE " })?;
                write_string(f, pattern)
            }
            Expr::In { expr, set, negated } => {
                expr.write_at(f, POSTFIX)?;
                f.write_str(if *negated { " NOT IN (" } else { " IN (" })?;
                write_list(f, set)?;
                f.write_str(")")
            }
            Expr::Call { name, args } => {
                write!(f, "{name}(")?;
                write_list(f, args)?;
                f.write_str(")")
            }
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, list: &[Expr]) -> fmt::Result {
    for (i, e) in list.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

/// Single-quoted; `'` becomes `\'`. A backslash is doubled only where the
/// lexer would otherwise read it as an escape (before `'`, `\` or the end), so
/// LIKE escapes print as written: `'a\%'`.
fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), None | Some('\\' | '\'')) => f.write_str("\\\\")?,
            '\'' => f.write_str("\\'")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}
