//! The CESQL parser: precedence climbing over the tokens.
//!
//! Precedence, loosest first, all left-associative (CESQL v1 §3.6):
//! `AND`/`OR`/`XOR` (one level, as the spec says — not SQL's OR < AND), then
//! comparisons, `+ -`, `* / %`, the postfix `[NOT] LIKE` and `[NOT] IN`, then the
//! prefix `NOT` and `-`, then atoms (literals, attributes, `EXISTS`, calls,
//! parentheses). So `NOT a = b` is `(NOT a) = b`, as in the spec and the Go SDK.

use super::ast::{BinaryOp, Expr, UnaryOp};
use super::lexer::{Spanned, Token, tokenize};
use super::value::Value;
use super::{MAX_DEPTH, ParseError};

/// Parses a whole expression.
pub(crate) fn parse(input: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(input)?;
    let mut p = Parser {
        tokens,
        at: 0,
        nesting: 0,
    };
    let (expr, _) = p.logic()?;
    match p.peek() {
        Token::Eof => Ok(expr),
        _ => Err(p.unexpected("an operator or end of input")),
    }
}

/// The keywords; none of them can name an attribute or a function.
const KEYWORDS: [&str; 9] = [
    "AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE",
];

/// Whether `word` is a keyword (case-insensitive).
pub(crate) fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// An expression and the depth of its tree (a leaf is 1).
type Parsed = (Expr, usize);

struct Parser {
    tokens: Vec<Spanned>,
    at: usize,
    /// Open parentheses, prefix operators and argument lists around the
    /// current position: bounds the parser's own recursion.
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at].token
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        let i = (self.at + ahead).min(self.tokens.len() - 1);
        &self.tokens[i].token
    }

    fn position(&self) -> usize {
        self.tokens[self.at].position
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens[self.at].token.clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    fn keyword(&self, ahead: usize, kw: &str) -> bool {
        matches!(self.peek_at(ahead), Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        ParseError::new(self.position(), expected, self.peek().describe())
    }

    fn expect(&mut self, token: Token, expected: &str) -> Result<(), ParseError> {
        if *self.peek() == token {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > 2 * MAX_DEPTH {
            return Err(self.too_deep());
        }
        Ok(())
    }

    fn too_deep(&self) -> ParseError {
        ParseError::new(
            self.position(),
            format!("an expression nested at most {MAX_DEPTH} levels deep"),
            "a deeper expression",
        )
    }

    fn combine(&self, depth: usize) -> Result<usize, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        Ok(depth)
    }

    fn binary(&self, op: BinaryOp, (l, ld): Parsed, (r, rd): Parsed) -> Result<Parsed, ParseError> {
        let depth = self.combine(ld.max(rd) + 1)?;
        Ok((
            Expr::Binary {
                op,
                left: Box::new(l),
                right: Box::new(r),
            },
            depth,
        ))
    }

    /// `AND`, `OR`, `XOR`: one precedence level, left to right.
    fn logic(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.comparison()?;
        loop {
            let op = if self.keyword(0, "AND") {
                BinaryOp::And
            } else if self.keyword(0, "OR") {
                BinaryOp::Or
            } else if self.keyword(0, "XOR") {
                BinaryOp::Xor
            } else {
                return Ok(left);
            };
            self.bump();
            let right = self.comparison()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn comparison(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.additive()?;
        loop {
            let op = match self.peek() {
                Token::Eq => BinaryOp::Eq,
                Token::NotEq => BinaryOp::NotEq,
                Token::Lt => BinaryOp::Lt,
                Token::LtEq => BinaryOp::LtEq,
                Token::Gt => BinaryOp::Gt,
                Token::GtEq => BinaryOp::GtEq,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.additive()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn additive(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Token::Plus => BinaryOp::Add,
                Token::Minus => BinaryOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.multiplicative()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn multiplicative(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.postfix()?;
        loop {
            let op = match self.peek() {
                Token::Star => BinaryOp::Mul,
                Token::Slash => BinaryOp::Div,
                Token::Percent => BinaryOp::Mod,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.postfix()?;
            left = self.binary(op, left, right)?;
        }
    }

    /// `x [NOT] LIKE 'pattern'` and `x [NOT] IN (a, b, ...)`.
    fn postfix(&mut self) -> Result<Parsed, ParseError> {
        let (mut expr, mut depth) = self.unary()?;
        loop {
            let negated = self.keyword(0, "NOT");
            let at = usize::from(negated);
            if self.keyword(at, "LIKE") {
                self.at += at;
                self.bump();
                let Token::Str(pattern) = self.peek().clone() else {
                    return Err(self.unexpected("a string literal pattern after LIKE"));
                };
                self.bump();
                depth = self.combine(depth + 1)?;
                expr = Expr::Like {
                    expr: Box::new(expr),
                    pattern,
                    negated,
                };
            } else if self.keyword(at, "IN") {
                self.at += at;
                self.bump();
                self.expect(Token::LParen, "`(` opening the IN set")?;
                self.enter()?;
                let mut set = Vec::new();
                let mut set_depth = 0;
                loop {
                    let (e, d) = self.logic()?;
                    set.push(e);
                    set_depth = set_depth.max(d);
                    match self.peek() {
                        Token::Comma => self.bump(),
                        Token::RParen => {
                            self.bump();
                            break;
                        }
                        _ => return Err(self.unexpected("`,` or `)` in the IN set")),
                    };
                }
                self.nesting -= 1;
                depth = self.combine(depth.max(set_depth) + 1)?;
                expr = Expr::In {
                    expr: Box::new(expr),
                    set,
                    negated,
                };
            } else if negated {
                return Err(ParseError::new(
                    self.tokens[self.at + 1].position,
                    "LIKE or IN after NOT",
                    self.peek_at(1).describe(),
                ));
            } else {
                return Ok((expr, depth));
            }
        }
    }

    /// Prefix `NOT` and `-`; `-` or `+` straight before digits is part of the
    /// integer literal (so `-2147483648` is in range).
    fn unary(&mut self) -> Result<Parsed, ParseError> {
        let op = if self.keyword(0, "NOT") {
            UnaryOp::Not
        } else {
            match (self.peek(), self.peek_at(1)) {
                (Token::Minus | Token::Plus, Token::Int(_)) => {
                    let negative = *self.peek() == Token::Minus;
                    let position = self.position();
                    self.bump();
                    return self.integer(negative, position);
                }
                (Token::Minus, _) => UnaryOp::Minus,
                _ => return self.atom(),
            }
        };
        self.bump();
        self.enter()?;
        let (operand, depth) = self.unary()?;
        self.nesting -= 1;
        let depth = self.combine(depth + 1)?;
        Ok((
            Expr::Unary {
                op,
                expr: Box::new(operand),
            },
            depth,
        ))
    }

    /// The integer literal at the current token, with its sign.
    fn integer(&mut self, negative: bool, position: usize) -> Result<Parsed, ParseError> {
        let Token::Int(digits) = self.bump() else {
            unreachable!("called on an integer token");
        };
        let text = if negative {
            format!("-{digits}")
        } else {
            digits.clone()
        };
        match text.parse::<i32>() {
            Ok(v) => Ok((Expr::Literal(Value::Integer(v)), 1)),
            Err(_) => Err(ParseError::new(
                position,
                "an integer between -2147483648 and 2147483647",
                format!("`{text}`"),
            )),
        }
    }

    fn atom(&mut self) -> Result<Parsed, ParseError> {
        let position = self.position();
        match self.peek().clone() {
            Token::Int(_) => self.integer(false, position),
            Token::Str(s) => {
                self.bump();
                Ok((Expr::Literal(Value::String(s)), 1))
            }
            Token::LParen => {
                self.bump();
                self.enter()?;
                let inner = self.logic()?;
                self.expect(Token::RParen, "`)` or an operator")?;
                self.nesting -= 1;
                Ok(inner)
            }
            Token::Word(w) if w.eq_ignore_ascii_case("TRUE") => {
                self.bump();
                Ok((Expr::Literal(Value::Boolean(true)), 1))
            }
            Token::Word(w) if w.eq_ignore_ascii_case("FALSE") => {
                self.bump();
                Ok((Expr::Literal(Value::Boolean(false)), 1))
            }
            Token::Word(w) if w.eq_ignore_ascii_case("EXISTS") => {
                self.bump();
                match self.peek().clone() {
                    Token::Word(name) if !is_keyword(&name) && is_identifier(&name) => {
                        self.bump();
                        Ok((Expr::Exists(name.to_ascii_lowercase()), 1))
                    }
                    _ => Err(self.unexpected("an attribute name ([a-z0-9]+) after EXISTS")),
                }
            }
            Token::Word(w) if !is_keyword(&w) => {
                if *self.peek_at(1) == Token::LParen {
                    self.call(w, position)
                } else if is_identifier(&w) {
                    self.bump();
                    Ok((Expr::Attribute(w.to_ascii_lowercase()), 1))
                } else {
                    Err(ParseError::new(
                        position,
                        "an attribute name of letters and digits only",
                        format!("`{w}`"),
                    ))
                }
            }
            _ => Err(self.unexpected("an expression")),
        }
    }

    /// `NAME(args...)`; the current token is the name, `(` follows.
    fn call(&mut self, name: String, position: usize) -> Result<Parsed, ParseError> {
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphabetic() || c == '_');
        if !valid {
            return Err(ParseError::new(
                position,
                "a function name of letters and `_`, starting with a letter",
                format!("`{name}`"),
            ));
        }
        self.bump();
        self.bump();
        self.enter()?;
        let mut args = Vec::new();
        let mut depth = 0;
        if *self.peek() == Token::RParen {
            self.bump();
        } else {
            loop {
                let (e, d) = self.logic()?;
                args.push(e);
                depth = depth.max(d);
                match self.peek() {
                    Token::Comma => self.bump(),
                    Token::RParen => {
                        self.bump();
                        break;
                    }
                    _ => return Err(self.unexpected("`,` or `)` after a function argument")),
                };
            }
        }
        self.nesting -= 1;
        let depth = self.combine(depth + 1)?;
        Ok((
            Expr::Call {
                name: name.to_ascii_uppercase(),
                args,
            },
            depth,
        ))
    }
}

/// A value identifier: `[a-zA-Z0-9]+` (looked up in lower case).
pub(crate) fn is_identifier(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric())
}
