//! Screening raw messages before anything answers them: the rules UDP and TCP both apply and
//! hickory's parser does not. hickory echoes the question's bytes verbatim (a compression
//! pointer there would point into our own header), reads past an EDNS option that overruns
//! its OPT record and answers NOERROR, and answers FORMERR to responses it cannot parse.

pub const HEADER_LEN: usize = 12;
pub const TYPE_OPT: u16 = 41;
/// The DO bit in the OPT record's TTL (RFC 3225), as the high bit of its third byte.
const DO_BIT: u8 = 0x80;

/// What to do with an incoming packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// Answer it; `dnssec_ok`: its OPT record had DO set, so the response's must too.
    Pass { dnssec_ok: bool },
    /// Answer a header-only FORMERR (what NSD sends): nothing after the header can be trusted.
    FormErr,
    /// Say nothing: shorter than a header, or a response (answering responses invites loops
    /// and reflection), whatever the transport.
    Drop,
}

pub fn screen(query: &[u8]) -> Screen {
    if query.len() < HEADER_LEN || query[2] & 0x80 != 0 {
        return Screen::Drop;
    }
    match layout(query, false) {
        Some(opt) => Screen::Pass {
            dnssec_ok: opt.is_some_and(|ttl| query[ttl + 2] & DO_BIT != 0),
        },
        None => Screen::FormErr,
    }
}

/// Sets DO in `response`'s OPT record, if it has one (hickory, built without DNSSEC, does not
/// copy it).
pub fn set_dnssec_ok(response: &mut [u8]) {
    if let Some(Some(ttl)) = layout(response, true) {
        response[ttl + 2] |= DO_BIT;
    }
}

/// Walks every section; returns the offset of the OPT record's TTL, if any, or `None` for a
/// malformed message: a name that runs off the end, is longer than 255 bytes, uses extended
/// labels or (when `question_pointers` is false) compresses the question; a record that
/// overruns the message; OPT outside the additional section, twice, with an owner other than
/// the root, or with an option that overruns it. Bytes after the last record are ignored, as
/// NSD does.
fn layout(p: &[u8], question_pointers: bool) -> Option<Option<usize>> {
    let count = |i: usize| usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
    let mut pos = HEADER_LEN;
    for _ in 0..count(4) {
        pos = skip_name(p, pos, question_pointers)? + 4;
    }
    if pos > p.len() {
        return None;
    }
    let mut opt = None;
    for i in 0..count(6) + count(8) + count(10) {
        let owner = pos;
        pos = skip_name(p, pos, true)?;
        let fixed = p.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata = p.get(pos + 10..pos + 10 + rdlen)?;
        if rtype == TYPE_OPT {
            let additional = i >= count(6) + count(8);
            if !additional || opt.is_some() || p[owner] != 0 || !options_fit(rdata) {
                return None;
            }
            opt = Some(pos + 4);
        }
        pos += 10 + rdlen;
    }
    Some(opt)
}

/// Returns the position after the name starting at `pos`. Pointers are not followed: a bad
/// target is the full parser's to find.
fn skip_name(p: &[u8], mut pos: usize, pointers: bool) -> Option<usize> {
    let mut len = 0;
    loop {
        let label = *p.get(pos)?;
        match label & 0xC0 {
            0x00 if label == 0 => return Some(pos + 1),
            0x00 => {
                len += 1 + usize::from(label);
                if len + 1 > 255 {
                    return None;
                }
                pos += 1 + usize::from(label);
            }
            0xC0 if pointers => return p.get(pos + 1).map(|_| pos + 2),
            _ => return None,
        }
    }
}

/// Whether OPT record data is a whole number of options (code, length, data).
pub fn options_fit(mut rdata: &[u8]) -> bool {
    while !rdata.is_empty() {
        let Some(header) = rdata.get(..4) else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let Some(rest) = rdata.get(4 + len..) else {
            return false;
        };
        rdata = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a.test. A` with RD, id 0x1234, then `extra` appended and ARCOUNT set to `additional`.
    fn packet(question: &[u8], additional: u16, extra: &[u8]) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&additional.to_be_bytes());
        p.extend_from_slice(question);
        p.extend_from_slice(extra);
        p
    }

    const QUESTION: &[u8] = b"\x01a\x04test\x00\x00\x01\x00\x01";

    /// OPT with payload 1232, flags as given, and `rdata`.
    fn opt(flags: u8, rdata: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x04, 0xD0, 0, 0, flags, 0];
        o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        o.extend_from_slice(rdata);
        o
    }

    #[test]
    fn hostile_packets_get_the_exact_verdict() {
        let ok = Screen::Pass { dnssec_ok: false };
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let two_opts = [opt(0, &[]), opt(0, &[])].concat();
        let response = {
            let mut p = packet(QUESTION, 0, &[]);
            p[2] |= 0x80;
            p
        };
        let rows: Vec<(&str, Vec<u8>, Screen)> = vec![
            ("plain query", packet(QUESTION, 0, &[]), ok),
            ("trailing bytes ignored", packet(QUESTION, 0, b"junk"), ok),
            ("OPT without options", packet(QUESTION, 1, &opt(0, &[])), ok),
            ("OPT with a cookie", packet(QUESTION, 1, &opt(0, &cookie)), ok),
            (
                "DO copied",
                packet(QUESTION, 1, &opt(0x80, &[])),
                Screen::Pass { dnssec_ok: true },
            ),
            ("empty", vec![], Screen::Drop),
            ("11 bytes", packet(QUESTION, 0, &[])[..11].to_vec(), Screen::Drop),
            ("a response", response, Screen::Drop),
            (
                "option length overruns OPT",
                packet(QUESTION, 1, &opt(0, &[0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8])),
                Screen::FormErr,
            ),
            (
                "option header cut short",
                packet(QUESTION, 1, &opt(0, &[0, 10, 0])),
                Screen::FormErr,
            ),
            (
                "option overruns OPT into a following record",
                packet(
                    QUESTION,
                    2,
                    &[opt(0, &[0, 10, 0, 20]), opt(0, &[])[..].to_vec()].concat(),
                ),
                Screen::FormErr,
            ),
            (
                "OPT rdlength past the end",
                {
                    let mut o = opt(0, &cookie);
                    o[10] += 1;
                    packet(QUESTION, 1, &o)
                },
                Screen::FormErr,
            ),
            ("two OPT records", packet(QUESTION, 2, &two_opts), Screen::FormErr),
            (
                "OPT with a non-root owner",
                packet(QUESTION, 1, &[&b"\x01x"[..], &opt(0, &[])].concat()),
                Screen::FormErr,
            ),
            (
                "OPT in the answer section",
                {
                    let mut p = packet(QUESTION, 0, &opt(0, &[]));
                    p[7] = 1;
                    p
                },
                Screen::FormErr,
            ),
            (
                "question name is a pointer",
                packet(b"\xC0\x0C\x00\x01\x00\x01", 0, &[]),
                Screen::FormErr,
            ),
            (
                "question name ends in a pointer",
                packet(b"\x01a\xC0\x0C\x00\x01\x00\x01", 0, &[]),
                Screen::FormErr,
            ),
            (
                "extended label type",
                packet(b"\x41a\x00\x00\x01\x00\x01", 0, &[]),
                Screen::FormErr,
            ),
            ("name runs off the end", packet(b"\x05ab", 0, &[]), Screen::FormErr),
            (
                "question without type and class",
                packet(b"\x01a\x00\x00", 0, &[]),
                Screen::FormErr,
            ),
            (
                "name longer than 255 bytes",
                packet(
                    &[
                        &b"\x3f"[..],
                        &[b'a'; 63],
                        b"\x3f",
                        &[b'a'; 63],
                        b"\x3f",
                        &[b'a'; 63],
                        b"\x3f",
                        &[b'a'; 63],
                        b"\x00\x00\x01\x00\x01",
                    ]
                    .concat(),
                    0,
                    &[],
                ),
                Screen::FormErr,
            ),
            (
                "more records announced than sent",
                packet(QUESTION, 3, &opt(0, &[])),
                Screen::FormErr,
            ),
            (
                "compressed owner outside the question is fine",
                packet(QUESTION, 1, &[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4]),
                ok,
            ),
        ];
        for (what, p, want) in rows {
            assert_eq!(screen(&p), want, "{what}");
        }
    }

    #[test]
    fn dnssec_ok_is_set_in_a_responses_opt_only() {
        let mut with_opt = packet(QUESTION, 1, &opt(0, &[]));
        with_opt[2] |= 0x80;
        set_dnssec_ok(&mut with_opt);
        assert_eq!(with_opt[with_opt.len() - 4], 0x80);
        let without = packet(QUESTION, 0, &[]);
        let mut copy = without.clone();
        set_dnssec_ok(&mut copy);
        assert_eq!(copy, without);
    }
}
