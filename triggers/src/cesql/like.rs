//! The LIKE matcher: `%` is any run of characters, `_` one character, `\%`
//! and `\_` the literal characters; any other backslash is itself.

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Char(char),
    One,
    Many,
}

fn compile(pattern: &str) -> Vec<Part> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut parts = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let part = match chars[i] {
            '\\' if matches!(chars.get(i + 1), Some('%' | '_')) => {
                i += 1;
                Part::Char(chars[i])
            }
            '%' => Part::Many,
            '_' => Part::One,
            c => Part::Char(c),
        };
        parts.push(part);
        i += 1;
    }
    parts
}

/// Whether `text` matches `pattern` (case-sensitive, whole string).
pub(crate) fn matches(text: &str, pattern: &str) -> bool {
    let parts = compile(pattern);
    let text: Vec<char> = text.chars().collect();
    // Greedy with backtracking to the last `%`: O(len(text) * len(pattern)).
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match parts.get(p) {
            Some(Part::Many) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Part::One) => {
                t += 1;
                p += 1;
            }
            Some(Part::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    parts[p..].iter().all(|part| *part == Part::Many)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_and_escapes() {
        let cases = [
            ("abc", "abc", true),
            ("abc", "ABC", false),
            ("", "", true),
            ("", "%", true),
            ("", "_", false),
            ("abc", "a%", true),
            ("abc", "%c", true),
            ("abc", "%b%", true),
            ("abc", "a_c", true),
            ("abbc", "a_c", false),
            ("azzzbzzzc", "a%b%c", true),
            ("ab.cde", ".%.%.", false),
            ("é✓x", "__x", true),
            ("a%c", r"a\%c", true),
            ("abc", r"a\%c", false),
            ("a_c", r"a\_c", true),
            ("abc", r"a\_c", false),
            (r"a\c", r"a\c", true),
            (r"a\%", r"a\\%", true),
            (r"a\xyz", r"a\\%", false),
            (r"a\", r"a\", true),
            ("abc123123%456_dzf", r"abc%123\%456\_d_f", true),
            ("aaa", "%%a", true),
            ("ab", "%a%b%c%", false),
        ];
        for (text, pattern, want) in cases {
            assert_eq!(matches(text, pattern), want, "{text:?} LIKE {pattern:?}");
        }
    }
}
