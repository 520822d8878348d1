//! Request path normalisation for route matching.
//!
//! Routes, allow-lists and rewrites compare paths as strings, so two spellings of one resource
//! must compare equal, or a rule on `/admin` is bypassed by `//admin`, `/%61dmin` or `/x/../admin`.
//! [`normalize`] gives every path one canonical spelling (unreserved escapes decoded, other escapes
//! upper-cased, `/` runs merged, dot-segments removed) and refuses what cannot be resolved safely.
//! Nothing is decoded twice. `%2F` is decoded too, and so is a separator here: nginx matches
//! `location`s against the fully decoded path, and many backends (WSGI's `PATH_INFO`, ASGI's
//! `path`, older Go muxes) decode it before routing, so `/admin%2Fusers` must meet the rule on
//! `/admin`, not the open one on `/`. Only matching sees this form; the backend gets the target
//! as the client sent it.

use std::borrow::Cow;

/// Why a path cannot be matched (the client gets 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    #[error("malformed percent-encoding")]
    BadEscape,
    #[error("the path climbs above /")]
    AboveRoot,
    #[error("the path does not start with /")]
    NotAbsolute,
}

/// The path as routes, allow-lists and rewrites see it. `path` is the request target's path
/// (no query: the caller splits at the first `?`). Borrowed when nothing changes.
pub(crate) fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if !needs_work(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = if path.contains('%') {
        Cow::Owned(decode_unreserved(path)?)
    } else {
        Cow::Borrowed(path)
    };

    // Dot-segment removal (RFC 3986 §5.2.4) over `/`-separated segments; empty segments are the
    // merged `/` runs. `out` never ends in `/` inside the loop, so a `..` cuts at its last `/`;
    // each byte is removed at most once, so this is linear however deep the nesting.
    let mut out = String::with_capacity(decoded.len());
    // Whether the result ends in `/`: an empty last segment, or a final `.` / `..` (RFC 3986).
    let mut trailing = false;
    for segment in decoded.split('/').skip(1) {
        match segment {
            "" | "." => trailing = true,
            ".." => {
                // Clamping silently would let `/../admin` match `/admin` here and mean something
                // else to an upstream that does not normalise; refuse instead.
                let Some(cut) = out.rfind('/') else {
                    return Err(PathError::AboveRoot);
                };
                out.truncate(cut);
                trailing = true;
            }
            _ => {
                out.push('/');
                out.push_str(segment);
                trailing = false;
            }
        }
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    // Escapes that were already canonical (`/%C3%A9`) get here too; keep the promise that an
    // unchanged path is borrowed, so callers can tell a rewrite from a no-op.
    if out == path {
        Ok(Cow::Borrowed(path))
    } else {
        Ok(Cow::Owned(out))
    }
}

/// One pass: does the path hold a `%`, a `//`, or a `.` / `..` segment? Dot-files (`/.well-known`)
/// and names like `..;` are ordinary segments and keep the fast path.
fn needs_work(bytes: &[u8]) -> bool {
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' => return true,
            b'/' => {
                if let [b'/', ..] | [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..] = &bytes[i + 1..]
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Decodes escapes of unreserved characters and upper-cases the rest, in one pass: output is never
/// rescanned, so in `%252e` the `%25` stays encoded and `2e` stays plain text.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let bytes = rest.as_bytes();
        let (Some(&hi), Some(&lo)) = (bytes.get(pos + 1), bytes.get(pos + 2)) else {
            return Err(PathError::BadEscape);
        };
        let (Some(h), Some(l)) = (hex_value(hi), hex_value(lo)) else {
            return Err(PathError::BadEscape);
        };
        let byte = (h << 4) | l;
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(hi.to_ascii_uppercase()));
            out.push(char::from(lo.to_ascii_uppercase()));
        }
        // Both digits are ASCII, so `pos + 3` is a char boundary.
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Strict hex digit: unlike `u8::from_str_radix`, no sign is accepted (`%+1` is malformed).
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathError::{AboveRoot, BadEscape, NotAbsolute};

    /// Every row: the exact outcome. An `Ok` equal to the input must also come back borrowed,
    /// and a changed one owned.
    const CASES: &[(&str, Result<&str, PathError>)] = &[
        // The bypass set: each spelling of `/admin` matches as `/admin` or is refused.
        ("/admin", Ok("/admin")),
        ("//admin", Ok("/admin")),
        ("/%61dmin", Ok("/admin")),
        ("/x/../admin", Ok("/admin")),
        ("/./admin", Ok("/admin")),
        ("/%2e%2e/admin", Err(AboveRoot)),
        ("/../admin", Err(AboveRoot)),
        ("/adm%69n", Ok("/admin")),
        ("/%41dmin", Ok("/Admin")),
        ("/ADMIN", Ok("/ADMIN")),
        ("/admin/", Ok("/admin/")),
        ("/admin/.", Ok("/admin/")),
        ("/admin//", Ok("/admin/")),
        ("/x/%2E%2E/admin", Ok("/admin")),
        ("/x/.%2e/admin", Ok("/admin")),
        ("/x/%2e./admin", Ok("/admin")),
        ("/x//..//admin", Ok("/admin")),
        ("/x/y/../../admin", Ok("/admin")),
        // `%2F` separates, as in nginx's matching: these climb or meet `/admin`.
        ("/%2fadmin", Ok("/admin")),
        ("/%2e%2e%2fadmin", Err(AboveRoot)),
        ("/..%2fadmin", Err(AboveRoot)),
        ("/public/..%2Fadmin", Ok("/admin")),
        ("/admin%2Fusers", Ok("/admin/users")),
        // Decoding is one pass. Only an escape's own digits are upper-cased: the `2e` after `%25`
        // is literal text, and paths are case-sensitive.
        ("/%2561dmin", Ok("/%2561dmin")),
        ("/%252e", Ok("/%252e")),
        ("/%252E", Ok("/%252E")),
        ("/%252e%252e/admin", Ok("/%252e%252e/admin")),
        ("/%252F", Ok("/%252F")),
        ("/%25", Ok("/%25")),
        ("/%2525", Ok("/%2525")),
        ("/a%2Fb", Ok("/a/b")),
        ("/a%2fb", Ok("/a/b")),
        ("/%2f%2F", Ok("/")),
        // Other reserved and non-ASCII escapes stay encoded, upper-cased.
        ("/%00", Ok("/%00")),
        ("/%3b", Ok("/%3B")),
        ("/%3F", Ok("/%3F")),
        ("/%C3%A9", Ok("/%C3%A9")),
        ("/%c3%a9", Ok("/%C3%A9")),
        ("/%Ff", Ok("/%FF")),
        // Unreserved escapes are decoded.
        ("/~user", Ok("/~user")),
        ("/%7Euser", Ok("/~user")),
        ("/%7euser", Ok("/~user")),
        ("/%2D%5F%2E%7E", Ok("/-_.~")),
        ("/%30%39%5a", Ok("/09Z")),
        // Dot-segments, including decoded ones.
        ("/a/%2e/b", Ok("/a/b")),
        ("/a/%2E%2E/b", Ok("/b")),
        ("/a/./b/../c", Ok("/a/c")),
        ("/a/b/..", Ok("/a/")),
        ("/a/b/../", Ok("/a/")),
        ("/a/.", Ok("/a/")),
        ("/a/..", Ok("/")),
        ("/a/%2e%2E", Ok("/")),
        ("/.", Ok("/")),
        ("/./", Ok("/")),
        ("/%2e", Ok("/")),
        ("/%2E/", Ok("/")),
        ("/a/./.", Ok("/a/")),
        ("/a/b/./../c/./d/..", Ok("/a/c/")),
        ("/.%2e/", Err(AboveRoot)),
        ("/%2e.", Err(AboveRoot)),
        ("/..", Err(AboveRoot)),
        ("/../", Err(AboveRoot)),
        ("/a/../..", Err(AboveRoot)),
        ("/a/../../b", Err(AboveRoot)),
        ("/a/b/../../../c", Err(AboveRoot)),
        ("//..", Err(AboveRoot)),
        ("/./..", Err(AboveRoot)),
        // Names with dots that are not dot-segments: unchanged, borrowed.
        ("/a/.b", Ok("/a/.b")),
        ("/.well-known/acme", Ok("/.well-known/acme")),
        ("/a/..b", Ok("/a/..b")),
        ("/a/b..", Ok("/a/b..")),
        ("/a/b.", Ok("/a/b.")),
        ("/...", Ok("/...")),
        ("/a/.../b", Ok("/a/.../b")),
        ("/a/..;/b", Ok("/a/..;/b")),
        ("/a/.;/b", Ok("/a/.;/b")),
        ("/a;b", Ok("/a;b")),
        ("/%2e%2e%2e", Ok("/...")),
        ("/a/%2e%2e;/b", Ok("/a/..;/b")),
        // Slash runs.
        ("/", Ok("/")),
        ("///", Ok("/")),
        ("/a//b", Ok("/a/b")),
        ("/a///b", Ok("/a/b")),
        ("/a/b/", Ok("/a/b/")),
        ("/a//", Ok("/a/")),
        ("/a/.//", Ok("/a/")),
        ("/a/.//b", Ok("/a/b")),
        // Malformed escapes.
        ("/%", Err(BadEscape)),
        ("/%4", Err(BadEscape)),
        ("/%zz", Err(BadEscape)),
        ("/%4g", Err(BadEscape)),
        ("/%g4", Err(BadEscape)),
        ("/a%", Err(BadEscape)),
        ("/%%", Err(BadEscape)),
        ("/%%41", Err(BadEscape)),
        ("/%+1", Err(BadEscape)),
        ("/%-1", Err(BadEscape)),
        ("/%2 ", Err(BadEscape)),
        ("/ok/%41/%", Err(BadEscape)),
        ("/%é", Err(BadEscape)),
        ("/%2é", Err(BadEscape)),
        ("/%\u{ff41}", Err(BadEscape)),
        // Not absolute.
        ("no-slash", Err(NotAbsolute)),
        ("", Err(NotAbsolute)),
        ("admin/../", Err(NotAbsolute)),
        ("%2Fadmin", Err(NotAbsolute)),
        (".", Err(NotAbsolute)),
        ("*", Err(NotAbsolute)),
        ("http://h/admin", Err(NotAbsolute)),
        // Bytes the HTTP parser refuses earlier: ordinary bytes here, no panic. Backslash too.
        ("/a\\..\\b", Ok("/a\\..\\b")),
        ("/..\\admin", Ok("/..\\admin")),
        ("/é", Ok("/é")),
        ("/é/../x", Ok("/x")),
        ("/x/é/..", Ok("/x/")),
        ("/a b/./c", Ok("/a b/c")),
        ("/\0/..", Ok("/")),
        ("/#/.", Ok("/#/")),
    ];

    #[test]
    fn table() {
        for &(input, expected) in CASES {
            let got = normalize(input);
            assert_eq!(got.as_deref(), expected.as_deref(), "input {input:?}");
            if let Ok(out) = got {
                let borrowed = matches!(out, Cow::Borrowed(_));
                assert_eq!(borrowed, out == input, "input {input:?}: borrowed iff unchanged");
            }
        }
    }

    #[test]
    fn unchanged_paths_take_the_fast_path() {
        for path in [
            "/", "/admin", "/a/b/", "/a/.b", "/a/..b", "/a/b..", "/a/..;/b", "/~user", "/a;b", "/é",
        ] {
            assert!(!needs_work(path.as_bytes()), "{path:?}");
            assert!(matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path), "{path:?}");
        }
    }

    #[test]
    fn long_paths() {
        const N: usize = 10_000;
        let flat = format!("/{}", "a/../".repeat(N));
        assert_eq!(normalize(&flat).as_deref(), Ok("/"));
        let flat_no_trailing = "/a/..".repeat(N);
        assert_eq!(normalize(&flat_no_trailing).as_deref(), Ok("/"));
        let encoded = format!("/{}", "a/%2e%2E/".repeat(N));
        assert_eq!(normalize(&encoded).as_deref(), Ok("/"));

        let deep = format!("/{}{}", "a/".repeat(N), "../".repeat(N));
        assert_eq!(normalize(&deep).as_deref(), Ok("/"));
        let above = format!("/{}{}", "a/".repeat(N), "../".repeat(N + 1));
        assert_eq!(normalize(&above), Err(AboveRoot));
        let partial = format!("/{}{}b", "a/".repeat(N), "../".repeat(N - 1));
        assert_eq!(normalize(&partial).as_deref(), Ok("/a/b"));

        assert_eq!(normalize(&"/".repeat(N)).as_deref(), Ok("/"));
        let plain = "/a".repeat(N);
        assert!(matches!(normalize(&plain), Ok(Cow::Borrowed(_))));
        let escapes = "/%2f".repeat(N);
        assert_eq!(normalize(&escapes).as_deref(), Ok("/"));
        let escapes = "/%3b".repeat(N);
        assert_eq!(normalize(&escapes).as_deref(), Ok("/%3B".repeat(N).as_str()));
    }

    /// Independent, deliberately naive model: decode, merge `//` until none remain, then the
    /// RFC 3986 §5.2.4 buffer algorithm, with the root clamp turned into `AboveRoot`.
    fn model(path: &str) -> Result<String, PathError> {
        if !path.starts_with('/') {
            return Err(NotAbsolute);
        }
        let bytes = path.as_bytes();
        let mut decoded = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' {
                decoded.push(bytes[i]);
                i += 1;
                continue;
            }
            let digits = bytes.get(i + 1..i + 3).ok_or(BadEscape)?;
            if !digits.iter().all(u8::is_ascii_hexdigit) {
                return Err(BadEscape);
            }
            let text = std::str::from_utf8(digits).unwrap();
            let byte = u8::from_str_radix(text, 16).unwrap();
            if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
                decoded.push(byte);
            } else {
                decoded.push(b'%');
                decoded.extend(text.to_ascii_uppercase().bytes());
            }
            i += 3;
        }
        let mut input = String::from_utf8(decoded).unwrap();
        while input.contains("//") {
            input = input.replace("//", "/");
        }
        let mut output = String::new();
        while !input.is_empty() {
            if input.starts_with("/./") {
                input.replace_range(..3, "/");
            } else if input == "/." {
                input = "/".to_owned();
            } else if input.starts_with("/../") || input == "/.." {
                let cut = output.rfind('/').ok_or(AboveRoot)?;
                output.truncate(cut);
                input.replace_range(..input.len().min(4), "/");
            } else {
                let end = input[1..].find('/').map_or(input.len(), |p| p + 1);
                output.push_str(&input[..end]);
                input.replace_range(..end, "");
            }
        }
        Ok(output)
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn assert_canonical(input: &str, out: &str) {
        assert!(out.starts_with('/'), "{input:?} -> {out:?}");
        for bad in ["//", "/./", "/../"] {
            assert!(!out.contains(bad), "{input:?} -> {out:?}");
        }
        assert!(!out.ends_with("/.") && !out.ends_with("/.."), "{input:?} -> {out:?}");
        // Every escape left is upper-case and not of an unreserved character.
        for (i, _) in out.match_indices('%') {
            let digits = &out.as_bytes()[i + 1..i + 3];
            assert!(
                digits.iter().all(|d| d.is_ascii_digit() || d.is_ascii_uppercase()),
                "{out:?}"
            );
            assert_eq!(
                decode_unreserved(&out[i..i + 3]).as_deref(),
                Ok(&out[i..i + 3]),
                "{out:?}"
            );
        }
    }

    #[test]
    fn random_paths() {
        const ALPHABET: &[u8] = b"/.%2eEfFa";
        // Whole escapes and dot runs over the same alphabet; single characters alone mostly make
        // malformed escapes and rarely a `..` segment.
        const TOKENS: &[&str] = &[
            "/", "/", "/..", "/%2e.", ".", "..", "%2e", "%2E", "%2f", "%2F", "%Fa", "a", "e",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut ok, mut errors) = (0, [0; 3]);
        for round in 0..20_000 {
            let len = (rng.next() % 16) as usize;
            let mut input = String::new();
            for _ in 0..len {
                if round % 2 == 0 {
                    input.push(char::from(ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize]));
                } else {
                    input.push_str(TOKENS[(rng.next() % TOKENS.len() as u64) as usize]);
                }
            }
            // Mostly absolute, so the interesting rules get exercised.
            if round % 8 != 0 {
                input.insert(0, '/');
            }
            let got = normalize(&input);
            assert_eq!(got.as_deref(), model(&input).as_deref(), "input {input:?}");
            match got {
                Ok(out) => {
                    ok += 1;
                    assert_canonical(&input, &out);
                    assert_eq!(matches!(out, Cow::Borrowed(_)), out == input, "input {input:?}");
                    assert_eq!(normalize(&out).as_deref(), Ok(&*out), "not idempotent: {input:?}");
                }
                Err(BadEscape) => errors[0] += 1,
                Err(AboveRoot) => errors[1] += 1,
                Err(NotAbsolute) => errors[2] += 1,
            }
        }
        // The generator must reach every outcome, or the loop proves little.
        assert!(
            ok > 2_000 && errors.iter().all(|&n| n > 500),
            "ok {ok}, errors {errors:?}"
        );
    }
}
