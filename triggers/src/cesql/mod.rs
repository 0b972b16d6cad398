//! CloudEvents SQL (CESQL) v1: parse an expression once, evaluate it per event.
//!
//! [`parse`] turns text into an [`Expr`] (printable back with `Display`);
//! [`evaluate`] never fails: it yields a [`Value`] plus the errors met on the way
//! (the spec's error model), so a filter matches only on `TRUE` with no error.
//! Keywords and function names are case-insensitive; attribute names are looked
//! up in lower case.

mod ast;
mod eval;
mod functions;
mod lexer;
mod like;
mod parser;
mod value;

pub use ast::{BinaryOp, Expr, UnaryOp};
pub use value::Value;

use std::fmt;

use cebus_events::Event;

/// The deepest expression tree [`parse`] accepts; deeper input is a parse
/// error, so evaluation, printing and dropping never run out of stack.
pub const MAX_DEPTH: usize = 64;

/// Why an expression could not be parsed: where, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Character offset (0-based) in the expression.
    pub position: usize,
    /// What would have been valid there.
    pub expected: String,
    /// What was there instead.
    pub found: String,
}

impl ParseError {
    fn new(position: usize, expected: impl Into<String>, found: impl Into<String>) -> ParseError {
        ParseError {
            position,
            expected: expected.into(),
            found: found.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at column {}: expected {}, found {}",
            self.position + 1,
            self.expected,
            self.found
        )
    }
}

impl std::error::Error for ParseError {}

/// The kinds of error the CESQL spec defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The expression does not parse (see [`ParseError`]; never raised by evaluation).
    Parse,
    /// Arithmetic: division or modulo by zero, overflow.
    Math,
    /// A value that cannot be cast to the type an operator or function needs.
    Cast,
    /// No function with that name and number of arguments.
    MissingFunction,
    /// A function rejected its arguments (e.g. `LEFT('abc', -1)`).
    FunctionEvaluation,
    /// The event has no such attribute.
    MissingAttribute,
    /// Anything else.
    Generic,
}

/// One error met while evaluating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// The spec's kind.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} error: {}", self.kind, self.message)
    }
}

/// The result of evaluating an expression: always a value, plus any errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The value (a zero value where an error interrupted).
    pub value: Value,
    /// Errors, in evaluation order.
    pub errors: Vec<EvalError>,
}

impl Evaluation {
    /// Whether this passes as a filter: `TRUE` and no error (CESQL v1 §1.2).
    pub fn is_match(&self) -> bool {
        self.value == Value::Boolean(true) && self.errors.is_empty()
    }
}

/// Parses a CESQL expression.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    parser::parse(input)
}

/// Evaluates `expr` against `event`.
pub fn evaluate(expr: &Expr, event: &Event) -> Evaluation {
    eval::evaluate(expr, event)
}

#[cfg(test)]
mod tests;
