//! htpasswd credentials as nginx's `auth_basic_user_file` reads them: `user:hash` lines, in the
//! formats `htpasswd` writes (bcrypt `$2y$`, Apache MD5 `$apr1$`, `{SHA}`, crypt(3): DES,
//! `$1$`, `$5$`, `$6$`) and nginx's `{PLAIN}`. Every comparison is constant-time.

use std::collections::HashMap;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

/// One user's stored hash, by scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum Hash {
    /// `$2a$`, `$2b$`, `$2y$`: slow by design; verified off the async workers.
    Bcrypt(String),
    /// `$apr1$salt$digest`.
    Apr1 { salt: String, hash: String },
    /// `{SHA}base64(sha1(password))`.
    Sha1([u8; 20]),
    /// `{PLAIN}password`.
    Plain(String),
    /// crypt(3): DES (13 characters), `$1$`, `$5$`, `$6$`.
    Crypt(String),
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a hash: it can be attacked offline.
        f.write_str(match self {
            Hash::Bcrypt(_) => "Bcrypt",
            Hash::Apr1 { .. } => "Apr1",
            Hash::Sha1(_) => "Sha1",
            Hash::Plain(_) => "Plain",
            Hash::Crypt(_) => "Crypt",
        })
    }
}

impl Hash {
    /// Recognises a stored hash; `None` for a format nobody can log in with.
    pub fn parse(s: &str) -> Option<Hash> {
        let s = s.trim_end_matches('\r');
        if s.is_empty() || s.bytes().any(|b| b.is_ascii_control() || b == b' ') && !s.starts_with("{PLAIN}") {
            return None;
        }
        if let Some(rest) = s.strip_prefix("{SHA}") {
            let bytes = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
            return Some(Hash::Sha1(bytes.try_into().ok()?));
        }
        if let Some(rest) = s.strip_prefix("{PLAIN}") {
            return Some(Hash::Plain(rest.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("$apr1$") {
            let (salt, hash) = rest.split_once('$')?;
            if salt.is_empty() || salt.len() > 8 || hash.len() != 22 || !hash.bytes().all(is_crypt64) {
                return None;
            }
            return Some(Hash::Apr1 {
                salt: salt.to_owned(),
                hash: hash.to_owned(),
            });
        }
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            if s.starts_with(prefix) {
                // `$2y$10$` + 53 characters of salt and hash.
                let cost: u32 = s.get(4..6)?.parse().ok()?;
                if !(4..=31).contains(&cost) || s.len() != 60 {
                    return None;
                }
                return Some(Hash::Bcrypt(s.to_owned()));
            }
        }
        if ["$1$", "$5$", "$6$"].iter().any(|p| s.starts_with(p)) {
            return Some(Hash::Crypt(s.to_owned()));
        }
        if s.len() == 13 && s.bytes().all(is_crypt64) {
            return Some(Hash::Crypt(s.to_owned()));
        }
        None
    }

    /// Whether verifying this hash takes real work (bcrypt): such checks go to a blocking
    /// thread, bounded, and their successes are remembered.
    pub fn is_slow(&self) -> bool {
        matches!(self, Hash::Bcrypt(_) | Hash::Crypt(_))
    }

    /// Constant-time check of `password` against this hash.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(h) | Hash::Crypt(h) => pwhash::unix::verify(password, h),
            Hash::Apr1 { salt, hash } => {
                let computed = apr1(password, salt.as_bytes());
                computed.as_bytes().ct_eq(hash.as_bytes()).into()
            }
            Hash::Sha1(expected) => {
                let digest = sha1::Sha1::digest(password);
                digest[..].ct_eq(expected).into()
            }
            Hash::Plain(p) => p.as_bytes().ct_eq(password).into(),
        }
    }
}

fn is_crypt64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

/// The users of a Secret, and the lines that could not be used.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Credentials {
    pub users: HashMap<String, Hash>,
    /// 1-based line numbers (auth-file) or user names (auth-map) that were skipped.
    pub skipped: Vec<String>,
}

/// An `auth-file` Secret's `auth` key: htpasswd lines. Blank lines and `#` comments are
/// skipped; a malformed line is skipped and reported (its user cannot log in). The first line
/// of a user wins, as nginx reads the file top down.
pub fn parse_file(text: &str) -> Credentials {
    let mut c = Credentials::default();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, hash)) if valid_user(user) => match Hash::parse(hash) {
                Some(h) => {
                    c.users.entry(user.to_owned()).or_insert(h);
                }
                None => c.skipped.push(format!("line {}", i + 1)),
            },
            _ => c.skipped.push(format!("line {}", i + 1)),
        }
    }
    c
}

/// An `auth-map` Secret: each key a user, each value a hash.
pub fn parse_map<'a>(entries: impl Iterator<Item = (&'a str, &'a [u8])>) -> Credentials {
    let mut c = Credentials::default();
    for (user, value) in entries {
        let hash = std::str::from_utf8(value).ok().map(str::trim).and_then(Hash::parse);
        match hash {
            Some(h) if valid_user(user) => {
                c.users.insert(user.to_owned(), h);
            }
            _ => c.skipped.push(format!("user {user:?}")),
        }
    }
    c
}

fn valid_user(user: &str) -> bool {
    !user.is_empty() && !user.bytes().any(|b| b.is_ascii_control() || b == b':')
}

/// Apache's MD5 crypt (`$apr1$`): md5-crypt with the `$apr1$` magic; returns the 22-character
/// encoded digest.
fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut digest = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(digest);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(digest);
        } else {
            c.update(password);
        }
        digest = c.finalize();
    }
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(22);
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    let d = |i: usize| u32::from(digest[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((d(a) << 16) | (d(b) << 8) | d(c), 4);
    }
    put(d(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by `htpasswd -nb{B,m,s,d} user secret` (Apache 2.4) and `openssl passwd`.
    const BCRYPT: &str = "$2y$05$y52gy6dujZU4Zqd./8HifugvERN/hFB4tqTgiDjvXyvaTC9bmkPyq";
    const APR1: &str = "$apr1$nh9mjJuM$N.RGhfAUgZyLaoiRbcbXW0";
    const DES: &str = "el.Y9MjL6AAN.";
    const SHA: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

    #[test]
    fn formats_htpasswd_writes_verify() {
        let apr1 = Hash::parse(APR1).unwrap();
        assert!(apr1.verify(b"secret"), "apr1");
        assert!(!apr1.verify(b"Secret"));
        let sha = Hash::parse(SHA).unwrap();
        assert!(sha.verify(b"secret"));
        assert!(!sha.verify(b"secret "));
        let des = Hash::parse(DES).unwrap();
        assert!(des.verify(b"secret") && !des.verify(b"secreT"));
        let openssl = Hash::parse("$apr1$r31.....$G/cElGhD0cboYkZN5h5Ne/").unwrap();
        assert!(openssl.verify(b"secret"), "openssl passwd -apr1");
        let plain = Hash::parse("{PLAIN}secret").unwrap();
        assert!(plain.verify(b"secret") && !plain.verify(b"secre"));
        // Hashes made here with the same routines htpasswd and crypt(3) use.
        for made in [
            pwhash::bcrypt::hash_with(
                pwhash::bcrypt::BcryptSetup {
                    cost: Some(4),
                    variant: Some(pwhash::bcrypt::BcryptVariant::V2y),
                    ..Default::default()
                },
                "secret",
            )
            .unwrap(),
            "$1$abc$iCQ2D3nhptRYi27fDYv2s1".to_owned(), // openssl passwd -1
            pwhash::sha512_crypt::hash("secret").unwrap(),
        ] {
            let h = Hash::parse(&made).unwrap_or_else(|| panic!("{made}"));
            assert!(h.verify(b"secret"), "{made}");
            assert!(!h.verify(b"wrong"), "{made}");
        }
    }

    #[test]
    fn bcrypt_from_htpasswd() {
        let h = Hash::parse(BCRYPT).unwrap();
        assert!(h.is_slow());
        assert!(h.verify(b"secret"));
        assert!(!h.verify(b"secret2"));
    }

    #[test]
    fn malformed_hashes_table() {
        for bad in [
            "",
            "secret",
            "{SHA}",
            "{SHA}notbase64!!",
            "{SHA}YWJj",
            "$apr1$",
            "$apr1$salt",
            "$apr1$toolongsalt$HqJZimcKQFAMYayBlzkrA/",
            "$apr1$r31.....$short",
            "$apr1$r31.....$HqJZimcKQFAMYayBlzkr!/",
            "$2y$",
            "$2y$99$LVc2Ha3bxWvkQ6bElhbN4uzWu8ws8xP1fhVKb.4Tbp8ITZhrhPjHW",
            "$2y$05$short",
            "$2x$05$LVc2Ha3bxWvkQ6bElhbN4uzWu8ws8xP1fhVKb.4Tbp8ITZhrhPjHW",
            "$3$abc",
            "abcdefghijkl",
            "abcdefghijk!m",
            "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/ trailing",
            "$1$a\nb",
        ] {
            assert!(Hash::parse(bad).is_none(), "{bad:?}");
        }
        // A malformed crypt that parses still never verifies.
        let h = Hash::parse("$1$").unwrap();
        assert!(!h.verify(b""));
    }

    #[test]
    fn files_and_maps() {
        let text = format!(
            "# comment\n\nalice:{APR1}\r\nbob:{SHA}\nbroken line\n:{SHA}\ncarol:nothash\nalice:{{PLAIN}}other\n\ndave:{BCRYPT}"
        );
        let c = parse_file(&text);
        let mut users: Vec<&str> = c.users.keys().map(String::as_str).collect();
        users.sort_unstable();
        assert_eq!(users, ["alice", "bob", "dave"]);
        assert_eq!(c.skipped, ["line 5", "line 6", "line 7"]);
        assert!(c.users["alice"].verify(b"secret"), "the first line of a user wins");
        assert!(parse_file("").users.is_empty());

        let map = parse_map(
            [
                ("alice", SHA.as_bytes()),
                ("bob", b"garbage".as_slice()),
                ("eve", b"\xff\xfe".as_slice()),
                ("a:b", SHA.as_bytes()),
            ]
            .into_iter(),
        );
        assert_eq!(map.users.len(), 1);
        assert_eq!(map.skipped.len(), 3);
    }

    #[test]
    fn hashes_are_never_printed() {
        assert_eq!(format!("{:?}", Hash::parse(SHA).unwrap()), "Sha1");
    }
}
