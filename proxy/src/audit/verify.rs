//! The offline verifier (`capgate audit verify DIR --pubkey DID`).
//!
//! It needs no config: only the files and the audit public key. For every
//! chain directory under `DIR` (a directory holding `segment-*.jsonl`) it
//! recomputes each hash, checks each `seq` step and `prev` link, checks each
//! root's signature and that its head matches the chain at its `seq`, and
//! reports the first bad seq with its kind:
//!
//! | kind | meaning |
//! |---|---|
//! | `edited` | a line's content no longer matches its hash, or is not JSON |
//! | `missing` | a seq is absent (a deleted line, or a truncation a root proves) |
//! | `reordered` | a seq appears out of order |
//! | `inserted` | a line that does not belong: a duplicate seq, a broken link, another chain's event |
//! | `bad_root_signature` | a root's signature does not verify with the key |
//! | `root_chain_mismatch` | a root's head differs from the chain's hash at that seq |
//! | `torn_tail` | the last line was cut off mid-write and not yet recovered |
//!
//! Events after the last root are an unsigned tail: a warning, not a
//! failure. `torn_tail` events written by recovery are reported as notes.

use super::record::{event_hash, genesis, Root};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub seq: u64,
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub dir: PathBuf,
    pub chain: String,
    pub events: u64,
    pub roots: u64,
    pub failure: Option<Failure>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub chains: Vec<ChainReport>,
}

/// Every chain directory under `root` (including `root` itself).
pub fn chain_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        if !super::writer::segments(&d).is_empty() {
            out.push(d.clone());
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// Verify every chain under `root`. `Err` only for I/O problems.
pub fn verify(root: &Path, pubkey: &VerifyingKey) -> Result<Report, String> {
    if !root.is_dir() {
        return Err(format!("{} is not a directory", root.display()));
    }
    let dirs = chain_dirs(root);
    if dirs.is_empty() {
        return Err(format!("no audit chain (segment-*.jsonl) under {}", root.display()));
    }
    let mut chains = Vec::new();
    for d in dirs {
        chains.push(verify_chain(&d, pubkey)?);
    }
    let ok = chains.iter().all(|c| c.failure.is_none());
    Ok(Report { ok, chains })
}

struct Line {
    raw: String,
    torn: bool,
}

fn read_lines(dir: &Path) -> Result<Vec<Line>, String> {
    let segs = super::writer::segments(dir);
    let mut out = Vec::new();
    let n = segs.len();
    for (i, (_, p)) in segs.iter().enumerate() {
        let data = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        // A live (or crashed) gateway's segment ends in zero-filled space
        // that no event has reached yet (see the writer); it holds nothing.
        let written = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&data[..written]);
        let mut parts: Vec<&str> = text.split('\n').collect();
        let tail = parts.pop().unwrap_or("");
        out.extend(parts.into_iter().map(|l| Line { raw: l.to_owned(), torn: false }));
        if !tail.is_empty() {
            out.push(Line { raw: tail.to_owned(), torn: i + 1 == n });
        }
    }
    Ok(out)
}

fn fail(slot: &mut Option<Failure>, seq: u64, kind: &'static str, detail: impl Into<String>) {
    if slot.as_ref().is_none_or(|f| seq < f.seq) {
        *slot = Some(Failure { seq, kind, detail: detail.into() });
    }
}

pub fn verify_chain(dir: &Path, pubkey: &VerifyingKey) -> Result<ChainReport, String> {
    let lines = read_lines(dir)?;
    let parsed: Vec<Option<Map<String, Value>>> =
        lines.iter().map(|l| serde_json::from_str::<Value>(&l.raw).ok().and_then(|v| v.as_object().cloned())).collect();
    let chain = parsed
        .iter()
        .flatten()
        .filter_map(|o| o.get("chain").and_then(Value::as_str))
        .fold(HashMap::<&str, usize>::new(), |mut m, c| {
            *m.entry(c).or_default() += 1;
            m
        })
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(c, _)| c.to_owned())
        .unwrap_or_else(|| {
            // An empty chain: its id follows from the directory layout.
            let name = |p: Option<&Path>| p.and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            format!("{}:{}", name(dir.parent()), name(Some(dir)))
        });
    let seqs: Vec<Option<u64>> = parsed.iter().map(|o| o.as_ref().and_then(|o| o.get("seq")?.as_u64())).collect();
    let mut report =
        ChainReport { dir: dir.to_owned(), chain: chain.clone(), events: 0, roots: 0, failure: None, warnings: vec![], notes: vec![] };
    let mut failure = None;
    let mut expected = 1u64;
    let mut prev_hash = genesis(&chain);
    let mut prevprev_hash: Option<String> = None;
    let mut hashes: HashMap<u64, String> = HashMap::new();
    for (i, (line, obj)) in lines.iter().zip(&parsed).enumerate() {
        if failure.is_some() {
            break;
        }
        let Some(obj) = obj else {
            if line.torn {
                fail(&mut failure, expected, "torn_tail", "the last line is incomplete");
            } else {
                fail(&mut failure, expected, "edited", "a line is not a JSON object");
            }
            break;
        };
        let seq = seqs[i].unwrap_or(0);
        let stored = obj.get("hash").and_then(Value::as_str).unwrap_or("");
        if obj.get("chain").and_then(Value::as_str) != Some(chain.as_str()) {
            fail(&mut failure, seq.max(1), "inserted", "an event of another chain");
            break;
        }
        match event_hash(obj) {
            Ok(h) if h == stored => {}
            _ => {
                fail(&mut failure, if seq > 0 { seq } else { expected }, "edited", "the content does not match its hash");
                break;
            }
        }
        let prev = obj.get("prev").and_then(Value::as_str).unwrap_or("");
        if seq == expected && prev == prev_hash {
            // in order
        } else if seq + 1 == expected || (seq == expected && prevprev_hash.as_deref() == Some(prev)) {
            fail(&mut failure, seq, "inserted", "a second event claims this seq");
            break;
        } else if seq > expected {
            let later = seqs[i + 1..].contains(&Some(expected));
            if later {
                fail(&mut failure, expected, "reordered", format!("seq {expected} appears after seq {seq}"));
            } else {
                fail(&mut failure, expected, "missing", format!("seq {expected} is absent (next is {seq})"));
            }
            break;
        } else if seq < expected {
            fail(&mut failure, seq, "reordered", format!("seq {seq} appears after seq {}", expected - 1));
            break;
        } else {
            fail(&mut failure, seq, "inserted", "the event does not link to its predecessor");
            break;
        }
        if obj.get("event").and_then(Value::as_str) == Some("torn_tail") {
            report.notes.push(format!(
                "seq {seq}: a torn tail of {} bytes was recovered after a crash ({})",
                obj.get("torn_bytes").and_then(Value::as_u64).unwrap_or(0),
                obj.get("torn_file").and_then(Value::as_str).unwrap_or("?")
            ));
        }
        hashes.insert(seq, stored.to_owned());
        prevprev_hash = Some(std::mem::replace(&mut prev_hash, stored.to_owned()));
        expected += 1;
        report.events += 1;
    }
    let last_seq = expected - 1;
    // Roots.
    let roots_path = dir.join("roots.jsonl");
    let mut last_root = 0u64;
    if let Ok(text) = std::fs::read_to_string(&roots_path) {
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let root: Root = match serde_json::from_str(l) {
                Ok(r) => r,
                Err(_) => {
                    fail(&mut failure, last_root + 1, "bad_root_signature", "a root line is not a valid root");
                    continue;
                }
            };
            report.roots += 1;
            if root.chain != chain || !root.verify(pubkey) {
                fail(&mut failure, root.seq, "bad_root_signature", "the root's signature does not verify with the given key");
                continue;
            }
            match hashes.get(&root.seq) {
                Some(h) if *h == root.head => {}
                Some(_) => fail(&mut failure, root.seq, "root_chain_mismatch", "the signed head differs from the chain"),
                None if failure.is_none() && root.seq > last_seq => fail(
                    &mut failure,
                    last_seq + 1,
                    "missing",
                    format!("the chain ends at seq {last_seq} but a signed root covers seq {}", root.seq),
                ),
                None => {}
            }
            last_root = last_root.max(root.seq);
        }
    }
    if failure.is_none() && last_seq > last_root {
        report.warnings.push(format!("unsigned tail: seq {}..={last_seq} are after the last signed root", last_root + 1));
    }
    report.failure = failure;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::record::{seal_event, RequestEvent};
    use super::*;
    use ed25519_dalek::SigningKey;

    fn write_chain(dir: &Path, n: u64, root_at: u64, key: &SigningKey) -> Vec<String> {
        let chain = "acme:i1";
        let mut prev = genesis(chain);
        let mut lines = Vec::new();
        let mut roots = String::new();
        for seq in 1..=n {
            let ev =
                RequestEvent { event: "request".into(), tenant: "acme".into(), request_id: format!("r{seq}").into(), ..Default::default() };
            let (line, hash) = seal_event(&ev, seq, "2026-01-01T00:00:00.000000Z", chain, &prev);
            prev = hash.clone();
            lines.push(line);
            if seq == root_at {
                let r = Root::sign(key, chain, seq, &hash, "2026-01-01T00:00:00.000000Z").expect("root");
                roots.push_str(&serde_json::to_string(&r).expect("json"));
                roots.push('\n');
            }
        }
        std::fs::write(dir.join("segment-000001.jsonl"), lines.join("\n") + "\n").expect("seg");
        std::fs::write(dir.join("roots.jsonl"), roots).expect("roots");
        lines
    }

    fn check(mutate: impl Fn(&mut Vec<String>), kind: &str, seq: u64) {
        let d = tempfile::tempdir().expect("tmp");
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut lines = write_chain(d.path(), 6, 6, &key);
        mutate(&mut lines);
        std::fs::write(d.path().join("segment-000001.jsonl"), lines.join("\n") + "\n").expect("seg");
        let r = verify_chain(d.path(), &key.verifying_key()).expect("verify");
        let f = r.failure.expect("tampering detected");
        assert_eq!((f.kind, f.seq), (kind, seq), "{}", f.detail);
    }

    #[test]
    fn intact_chain_verifies() {
        let d = tempfile::tempdir().expect("tmp");
        let key = SigningKey::from_bytes(&[3; 32]);
        write_chain(d.path(), 5, 3, &key);
        let r = verify_chain(d.path(), &key.verifying_key()).expect("verify");
        assert!(r.failure.is_none(), "{:?}", r.failure);
        assert_eq!((r.events, r.roots), (5, 1));
        assert_eq!(r.warnings.len(), 1, "seq 4..=5 are unsigned");
        let other = SigningKey::from_bytes(&[4; 32]);
        let r = verify_chain(d.path(), &other.verifying_key()).expect("verify");
        assert_eq!(r.failure.map(|f| f.kind), Some("bad_root_signature"));
    }

    /// A live gateway's segment ends in zero-filled space (see the writer):
    /// not an event, not a torn line. A torn line inside it still is one.
    #[test]
    fn a_live_segments_zero_filled_space_holds_nothing() {
        let d = tempfile::tempdir().expect("tmp");
        let key = SigningKey::from_bytes(&[3; 32]);
        let lines = write_chain(d.path(), 5, 5, &key);
        let seg = d.path().join("segment-000001.jsonl");
        std::fs::write(&seg, [(lines.join("\n") + "\n").as_bytes(), &[0u8; 4096]].concat()).expect("seg");
        let r = verify_chain(d.path(), &key.verifying_key()).expect("verify");
        assert!(r.failure.is_none(), "{:?}", r.failure);
        assert_eq!((r.events, r.roots), (5, 1));
        std::fs::write(&seg, [(lines.join("\n") + "\n{\"seq\":6,").as_bytes(), &[0u8; 4096]].concat()).expect("seg");
        let r = verify_chain(d.path(), &key.verifying_key()).expect("verify");
        assert_eq!(r.failure.map(|f| (f.kind, f.seq)), Some(("torn_tail", 6)));
    }

    #[test]
    fn tamper_kinds() {
        check(|l| l[2] = l[2].replace("\"r3\"", "\"rX\""), "edited", 3);
        check(
            |l| {
                l.remove(3);
            },
            "missing",
            4,
        );
        check(|l| l.swap(1, 2), "reordered", 2);
        check(
            |l| {
                l.truncate(4);
            },
            "missing",
            5,
        );
        check(
            |l| {
                // A forged event with a correct hash and link, claiming seq 3.
                let prev: Value = serde_json::from_str(&l[1]).expect("json");
                let ev = RequestEvent { event: "request".into(), tenant: "acme".into(), request_id: "forged".into(), ..Default::default() };
                let (forged, _) = seal_event(&ev, 3, "2026-01-01T00:00:00.000000Z", "acme:i1", prev["hash"].as_str().expect("hash"));
                l.insert(2, forged);
            },
            "inserted",
            3,
        );
    }
}
