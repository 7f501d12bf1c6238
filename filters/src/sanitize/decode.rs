//! Streaming decoding of compressed response bodies, so a compressed body is
//! sanitized like any other and never passes through unread.
//!
//! Supported content codings: `gzip` (and `x-gzip`), `deflate` (zlib, or raw
//! deflate as some servers send), `br` and `zstd`. Anything else, including
//! stacked codings, is refused by [`Encoding::parse`]. Output per pushed chunk
//! is capped at [`MAX_EXPANSION`] bytes to stop decompression bombs.

use std::io::Write;

/// The most decoded bytes one pushed chunk may produce.
pub const MAX_EXPANSION: usize = 64 * 1024 * 1024;

/// A content coding capgate can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

/// Why a body cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported content encoding")]
    Unsupported,
    #[error("the compressed body is corrupt")]
    Corrupt,
    #[error("the body expands beyond the decompression limit")]
    TooLarge,
}

impl Encoding {
    /// Parse a `Content-Encoding` value (absent = identity).
    pub fn parse(value: Option<&str>) -> Result<Encoding, DecodeError> {
        let Some(v) = value else {
            return Ok(Encoding::Identity);
        };
        match &*super::content_type::lowercase(v.trim()) {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "deflate" => Ok(Encoding::Deflate),
            "br" => Ok(Encoding::Brotli),
            "zstd" => Ok(Encoding::Zstd),
            _ => Err(DecodeError::Unsupported),
        }
    }

    /// The codings capgate asks upstreams for, in `Accept-Encoding` form.
    pub const ACCEPTED: &'static str = "gzip, deflate, br, zstd";
}

enum Inner {
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
    RawDeflate(flate2::write::DeflateDecoder<Vec<u8>>),
    /// Deflate before its first two bytes arrive (zlib or raw is decided then).
    DeflatePending(Vec<u8>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Vec<u8>>>),
}

/// A streaming decoder for one body.
pub struct Decoder {
    inner: Inner,
}

impl Decoder {
    /// `None` for identity.
    pub fn new(enc: Encoding) -> Result<Option<Decoder>, DecodeError> {
        let inner = match enc {
            Encoding::Identity => return Ok(None),
            Encoding::Gzip => Inner::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            Encoding::Deflate => Inner::DeflatePending(Vec::new()),
            Encoding::Brotli => Inner::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 8192))),
            Encoding::Zstd => Inner::Zstd(Box::new(zstd::stream::write::Decoder::new(Vec::new()).map_err(|_| DecodeError::Corrupt)?)),
        };
        Ok(Some(Decoder { inner }))
    }

    /// Decode a chunk, appending to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if let Inner::DeflatePending(buf) = &mut self.inner {
            buf.extend_from_slice(input);
            if buf.len() < 2 {
                return Ok(());
            }
            let head = std::mem::take(buf);
            let zlib = head[0] & 0x0F == 8 && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
            self.inner = if zlib {
                Inner::Zlib(flate2::write::ZlibDecoder::new(Vec::new()))
            } else {
                Inner::RawDeflate(flate2::write::DeflateDecoder::new(Vec::new()))
            };
            return self.push(&head, out);
        }
        // Feed in slices so a bomb is caught before it allocates much.
        for piece in input.chunks(16 * 1024) {
            let produced = match &mut self.inner {
                Inner::Gzip(d) => write(d, piece, |d| d.get_mut())?,
                Inner::Zlib(d) => write(d, piece, |d| d.get_mut())?,
                Inner::RawDeflate(d) => write(d, piece, |d| d.get_mut())?,
                Inner::Brotli(d) => write(d.as_mut(), piece, |d| d.get_mut())?,
                Inner::Zstd(d) => write(d.as_mut(), piece, |d| d.get_mut())?,
                Inner::DeflatePending(_) => unreachable!("resolved above"),
            };
            if out.len() + produced.len() > MAX_EXPANSION {
                return Err(DecodeError::TooLarge);
            }
            out.extend_from_slice(&produced);
        }
        Ok(())
    }

    /// End of body: flush the decoder; a truncated stream is an error.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let rest = match &mut self.inner {
            Inner::Gzip(d) => {
                d.try_finish().map_err(|_| DecodeError::Corrupt)?;
                std::mem::take(d.get_mut())
            }
            Inner::Zlib(d) => {
                d.try_finish().map_err(|_| DecodeError::Corrupt)?;
                std::mem::take(d.get_mut())
            }
            Inner::RawDeflate(d) => {
                d.try_finish().map_err(|_| DecodeError::Corrupt)?;
                std::mem::take(d.get_mut())
            }
            Inner::Brotli(d) => {
                d.flush().map_err(|_| DecodeError::Corrupt)?;
                d.close().map_err(|_| DecodeError::Corrupt)?;
                std::mem::take(d.get_mut())
            }
            Inner::Zstd(d) => {
                d.flush().map_err(|_| DecodeError::Corrupt)?;
                std::mem::take(d.get_mut())
            }
            Inner::DeflatePending(buf) if buf.is_empty() => Vec::new(),
            Inner::DeflatePending(_) => return Err(DecodeError::Corrupt),
        };
        out.extend_from_slice(&rest);
        Ok(())
    }
}

fn write<W: Write>(w: &mut W, input: &[u8], sink: impl Fn(&mut W) -> &mut Vec<u8>) -> Result<Vec<u8>, DecodeError> {
    w.write_all(input).map_err(|_| DecodeError::Corrupt)?;
    w.flush().map_err(|_| DecodeError::Corrupt)?;
    Ok(std::mem::take(sink(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> Vec<u8> {
        (0..20_000).flat_map(|i| format!("{{\"n\":{i},\"v\":\"hello\"}}\n").into_bytes()).collect()
    }

    fn round_trip(enc: Encoding, compressed: &[u8]) {
        for chunk in [1usize, 7, 4096, compressed.len().max(1)] {
            let mut d = Decoder::new(enc).expect("new").expect("decoder");
            let mut out = Vec::new();
            for c in compressed.chunks(chunk) {
                d.push(c, &mut out).expect("push");
            }
            d.finish(&mut out).expect("finish");
            assert_eq!(out, text(), "{enc:?} chunk {chunk}");
        }
    }

    #[test]
    fn all_codings_round_trip_in_any_chunking() {
        let t = text();
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        g.write_all(&t).expect("gz");
        round_trip(Encoding::Gzip, &g.finish().expect("gz"));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&t).expect("zlib");
        round_trip(Encoding::Deflate, &z.finish().expect("zlib"));
        let mut r = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        r.write_all(&t).expect("raw");
        round_trip(Encoding::Deflate, &r.finish().expect("raw"));
        let mut b = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut b, 4096, 5, 22);
            w.write_all(&t).expect("br");
        }
        round_trip(Encoding::Brotli, &b);
        round_trip(Encoding::Zstd, &zstd::encode_all(&t[..], 3).expect("zstd"));
    }

    #[test]
    fn parse_and_refusals() {
        assert_eq!(Encoding::parse(None), Ok(Encoding::Identity));
        assert_eq!(Encoding::parse(Some("GZIP")), Ok(Encoding::Gzip));
        assert_eq!(Encoding::parse(Some("compress")), Err(DecodeError::Unsupported));
        assert_eq!(Encoding::parse(Some("gzip, br")), Err(DecodeError::Unsupported));
        let mut d = Decoder::new(Encoding::Gzip).expect("new").expect("decoder");
        let mut out = Vec::new();
        assert!(d.push(b"definitely not gzip", &mut out).is_err() || d.finish(&mut out).is_err());
    }

    #[test]
    fn bombs_are_stopped() {
        let zeros = vec![0u8; 80 * 1024 * 1024];
        let bomb = zstd::encode_all(&zeros[..], 19).expect("zstd");
        let mut d = Decoder::new(Encoding::Zstd).expect("new").expect("decoder");
        let mut out = Vec::new();
        assert_eq!(d.push(&bomb, &mut out), Err(DecodeError::TooLarge));
    }
}
