//! Which header fields cross the proxy, for both HTTP paths. Hop-by-hop fields (RFC 9110
//! §7.6.1) stay on their connection; fields a `Connection` header names are hop-by-hop too,
//! except the ones whose removal would change the message itself: its framing
//! (`Content-Length`), its target (`Host`) or the forwarding fields the proxy vouches for. So
//! `Connection: content-length` can never turn one request into two.
//!
//! The forwarding family (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`) describes the client as
//! the proxy saw it. From an untrusted peer it is removed and ours is set; from a trusted one
//! (`--trusted-proxies`) it is kept and extended. Field names with `_` are dropped unless
//! enabled: CGI and WSGI backends fold `_` into `-`, so `X_Forwarded_For` would pass for
//! `X-Forwarded-For` (nginx's `underscores_in_headers off`).

use std::net::IpAddr;

/// How a field name is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Describes one connection: never forwarded.
    HopByHop,
    /// `Content-Length`: framing; the sending side keeps it consistent with the body.
    Framing,
    Host,
    /// The forwarding family.
    Forwarding,
    Other,
}

/// Classifies a field name, by length first: most names are compared with nothing.
fn kind(name: &[u8]) -> Kind {
    let (candidates, kind): (&[&[u8]], Kind) = match name.len() {
        2 => (&[b"te"], Kind::HopByHop),
        4 => (&[b"host"], Kind::Host),
        7 => (&[b"trailer", b"upgrade"], Kind::HopByHop),
        // ingress-nginx sets X-Scheme itself; X-Original-URL / X-Rewrite-URL override the path
        // in IIS- and Symfony-style backends: a client must not choose them.
        8 => (&[b"x-scheme"], Kind::Forwarding),
        13 => (&[b"x-rewrite-url"], Kind::Forwarding),
        9 if name.eq_ignore_ascii_case(b"forwarded") => return Kind::Forwarding,
        9 => (&[b"x-real-ip"], Kind::Forwarding),
        10 => (&[b"connection", b"keep-alive"], Kind::HopByHop),
        14 if name.eq_ignore_ascii_case(b"http2-settings") => return Kind::HopByHop,
        14 if name.eq_ignore_ascii_case(b"content-length") => return Kind::Framing,
        14 => (&[b"x-original-uri", b"x-original-url"], Kind::Forwarding),
        15 => (&[b"x-forwarded-for", b"x-forwarded-ssl"], Kind::Forwarding),
        16 if name.eq_ignore_ascii_case(b"proxy-connection") => return Kind::HopByHop,
        16 => (&[b"x-forwarded-host", b"x-forwarded-port"], Kind::Forwarding),
        17 if name.eq_ignore_ascii_case(b"transfer-encoding") => return Kind::HopByHop,
        17 => (&[b"x-forwarded-proto"], Kind::Forwarding),
        18 => (&[b"x-forwarded-scheme", b"x-forwarded-prefix"], Kind::Forwarding),
        _ => return Kind::Other,
    };
    if candidates.iter().any(|c| c.eq_ignore_ascii_case(name)) {
        kind
    } else {
        Kind::Other
    }
}

/// Whether a field frames the message, belongs to one connection or names its target
/// (`Host`): what only the proxy may set (a route's header modifier may not).
pub(crate) fn is_message_field(name: &[u8]) -> bool {
    matches!(kind(name), Kind::HopByHop | Kind::Framing | Kind::Host)
}

/// What the forwarding rules depend on, per connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    /// The peer is a trusted proxy: its forwarding fields are believed.
    pub trusted: bool,
    /// Field names with `_` go upstream (off by default).
    pub underscores: bool,
}

/// Whether a client's request field goes upstream. `listed`: the names its `Connection`
/// fields list. `Transfer-Encoding` never does: the path that sends the body frames it.
pub(crate) fn request_field(name: &[u8], listed: &[&[u8]], rules: Rules) -> bool {
    match kind(name) {
        Kind::HopByHop => false,
        Kind::Framing | Kind::Host => true,
        Kind::Forwarding => rules.trusted,
        Kind::Other => (rules.underscores || !name.contains(&b'_')) && !is_listed(name, listed),
    }
}

/// Whether a backend's response field goes to the client (`Transfer-Encoding` is the
/// framing's to decide, as for requests).
pub(crate) fn response_field(name: &[u8], listed: &[&[u8]]) -> bool {
    match kind(name) {
        Kind::HopByHop => false,
        Kind::Framing | Kind::Host | Kind::Forwarding => true,
        Kind::Other => !is_listed(name, listed),
    }
}

fn is_listed(name: &[u8], listed: &[&[u8]]) -> bool {
    listed.iter().any(|l| l.eq_ignore_ascii_case(name))
}

/// The tokens of `Connection` field values, trimmed, without empty ones.
pub(crate) fn connection_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The forwarding fields set for a request from an untrusted peer, whatever it sent: its
/// address, the scheme and port it reached us on. (`X-Forwarded-Host` follows the request's
/// host; a trusted peer's fields are extended instead, by hyper's path.) Values are handed out
/// unformatted, so the fast path writes them straight into its per-connection bytes.
pub(crate) fn untrusted_fields(
    peer: IpAddr,
    scheme: &'static str,
    port: u16,
    mut field: impl FnMut(&'static str, std::fmt::Arguments<'_>),
) {
    field("x-forwarded-for", format_args!("{peer}"));
    field("x-real-ip", format_args!("{peer}"));
    field("x-forwarded-proto", format_args!("{scheme}"));
    field("x-forwarded-port", format_args!("{port}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTRUSTED: Rules = Rules {
        trusted: false,
        underscores: false,
    };
    const TRUSTED: Rules = Rules {
        trusted: true,
        underscores: false,
    };

    #[test]
    fn request_fields_table() {
        let listed: &[&[u8]] = &[
            b"content-length",
            b"HOST",
            b"x-secret",
            b"X-Forwarded-For",
            b"transfer-encoding",
        ];
        // (name, forwarded from an untrusted peer, from a trusted one)
        let rows: &[(&str, bool, bool)] = &[
            ("Content-Length", true, true),
            ("content-length", true, true),
            ("Host", true, true),
            ("X-Secret", false, false),
            ("x-kept", true, true),
            ("Connection", false, false),
            ("Keep-Alive", false, false),
            ("Proxy-Connection", false, false),
            ("TE", false, false),
            ("Trailer", false, false),
            ("Upgrade", false, false),
            ("Transfer-Encoding", false, false),
            ("HTTP2-Settings", false, false),
            ("Forwarded", false, true),
            ("X-Forwarded-For", false, true),
            ("X-Forwarded-Host", false, true),
            ("X-Forwarded-Port", false, true),
            ("X-Forwarded-Proto", false, true),
            ("X-Forwarded-Ssl", false, true),
            ("X-Forwarded-Scheme", false, true),
            ("X-Forwarded-Prefix", false, true),
            ("X-Real-IP", false, true),
            ("X-Scheme", false, true),
            ("X-Original-URI", false, true),
            ("X-Original-URL", false, true),
            ("X-Rewrite-URL", false, true),
            ("X_Forwarded_For", false, false),
            ("Transfer_Encoding", false, false),
            ("Content_Length", false, false),
            ("x_any", false, false),
            // Near misses of the names above are ordinary fields.
            ("X-Forwarded-Fo", true, true),
            ("X-Forwarded-Forx", true, true),
            ("Hosts", true, true),
            ("tee", true, true),
        ];
        for &(name, untrusted, trusted) in rows {
            assert_eq!(
                request_field(name.as_bytes(), listed, UNTRUSTED),
                untrusted,
                "{name} untrusted"
            );
            assert_eq!(
                request_field(name.as_bytes(), listed, TRUSTED),
                trusted,
                "{name} trusted"
            );
        }
        let allowed = Rules {
            trusted: false,
            underscores: true,
        };
        assert!(request_field(b"x_any", &[], allowed));
        assert!(
            request_field(b"X_Forwarded_For", &[], allowed),
            "enabled: an ordinary field"
        );
    }

    #[test]
    fn response_fields_table() {
        let listed: &[&[u8]] = &[b"content-length", b"x-hop"];
        for (name, kept) in [
            ("Content-Length", true),
            ("X-Hop", false),
            ("Connection", false),
            ("Keep-Alive", false),
            ("Transfer-Encoding", false),
            ("Upgrade", false),
            ("Set-Cookie", true),
            ("X_Underscore", true),
        ] {
            assert_eq!(response_field(name.as_bytes(), listed), kept, "{name}");
        }
    }

    #[test]
    fn connection_tokens_are_trimmed() {
        let tokens: Vec<&[u8]> = connection_tokens(b" close ,, X-A,\tkeep-alive ").collect();
        assert_eq!(tokens, [&b"close"[..], b"X-A", b"keep-alive"]);
    }
}
