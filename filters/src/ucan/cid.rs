//! Content identifiers of tokens: CIDv1, raw codec (`0x55`), sha2-256,
//! rendered as base32-lower multibase (`b…`), as the UCAN specs use for proofs.
//!
//! Parsing accepts any CIDv1 whose multihash is sha2-256, in base32 (`b`) or
//! base58btc (`z`), because the codec does not change which bytes were hashed
//! for the JWT encodings we accept; equality is on the digest.

use sha2::{Digest, Sha256};
use std::fmt;

const CID_V1: u8 = 0x01;
const RAW_CODEC: u8 = 0x55;
const SHA2_256: u8 = 0x12;
const DIGEST_LEN: u8 = 0x20;
/// A rendered CID: `b` and the base32 of 36 bytes (58 characters).
const TEXT_LEN: usize = 59;

/// The sha2-256 digest that identifies a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid([u8; 32]);

impl Cid {
    /// The CID of the exact token bytes.
    pub fn of(token: &[u8]) -> Self {
        Cid(Sha256::digest(token).into())
    }

    /// The raw sha2-256 digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }

    /// The CID as text (`b…`), rendered on the stack.
    pub fn text(&self) -> CidText {
        let mut bytes = [0u8; 36];
        bytes[..4].copy_from_slice(&[CID_V1, RAW_CODEC, SHA2_256, DIGEST_LEN]);
        bytes[4..].copy_from_slice(&self.0);
        let mut out = [b'b'; TEXT_LEN];
        data_encoding::BASE32_NOPAD.encode_mut(&bytes, &mut out[1..]);
        out[1..].make_ascii_lowercase();
        CidText(out)
    }

    /// Parse a CID string. `None` if it is not a CIDv1 with a sha2-256 multihash.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes = match s.as_bytes().first()? {
            b'b' => data_encoding::BASE32_NOPAD.decode(s[1..].to_ascii_uppercase().as_bytes()).ok()?,
            b'z' => bs58::decode(&s[1..]).into_vec().ok()?,
            _ => return None,
        };
        // version, codec (single-byte varints for the codecs we accept), multihash.
        match bytes.as_slice() {
            [CID_V1, codec, SHA2_256, DIGEST_LEN, digest @ ..] if *codec < 0x80 && digest.len() == 32 => {
                let mut d = [0u8; 32];
                d.copy_from_slice(digest);
                Some(Cid(d))
            }
            _ => None,
        }
    }
}

/// A CID rendered as text without allocating ([`Cid::text`]); derefs to `str`.
#[derive(Clone, Copy)]
pub struct CidText([u8; TEXT_LEN]);

impl std::ops::Deref for CidText {
    type Target = str;
    fn deref(&self) -> &str {
        // `b` and base32 letters and digits: always ASCII.
        debug_assert!(self.0.is_ascii());
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_raw_sha256_cidv1() {
        // `ipfs add --raw-leaves --cid-version 1` of "hello" gives this CID.
        let cid = Cid::of(b"hello");
        assert_eq!(cid.to_string(), "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq");
        assert_eq!(&*cid.text(), "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq");
        assert_eq!(Cid::parse(&cid.to_string()), Some(cid));
    }

    #[test]
    fn rejects_other_hashes_and_garbage() {
        assert_eq!(Cid::parse(""), None);
        assert_eq!(Cid::parse("Qmfoo"), None);
        assert_eq!(Cid::parse("bafkrei"), None);
        // A CIDv1 with an identity multihash (0x00) is not accepted.
        let mut s = data_encoding::BASE32_NOPAD.encode(&[1, 0x55, 0x00, 0x05, 1, 2, 3, 4, 5]);
        s.make_ascii_lowercase();
        assert_eq!(Cid::parse(&format!("b{s}")), None);
    }
}
