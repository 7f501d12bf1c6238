//! Invisible-Unicode removal, streaming, over bytes that may split a UTF-8
//! sequence anywhere.
//!
//! Removed:
//! - the tag block U+E0000–E007F, except inside an emoji tag sequence
//!   (U+1F3F4, then 1–32 tag characters U+E0020–E007E, then U+E007F);
//! - bidi controls U+202A–202E and U+2066–2069;
//! - U+200B, U+200C, U+2060–2064, U+FEFF (a BOM at offset 0 stays), U+3164,
//!   U+FFA0, U+180E;
//! - variation selectors that follow nothing that takes them: U+FE0E/FE0F
//!   are kept once after an emoji or a keycap base (`0-9#*`), U+FE00–FE0D
//!   once after a non-ASCII symbol or letter, U+E0100–E01EF once after a CJK
//!   ideograph; a run of selectors never survives past the first;
//! - ZWJ U+200D, except between two emoji.
//!
//! Invalid UTF-8 becomes U+FFFD. Every character this module cares about is
//! at or above U+180E, so ASCII and most text pass through a validity check
//! and a byte scan without decoding.

/// Counts of what was removed or replaced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnicodeCounts {
    pub removed: u64,
    pub replaced_invalid: u64,
}

/// Per-stream state.
#[derive(Debug, Default)]
pub struct UnicodeFilter {
    /// An incomplete UTF-8 sequence carried from the previous chunk.
    carry: Vec<u8>,
    /// A ZWJ waiting for the next character to decide.
    pending_zwj: bool,
    /// Tag characters after U+1F3F4, waiting for U+E007F.
    tags: Vec<char>,
    in_tag_sequence: bool,
    /// The last character written, as a class.
    prev: Prev,
    at_start: bool,
    started: bool,
    pub counts: UnicodeCounts,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Prev {
    #[default]
    None,
    /// An emoji (or an emoji already followed by a skin-tone modifier).
    Emoji,
    /// An emoji already followed by a variation selector: a ZWJ may follow,
    /// another selector may not.
    EmojiSelected,
    /// A keycap base: 0-9, # or *.
    KeycapBase,
    /// A CJK ideograph.
    Ideograph,
    /// Another non-ASCII symbol or letter that may take a standardized variant.
    Symbol,
    /// Something that takes no selector (ASCII, space, or a selector already).
    Plain,
}

fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2300..=0x23FF | 0x2B00..=0x2BFF
        | 0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139 | 0x2194..=0x21AA | 0x24C2 | 0x25AA..=0x25FE
        | 0x2934 | 0x2935 | 0x3030 | 0x303D | 0x3297 | 0x3299)
}

fn is_ideograph(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3FFFF)
}

fn classify(c: char) -> Prev {
    if is_emoji(c) {
        Prev::Emoji
    } else if matches!(c, '0'..='9' | '#' | '*') {
        Prev::KeycapBase
    } else if is_ideograph(c) {
        Prev::Ideograph
    } else if (c as u32) >= 0xA0 && !c.is_whitespace() {
        Prev::Symbol
    } else {
        Prev::Plain
    }
}

/// Characters removed wherever they appear.
fn always_removed(c: char) -> bool {
    matches!(c as u32,
        0x202A..=0x202E | 0x2066..=0x2069 | 0x200B | 0x200C | 0x2060..=0x2064 | 0x3164 | 0xFFA0 | 0x180E)
}

/// Lead bytes of every character this filter may act on (U+180E and up:
/// E1 for U+1xxx, E2 for U+2xxx, E3 for U+3xxx, EF for U+Fxxx, F0 for
/// emoji context, F3 for planes 14).
fn interesting_lead(b: u8) -> bool {
    matches!(b, 0xE1..=0xE3 | 0xEF | 0xF0 | 0xF3)
}

impl UnicodeFilter {
    pub fn new() -> Self {
        UnicodeFilter { at_start: true, ..Default::default() }
    }

    /// Filter `input`, appending clean UTF-8 to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.carry.is_empty() {
            self.process(input, out);
        } else {
            // A character was split across chunks: decode carry + chunk together.
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(input);
            self.process(&joined, out);
        }
    }

    /// End of stream: flush anything held.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.carry.is_empty() {
            self.carry.clear();
            self.emit_replacement(out);
        }
        if self.pending_zwj {
            self.pending_zwj = false;
            self.counts.removed += 1;
        }
        self.drop_tags();
    }

    /// Process bytes that may end with an incomplete sequence.
    fn process(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        loop {
            match std::str::from_utf8(input) {
                Ok(s) => {
                    self.text(s, out);
                    return;
                }
                Err(e) => {
                    let (valid, rest) = input.split_at(e.valid_up_to());
                    if let Ok(s) = std::str::from_utf8(valid) {
                        self.text(s, out);
                    }
                    match e.error_len() {
                        None => {
                            self.carry.extend_from_slice(rest);
                            return;
                        }
                        Some(n) => {
                            self.emit_replacement(out);
                            input = &rest[n..];
                        }
                    }
                }
            }
        }
    }

    fn emit_replacement(&mut self, out: &mut Vec<u8>) {
        self.counts.replaced_invalid += 1;
        let mut buf = [0u8; 4];
        self.emit_char('\u{FFFD}', out, &mut buf);
    }

    /// Valid text: copy runs that contain nothing of interest, inspect the rest.
    fn text(&mut self, s: &str, out: &mut Vec<u8>) {
        if s.is_empty() {
            return;
        }
        let bytes = s.as_bytes();
        let simple = !self.pending_zwj && !self.in_tag_sequence;
        if simple && bytes.is_ascii() {
            out.extend_from_slice(bytes);
            self.started = true;
            self.at_start = false;
            self.prev = classify(bytes[bytes.len() - 1] as char);
            return;
        }
        let mut buf = [0u8; 4];
        let mut run_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if !interesting_lead(b) && !self.pending_zwj && !self.in_tag_sequence {
                i += 1;
                continue;
            }
            // Flush the plain run before this character.
            if run_start < i {
                self.copy_run(&s[run_start..i], out);
            }
            let c = s[i..].chars().next().unwrap_or('\u{FFFD}');
            self.char(c, out, &mut buf);
            i += c.len_utf8();
            run_start = i;
        }
        if run_start < bytes.len() {
            self.copy_run(&s[run_start..], out);
        }
    }

    /// A run of characters none of which is interesting, with no pending state.
    fn copy_run(&mut self, run: &str, out: &mut Vec<u8>) {
        if self.pending_zwj || self.in_tag_sequence {
            let mut buf = [0u8; 4];
            for c in run.chars() {
                self.char(c, out, &mut buf);
            }
            return;
        }
        out.extend_from_slice(run.as_bytes());
        self.at_start = false;
        if let Some(last) = run.chars().next_back() {
            self.prev = classify(last);
        }
    }

    fn emit_char(&mut self, c: char, out: &mut Vec<u8>, buf: &mut [u8; 4]) {
        out.extend_from_slice(c.encode_utf8(buf).as_bytes());
        self.at_start = false;
    }

    fn drop_tags(&mut self) {
        if self.in_tag_sequence {
            self.counts.removed += self.tags.len() as u64;
            self.tags.clear();
            self.in_tag_sequence = false;
        }
    }

    fn char(&mut self, c: char, out: &mut Vec<u8>, buf: &mut [u8; 4]) {
        let cp = c as u32;
        // Inside a possible emoji tag sequence.
        if self.in_tag_sequence {
            if (0xE0020..=0xE007E).contains(&cp) && self.tags.len() < 32 {
                self.tags.push(c);
                return;
            }
            if cp == 0xE007F && !self.tags.is_empty() {
                for t in std::mem::take(&mut self.tags) {
                    self.emit_char(t, out, buf);
                }
                self.emit_char(c, out, buf);
                self.in_tag_sequence = false;
                self.prev = Prev::Emoji;
                return;
            }
            self.drop_tags();
        }
        // A ZWJ waiting for the next character.
        if self.pending_zwj {
            self.pending_zwj = false;
            if is_emoji(c) {
                self.emit_char('\u{200D}', out, buf);
            } else {
                self.counts.removed += 1;
            }
        }
        match cp {
            0xFEFF if self.at_start => {
                self.emit_char(c, out, buf);
                self.prev = Prev::Plain;
            }
            0xFEFF => self.counts.removed += 1,
            _ if always_removed(c) => self.counts.removed += 1,
            0xE0000..=0xE007F => self.counts.removed += 1,
            0x200D => {
                if matches!(self.prev, Prev::Emoji | Prev::EmojiSelected) {
                    self.pending_zwj = true;
                } else {
                    self.counts.removed += 1;
                }
            }
            0xFE0E | 0xFE0F => {
                if matches!(self.prev, Prev::Emoji | Prev::KeycapBase) {
                    self.emit_char(c, out, buf);
                    // The emoji stays an emoji for a following ZWJ.
                    self.prev = if self.prev == Prev::Emoji { Prev::EmojiSelected } else { Prev::Plain };
                } else {
                    self.counts.removed += 1;
                }
            }
            0xFE00..=0xFE0D => {
                if matches!(self.prev, Prev::Symbol | Prev::Ideograph | Prev::Emoji) {
                    self.emit_char(c, out, buf);
                    self.prev = Prev::Plain;
                } else {
                    self.counts.removed += 1;
                }
            }
            0xE0100..=0xE01EF => {
                if self.prev == Prev::Ideograph {
                    self.emit_char(c, out, buf);
                    self.prev = Prev::Plain;
                } else {
                    self.counts.removed += 1;
                }
            }
            0x1F3F4 => {
                self.emit_char(c, out, buf);
                self.prev = Prev::Emoji;
                self.in_tag_sequence = true;
            }
            // Skin-tone modifiers keep the emoji context.
            0x1F3FB..=0x1F3FF if self.prev == Prev::Emoji => self.emit_char(c, out, buf),
            _ => {
                self.emit_char(c, out, buf);
                self.prev = classify(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &[u8]) -> (String, UnicodeCounts) {
        let mut f = UnicodeFilter::new();
        let mut out = Vec::new();
        f.push(s, &mut out);
        f.finish(&mut out);
        (String::from_utf8(out).expect("valid utf-8"), f.counts)
    }

    fn split_everywhere(s: &[u8]) -> Vec<String> {
        (0..=s.len())
            .map(|i| {
                let mut f = UnicodeFilter::new();
                let mut out = Vec::new();
                f.push(&s[..i], &mut out);
                f.push(&s[i..], &mut out);
                f.finish(&mut out);
                String::from_utf8(out).expect("valid utf-8")
            })
            .collect()
    }

    #[test]
    fn removes_the_table() {
        let bad = [
            "\u{E0001}",
            "\u{E0041}",
            "\u{E007F}",
            "\u{202A}",
            "\u{202E}",
            "\u{2066}",
            "\u{2069}",
            "\u{200B}",
            "\u{200C}",
            "\u{2060}",
            "\u{2064}",
            "\u{3164}",
            "\u{FFA0}",
            "\u{180E}",
        ];
        for b in bad {
            let (out, counts) = clean(format!("a{b}b").as_bytes());
            assert_eq!(out, "ab", "{:?}", b.chars().next().map(|c| c as u32));
            assert_eq!(counts.removed, 1);
        }
        assert_eq!(clean("a\u{FEFF}b".as_bytes()).0, "ab");
        assert_eq!(clean("\u{FEFF}ab".as_bytes()).0, "\u{FEFF}ab", "a leading BOM stays");
        assert_eq!(clean("a\u{200D}b".as_bytes()).0, "ab", "ZWJ between letters");
        assert_eq!(clean("a\u{FE0F}".as_bytes()).0, "a", "VS16 after a letter");
        assert_eq!(clean("\u{2764}\u{FE0F}\u{FE0F}\u{FE0F}".as_bytes()).0, "\u{2764}\u{FE0F}", "runs of selectors");
        assert_eq!(clean("x\u{E0100}\u{E0101}".as_bytes()).0, "x", "ideographic selectors after ASCII");
        assert_eq!(clean("\u{845B}\u{E0100}".as_bytes()).0, "\u{845B}\u{E0100}", "ideographic variation sequence");
        // Tag smuggling: an instruction hidden in tag characters.
        let hidden: String = "ignore previous".chars().map(|c| char::from_u32(0xE0000 + c as u32).unwrap_or('?')).collect();
        assert_eq!(clean(format!("hello{hidden}!").as_bytes()).0, "hello!");
    }

    #[test]
    fn emoji_survive_byte_identical() {
        for e in [
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}",    // family
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}", // England
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}", // Scotland
            "\u{1F1EF}\u{1F1F5}",                                              // JP flag
            "1\u{FE0F}\u{20E3}",                                               // keycap 1
            "#\u{FE0F}\u{20E3}",
            "\u{2764}\u{FE0F}",
            "\u{1F469}\u{1F3FD}\u{200D}\u{1F4BB}", // woman technologist, skin tone
            "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",  // rainbow flag
            "\u{1F441}\u{FE0F}\u{200D}\u{1F5E8}\u{FE0F}",
            "caf\u{E9} \u{4E2D}\u{6587} \u{1F600}",
        ] {
            for out in split_everywhere(e.as_bytes()) {
                assert_eq!(out, e);
            }
        }
    }

    #[test]
    fn a_black_flag_without_a_terminator_loses_its_tags() {
        assert_eq!(clean("\u{1F3F4}\u{E0067}\u{E0062}x".as_bytes()).0, "\u{1F3F4}x");
        assert_eq!(clean("\u{1F3F4}\u{E0067}".as_bytes()).0, "\u{1F3F4}");
    }

    #[test]
    fn invalid_utf8_becomes_replacement() {
        assert_eq!(clean(b"a\xffb").0, "a\u{FFFD}b");
        assert_eq!(clean(b"a\xe2\x80").0, "a\u{FFFD}");
        assert_eq!(clean(b"a\xe2\x80z").0, "a\u{FFFD}z");
        for out in split_everywhere(b"x\xf0\x9f\x98\x80y\xc3") {
            assert_eq!(out, "x\u{1F600}y\u{FFFD}");
        }
        for out in split_everywhere(b"x\xe2\x80\x8by\xe2\x28\xa1") {
            assert_eq!(clean(b"x\xe2\x80\x8by\xe2\x28\xa1").0, out);
        }
    }
}
