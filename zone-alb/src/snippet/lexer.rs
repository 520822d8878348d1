//! nginx's configuration syntax, as `ngx_conf_read_token` reads it: words separated by
//! whitespace, `;` ending a directive, `{ }` around a block, `#` starting a comment where a
//! word could start, and `"…"`/`'…'` quoting with `\` escapes. Anything nginx would reject
//! (an unclosed quote, a quote glued to the next word) and anything a snippet never needs
//! (control bytes, huge inputs) is refused here, before any directive is looked at.

use super::SnippetError;

/// The largest snippet read (ingress-nginx has no limit; Kubernetes caps all annotations of an
/// object at 256 KiB). Real snippets are a few hundred bytes.
pub const MAX_LEN: usize = 16 * 1024;
/// The most tokens read.
const MAX_TOKENS: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// A word; `quoted` when it was written in quotes (so `"{"` is a word, not a brace).
    Word {
        text: String,
        quoted: bool,
        line: usize,
    },
    Semi(usize),
    Open(usize),
    Close(usize),
}

impl Token {
    pub fn line(&self) -> usize {
        match self {
            Token::Word { line, .. } | Token::Semi(line) | Token::Open(line) | Token::Close(line) => *line,
        }
    }
}

/// Splits `text` into tokens.
pub fn tokenize(text: &str) -> Result<Vec<Token>, SnippetError> {
    if text.len() > MAX_LEN {
        return Err(SnippetError::new(1, format!("longer than {MAX_LEN} bytes")));
    }
    if let Some((i, b)) = text
        .bytes()
        .enumerate()
        .find(|(_, b)| (b.is_ascii_control() && !matches!(b, b'\t' | b'\n' | b'\r')) || *b == 0x7f)
    {
        let line = 1 + text[..i].matches('\n').count();
        return Err(SnippetError::new(line, format!("control byte 0x{b:02x}")));
    }
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        if tokens.len() > MAX_TOKENS {
            return Err(SnippetError::new(line, format!("more than {MAX_TOKENS} tokens")));
        }
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            ' ' | '\t' | '\r' => {
                chars.next();
            }
            '#' => {
                // A comment runs to the end of the line, whatever it holds (`;`, `}`, quotes).
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            ';' => {
                chars.next();
                tokens.push(Token::Semi(line));
            }
            '{' => {
                chars.next();
                tokens.push(Token::Open(line));
            }
            '}' => {
                chars.next();
                tokens.push(Token::Close(line));
            }
            '"' | '\'' => {
                let start = line;
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err(SnippetError::new(start, "unbalanced quote")),
                        Some(q) if q == c => break,
                        Some('\\') => match chars.next() {
                            None => return Err(SnippetError::new(start, "unbalanced quote")),
                            // nginx's escapes inside quotes; any other keeps its backslash.
                            Some('t') => text.push('\t'),
                            Some('r') => text.push('\r'),
                            Some('n') => text.push('\n'),
                            Some(e @ ('"' | '\'' | '\\')) => text.push(e),
                            Some(e) => {
                                if e == '\n' {
                                    line += 1;
                                }
                                text.push('\\');
                                text.push(e);
                            }
                        },
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            text.push(ch);
                        }
                    }
                }
                tokens.push(Token::Word {
                    text,
                    quoted: true,
                    line: start,
                });
                // nginx wants a separator after a closing quote; `)` ends an `if` condition.
                match chars.peek() {
                    None | Some(' ' | '\t' | '\r' | '\n' | ';' | '{' | '}') => {}
                    Some(')') => {
                        chars.next();
                        tokens.push(Token::Word {
                            text: ")".into(),
                            quoted: false,
                            line,
                        });
                    }
                    Some(other) => {
                        return Err(SnippetError::new(
                            line,
                            format!("unexpected {other:?} after a quoted string"),
                        ));
                    }
                }
            }
            _ => {
                let mut text = String::new();
                while let Some(&ch) = chars.peek() {
                    match ch {
                        // `${name}` is a variable, its braces part of the word (as nginx).
                        '{' if text.ends_with('$') && !text.ends_with("\\$") => {
                            chars.next();
                            text.push('{');
                            loop {
                                match chars.next() {
                                    Some('}') => break,
                                    Some(c) if !c.is_whitespace() && !matches!(c, ';' | '{' | '"' | '\'') => {
                                        text.push(c)
                                    }
                                    _ => return Err(SnippetError::new(line, "`${` without its `}`")),
                                }
                            }
                            text.push('}');
                        }
                        ' ' | '\t' | '\r' | '\n' | ';' | '{' | '}' => break,
                        '"' | '\'' => {
                            return Err(SnippetError::new(line, "a quote inside a word"));
                        }
                        '\\' => {
                            chars.next();
                            match chars.next() {
                                // `\ ` keeps a space inside the word, as nginx.
                                Some(e) => {
                                    if e == '\n' {
                                        line += 1;
                                    }
                                    text.push('\\');
                                    text.push(e);
                                }
                                None => return Err(SnippetError::new(line, "a backslash at the end of a word")),
                            }
                        }
                        _ => {
                            chars.next();
                            text.push(ch);
                        }
                    }
                }
                tokens.push(Token::Word {
                    text,
                    quoted: false,
                    line,
                });
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Result<Vec<String>, String> {
        tokenize(text)
            .map(|t| {
                t.into_iter()
                    .map(|t| match t {
                        Token::Word { text, quoted: true, .. } => format!("q:{text}"),
                        Token::Word { text, .. } => text,
                        Token::Semi(_) => ";".into(),
                        Token::Open(_) => "{".into(),
                        Token::Close(_) => "}".into(),
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn tokens_of_valid_snippets() {
        let rows: &[(&str, &[&str])] = &[
            ("", &[]),
            ("add_header X-A b;", &["add_header", "X-A", "b", ";"]),
            (
                "add_header X-A \"b c\" always;",
                &["add_header", "X-A", "q:b c", "always", ";"],
            ),
            ("more_set_headers 'X-A: b';", &["more_set_headers", "q:X-A: b", ";"]),
            ("a \"x\\\"y\";", &["a", "q:x\"y", ";"]),
            ("a 'it\\'s';", &["a", "q:it's", ";"]),
            ("a \"{\" '}' \";\";", &["a", "q:{", "q:}", "q:;", ";"]),
            ("# all comment ; } {\n", &[]),
            ("a b; # c; d }\ne f;", &["a", "b", ";", "e", "f", ";"]),
            ("a b#c;", &["a", "b#c", ";"]),
            (
                "location = /x { deny all; }",
                &["location", "=", "/x", "{", "deny", "all", ";", "}"],
            ),
            (
                "if ($http_x = \"a\") { return 403; }",
                &["if", "($http_x", "=", "q:a", ")", "{", "return", "403", ";", "}"],
            ),
            ("rewrite ^/a\\ b /c;", &["rewrite", "^/a\\ b", "/c", ";"]),
            ("add_header X ${host}a;", &["add_header", "X", "${host}a", ";"]),
            ("a\r\n\tb;", &["a", "b", ";"]),
        ];
        for (text, expected) in rows {
            assert_eq!(
                words(text).unwrap_or_else(|e| panic!("{text:?}: {e}")),
                *expected,
                "{text:?}"
            );
        }
    }

    #[test]
    fn lines_are_counted_through_comments_and_quotes() {
        let tokens = tokenize("a;\n# x\n\"multi\nline\" b;\nc;").unwrap();
        let lines: Vec<usize> = tokens.iter().map(Token::line).collect();
        assert_eq!(lines, [1, 1, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn hostile_input_is_refused_by_the_tokenizer() {
        let rows: &[(&str, &str)] = &[
            ("add_header X \"unclosed;", "unbalanced quote"),
            ("add_header X 'unclosed;\n}", "unbalanced quote"),
            ("add_header X \"a\"b;", "after a quoted string"),
            ("add_header X a\"b\";", "quote inside a word"),
            ("add_header X a\\", "backslash at the end"),
            ("add_header X a\0;", "control byte 0x00"),
            ("add_header X a\x1b;", "control byte 0x1b"),
            ("add_header X a\x7f;", "control byte 0x7f"),
            ("add_header X \"a\\", "unbalanced quote"),
            ("add_header X ${host;", "without its `}`"),
            ("add_header X ${a b};", "without its `}`"),
        ];
        for (text, says) in rows {
            let error = words(text).expect_err(text);
            assert!(error.contains(says), "{text:?}: {error}");
        }
        let huge = "a ".repeat(MAX_LEN);
        assert!(words(&huge).unwrap_err().contains("longer than"));
        let many = "a;".repeat(MAX_TOKENS);
        assert!(words(&many).unwrap_err().contains("tokens"));
    }
}
