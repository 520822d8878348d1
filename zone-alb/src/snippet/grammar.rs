//! The fixed grammar: the directives people write in snippets, each parsed into a typed
//! [`Directive`]. Anything else, or a known directive in a context it does not belong to, is
//! an error naming the directive and its line.

use hyper::header::HeaderName;
use ipnet::IpNet;

use super::lexer::Token;
use super::template::Template;
use super::*;

/// Deepest nesting of blocks (`location { if { } }`).
const MAX_DEPTH: usize = 2;

/// Directives accepted because they change nothing a client or backend can observe of mzlb;
/// each with why.
const NO_OPS: &[(&str, &str)] = &[
    ("chunked_transfer_encoding", "mzlb frames responses itself"),
    ("proxy_http_version", "mzlb speaks HTTP/1.1 to backends"),
    ("proxy_buffering", "mzlb streams responses"),
    (
        "proxy_request_buffering",
        "set it with the proxy-request-buffering annotation",
    ),
    ("proxy_buffer_size", "set it with the proxy-buffer-size annotation"),
    ("proxy_buffers", "mzlb streams responses"),
    ("proxy_busy_buffers_size", "mzlb streams responses"),
    ("proxy_max_temp_file_size", "mzlb streams responses"),
    ("proxy_cache_bypass", "mzlb does not cache"),
    ("proxy_no_cache", "mzlb does not cache"),
    ("tcp_nodelay", "mzlb always disables Nagle"),
    ("access_log", "mzlb's access log is configured on the zone ALB"),
    ("rewrite_log", "mzlb does not log rewrites"),
    ("log_not_found", "mzlb serves no files"),
    ("server_tokens", "mzlb does not name itself in responses"),
    ("etag", "mzlb serves no files"),
    ("gzip", "mzlb does not compress"),
];

pub(super) struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    pub notes: Vec<String>,
}

fn err(line: usize, message: impl Into<String>) -> SnippetError {
    SnippetError::new(line, message)
}

impl<'t> Parser<'t> {
    pub fn new(tokens: &'t [Token]) -> Self {
        Self {
            tokens,
            at: 0,
            notes: Vec::new(),
        }
    }

    /// Parses directives until the end (`depth` 0) or the `}` closing the current block.
    pub fn block(&mut self, ctx: Ctx, depth: usize) -> Result<Vec<Directive>, SnippetError> {
        let mut out = Vec::new();
        loop {
            let Some(token) = self.tokens.get(self.at) else {
                if depth > 0 {
                    let line = self.tokens.last().map_or(1, Token::line);
                    return Err(err(line, "a block without its closing `}`"));
                }
                return Ok(out);
            };
            match token {
                Token::Close(line) => {
                    if depth == 0 {
                        return Err(err(*line, "`}` without a block to close"));
                    }
                    self.at += 1;
                    return Ok(out);
                }
                Token::Semi(_) => self.at += 1, // an empty directive, as nginx allows
                Token::Open(line) => return Err(err(*line, "`{` without a directive")),
                Token::Word { text, quoted, line } => {
                    if *quoted {
                        return Err(err(*line, format!("a directive name in quotes: {text:?}")));
                    }
                    let (name, line) = (text.clone(), *line);
                    self.at += 1;
                    let (args, opens) = self.args(&name, line)?;
                    if opens && depth >= MAX_DEPTH {
                        return Err(err(line, format!("`{name}`: blocks nested too deep")));
                    }
                    if let Some(d) = self.directive(ctx, &name, args, opens, line, depth)? {
                        out.push(d);
                    }
                }
            }
        }
    }

    /// The arguments of a directive, up to `;` or `{` (whether it opens a block).
    fn args(&mut self, name: &str, line: usize) -> Result<(Vec<Arg>, bool), SnippetError> {
        let mut args = Vec::new();
        loop {
            match self.tokens.get(self.at) {
                None => return Err(err(line, format!("`{name}` without `;`"))),
                Some(Token::Semi(_)) => {
                    self.at += 1;
                    return Ok((args, false));
                }
                Some(Token::Open(_)) => {
                    self.at += 1;
                    return Ok((args, true));
                }
                Some(Token::Close(l)) => return Err(err(*l, format!("`{name}` without `;` before `}}`"))),
                Some(Token::Word { text, quoted, .. }) => {
                    args.push(Arg {
                        text: text.clone(),
                        quoted: *quoted,
                    });
                    self.at += 1;
                }
            }
        }
    }

    fn directive(
        &mut self,
        ctx: Ctx,
        name: &str,
        args: Vec<Arg>,
        opens: bool,
        line: usize,
        depth: usize,
    ) -> Result<Option<Directive>, SnippetError> {
        let fail = |m: &str| err(line, format!("`{name}`: {m}"));
        let allowed = |contexts: &[Ctx]| {
            if contexts.contains(&ctx) {
                Ok(())
            } else {
                Err(err(line, format!("`{name}` is not allowed in {}", ctx.describe())))
            }
        };
        if opens && !matches!(name, "location" | "if") {
            return Err(fail("does not take a block"));
        }
        use Ctx::*;
        let d = match name {
            "add_header" => {
                allowed(&[Server, Location])?;
                let (field, value, always) = match args.as_slice() {
                    [n, v] => (n, v, false),
                    [n, v, a] if a.text == "always" && !a.quoted => (n, v, true),
                    _ => return Err(fail("expected NAME VALUE [always]")),
                };
                Directive::AddHeader {
                    name: response_field(&field.text).map_err(|m| fail(&m))?,
                    value: value_template(&value.text).map_err(|m| fail(&m))?,
                    always,
                }
            }
            "more_set_headers" | "more_clear_headers" => {
                allowed(&[Server, Location])?;
                let (opts, rest) = options(&args, &['s', 't']).map_err(|m| fail(&m))?;
                if rest.is_empty() {
                    return Err(fail("expected at least one header"));
                }
                let filter = Filter::from_options(&opts).map_err(|m| fail(&m))?;
                if name == "more_set_headers" {
                    let mut fields = Vec::new();
                    for spec in rest {
                        fields.push(field_spec(&spec.text, response_field).map_err(|m| fail(&m))?);
                    }
                    Directive::MoreSetHeaders { filter, fields }
                } else {
                    let names = patterns(rest, response_field).map_err(|m| fail(&m))?;
                    Directive::MoreClearHeaders { filter, names }
                }
            }
            "more_set_input_headers" | "more_clear_input_headers" => {
                allowed(&[Server, Location, Auth])?;
                let allowed_opts: &[char] = if name == "more_set_input_headers" {
                    &['r', 't']
                } else {
                    &['t']
                };
                let (opts, rest) = options(&args, allowed_opts).map_err(|m| fail(&m))?;
                if rest.is_empty() {
                    return Err(fail("expected at least one header"));
                }
                let replace_only = opts.iter().any(|(o, _)| *o == 'r');
                let types = opts
                    .iter()
                    .filter(|(o, _)| *o == 't')
                    .flat_map(|(_, v)| v.split_whitespace().map(str::to_ascii_lowercase))
                    .collect();
                if name == "more_set_input_headers" {
                    let mut fields = Vec::new();
                    for spec in rest {
                        fields.push(field_spec(&spec.text, request_field).map_err(|m| fail(&m))?);
                    }
                    Directive::MoreSetInputHeaders {
                        replace_only,
                        types,
                        fields,
                    }
                } else {
                    let names = patterns(rest, request_field).map_err(|m| fail(&m))?;
                    Directive::MoreClearInputHeaders { types, names }
                }
            }
            "proxy_set_header" => {
                allowed(&[Server, Location, Auth])?;
                let [field, value] = args.as_slice() else {
                    return Err(fail("expected NAME VALUE"));
                };
                let lower = field.text.to_ascii_lowercase();
                if matches!(lower.as_str(), "connection" | "upgrade") {
                    self.notes.push(format!(
                        "`{name} {}` (line {line}): mzlb sets Connection and Upgrade itself",
                        field.text
                    ));
                    return Ok(None);
                }
                let name_ = request_field(&field.text).map_err(|m| fail(&m))?;
                let value = value_template(&value.text).map_err(|m| fail(&m))?;
                if ctx == Server {
                    // Every location ingress-nginx writes sets proxy_set_header of its own, so a
                    // server-level one is never inherited (nginx's array rule).
                    self.notes.push(format!(
                        "`{name} {}` (line {line}): no effect in server-snippet, as in ingress-nginx \
                         (each location sets its own)",
                        field.text
                    ));
                    return Ok(None);
                }
                Directive::ProxySetHeader { name: name_, value }
            }
            "proxy_hide_header" => {
                allowed(&[Server, Location])?;
                let [field] = args.as_slice() else {
                    return Err(fail("expected NAME"));
                };
                Directive::ProxyHideHeader(response_field(&field.text).map_err(|m| fail(&m))?)
            }
            "return" => {
                allowed(&[Server, Location, If])?;
                Directive::Return(parse_return(&args).map_err(|m| fail(&m))?)
            }
            "rewrite" => {
                allowed(&[Server, Location, If])?;
                Directive::Rewrite(parse_rewrite(&args).map_err(|m| fail(&m))?)
            }
            "break" => {
                allowed(&[Server, Location, If])?;
                if !args.is_empty() {
                    return Err(fail("takes no arguments"));
                }
                Directive::Break
            }
            "allow" | "deny" => {
                allowed(&[Server, Location])?;
                let [who] = args.as_slice() else {
                    return Err(fail("expected all or an address/CIDR"));
                };
                let net = match who.text.as_str() {
                    "all" => None,
                    other => Some(
                        other
                            .parse::<IpNet>()
                            .or_else(|_| other.parse::<std::net::IpAddr>().map(IpNet::from))
                            .map_err(|_| fail("expected all or an address/CIDR"))?,
                    ),
                };
                Directive::Access {
                    allow: name == "allow",
                    net,
                }
            }
            "if" => {
                allowed(&[Server, Location])?;
                if !opens {
                    return Err(fail("expected a block"));
                }
                let cond = parse_condition(&args).map_err(|m| fail(&m))?;
                let body = self.block(If, depth + 1)?;
                Directive::If { cond, body }
            }
            "location" => {
                allowed(&[Server])?;
                if !opens {
                    return Err(fail("expected a block"));
                }
                let matcher = parse_location(&args).map_err(|m| fail(&m))?;
                let body = self.block(Location, depth + 1)?;
                Directive::Location(LocationBlock { matcher, body })
            }
            _ => {
                if let Some((_, why)) = NO_OPS.iter().find(|(n, _)| *n == name) {
                    allowed(&[Server, Location, Auth])?;
                    self.notes.push(format!("`{name}` (line {line}): {why}"));
                    return Ok(None);
                }
                return Err(err(line, format!("`{name}` is not a directive mzlb implements")));
            }
        };
        Ok(Some(d))
    }
}

/// One argument of a directive.
#[derive(Clone, Debug)]
pub(super) struct Arg {
    text: String,
    quoted: bool,
}

/// Splits `-x value` options (headers-more's `-s`, `-t`, `-r`) off the front.
/// Options as (letter, value) pairs, and the arguments after them.
type Options<'a> = (Vec<(char, String)>, &'a [Arg]);

fn options<'a>(args: &'a [Arg], allowed: &[char]) -> Result<Options<'a>, String> {
    let mut opts = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let Some(flag) = a.text.strip_prefix('-').filter(|_| !a.quoted) else {
            break;
        };
        let mut chars = flag.chars();
        let (Some(o), None) = (chars.next(), chars.next()) else {
            return Err(format!("unknown option {:?}", a.text));
        };
        if !allowed.contains(&o) {
            return Err(format!("option -{o} is not supported"));
        }
        if o == 'r' {
            opts.push((o, String::new()));
            i += 1;
            continue;
        }
        let value = args.get(i + 1).ok_or(format!("option -{o} without a value"))?;
        opts.push((o, value.text.clone()));
        i += 2;
    }
    Ok((opts, &args[i..]))
}

impl Filter {
    fn from_options(opts: &[(char, String)]) -> Result<Self, String> {
        let mut filter = Filter::default();
        for (o, v) in opts {
            for item in v.split_whitespace() {
                match o {
                    's' => {
                        let code: u16 = item.parse().map_err(|_| format!("-s {item:?} is not a status"))?;
                        if !(100..=599).contains(&code) {
                            return Err(format!("-s {code} is not a status"));
                        }
                        filter.statuses.push(code);
                    }
                    _ => filter.types.push(item.to_ascii_lowercase()),
                }
            }
        }
        Ok(filter)
    }
}

/// `Name: value` (set), `Name:` or `Name` (clear).
fn field_spec(
    spec: &str,
    check: fn(&str) -> Result<HeaderName, String>,
) -> Result<(HeaderName, Option<Template>), String> {
    match spec.split_once(':') {
        Some((name, value)) => {
            let name = check(name.trim())?;
            let value = value.trim();
            if value.is_empty() {
                Ok((name, None))
            } else {
                Ok((name, Some(value_template(value)?)))
            }
        }
        None => Ok((check(spec.trim())?, None)),
    }
}

/// Names, each perhaps ending in `*` (headers-more's prefix match).
fn patterns(args: &[Arg], check: fn(&str) -> Result<HeaderName, String>) -> Result<Vec<NamePattern>, String> {
    let mut out = Vec::new();
    for a in args {
        for item in a.text.split_whitespace() {
            let (base, prefix) = match item.strip_suffix('*') {
                Some(base) => (base, true),
                None => (item, false),
            };
            let base = base.trim_end_matches(':');
            let name = if prefix && base.is_empty() {
                return Err("`*` alone would clear every field".into());
            } else {
                check(base)?.as_str().to_owned()
            };
            out.push(NamePattern { name, prefix });
        }
    }
    Ok(out)
}

/// Response fields a snippet may not set or clear: they frame the message.
const FRAMING: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

fn field_name(text: &str) -> Result<HeaderName, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if text.is_empty() || !text.bytes().all(token) {
        return Err(format!("{text:?} is not a field name"));
    }
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("{text:?} is not a field name"))
}

fn response_field(text: &str) -> Result<HeaderName, String> {
    let name = field_name(text)?;
    if FRAMING.contains(&name.as_str()) {
        return Err(format!("{text} frames the message and is mzlb's to set"));
    }
    Ok(name)
}

fn request_field(text: &str) -> Result<HeaderName, String> {
    let name = field_name(text)?;
    if FRAMING.contains(&name.as_str()) {
        return Err(format!("{text} frames the message and is mzlb's to set"));
    }
    Ok(name)
}

/// A field value: variables from the fixed list; no CR, LF or other control bytes.
fn value_template(text: &str) -> Result<Template, String> {
    if text.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err("a value with CR, LF or a control byte".into());
    }
    Template::parse(text, false)
}

fn status(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        // nginx's 444 closes the connection without an answer; mzlb always answers.
        Ok(444) => Err("444 (close without an answer) is not supported; use 403 or 404".into()),
        Ok(code @ 200..=599) => Ok(code),
        _ => Err(format!("{text:?} is not a status mzlb can answer with (200 to 599)")),
    }
}

fn is_redirect(code: u16) -> bool {
    matches!(code, 301 | 302 | 303 | 307 | 308)
}

fn starts_like_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://") || text.starts_with("$scheme")
}

fn parse_return(args: &[Arg]) -> Result<Return, String> {
    match args {
        [url] if !url.text.bytes().all(|b| b.is_ascii_digit()) => {
            if !starts_like_url(&url.text) {
                return Err("a single argument must be a code or a URL".into());
            }
            Ok(Return {
                code: 302,
                text: Some(location_template(&url.text)?),
            })
        }
        [code] => Ok(Return {
            code: status(&code.text)?,
            text: None,
        }),
        [code, text] => {
            let code = status(&code.text)?;
            let text = if is_redirect(code) {
                location_template(&text.text)?
            } else {
                Template::parse(&text.text, false)?
            };
            Ok(Return { code, text: Some(text) })
        }
        _ => Err("expected CODE [TEXT|URL] or URL".into()),
    }
}

fn location_template(text: &str) -> Result<Template, String> {
    if text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("a URL with spaces or control bytes".into());
    }
    Template::parse(text, false)
}

fn regex(text: &str, case_insensitive: bool) -> Result<Re, String> {
    regex::RegexBuilder::new(text)
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map(Re)
        .map_err(|e| format!("invalid regular expression {text:?}: {e}"))
}

fn parse_rewrite(args: &[Arg]) -> Result<Rewrite, String> {
    let (re, replacement, flag) = match args {
        [re, rep] => (re, rep, RewriteFlag::None),
        [re, rep, flag] => {
            let flag = match flag.text.as_str() {
                "last" => RewriteFlag::Last,
                "break" => RewriteFlag::Break,
                "redirect" => RewriteFlag::Redirect,
                "permanent" => RewriteFlag::Permanent,
                other => return Err(format!("unknown flag {other:?}")),
            };
            (re, rep, flag)
        }
        _ => return Err("expected REGEX REPLACEMENT [last|break|redirect|permanent]".into()),
    };
    let text = &replacement.text;
    if text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("a replacement with spaces or control bytes".into());
    }
    let external = starts_like_url(text);
    if !external && !text.starts_with('/') {
        return Err("the replacement must be a path or an http(s) URL".into());
    }
    Ok(Rewrite {
        regex: regex(&re.text, false)?,
        replacement: Template::parse(text, true)?,
        flag,
        external,
    })
}

fn parse_condition(args: &[Arg]) -> Result<Condition, String> {
    let mut words: Vec<Arg> = args.to_vec();
    let first = words.first_mut().ok_or("expected a condition")?;
    first.text = first
        .text
        .strip_prefix('(')
        .ok_or("expected `(` before the condition")?
        .to_owned();
    match words.last() {
        Some(a) if a.text == ")" && !a.quoted => {
            words.pop();
        }
        Some(a) if a.text.ends_with(')') && !a.quoted => {
            let last = words.last_mut().expect("checked");
            last.text.pop();
        }
        _ => return Err("expected `)` after the condition".into()),
    }
    words.retain(|w| !w.text.is_empty() || w.quoted);
    let var = |t: &str| -> Result<Var, String> {
        let t = Template::parse(t, false)?;
        match t.parts.as_slice() {
            [Part::Var(v)] => Ok(v.clone()),
            _ => Err("the condition must test one variable".into()),
        }
    };
    match words.as_slice() {
        [v] => Ok(Condition::NonEmpty(var(&v.text)?)),
        [v, op, value] => {
            let v = var(&v.text)?;
            match op.text.as_str() {
                "=" | "!=" => Ok(Condition::Equals {
                    var: v,
                    value: Template::parse(&value.text, false)?,
                    negate: op.text == "!=",
                }),
                "~" | "~*" | "!~" | "!~*" => Ok(Condition::Matches {
                    var: v,
                    regex: regex(&value.text, op.text.ends_with('*'))?,
                    negate: op.text.starts_with('!'),
                }),
                other => Err(format!("operator {other:?} is not supported")),
            }
        }
        _ => Err("expected ($var), ($var = value) or ($var ~ regex)".into()),
    }
}

fn parse_location(args: &[Arg]) -> Result<LocationMatch, String> {
    let path = |t: &str| -> Result<String, String> {
        if t.starts_with('/') && !t.bytes().any(|b| b.is_ascii_control()) {
            Ok(t.to_owned())
        } else {
            Err(format!("{t:?} is not a path"))
        }
    };
    match args {
        [p] if p.text.starts_with('@') => Err("named locations are not supported".into()),
        [p] => Ok(LocationMatch::Prefix(path(&p.text)?)),
        [m, p] => match m.text.as_str() {
            "=" => Ok(LocationMatch::Exact(path(&p.text)?)),
            "^~" => Ok(LocationMatch::Prefix(path(&p.text)?)),
            "~" => Ok(LocationMatch::Regex(regex(&p.text, false)?)),
            "~*" => Ok(LocationMatch::Regex(regex(&p.text, true)?)),
            other => Err(format!("modifier {other:?} is not supported")),
        },
        _ => Err("expected [=|~|~*|^~] PATH".into()),
    }
}
