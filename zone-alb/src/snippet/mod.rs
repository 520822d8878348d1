//! ingress-nginx's snippet annotations without an interpreter. A snippet is tokenized as
//! nginx would ([`lexer`]), matched against a fixed grammar of the directives people write
//! ([`grammar`]) and kept as typed [`Directive`]s; values may use a fixed list of variables
//! ([`template`]). At run time hyper's path applies them in nginx's phase order: the server
//! block's rewrite directives, location selection (the server-snippet's `location` blocks, or
//! the Ingress's path), the location's rewrite directives, access (`allow`/`deny`), then the
//! fields sent upstream and the response fields. Anything outside the grammar is refused
//! where it is read, and the Ingress fails closed.

mod grammar;
mod lexer;
mod template;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Body as _;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use ipnet::IpNet;

use crate::policy::ProxyError;
use crate::proxy::Body;
use crate::router::{Route, RoutePolicy, RouteTable};
pub use template::{Part, Template, Var, Vars};

/// Where a snippet is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctx {
    /// `server-snippet`: the host's server block.
    Server,
    /// `configuration-snippet`, or a `location` block of a server-snippet.
    Location,
    /// `auth-snippet`: the location of the auth subrequest.
    Auth,
    /// The block of an `if`.
    If,
}

impl Ctx {
    fn describe(self) -> &'static str {
        match self {
            Ctx::Server => "server-snippet",
            Ctx::Location => "a location (configuration-snippet)",
            Ctx::Auth => "auth-snippet",
            Ctx::If => "an `if` block (only return, rewrite and break)",
        }
    }
}

/// Why a snippet was refused: the line and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SnippetError {
    pub line: usize,
    pub message: String,
}

impl SnippetError {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

/// A parsed snippet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snippet {
    pub directives: Vec<Directive>,
    /// Directives accepted as having no effect in mzlb, with why (for the finding).
    pub notes: Vec<String>,
}

/// Parses `text` written in `ctx`.
pub fn parse(text: &str, ctx: Ctx) -> Result<Snippet, SnippetError> {
    let tokens = lexer::tokenize(text)?;
    let mut parser = grammar::Parser::new(&tokens);
    let directives = parser.block(ctx, 0)?;
    Ok(Snippet {
        directives,
        notes: parser.notes,
    })
}

/// A regular expression, compared by its source.
#[derive(Clone, Debug)]
pub struct Re(pub regex::Regex);

impl PartialEq for Re {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A field name, or (`X-Foo-*`) every name starting with it; lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    pub name: String,
    pub prefix: bool,
}

impl NamePattern {
    fn matches(&self, name: &str) -> bool {
        if self.prefix {
            name.starts_with(&self.name)
        } else {
            name == self.name
        }
    }
}

/// headers-more's `-s` (statuses) and `-t` (content types) filters; empty matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub statuses: Vec<u16>,
    pub types: Vec<String>,
}

impl Filter {
    fn matches(&self, status: u16, headers: &HeaderMap) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&status)) && types_match(&self.types, headers)
    }
}

pub(crate) fn types_match(types: &[String], headers: &HeaderMap) -> bool {
    if types.is_empty() {
        return true;
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default();
    types.contains(&media)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Return {
    pub code: u16,
    /// The body, or for 301/302/303/307/308 the Location.
    pub text: Option<Template>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteFlag {
    None,
    Last,
    Break,
    Redirect,
    Permanent,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rewrite {
    pub regex: Re,
    pub replacement: Template,
    pub flag: RewriteFlag,
    /// The replacement is an absolute URL: a redirect whatever the flag.
    pub external: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `($var)`: neither empty nor `0`.
    NonEmpty(Var),
    Equals {
        var: Var,
        value: Template,
        negate: bool,
    },
    Matches {
        var: Var,
        regex: Re,
        negate: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum LocationMatch {
    Exact(String),
    /// A prefix (`location /p`, `location ^~ /p`).
    Prefix(String),
    Regex(Re),
}

impl LocationMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            LocationMatch::Exact(p) => path == p,
            LocationMatch::Prefix(p) => path.starts_with(p.as_str()),
            LocationMatch::Regex(re) => re.0.is_match(path),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LocationBlock {
    pub matcher: LocationMatch,
    pub body: Vec<Directive>,
}

/// One directive of the fixed grammar.
#[derive(Clone, Debug, PartialEq)]
pub enum Directive {
    /// `add_header NAME VALUE [always]`: appended to 200, 201, 204, 206, 301, 302, 303, 304,
    /// 307 and 308 responses, or to every one with `always`.
    AddHeader {
        name: HeaderName,
        value: Template,
        always: bool,
    },
    /// `more_set_headers [-s ..] [-t ..] 'Name: value'...`: replaces the field (`Name:` clears).
    MoreSetHeaders {
        filter: Filter,
        fields: Vec<(HeaderName, Option<Template>)>,
    },
    MoreClearHeaders {
        filter: Filter,
        names: Vec<NamePattern>,
    },
    /// `proxy_set_header NAME VALUE`: replaces the field sent upstream (empty: not sent).
    ProxySetHeader {
        name: HeaderName,
        value: Template,
    },
    /// `more_set_input_headers [-r] [-t ..] 'Name: value'...`: changes the request's fields.
    MoreSetInputHeaders {
        replace_only: bool,
        types: Vec<String>,
        fields: Vec<(HeaderName, Option<Template>)>,
    },
    MoreClearInputHeaders {
        types: Vec<String>,
        names: Vec<NamePattern>,
    },
    /// `proxy_hide_header NAME`: the backend's field is not passed to the client.
    ProxyHideHeader(HeaderName),
    Return(Return),
    Rewrite(Rewrite),
    Break,
    If {
        cond: Condition,
        body: Vec<Directive>,
    },
    /// `allow`/`deny` (`net` `None`: all).
    Access {
        allow: bool,
        net: Option<IpNet>,
    },
    Location(LocationBlock),
}

/// The add_header statuses (nginx's `ngx_http_headers_filter`).
const ADD_HEADER_STATUSES: [u16; 10] = [200, 201, 204, 206, 301, 302, 303, 304, 307, 308];
/// nginx stops after this many internal redirects (`rewrite ... last`).
const MAX_CYCLES: usize = 10;

/// What the request phase decided for one request.
#[derive(Default)]
pub(crate) struct Plan {
    /// Answer now (return, redirect, deny) instead of proxying.
    pub answer: Option<Response<Body>>,
    /// The origin-form target to send upstream when a rewrite changed it.
    pub target: Option<String>,
    /// What the response gets, whoever answers.
    pub respond: Option<Respond>,
    input: Vec<Directive>,
    upstream: Vec<(HeaderName, Template)>,
    vars: Owned,
}

/// A request's variables, kept for the fields set after the request head is taken apart.
#[derive(Default, Clone)]
struct Owned {
    host: String,
    remote_addr: String,
    scheme: &'static str,
    server_port: u16,
    request_uri: String,
    method: String,
    uri: String,
    args: Option<String>,
}

impl Owned {
    fn vars<'a>(&'a self, headers: &'a HeaderMap) -> Vars<'a> {
        Vars {
            headers,
            host: &self.host,
            remote_addr: &self.remote_addr,
            scheme: self.scheme,
            server_port: self.server_port,
            request_uri: &self.request_uri,
            method: &self.method,
            uri: &self.uri,
            args: self.args.as_deref(),
            captures: &[],
        }
    }
}

/// The response side of a plan, its values expanded at request time.
#[derive(Default)]
pub(crate) struct Respond {
    hide: Vec<HeaderName>,
    more: Vec<MoreOp>,
    add: Vec<(HeaderName, HeaderValue, bool)>,
}

enum MoreOp {
    Set(Filter, HeaderName, Option<HeaderValue>),
    Clear(Filter, Vec<NamePattern>),
}

impl Respond {
    /// Applies to the response about to be sent: hidden fields, headers-more's, then
    /// add_header's.
    pub(crate) fn apply(&self, resp: &mut Response<Body>) {
        let status = resp.status().as_u16();
        let headers = resp.headers_mut();
        for name in &self.hide {
            headers.remove(name);
        }
        for op in &self.more {
            match op {
                MoreOp::Set(filter, name, value) => {
                    if filter.matches(status, headers) {
                        match value {
                            Some(v) => {
                                headers.insert(name.clone(), v.clone());
                            }
                            None => {
                                headers.remove(name);
                            }
                        }
                    }
                }
                MoreOp::Clear(filter, names) => {
                    if filter.matches(status, headers) {
                        remove_matching(headers, names);
                    }
                }
            }
        }
        for (name, value, always) in &self.add {
            if *always || ADD_HEADER_STATUSES.contains(&status) {
                headers.append(name.clone(), value.clone());
            }
        }
    }
}

pub(crate) fn remove_matching(headers: &mut HeaderMap, names: &[NamePattern]) {
    let gone: Vec<HeaderName> = headers
        .keys()
        .filter(|k| names.iter().any(|p| p.matches(k.as_str())))
        .cloned()
        .collect();
    for name in gone {
        headers.remove(name);
    }
}

impl Plan {
    /// The request's own fields, changed as `more_set_input_headers` and
    /// `more_clear_input_headers` say (before the forwarding fields are set).
    pub(crate) fn input(&self, headers: &mut HeaderMap) {
        for d in &self.input {
            match d {
                Directive::MoreSetInputHeaders {
                    replace_only,
                    types,
                    fields,
                } => {
                    if !types_match(types, headers) {
                        continue;
                    }
                    for (name, value) in fields {
                        if *replace_only && !headers.contains_key(name) {
                            continue;
                        }
                        let expanded = value.as_ref().map(|t| t.expand(&self.vars.vars(headers)));
                        match expanded.and_then(|v| HeaderValue::from_str(&v).ok()) {
                            Some(v) if !v.is_empty() => {
                                headers.insert(name.clone(), v);
                            }
                            _ => {
                                headers.remove(name);
                            }
                        }
                    }
                }
                Directive::MoreClearInputHeaders { types, names } if types_match(types, headers) => {
                    remove_matching(headers, names);
                }
                _ => {}
            }
        }
    }

    /// The fields `proxy_set_header` sets, replacing what would go upstream (after the
    /// forwarding fields); an empty value removes the field, as nginx does not send it.
    pub(crate) fn upstream(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.upstream {
            let expanded = value.expand(&self.vars.vars(headers));
            match HeaderValue::from_str(&expanded) {
                Ok(v) if !expanded.is_empty() => {
                    headers.insert(name.clone(), v);
                }
                _ => {
                    headers.remove(name);
                }
            }
        }
    }
}

/// The snippets of a route: the host's server-snippet and the route's configuration-snippet.
fn snippets<'a>(route: &Route<'a>) -> (Option<&'a Arc<Snippet>>, Option<&'a Arc<Snippet>>) {
    let s = &route.policy.policy.snippets;
    (s.server.as_ref(), s.location.as_ref())
}

/// How a run of rewrite-module directives ended.
enum Flow {
    /// All run; `changed` if a flagless rewrite changed the URI (location chosen again).
    Done {
        changed: bool,
    },
    /// `break`, or `rewrite ... break`.
    Stop,
    /// `rewrite ... last`: choose the location again.
    Last,
    Answer(u16, Option<String>),
}

struct State<'r> {
    uri: String,
    args: Option<String>,
    rewritten: bool,
    headers: &'r HeaderMap,
    base: Owned,
}

impl State<'_> {
    fn vars<'a>(&'a self, captures: &'a [String]) -> Vars<'a> {
        Vars {
            headers: self.headers,
            host: &self.base.host,
            remote_addr: &self.base.remote_addr,
            scheme: self.base.scheme,
            server_port: self.base.server_port,
            request_uri: &self.base.request_uri,
            method: &self.base.method,
            uri: &self.uri,
            args: self.args.as_deref(),
            captures,
        }
    }

    fn value(&self, var: &Var) -> String {
        Template {
            parts: vec![Part::Var(var.clone())],
        }
        .expand(&self.vars(&[]))
    }

    fn test(&self, cond: &Condition) -> bool {
        match cond {
            Condition::NonEmpty(var) => {
                let v = self.value(var);
                !v.is_empty() && v != "0"
            }
            Condition::Equals { var, value, negate } => (self.value(var) == value.expand(&self.vars(&[]))) != *negate,
            Condition::Matches { var, regex, negate } => regex.0.is_match(&self.value(var)) != *negate,
        }
    }

    /// Runs the rewrite-module directives of a block in order.
    fn run(&mut self, directives: &[Directive]) -> Flow {
        let mut changed = false;
        for d in directives {
            match d {
                Directive::Return(r) => {
                    let text = r.text.as_ref().map(|t| t.expand(&self.vars(&[])));
                    return Flow::Answer(r.code, text);
                }
                Directive::Break => return Flow::Stop,
                Directive::If { cond, body } if self.test(cond) => match self.run(body) {
                    Flow::Done { changed: c } => changed |= c,
                    other => return other,
                },
                Directive::Rewrite(rw) => {
                    let Some(caps) = rw.regex.0.captures(&self.uri) else {
                        continue;
                    };
                    let captures: Vec<String> = (1..caps.len().min(10))
                        .map(|i| caps.get(i).map_or(String::new(), |m| m.as_str().to_owned()))
                        .collect();
                    let replaced = rw.replacement.expand(&self.vars(&captures));
                    // A `?` in the replacement sets the arguments; the old ones follow unless it
                    // ends with `?`.
                    let (path, args) = match replaced.split_once('?') {
                        None => (replaced.clone(), self.args.clone()),
                        Some((p, "")) => (p.to_owned(), None),
                        Some((p, a)) => match &self.args {
                            Some(old) if !old.is_empty() => (p.to_owned(), Some(format!("{a}&{old}"))),
                            _ => (p.to_owned(), Some(a.to_owned())),
                        },
                    };
                    let redirect = match rw.flag {
                        RewriteFlag::Permanent => Some(301),
                        RewriteFlag::Redirect => Some(302),
                        _ if rw.external => Some(302),
                        _ => None,
                    };
                    if let Some(code) = redirect {
                        let url = match args.filter(|a| !a.is_empty()) {
                            Some(a) => format!("{path}?{a}"),
                            None => path,
                        };
                        return Flow::Answer(code, Some(url));
                    }
                    self.uri = path;
                    self.args = args;
                    self.rewritten = true;
                    match rw.flag {
                        RewriteFlag::Last => return Flow::Last,
                        RewriteFlag::Break => return Flow::Stop,
                        _ => changed = true,
                    }
                }
                _ => {}
            }
        }
        Flow::Done { changed }
    }
}

/// The request phase for a routed request: rewrite directives, location selection and
/// access. Returns the route the request ends up on (a rewrite may move it) and the plan.
/// A route that fails closed is left alone: its 503 comes before anything a snippet says.
#[allow(clippy::too_many_arguments)] // one request's context, passed once
pub(crate) fn request<'t>(
    table: &'t RouteTable,
    host: &str,
    route: Route<'t>,
    path: &str,
    req: &Request<hyper::body::Incoming>,
    client: IpAddr,
    server_port: u16,
    scheme: &'static str,
) -> Result<(Route<'t>, Plan), ProxyError> {
    let (server, _) = snippets(&route);
    if !route.policy.unenforced.is_empty() || !route.policy.policy.snippets.needs_hyper() {
        return Ok((route, Plan::default()));
    }
    let server = server.cloned();
    let bare_host = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':'))
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    let base = Owned {
        host: bare_host,
        remote_addr: client.to_string(),
        scheme,
        server_port,
        request_uri: req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        method: req.method().as_str().to_owned(),
        uri: path.to_owned(),
        args: req.uri().query().map(str::to_owned),
    };
    let mut state = State {
        uri: path.to_owned(),
        args: base.args.clone(),
        rewritten: false,
        headers: req.headers(),
        base,
    };
    let body_pending = !req.body().is_end_stream();
    let mut route = route;
    let mut plan = Plan::default();

    // The server block's rewrite directives run before any location is chosen.
    let server_directives: &[Directive] = server.as_deref().map_or(&[], |s| &s.directives);
    match state.run(server_directives) {
        Flow::Answer(code, text) => {
            plan.respond = Some(respond(server_directives, &[], &state));
            plan.answer = Some(answer(code, text, &state, body_pending));
            return Ok((route, plan));
        }
        Flow::Done { .. } | Flow::Stop | Flow::Last => {}
    }

    let mut cycles = 0;
    let location: Vec<Directive> = loop {
        if state.rewritten {
            route = table.lookup(host, &state.uri).ok_or(ProxyError::NoRoute)?;
        }
        let own = server_directives.iter().find_map(|d| match d {
            Directive::Location(l) if l.matcher.matches(&state.uri) => Some(l),
            _ => None,
        });
        let (block, from_server) = match own {
            Some(l) => (l.body.clone(), true),
            None => (
                snippets(&route).1.map(|s| s.directives.clone()).unwrap_or_default(),
                false,
            ),
        };
        let flow = state.run(&block);
        match flow {
            Flow::Answer(code, text) => {
                plan.respond = Some(respond(server_directives, &block, &state));
                plan.answer = Some(answer(code, text, &state, body_pending));
                return Ok((route, plan));
            }
            Flow::Last | Flow::Done { changed: true } => {
                cycles += 1;
                if cycles > MAX_CYCLES {
                    tracing::warn!(host, uri = %state.uri, "rewrite or internal redirection cycle");
                    plan.answer = Some(answer(500, None, &state, body_pending));
                    return Ok((route, plan));
                }
            }
            Flow::Stop | Flow::Done { changed: false } => {
                if from_server {
                    // A location of the server-snippet: access, then no content of its own.
                    plan.respond = Some(respond(server_directives, &block, &state));
                    let code = if denied(server_directives, &block, client) {
                        403
                    } else {
                        404
                    };
                    plan.answer = Some(answer(code, None, &state, body_pending));
                    return Ok((route, plan));
                }
                break block;
            }
        }
    };
    if state.rewritten {
        route = table.lookup(host, &state.uri).ok_or(ProxyError::NoRoute)?;
    }
    plan.respond = Some(respond(server_directives, &location, &state));
    if denied(server_directives, &location, client) {
        plan.answer = Some(answer(403, None, &state, body_pending));
        return Ok((route, plan));
    }
    if state.rewritten {
        plan.target = Some(match state.args.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => format!("{}?{a}", state.uri),
            None => state.uri.clone(),
        });
    }
    // headers-more's input directives: the server's first, then the location's.
    plan.input = server_directives
        .iter()
        .chain(&location)
        .filter(|d| {
            matches!(
                d,
                Directive::MoreSetInputHeaders { .. } | Directive::MoreClearInputHeaders { .. }
            )
        })
        .cloned()
        .collect();
    plan.upstream = location
        .iter()
        .filter_map(|d| match d {
            Directive::ProxySetHeader { name, value } => Some((name.clone(), value.clone())),
            _ => None,
        })
        .collect();
    plan.vars = Owned {
        uri: state.uri.clone(),
        args: state.args.clone(),
        ..state.base.clone()
    };
    Ok((route, plan))
}

/// Whether `allow`/`deny` refuse `client`: the location's rules, or the server's when the
/// location has none (nginx's inheritance); the first rule that matches decides.
fn denied(server: &[Directive], location: &[Directive], client: IpAddr) -> bool {
    let rules = |ds: &[Directive]| -> Vec<(bool, Option<IpNet>)> {
        ds.iter()
            .filter_map(|d| match d {
                Directive::Access { allow, net } => Some((*allow, *net)),
                _ => None,
            })
            .collect()
    };
    let mut effective = rules(location);
    if effective.is_empty() {
        effective = rules(server);
    }
    effective
        .iter()
        .find(|(_, net)| net.is_none_or(|n| n.contains(&client)))
        .is_some_and(|(allow, _)| !allow)
}

/// The response side: proxy_hide_header and add_header of the location, or of the server when
/// the location has none (nginx's array inheritance); headers-more's of both, server first.
fn respond(server: &[Directive], location: &[Directive], state: &State<'_>) -> Respond {
    let vars = state.vars(&[]);
    let value = |t: &Template| HeaderValue::from_str(&t.expand(&vars)).ok();
    let pick = |f: &dyn Fn(&Directive) -> bool| -> Vec<&Directive> {
        let own: Vec<&Directive> = location.iter().filter(|d| f(d)).collect();
        if own.is_empty() {
            server.iter().filter(|d| f(d)).collect()
        } else {
            own
        }
    };
    let mut r = Respond::default();
    for d in pick(&|d| matches!(d, Directive::ProxyHideHeader(_))) {
        if let Directive::ProxyHideHeader(name) = d {
            r.hide.push(name.clone());
        }
    }
    for d in pick(&|d| matches!(d, Directive::AddHeader { .. })) {
        if let Directive::AddHeader { name, value: v, always } = d
            && let Some(v) = value(v).filter(|v| !v.is_empty())
        {
            r.add.push((name.clone(), v, *always));
        }
    }
    for d in server.iter().chain(location) {
        match d {
            Directive::MoreSetHeaders { filter, fields } => {
                for (name, v) in fields {
                    let v = v.as_ref().and_then(value).filter(|v| !v.is_empty());
                    r.more.push(MoreOp::Set(filter.clone(), name.clone(), v));
                }
            }
            Directive::MoreClearHeaders { filter, names } => r.more.push(MoreOp::Clear(filter.clone(), names.clone())),
            _ => {}
        }
    }
    r
}

/// An answer of the snippet's own: `return`, a rewrite redirect, or a refusal.
fn answer(code: u16, text: Option<String>, state: &State<'_>, body_pending: bool) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status);
    let redirect = matches!(code, 301 | 302 | 303 | 307 | 308);
    let body = match (&text, redirect) {
        (Some(url), true) => {
            // A relative target becomes absolute, as nginx writes Location (port_in_redirect
            // off, as ingress-nginx).
            let location = if url.starts_with('/') {
                format!("{}://{}{url}", state.base.scheme, state.base.host)
            } else {
                url.clone()
            };
            match HeaderValue::from_str(&location) {
                Ok(v) => builder = builder.header(header::LOCATION, v),
                Err(_) => return answer(500, None, state, body_pending),
            }
            format!("{}\n", status.canonical_reason().unwrap_or_default())
        }
        (Some(text), false) => {
            // ingress-nginx's `default_type text/html`.
            builder = builder.header(header::CONTENT_TYPE, "text/html");
            text.clone()
        }
        (None, _) => {
            builder = builder.header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
            format!("{}\n", status.canonical_reason().unwrap_or("error"))
        }
    };
    let body = if matches!(code, 204 | 304) { String::new() } else { body };
    if body_pending {
        // A body we do not read must not be taken for the next request.
        builder = builder.header(header::CONNECTION, "close");
    }
    builder.body(crate::proxy::full(body)).expect("valid response parts")
}

/// ingress-nginx's order of Ingresses: oldest first; at equal creation times, namespace/name
/// in descending order (its `sortIngressSlice`).
pub(crate) fn ingress_order(objects: &crate::objects::Objects) -> HashMap<String, (Option<String>, String)> {
    objects
        .ingresses
        .iter()
        .map(|ing| {
            let m = &ing.metadata;
            let key = format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or("default"),
                m.name.as_deref().unwrap_or_default()
            );
            let created = m.creation_timestamp.as_ref().map(|t| t.0.to_string());
            (key.clone(), (created, key))
        })
        .collect()
}

/// server-snippet is the host's: ingress-nginx takes the first Ingress's (in its order) for
/// the host's server block and skips the others' with a warning. Every path of the host gets
/// it; if it could not be used, every path of the host fails closed. Returns the warnings.
pub(crate) fn host_wide<'p>(
    host: &str,
    policies: impl Iterator<Item = &'p mut Arc<RoutePolicy>>,
    order: &HashMap<String, (Option<String>, String)>,
) -> Vec<String> {
    let policies: Vec<&'p mut Arc<RoutePolicy>> = policies.collect();
    let rank = |ingress: &str| {
        let (created, name) = order.get(ingress).cloned().unwrap_or((None, ingress.to_owned()));
        // None (no timestamp, as in a manifest directory) sorts first, as the zero time.
        (created, std::cmp::Reverse(name))
    };
    let mut writers: Vec<&RoutePolicy> = policies
        .iter()
        .map(|p| &***p)
        .filter(|p| p.policy.snippets.own_server.is_some() || p.policy.snippets.server_refused)
        .collect();
    writers.sort_by_key(|p| rank(&p.ingress));
    writers.dedup_by(|a, b| a.ingress == b.ingress);
    let Some(winner) = writers.first() else {
        return Vec::new();
    };
    let warnings = writers[1..]
        .iter()
        .map(|p| {
            format!(
                "Server snippet already configured for server {host:?} by Ingress {}, skipping (Ingress {})",
                winner.ingress, p.ingress
            )
        })
        .collect();
    let refused = winner.policy.snippets.server_refused;
    let snippet = winner.policy.snippets.own_server.clone();
    let reason: Arc<str> = Arc::from(format!("unenforced-annotation server-snippet of {}", winner.ingress));
    let mut done: HashMap<*const RoutePolicy, Arc<RoutePolicy>> = HashMap::new();
    for p in policies {
        let key = Arc::as_ptr(p);
        let new = done
            .entry(key)
            .or_insert_with(|| {
                let mut copy = (**p).clone();
                if refused {
                    copy.unenforced.push(reason.clone());
                } else {
                    copy.policy.snippets.server = snippet.clone();
                }
                Arc::new(copy)
            })
            .clone();
        *p = new;
    }
    warnings
}

#[cfg(test)]
mod tests;
