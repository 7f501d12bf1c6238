//! The response sanitizer: removes leaked secrets and invisible Unicode from
//! response bodies as they stream, and from header values.
//!
//! - [`catalogue`]: the secret formats;
//! - [`secrets`]: the streaming scanner over one aho-corasick automaton;
//! - [`unicode`]: invisible-Unicode removal and UTF-8 repair;
//! - [`content_type`]: which bodies are text.
//!
//! A [`Sanitizer`] is built once (catalogue plus extra literals such as the
//! vault's credentials and their encodings). Each response gets a cheap
//! [`SanitizeStream`]: push bytes in, take bytes out, finish. The output is
//! byte-identical however the body is split into chunks; at most
//! [`secrets::MAX_HOLD`] bytes are ever held back, and a chunk is held only
//! while its end may still be part of a secret.

pub mod catalogue;
pub mod content_type;
pub mod decode;
pub mod secrets;
pub mod unicode;

use base64::Engine as _;
use secrets::{Catalogue, SecretScanner};
use unicode::UnicodeFilter;

/// Literals shorter than this are not redacted as vault echoes (too many
/// false positives, and no real credential is this short).
pub const MIN_LITERAL_LEN: usize = 8;

/// A compiled sanitizer, shared by every response it applies to.
pub struct Sanitizer {
    catalogue: Catalogue,
}

/// Counts for one response.
#[derive(Debug, Default, Clone)]
pub struct SanitizeCounts {
    /// `(format id, count)` for each format that matched.
    pub by_kind: Vec<(&'static str, u64)>,
    pub vault_echoes: u64,
    /// Matches whose checksum verified.
    pub verified: u64,
    pub invisible_removed: u64,
    pub invalid_utf8_replaced: u64,
}

impl SanitizeCounts {
    pub fn total_redactions(&self) -> u64 {
        self.by_kind.iter().map(|(_, n)| n).sum::<u64>() + self.vault_echoes
    }
}

/// The encodings of a credential that are redacted along with it.
pub fn literal_variants(secret: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![secret.as_bytes().to_vec()];
    let e = base64::engine::general_purpose::STANDARD.encode(secret);
    v.push(e.trim_end_matches('=').as_bytes().to_vec());
    v.push(e.into_bytes());
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    v.push(u.into_bytes());
    let mut pct = String::with_capacity(secret.len() * 3);
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            pct.push(b as char);
        } else {
            pct.push_str(&format!("%{b:02X}"));
        }
    }
    v.push(pct.clone().into_bytes());
    v.push(pct.to_ascii_lowercase().into_bytes());
    v.retain(|l| l.len() >= MIN_LITERAL_LEN);
    v.sort();
    v.dedup();
    v
}

impl Sanitizer {
    /// The built-in catalogue plus `literals` (exact strings to redact;
    /// each is expanded with [`literal_variants`]).
    pub fn new<'a>(literals: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut lits: Vec<Vec<u8>> = literals.into_iter().flat_map(literal_variants).collect();
        lits.sort();
        lits.dedup();
        Ok(Sanitizer { catalogue: Catalogue::new(catalogue::builtin(), lits)? })
    }

    /// Number of secret formats.
    pub fn format_count(&self) -> usize {
        self.catalogue.formats.len()
    }

    pub fn format_ids(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.catalogue.formats.iter().map(|f| f.id)
    }

    /// A fresh per-response stream borrowing this sanitizer.
    pub fn stream(&self) -> SanitizeStream<&Sanitizer> {
        SanitizeStream::new(self)
    }

    /// True when sanitizing `input` certainly leaves it as it is, with no
    /// counts: it is ASCII (every character the Unicode filter removes is
    /// above U+180E, and ASCII is valid UTF-8), and no secret format or
    /// literal starts anywhere in it. Allocates nothing, so header values can
    /// be checked before [`Sanitizer::sanitize_all`] builds a stream.
    pub fn leaves_unchanged(&self, input: &[u8]) -> bool {
        input.is_ascii() && self.catalogue.find(input).is_none()
    }

    /// Sanitize a whole value (header values, tests).
    pub fn sanitize_all(&self, input: &[u8]) -> (Vec<u8>, SanitizeCounts) {
        let mut st = self.stream();
        let mut out = Vec::with_capacity(input.len());
        st.push(input, &mut out);
        st.finish(&mut out);
        let counts = st.counts();
        (out, counts)
    }
}

/// One response's sanitizer state. `S` is how it holds the sanitizer: a
/// reference, or an `Arc` when the stream must be `'static` (a proxy's
/// per-request context).
pub struct SanitizeStream<S: std::ops::Deref<Target = Sanitizer>> {
    s: S,
    unicode: UnicodeFilter,
    secrets: SecretScanner,
    scratch: Vec<u8>,
}

impl<S: std::ops::Deref<Target = Sanitizer>> SanitizeStream<S> {
    pub fn new(s: S) -> Self {
        let secrets = SecretScanner::new(&s.catalogue);
        SanitizeStream { s, unicode: UnicodeFilter::new(), secrets, scratch: Vec::new() }
    }

    /// Feed a chunk; sanitized bytes that are safe to release go to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.scratch.clear();
        self.unicode.push(input, &mut self.scratch);
        self.secrets.push(&self.s.catalogue, &self.scratch, out);
    }

    /// End of body: release everything still held.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.scratch.clear();
        self.unicode.finish(&mut self.scratch);
        self.secrets.push(&self.s.catalogue, &self.scratch, out);
        self.secrets.finish(&self.s.catalogue, out);
    }

    /// Feed the last chunk and end the body: the same output and counts as
    /// [`Self::push`] then [`Self::finish`], with one scan of the secrets
    /// instead of three (most replies arrive in one chunk).
    pub fn push_last(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.scratch.clear();
        self.unicode.push(input, &mut self.scratch);
        self.unicode.finish(&mut self.scratch);
        self.secrets.push_last(&self.s.catalogue, &self.scratch, out);
    }

    /// Bytes held back right now.
    pub fn held(&self) -> usize {
        self.secrets.held()
    }

    pub fn counts(&self) -> SanitizeCounts {
        let c = &self.secrets.counts;
        SanitizeCounts {
            by_kind: self.s.catalogue.formats.iter().zip(&c.by_format).filter(|(_, n)| **n > 0).map(|(f, n)| (f.id, *n)).collect(),
            vault_echoes: c.vault_echoes,
            verified: c.verified,
            invisible_removed: self.unicode.counts.removed,
            invalid_utf8_replaced: self.unicode.counts.replaced_invalid,
        }
    }
}

#[cfg(test)]
mod tests;
