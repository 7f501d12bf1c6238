//! Strict base64url (RFC 4648 §5) as UCAN and JWT require it.
//!
//! No padding, no characters outside the URL-safe alphabet, and no non-zero
//! trailing bits: a signature re-encoded with different trailing bits is a
//! different string and must not verify as the same token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Decode `input` strictly. Returns `None` on any deviation from canonical
/// unpadded base64url.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    // `URL_SAFE_NO_PAD` rejects padding and non-canonical trailing bits.
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// Encode without padding.
pub fn encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for n in 0..40u8 {
            let data: Vec<u8> = (0..n).collect();
            assert_eq!(decode(encode(&data).as_bytes()).as_deref(), Some(&data[..]));
        }
    }

    #[test]
    fn rejects_padding_alphabet_and_trailing_bits() {
        assert_eq!(decode(b"YQ").as_deref(), Some(&b"a"[..]));
        assert!(decode(b"YQ==").is_none(), "padding");
        assert!(decode(b"YR").is_none(), "non-zero trailing bits");
        assert!(decode(b"Y+").is_none(), "standard alphabet");
        assert!(decode(b"Y Q").is_none(), "whitespace");
        assert!(decode(b"Y").is_none(), "impossible length");
    }
}
