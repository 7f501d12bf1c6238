//! The streaming secret scanner.
//!
//! Text arrives in chunks. The scanner keeps a buffer of bytes it has not
//! yet released, finds prefix matches with one aho-corasick automaton, and
//! decides each candidate from the bytes after it. The automaton runs only
//! where a pattern can start ([`Catalogue::find`]): bit tables of the
//! patterns' leading byte pairs, sampled at every other position, and of
//! their first three bytes pick the positions, and an anchored search there
//! gives the leftmost-longest match an unanchored search would (clean JSON
//! scans about 3× faster than with the automaton alone). A candidate that runs to
//! the end of the buffer is held until it is decided. Otherwise only a
//! suffix that is the start of some prefix (at most [`MAX_PREFIX`] − 1
//! bytes, or a literal's length − 1) is held, plus a trailing run of digits
//! (the Telegram rule looks back at them). Text that cannot start a secret
//! is released at once, so SSE events and small replies flow immediately.
//! Decisions depend only on the text, never on where chunks split, so the
//! output is byte-identical for any split.
//!
//! The largest hold-back is [`MAX_HOLD`] bytes: the longest candidate the
//! catalogue can still be reading (a JWT) plus its prefix.

use super::catalogue::{Charset, Check, Format, Rule};
use aho_corasick::{AhoCorasick, Anchored, Input, Match, StartKind};

/// The longest catalogue prefix.
pub const MAX_PREFIX: usize = 40;
/// The longest JWT the scanner follows before giving up on it.
pub const MAX_JWT: usize = 8192;
/// The most bytes ever held for catalogue formats: a JWT being read. (A
/// vault literal longer than this is held up to its own length.)
pub const MAX_HOLD: usize = MAX_JWT;
/// How far a PEM BEGIN line may run before it is not one.
const PEM_LABEL_MAX: usize = 64;

/// The compiled automaton and formats (shared, immutable).
pub struct Catalogue {
    pub formats: Vec<Format>,
    pub literals: Vec<Vec<u8>>,
    /// Anchored searches only: [`Catalogue::find`] starts it at candidates.
    automaton: AhoCorasick,
    /// Bit `(a << 8) | b` is set when some pattern starts with the bytes `a b`.
    bigrams: Box<[u64; 1024]>,
    /// Bit `(a << 8) | b` is set when `a b` are some pattern's first two
    /// bytes or its second and third (or its second and any byte, for a
    /// two-byte pattern): sampled at even positions only, it still sees
    /// every pattern start.
    pairs: Box<[u64; 1024]>,
    /// Bit [`trigram_bit`]`(a, b, c)` is set when some pattern starts with
    /// `a b c`, and for every `c` when a pattern is just `a b`.
    trigrams: Box<[u64; 1024]>,
    /// Pattern index → (format index, or literal index + formats.len()).
    owner: Vec<usize>,
    patterns: Vec<Vec<u8>>,
    max_pattern: usize,
    /// Bytes that start some pattern.
    first_bytes: [bool; 256],
}

impl Catalogue {
    pub fn new(formats: Vec<Format>, literals: Vec<Vec<u8>>) -> Result<Self, String> {
        let mut patterns: Vec<&[u8]> = Vec::new();
        let mut owner = Vec::new();
        for (i, fmt) in formats.iter().enumerate() {
            for p in fmt.prefixes {
                if p.len() > MAX_PREFIX {
                    return Err(format!("a prefix of {} is longer than {MAX_PREFIX} bytes", fmt.id));
                }
                patterns.push(p.as_bytes());
                owner.push(i);
            }
        }
        for (j, lit) in literals.iter().enumerate() {
            patterns.push(lit);
            owner.push(formats.len() + j);
        }
        if patterns.iter().any(|p| p.len() < 2) {
            return Err("prefixes and literals must be at least 2 bytes long".into());
        }
        let automaton = AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .start_kind(StartKind::Anchored)
            .build(&patterns)
            .map_err(|e| e.to_string())?;
        // Anchored searches are what it was built for; check once, so that
        // `find` can never meet an error at run time.
        automaton.try_find(Input::new("").anchored(Anchored::Yes)).map_err(|e| e.to_string())?;
        let (mut bigrams, mut pairs, mut trigrams) = (Box::new([0u64; 1024]), Box::new([0u64; 1024]), Box::new([0u64; 1024]));
        let set = |t: &mut [u64; 1024], k: usize| t[k >> 6] |= 1 << (k & 63);
        let pair = |a: u8, b: u8| usize::from(a) << 8 | usize::from(b);
        for p in &patterns {
            set(&mut bigrams, pair(p[0], p[1]));
            set(&mut pairs, pair(p[0], p[1]));
            match p.get(2) {
                Some(&c) => {
                    set(&mut trigrams, trigram_bit(p[0], p[1], c));
                    set(&mut pairs, pair(p[1], c));
                }
                None => (0..=255).for_each(|c| {
                    set(&mut trigrams, trigram_bit(p[0], p[1], c));
                    set(&mut pairs, pair(p[1], c));
                }),
            }
        }
        let max_pattern = patterns.iter().map(|p| p.len()).max().unwrap_or(1);
        let mut first_bytes = [false; 256];
        for p in &patterns {
            if let Some(b) = p.first() {
                first_bytes[*b as usize] = true;
            }
        }
        let patterns = patterns.into_iter().map(<[u8]>::to_vec).collect();
        Ok(Catalogue { formats, literals, automaton, bigrams, pairs, trigrams, owner, patterns, max_pattern, first_bytes })
    }

    /// The leftmost-longest complete pattern match in `hay`, as an
    /// unanchored leftmost-longest search would find it.
    ///
    /// A pattern starting at `s` puts one of its `pairs` at the even
    /// position `s` or `s + 1`, so only even positions are sampled; a hit
    /// at `j` makes `j - 1` and `j` candidates (in order, so the first match
    /// is the leftmost). A candidate must start with a pattern's two bytes
    /// and can start with its three (the filters only rule positions out);
    /// the anchored search there gives the longest match.
    pub(crate) fn find(&self, hay: &[u8]) -> Option<Match> {
        let mut base = 0;
        while let Some(k) = hay.get(base..).unwrap_or_default().chunks_exact(2).position(|w| has(&self.pairs, w[0], w[1])) {
            let j = base + 2 * k;
            if j > 0 {
                if let Some(m) = self.find_at(hay, j - 1) {
                    return Some(m);
                }
            }
            if let Some(m) = self.find_at(hay, j) {
                return Some(m);
            }
            base = j + 2;
        }
        // With an odd length the pair at `len - 2` was never sampled.
        match hay.len() {
            n if n % 2 == 1 && n >= 3 => self.find_at(hay, n - 2),
            _ => None,
        }
    }

    /// The longest pattern match starting at `s`.
    #[inline]
    fn find_at(&self, hay: &[u8], s: usize) -> Option<Match> {
        let (&a, &b) = (hay.get(s)?, hay.get(s + 1)?);
        if !has(&self.bigrams, a, b) {
            return None;
        }
        if let Some(&c) = hay.get(s + 2) {
            if !bit(&self.trigrams, trigram_bit(a, b, c)) {
                return None;
            }
        }
        // Infallible: the anchored mode was checked in `new`.
        self.automaton.try_find(Input::new(hay).range(s..).anchored(Anchored::Yes)).ok().flatten()
    }

    /// True when `rest` (a match of length `matched` at its start) is a
    /// proper prefix of a longer pattern that could still match.
    fn longer_pattern_pending(&self, rest: &[u8], matched: usize) -> bool {
        self.patterns.iter().any(|p| p.len() > matched && p.len() > rest.len() && p.starts_with(rest))
    }

    /// Where the held suffix of `buf[from..]` starts: the earliest position
    /// from which the rest of the buffer is a proper prefix of some pattern,
    /// extended back over a trailing `digits[:[A]]` run (Telegram look-back).
    fn hold_from(&self, buf: &[u8], from: usize) -> usize {
        let len = buf.len();
        let mut hold = len;
        let lo = len.saturating_sub(self.max_pattern - 1).max(from);
        for i in lo..len {
            if !self.first_bytes[buf[i] as usize] {
                continue;
            }
            let rest = &buf[i..];
            if self.patterns.iter().any(|p| p.len() > rest.len() && p.starts_with(rest)) {
                hold = i;
                break;
            }
        }
        // digits, optionally followed by ':' or ':A'
        let mut j = len;
        let tail = &buf[from..];
        let strip = if tail.ends_with(b":A") {
            2
        } else if tail.ends_with(b":") {
            1
        } else {
            0
        };
        j -= strip;
        let mut d = 0;
        while d < 10 && j > from + d && buf[j - 1 - d].is_ascii_digit() {
            d += 1;
        }
        if d > 0 && (strip > 0 || j == len) {
            hold = hold.min(j - d);
        }
        hold
    }
}

/// Bit `k` of a 65,536-bit table.
#[inline]
fn bit(t: &[u64; 1024], k: usize) -> bool {
    t[k >> 6] & (1 << (k & 63)) != 0
}

/// Whether the pair table `t` holds the bytes `a b`.
#[inline]
fn has(t: &[u64; 1024], a: u8, b: u8) -> bool {
    bit(t, usize::from(a) << 8 | usize::from(b))
}

/// A 16-bit hash of three bytes (a position in the trigram filter).
#[inline]
fn trigram_bit(a: u8, b: u8, c: u8) -> usize {
    let x = u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16;
    (x.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

/// What happened to one candidate.
enum Verdict {
    /// Not a secret; search on from the next byte.
    No,
    /// Undecidable until more bytes arrive; hold from this buffer index.
    NeedMore(usize),
    /// Replace `start..end` (buffer indices); `verified` when a checksum held.
    Redact { start: usize, end: usize, verified: bool },
    /// A private-key block starts; replace from `start` and drop through its END line.
    PemStart { start: usize, body: usize },
}

/// Redaction counts of one stream, by catalogue index (`literal` for vault echoes).
#[derive(Debug, Default, Clone)]
pub struct SecretCounts {
    pub by_format: Vec<u64>,
    pub vault_echoes: u64,
    pub verified: u64,
}

/// Per-stream scanner state.
pub struct SecretScanner {
    buf: Vec<u8>,
    /// The input byte just before `buf[0]` (for boundary checks).
    prev_byte: u8,
    in_pem: bool,
    pub counts: SecretCounts,
}

fn is_boundary_byte(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/' | b'+' | b'.'))
}

impl SecretScanner {
    pub fn new(cat: &Catalogue) -> Self {
        SecretScanner {
            buf: Vec::new(),
            prev_byte: b'\n',
            in_pem: false,
            counts: SecretCounts { by_format: vec![0; cat.formats.len()], ..Default::default() },
        }
    }

    /// Bytes currently held.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, cat: &Catalogue, text: &[u8], out: &mut Vec<u8>) {
        if self.buf.is_empty() && !self.in_pem && cat.find(text).is_none() {
            // Fast path: no prefix anywhere in this chunk; hold only a possible partial prefix.
            let cut = cat.hold_from(text, 0);
            out.extend_from_slice(&text[..cut]);
            if cut > 0 {
                self.prev_byte = text[cut - 1];
            }
            self.buf.extend_from_slice(&text[cut..]);
            return;
        }
        self.buf.extend_from_slice(text);
        self.scan(cat, out, false);
    }

    pub fn finish(&mut self, cat: &Catalogue, out: &mut Vec<u8>) {
        self.scan(cat, out, true);
    }

    /// The last chunk and the end of the stream at once: the output of
    /// `push` then `finish`, from one scan with nothing held back (a body
    /// that arrives whole is scanned once, not once to find what to hold and
    /// again to release it).
    pub fn push_last(&mut self, cat: &Catalogue, text: &[u8], out: &mut Vec<u8>) {
        if self.buf.is_empty() && !self.in_pem && cat.find(text).is_none() {
            // No prefix anywhere, and nothing can follow: all of it goes.
            out.extend_from_slice(text);
            if let Some(&last) = text.last() {
                self.prev_byte = last;
            }
            return;
        }
        self.buf.extend_from_slice(text);
        self.scan(cat, out, true);
    }

    fn scan(&mut self, cat: &Catalogue, out: &mut Vec<u8>, fin: bool) {
        let len = self.buf.len();
        let mut pos = 0usize; // bytes before `pos` are released or dropped
        let mut from = 0usize;
        let mut hold: Option<usize> = None;
        loop {
            if self.in_pem {
                match find_pem_end(&self.buf[from..]) {
                    Some(end) => {
                        pos = from + end;
                        from = pos;
                        self.in_pem = false;
                        continue;
                    }
                    None => {
                        // Drop what cannot be part of the END marker.
                        let keep = if fin { 0 } else { 64.min(len - from) };
                        pos = len - keep;
                        if !fin {
                            hold = Some(pos);
                        }
                        break;
                    }
                }
            }
            let m = match cat.find(&self.buf[from..]) {
                Some(m) => m,
                None => break,
            };
            let (s, e) = (from + m.start(), from + m.end());
            let owner = cat.owner[m.pattern().as_usize()];
            let verdict = if !fin && cat.longer_pattern_pending(&self.buf[s..], e - s) {
                // A longer pattern may still match here once more bytes arrive.
                Verdict::NeedMore(s)
            } else if owner >= cat.formats.len() {
                Verdict::Redact { start: s, end: e, verified: false }
            } else {
                let fmt = &cat.formats[owner];
                let before = if s > 0 { self.buf[s - 1] } else { self.prev_byte };
                if fmt.boundary && !is_boundary_byte(before) && fmt.rule != Rule::TelegramBot {
                    Verdict::No
                } else {
                    decide(fmt, &self.buf, s, e, fin, self.prev_byte)
                }
            };
            match verdict {
                Verdict::No => from = s + 1,
                Verdict::NeedMore(at) => {
                    // A pattern that started before `at` may still be matching too.
                    hold = Some(at.min(cat.hold_from(&self.buf, pos)).max(pos));
                    break;
                }
                Verdict::Redact { start, end, verified } => {
                    let start = start.max(pos);
                    out.extend_from_slice(&self.buf[pos..start]);
                    let label = if owner >= cat.formats.len() {
                        self.counts.vault_echoes += 1;
                        "vault_credential"
                    } else {
                        self.counts.by_format[owner] += 1;
                        cat.formats[owner].id
                    };
                    if verified {
                        self.counts.verified += 1;
                    }
                    push_label(out, label);
                    pos = end;
                    from = end;
                }
                Verdict::PemStart { start, body } => {
                    let start = start.max(pos);
                    out.extend_from_slice(&self.buf[pos..start]);
                    self.counts.by_format[owner] += 1;
                    push_label(out, cat.formats[owner].id);
                    self.in_pem = true;
                    pos = body;
                    from = body;
                }
            }
        }
        let release_to = if fin {
            len
        } else {
            match hold {
                Some(h) => h,
                None => cat.hold_from(&self.buf, pos),
            }
        };
        if release_to > pos {
            out.extend_from_slice(&self.buf[pos..release_to]);
            pos = release_to;
        }
        if fin && self.in_pem {
            pos = len;
        }
        if pos > 0 {
            self.prev_byte = self.buf[pos - 1];
            self.buf.drain(..pos);
        }
    }
}

fn push_label(out: &mut Vec<u8>, id: &str) {
    out.extend_from_slice(b"[REDACTED:");
    out.extend_from_slice(id.as_bytes());
    out.push(b']');
}

/// Length of the run of `charset` bytes at `buf[at..]`, stopping after `cap`.
fn run(buf: &[u8], at: usize, charset: Charset, cap: usize) -> usize {
    buf[at.min(buf.len())..].iter().take(cap).take_while(|b| charset.contains(**b)).count()
}

fn decide(fmt: &Format, buf: &[u8], s: usize, e: usize, fin: bool, prev_byte: u8) -> Verdict {
    let len = buf.len();
    match fmt.rule {
        Rule::Literal => Verdict::Redact { start: s, end: e, verified: false },
        Rule::Tail { charset, min, max, check, keep_prefix } => {
            let n = run(buf, e, charset, max + 1);
            if e + n == len && !fin && n <= max {
                return Verdict::NeedMore(s);
            }
            if n < min || n > max {
                return Verdict::No;
            }
            let tail = &buf[e..e + n];
            let verified = match check {
                Check::None => false,
                Check::Crc32Base62 => crc32_base62_ok(tail),
                Check::BasicAuth => {
                    if !basic_auth_ok(tail) {
                        return Verdict::No;
                    }
                    false
                }
            };
            Verdict::Redact { start: if keep_prefix { e } else { s }, end: e + n, verified }
        }
        Rule::Keyword { charset, min, max } => {
            let mut i = e;
            while i < len && i - e < 6 && matches!(buf[i], b'"' | b'\'' | b' ' | b':' | b'=' | b'\t') {
                i += 1;
            }
            if i == len && !fin {
                return Verdict::NeedMore(s);
            }
            let n = run(buf, i, charset, max + 1);
            if i + n == len && !fin && n <= max {
                return Verdict::NeedMore(s);
            }
            if n < min || n > max {
                return Verdict::No;
            }
            Verdict::Redact { start: i, end: i + n, verified: false }
        }
        Rule::Jwt => decide_jwt(buf, s, fin),
        Rule::UrlUserinfo => {
            // userinfo = 1*( unreserved / pct-encoded / sub-delims / ":" ), then "@".
            let mut i = e;
            let mut colon = false;
            while i < len && i - e <= 256 {
                let b = buf[i];
                if b == b'@' {
                    break;
                }
                if b == b':' {
                    colon = true;
                } else if !(b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)) {
                    return Verdict::No;
                }
                i += 1;
            }
            if i == len {
                return if fin { Verdict::No } else { Verdict::NeedMore(s) };
            }
            if buf[i] != b'@' || !colon || i == e || buf[i - 1] == b':' || buf[e] == b':' {
                return Verdict::No;
            }
            Verdict::Redact { start: e, end: i, verified: false }
        }
        Rule::TelegramBot => {
            // digits before ":" (s points at ':'), 8-10 of them, not preceded by a word byte.
            let mut d = 0;
            while d < 11 && s > d && buf[s - 1 - d].is_ascii_digit() {
                d += 1;
            }
            if !(8..=10).contains(&d) {
                return Verdict::No;
            }
            let before = if s > d { buf[s - 1 - d] } else { prev_byte };
            if !is_boundary_byte(before) {
                return Verdict::No;
            }
            let n = run(buf, e, Charset::Base64Url, 34);
            if e + n == len && !fin && n < 34 {
                return Verdict::NeedMore(s - d);
            }
            if n != 33 {
                return Verdict::No;
            }
            Verdict::Redact { start: s - d, end: e + n, verified: false }
        }
        Rule::PemPrivateKey => {
            // "-----BEGIN " LABEL "-----", LABEL ending in "PRIVATE KEY".
            let window = &buf[e..len.min(e + PEM_LABEL_MAX)];
            match memchr::memmem::find(window, b"-----") {
                Some(k) => {
                    let label = &window[..k];
                    if label.ends_with(b"PRIVATE KEY") && label.iter().all(|b| b.is_ascii_uppercase() || *b == b' ' || b.is_ascii_digit()) {
                        Verdict::PemStart { start: s, body: e + k + 5 }
                    } else {
                        Verdict::No
                    }
                }
                None if window.len() < PEM_LABEL_MAX && !fin => Verdict::NeedMore(s),
                None => Verdict::No,
            }
        }
    }
}

/// A JWT: three base64url segments, the first two at least 10 bytes
/// (header and payload are JSON objects, so both start `eyJ`).
fn decide_jwt(buf: &[u8], s: usize, fin: bool) -> Verdict {
    let len = buf.len();
    let mut i = s;
    let mut parts = [0usize; 3];
    let mut p = 0;
    while i < len && i - s < MAX_JWT {
        let b = buf[i];
        if b == b'.' {
            if p == 2 {
                break;
            }
            p += 1;
        } else if Charset::Base64Url.contains(b) {
            parts[p] += 1;
        } else {
            break;
        }
        i += 1;
    }
    if i == len && !fin && i - s < MAX_JWT {
        return Verdict::NeedMore(s);
    }
    if p < 2 || parts[0] < 10 || parts[1] < 10 || !buf[s..].starts_with(b"eyJ") {
        return Verdict::No;
    }
    let payload_start = s + parts[0] + 1;
    if !buf[payload_start..].starts_with(b"eyJ") && !buf[payload_start..].starts_with(b"ey") {
        return Verdict::No;
    }
    Verdict::Redact { start: s, end: i, verified: false }
}

fn find_pem_end(buf: &[u8]) -> Option<usize> {
    let at = memchr::memmem::find(buf, b"-----END ")?;
    let rest = &buf[at + 9..];
    let close = memchr::memmem::find(&rest[..rest.len().min(PEM_LABEL_MAX)], b"-----")?;
    Some(at + 9 + close + 5)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 of a CRC32, left-padded to 6 characters (GitHub and npm tokens).
pub fn crc32_base62(data: &[u8]) -> [u8; 6] {
    let mut v = crc32fast::hash(data);
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    out
}

fn crc32_base62_ok(tail: &[u8]) -> bool {
    tail.len() == 36 && crc32_base62(&tail[..30]) == tail[30..]
}

fn basic_auth_ok(tail: &[u8]) -> bool {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(tail) {
        Ok(d) => d.contains(&b':') && d.len() >= 3 && d.iter().all(|b| (0x20..0x7f).contains(b)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanitize::catalogue::builtin;
    use aho_corasick::MatchKind;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// `Catalogue::find` (filters, even-position sampling, anchored searches)
    /// must report exactly what one unanchored leftmost-longest search over
    /// the same patterns reports, wherever patterns sit: at odd and even
    /// offsets, at the very end, overlapping, cut short, or mimicked by
    /// bytes that pass the filters.
    #[test]
    fn find_is_an_unanchored_leftmost_longest_search() {
        let cat = Catalogue::new(builtin(), vec![b"vault-credential-0123".to_vec(), b"dmF1bHQtY3JlZGVudGlhbC0wMTIz".to_vec()])
            .expect("catalogue");
        let reference = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&cat.patterns).expect("reference");
        let mut rng = StdRng::seed_from_u64(0xf11e);
        let filler: &[u8] = b"aAkKsSeEyY_-.:/ \"{}019\xc3\xa9";
        let (mut matched, mut empty) = (0, 0);
        for _ in 0..200_000 {
            let mut hay = Vec::new();
            for _ in 0..rng.gen_range(0..6) {
                if rng.gen_bool(0.5) {
                    let p = &cat.patterns[rng.gen_range(0..cat.patterns.len())];
                    // The whole pattern, or a piece of it (its start, its end).
                    let (a, b) = match rng.gen_range(0..3) {
                        0 => (0, p.len()),
                        1 => (0, rng.gen_range(1..=p.len())),
                        _ => (rng.gen_range(0..p.len()), p.len()),
                    };
                    hay.extend_from_slice(&p[a..b]);
                } else {
                    for _ in 0..rng.gen_range(0..4) {
                        hay.push(filler[rng.gen_range(0..filler.len())]);
                    }
                }
            }
            let got = cat.find(&hay).map(|m| (m.start(), m.end(), m.pattern()));
            let want = reference.find(&hay[..]).map(|m| (m.start(), m.end(), m.pattern()));
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&hay));
            matched += usize::from(want.is_some());
            empty += usize::from(hay.is_empty());
        }
        assert!(matched > 50_000 && empty > 1_000, "coverage: {matched} matched, {empty} empty");
    }

    #[test]
    fn one_byte_patterns_are_refused() {
        assert!(Catalogue::new(builtin(), vec![b"x".to_vec()]).is_err());
    }
}
