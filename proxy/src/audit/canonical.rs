//! The RFC 8785 (JCS) canonical form of an audit event, rendered once on
//! the proxy thread and sealed by the chain writer.
//!
//! A general canonicaliser (serde_jcs) collects every object into a sorted
//! map of separately serialised members before writing it. A request event
//! has a fixed shape, so its members are written here in canonical order
//! directly, with no intermediate map, string or value:
//! - [`render`] runs on the proxy thread. It writes the event's own members
//!   into one buffer (usually one allocation; the writer thread frees one
//!   block, not one per field), leaving a cut where each member the writer
//!   adds (`chain`, `prev`, `seq`, `ts`) belongs in canonical order.
//! - [`seal_rendered`] runs on the chain writer: it stitches the pieces and
//!   the writer's members into the segment buffer.
//!
//! The bytes are exactly serde_jcs's (the offline verifier re-canonicalises
//! each line with serde_jcs), which a test checks on random events. What
//! makes the shape canonical:
//! - member names sorted by UTF-16 code units ([`FIELDS`] is in that order,
//!   checked by a test; `redactions` keys are sorted at render time);
//! - strings escaped as JSON.stringify does (`"`, `\`, and control
//!   characters as `\b \t \n \f \r` or `\u00xx`), which is serde_json's
//!   escaping;
//! - integers up to 2^53 as plain digits; larger ones as serde_jcs writes
//!   them (the nearest IEEE double, in ECMAScript form).

use super::record::RequestEvent;
use std::borrow::Cow;

/// Largest integer a JCS number represents exactly.
const MAX_EXACT: u64 = 1 << 53;

/// Every member of a sealed event, in canonical order.
pub const FIELDS: [&str; 24] = [
    "agent",
    "approver",
    "bytes_in",
    "bytes_out",
    "chain",
    "cosigner_cid",
    "decision",
    "duration_us",
    "event",
    "method",
    "path",
    "policy_ids",
    "prev",
    "reason",
    "redactions",
    "request_id",
    "route",
    "seq",
    "tenant",
    "token_cid",
    "torn_bytes",
    "torn_file",
    "ts",
    "upstream_status",
];

/// The members the chain writer adds, in canonical order.
const WRITER_FIELDS: [&str; 4] = ["chain", "prev", "seq", "ts"];

/// What the chain writer adds to an event.
pub struct Seal<'a> {
    pub seq: u64,
    pub ts: &'a str,
    pub chain: &'a str,
    pub prev: &'a str,
}

/// An event's canonical members without the writer's, and where each of
/// the writer's members goes (byte offsets into `bytes`, ascending).
#[derive(Debug)]
pub struct Rendered {
    bytes: Vec<u8>,
    cuts: [usize; 4],
}

fn string(out: &mut Vec<u8>, s: &str) {
    // Most members (ids, DIDs, CIDs, paths) need no escaping: copy them.
    // JCS escapes only `"`, `\` and control characters below U+0020; every
    // other byte, UTF-8 included, is written as it is.
    // A fold without an early exit, so the check compiles to vector code.
    let needs_escape = s.as_bytes().iter().fold(false, |e, &b| e | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if !needs_escape {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // serde_json's escaping is JCS's; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn int(out: &mut Vec<u8>, v: u64) {
    if v <= MAX_EXACT {
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(v).as_bytes());
    } else {
        // Not exact as a double: write what serde_jcs writes for it.
        match serde_jcs::to_vec(&v) {
            Ok(b) => out.extend_from_slice(&b),
            Err(_) => out.extend_from_slice(b"null"),
        }
    }
}

fn redactions(out: &mut Vec<u8>, r: &[(Cow<'_, str>, u64)]) {
    let utf16 = |a: &str, b: &str| a.encode_utf16().cmp(b.encode_utf16());
    let sorted = r.windows(2).all(|w| utf16(&w[0].0, &w[1].0).is_lt());
    let mut owned;
    let entries = if sorted {
        r
    } else {
        owned = r.to_vec();
        owned.sort_by(|a, b| utf16(&a.0, &b.0));
        // A repeated kind keeps its last count, as a map built from the list would.
        owned.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        &owned[..]
    };
    out.push(b'{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        int(out, *v);
    }
    out.push(b'}');
}

/// Render `ev`'s own members in canonical order, with cuts for the writer's.
pub fn render(ev: &RequestEvent<'_>) -> Rendered {
    let mut out = Vec::with_capacity(640);
    let mut cuts = [0usize; 4];
    let mut cut = 0;
    out.push(b'{');
    let mut first = true;
    for name in FIELDS {
        if WRITER_FIELDS.contains(&name) {
            cuts[cut] = out.len();
            cut += 1;
            first = false;
            continue;
        }
        match name {
            "torn_bytes" if ev.torn_bytes.is_none() => continue,
            "torn_file" if ev.torn_file.is_none() => continue,
            _ => {}
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match name {
            "agent" => opt_string(&mut out, ev.agent.as_deref()),
            "approver" => opt_string(&mut out, ev.approver.as_deref()),
            "bytes_in" => int(&mut out, ev.bytes_in),
            "bytes_out" => int(&mut out, ev.bytes_out),
            "cosigner_cid" => opt_string(&mut out, ev.cosigner_cid.as_deref()),
            "decision" => string(&mut out, &ev.decision),
            "duration_us" => int(&mut out, ev.duration_us),
            "event" => string(&mut out, &ev.event),
            "method" => string(&mut out, &ev.method),
            "path" => opt_string(&mut out, ev.path.as_deref()),
            "policy_ids" => {
                out.push(b'[');
                for (j, id) in ev.policy_ids.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    string(&mut out, id);
                }
                out.push(b']');
            }
            "reason" => string(&mut out, &ev.reason),
            "redactions" => redactions(&mut out, &ev.redactions),
            "request_id" => string(&mut out, &ev.request_id),
            "route" => opt_string(&mut out, ev.route.as_deref()),
            "tenant" => string(&mut out, &ev.tenant),
            "token_cid" => opt_string(&mut out, ev.token_cid.as_deref()),
            "torn_bytes" => int(&mut out, ev.torn_bytes.unwrap_or(0)),
            "torn_file" => opt_string(&mut out, ev.torn_file.as_deref()),
            "upstream_status" => match ev.upstream_status {
                Some(s) => int(&mut out, u64::from(s)),
                None => out.extend_from_slice(b"null"),
            },
            _ => unreachable!("every name in FIELDS has an arm"),
        }
    }
    out.push(b'}');
    Rendered { bytes: out, cuts }
}

/// Append the canonical JSON of the rendered event sealed with `seal`.
///
/// Each writer member goes at its cut as `,"name":value`: none of them is
/// first (`agent` is) or last (`upstream_status` is), so the comma always
/// belongs before it.
pub fn seal_rendered(r: &Rendered, seal: &Seal<'_>, out: &mut Vec<u8>) {
    let mut from = 0;
    for (i, &cut) in r.cuts.iter().enumerate() {
        out.extend_from_slice(&r.bytes[from..cut]);
        out.extend_from_slice(b",\"");
        out.extend_from_slice(WRITER_FIELDS[i].as_bytes());
        out.extend_from_slice(b"\":");
        match i {
            0 => string(out, seal.chain),
            1 => string(out, seal.prev),
            2 => int(out, seal.seq),
            _ => string(out, seal.ts),
        }
        from = cut;
    }
    out.extend_from_slice(&r.bytes[from..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use serde::Serialize;

    #[derive(Serialize)]
    struct Sealed<'a> {
        #[serde(flatten)]
        ev: &'a RequestEvent<'a>,
        seq: u64,
        ts: &'a str,
        chain: &'a str,
        prev: &'a str,
    }

    fn reference(ev: &RequestEvent<'_>, seal: &Seal<'_>) -> Vec<u8> {
        serde_jcs::to_vec(&Sealed { ev, seq: seal.seq, ts: seal.ts, chain: seal.chain, prev: seal.prev }).expect("jcs")
    }

    #[test]
    fn fields_are_in_utf16_order_and_cover_the_event() {
        let mut sorted = FIELDS.to_vec();
        sorted.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
        assert_eq!(sorted, FIELDS.to_vec());
        // Every serialised member of a full event is in FIELDS, and nothing else.
        let ev = RequestEvent { torn_bytes: Some(1), torn_file: Some("f".into()), ..Default::default() };
        assert_eq!(WRITER_FIELDS.iter().filter(|f| FIELDS.contains(f)).count(), 4);
        let seal = Seal { seq: 1, ts: "t", chain: "c", prev: "p" };
        let v: serde_json::Value = serde_json::from_slice(&reference(&ev, &seal)).expect("json");
        let mut names: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, FIELDS.to_vec());
    }

    fn random_string(rng: &mut StdRng) -> String {
        // U+FF61 sorts after U+1F600 by code point but before it in UTF-16.
        const PIECES: [&str; 15] =
            ["a", "Z", "0", " ", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "\u{7f}", "é", "\u{2028}", "\u{ff61}", "😀"];
        (0..rng.gen_range(0..8)).map(|_| PIECES[rng.gen_range(0..PIECES.len())]).collect()
    }

    #[test]
    fn bytes_are_serde_jcs_bytes_for_random_events() {
        let mut rng = StdRng::seed_from_u64(8785);
        let opt = |rng: &mut StdRng| rng.gen_bool(0.5).then(|| Cow::Owned(random_string(rng)));
        let s = |rng: &mut StdRng| Cow::Owned(random_string(rng));
        let num = |rng: &mut StdRng| match rng.gen_range(0..6) {
            0 => 0,
            1 => rng.gen_range(0..1000),
            2 => MAX_EXACT,
            3 => MAX_EXACT + 1 + rng.gen_range(0..1000),
            4 => u64::MAX,
            _ => rng.gen::<u32>() as u64,
        };
        for _ in 0..5_000 {
            // Redaction keys in random order, sometimes repeated.
            let mut redactions: Vec<(Cow<'_, str>, u64)> =
                (0..rng.gen_range(0..4)).map(|_| (Cow::Owned(random_string(&mut rng)), num(&mut rng))).collect();
            if rng.gen_bool(0.2) {
                if let Some(first) = redactions.first().cloned() {
                    redactions.push((first.0, num(&mut rng)));
                }
            }
            let ev = RequestEvent {
                event: s(&mut rng),
                tenant: s(&mut rng),
                request_id: s(&mut rng),
                agent: opt(&mut rng),
                token_cid: opt(&mut rng),
                cosigner_cid: opt(&mut rng),
                approver: opt(&mut rng),
                route: opt(&mut rng),
                method: s(&mut rng),
                path: opt(&mut rng),
                decision: s(&mut rng),
                reason: s(&mut rng),
                policy_ids: (0..rng.gen_range(0..3)).map(|_| random_string(&mut rng)).collect::<Vec<_>>().into(),
                upstream_status: rng.gen_bool(0.5).then(|| rng.gen()),
                bytes_in: num(&mut rng),
                bytes_out: num(&mut rng),
                redactions,
                duration_us: num(&mut rng),
                torn_bytes: rng.gen_bool(0.2).then(|| num(&mut rng)),
                torn_file: rng.gen_bool(0.2).then(|| random_string(&mut rng)),
            };
            let (ts, chain, prev) = (random_string(&mut rng), random_string(&mut rng), random_string(&mut rng));
            let seal = Seal { seq: num(&mut rng), ts: &ts, chain: &chain, prev: &prev };
            let mut out = b"prefix".to_vec();
            seal_rendered(&render(&ev), &seal, &mut out);
            let want = reference(&ev, &seal);
            assert_eq!(String::from_utf8_lossy(&out[6..]), String::from_utf8_lossy(&want), "{ev:?}");
        }
    }
}
