//! CESQL tokens: words (keywords, identifiers, function names), integers,
//! strings, operators and punctuation, each with its character offset.

use super::ParseError;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A run of `[A-Za-z0-9_]` that is not all digits: keyword, attribute or
    /// function name, as written.
    Word(String),
    /// A run of ASCII digits, as written (range-checked by the parser, which
    /// knows about a leading sign).
    Int(String),
    /// A string literal, escapes resolved.
    Str(String),
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Eq,
    /// `!=` or `<>`.
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Eof,
}

impl Token {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Int(i) => format!("integer `{i}`"),
            Token::Str(_) => "a string literal".to_owned(),
            Token::LParen => "`(`".to_owned(),
            Token::RParen => "`)`".to_owned(),
            Token::Comma => "`,`".to_owned(),
            Token::Plus => "`+`".to_owned(),
            Token::Minus => "`-`".to_owned(),
            Token::Star => "`*`".to_owned(),
            Token::Slash => "`/`".to_owned(),
            Token::Percent => "`%`".to_owned(),
            Token::Eq => "`=`".to_owned(),
            Token::NotEq => "`!=`".to_owned(),
            Token::Lt => "`<`".to_owned(),
            Token::LtEq => "`<=`".to_owned(),
            Token::Gt => "`>`".to_owned(),
            Token::GtEq => "`>=`".to_owned(),
            Token::Eof => "end of input".to_owned(),
        }
    }
}

/// A token and the character offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spanned {
    pub(crate) token: Token,
    pub(crate) position: usize,
}

/// Splits `input` into tokens, ending with [`Token::Eof`].
///
/// String literals: `'…'` or `"…"`. A backslash before the delimiter or before
/// another backslash escapes it; any other backslash is kept as written, so LIKE
/// escapes (`\%`, `\_`) reach the pattern untouched.
pub(crate) fn tokenize(input: &str) -> Result<Vec<Spanned>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            '(' => Token::LParen,
            ')' => Token::RParen,
            ',' => Token::Comma,
            '+' => Token::Plus,
            '-' => Token::Minus,
            '*' => Token::Star,
            '/' => Token::Slash,
            '%' => Token::Percent,
            '=' => Token::Eq,
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 1;
                Token::NotEq
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    i += 1;
                    Token::LtEq
                }
                Some('>') => {
                    i += 1;
                    Token::NotEq
                }
                _ => Token::Lt,
            },
            '>' if chars.get(i + 1) == Some(&'=') => {
                i += 1;
                Token::GtEq
            }
            '>' => Token::Gt,
            '\'' | '"' => {
                let (value, end) = string(&chars, i)?;
                i = end;
                Token::Str(value)
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut end = i;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                {
                    end += 1;
                }
                let text: String = chars[i..end].iter().collect();
                i = end - 1;
                if text.bytes().all(|b| b.is_ascii_digit()) {
                    Token::Int(text)
                } else {
                    Token::Word(text)
                }
            }
            other => {
                return Err(ParseError::new(
                    start,
                    "an operator, a literal, a name or `(`",
                    format!("`{other}`"),
                ));
            }
        };
        out.push(Spanned {
            token,
            position: start,
        });
        i += 1;
    }
    out.push(Spanned {
        token: Token::Eof,
        position: chars.len(),
    });
    Ok(out)
}

/// A string literal opening at `start`; returns its value and the offset of
/// the closing delimiter.
fn string(chars: &[char], start: usize) -> Result<(String, usize), ParseError> {
    let quote = chars[start];
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(ParseError::new(
                    chars.len(),
                    format!(
                        "a closing {quote} for the string opened at column {}",
                        start + 1
                    ),
                    "end of input",
                ));
            }
            Some(&c) if c == quote => return Ok((value, i)),
            Some('\\') => match chars.get(i + 1) {
                Some(&next) if next == quote || next == '\\' => {
                    value.push(next);
                    i += 2;
                }
                _ => {
                    value.push('\\');
                    i += 1;
                }
            },
            Some(&c) => {
                value.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: &str) -> Vec<Token> {
        tokenize(input)
            .unwrap()
            .into_iter()
            .map(|s| s.token)
            .collect()
    }

    #[test]
    fn operators_words_numbers() {
        use Token::*;
        assert_eq!(
            tokens("a<>b != c<=1>=2<3>4 (x,-y)*z/w%v+u"),
            vec![
                Word("a".into()),
                NotEq,
                Word("b".into()),
                NotEq,
                Word("c".into()),
                LtEq,
                Int("1".into()),
                GtEq,
                Int("2".into()),
                Lt,
                Int("3".into()),
                Gt,
                Int("4".into()),
                LParen,
                Word("x".into()),
                Comma,
                Minus,
                Word("y".into()),
                RParen,
                Star,
                Word("z".into()),
                Slash,
                Word("w".into()),
                Percent,
                Word("v".into()),
                Plus,
                Word("u".into()),
                Eof
            ]
        );
        assert_eq!(
            tokens("123abc 0042 CONCAT_WS"),
            vec![
                Word("123abc".into()),
                Int("0042".into()),
                Word("CONCAT_WS".into()),
                Eof
            ]
        );
    }

    #[test]
    fn string_escapes() {
        let cases = [
            (r#"'abc'"#, "abc"),
            (r#""abc""#, "abc"),
            (r#"'a"b\'c'"#, r#"a"b'c"#),
            (r#""a'b\"c""#, r#"a'b"c"#),
            (r"'a\_b\%c'", r"a\_b\%c"),
            (r"'ab\c'", r"ab\c"),
            (r"'a\\'", r"a\"),
            (r"'\\\''", r"\'"),
            (r#"'\"'"#, r#"\""#),
            ("''", ""),
            ("'é ✓'", "é ✓"),
        ];
        for (input, want) in cases {
            assert_eq!(
                tokens(input),
                vec![Token::Str(want.into()), Token::Eof],
                "{input}"
            );
        }
    }

    #[test]
    fn errors_have_position_and_expectation() {
        let cases = [
            (
                "'abc",
                4,
                "a closing ' for the string opened at column 1",
                "end of input",
            ),
            (
                "a = \"x\\\"",
                8,
                "a closing \" for the string opened at column 5",
                "end of input",
            ),
            ("a ! b", 2, "an operator, a literal, a name or `(`", "`!`"),
            ("a = #", 4, "an operator, a literal, a name or `(`", "`#`"),
            ("é", 0, "an operator, a literal, a name or `(`", "`é`"),
        ];
        for (input, position, expected, found) in cases {
            let err = tokenize(input).unwrap_err();
            assert_eq!(
                (err.position, err.expected.as_str(), err.found.as_str()),
                (position, expected, found),
                "{input}"
            );
        }
    }
}
