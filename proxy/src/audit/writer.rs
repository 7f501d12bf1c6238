//! One chain's writer: a dedicated thread fed by a channel that
//! `Audit::record` bounds with the `pending` count against `audit.queue`.
//!
//! - Group commit: every `commit_interval` the writer drains its channel and
//!   writes and `fdatasync`s the events, in groups of at most `commit_events`.
//!   A chain with nothing to write parks until its next event, waking once
//!   per `idle_check` ([`IDLE_CHECK`]) to check its segment and root schedule.
//! - Segments `segment-NNNNNN.jsonl` rotate at `segment_bytes`; signed roots
//!   go to `roots.jsonl` beside them, every `root_interval` and at shutdown.
//! - On start the chain continues from its last durable event. A torn last
//!   line (a crash mid-write) is moved aside to `torn-<seq>-<unix>.bin` and
//!   recorded as a `torn_tail` event, so the chain stays verifiable and the
//!   truncation is on the record.
//! - Any failure to persist (I/O error, the segment replaced or removed
//!   underneath, the queue reaching 90 % of `audit.queue`) marks the chain unhealthy; the
//!   gateway then refuses new requests with `503 audit_unavailable` until a
//!   retry succeeds. Unwritten events are kept and retried, never dropped
//!   silently. While commits fail the writer holds at most one group
//!   (`commit_events`) and leaves the rest queued, so the backlog stays
//!   within `audit.queue` plus that group; beyond it events are dropped and
//!   counted, and events left unwritten at shutdown are counted as lost.

use super::canonical::{render, Rendered};
use super::record::{genesis, rfc3339_now, seal_rendered_into, RequestEvent, Root};
use ed25519_dalek::SigningKey;
use prometheus::IntCounterVec;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writer settings.
#[derive(Clone)]
pub struct WriterSettings {
    pub commit_interval: Duration,
    pub commit_events: usize,
    pub segment_bytes: u64,
    pub root_interval: Duration,
    pub channel_capacity: usize,
    pub signing_key: Arc<SigningKey>,
    /// How long an idle writer parks between checks ([`IDLE_CHECK`]).
    pub idle_check: Duration,
}

/// How often an idle writer wakes to check that its segment is still in place
/// (and to write a root when one is due): the gateway's setting. A chain that
/// stays idle notices a removed or replaced segment within this; one that is
/// written to notices at its next commit, as before.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

pub enum Msg {
    /// An event rendered on the proxy thread (see [`super::canonical`]).
    Event(Rendered),
    Shutdown,
}

/// State shared between the writer and the proxy threads.
pub struct Shared {
    pub unhealthy: AtomicBool,
    /// Events in the channel, not yet taken by the writer.
    pub pending: AtomicUsize,
    /// Set by [`super::Auditor::shutdown`]: a writer that cannot persist
    /// stops instead of waiting for a `Shutdown` behind its backlog.
    pub stopping: AtomicBool,
    pub events: IntCounterVec,
}

pub struct ChainWriter {
    dir: PathBuf,
    chain: String,
    seq: u64,
    head: String,
    seg_index: u32,
    seg: File,
    seg_len: u64,
    seg_id: (u64, u64),
    roots: File,
    last_root_seq: u64,
    last_root_at: Instant,
    settings: WriterSettings,
    shared: Arc<Shared>,
    /// Events accepted but not yet durable.
    batch: Vec<Rendered>,
    /// The segment bytes of one commit, reused.
    buf: Vec<u8>,
}

fn segment_name(i: u32) -> String {
    format!("segment-{i:06}.jsonl")
}

fn io<E: std::fmt::Display>(what: &str, p: &Path) -> impl FnOnce(E) -> String {
    let what = what.to_owned();
    let p = p.display().to_string();
    move |e| format!("{what} {p}: {e}")
}

fn open_append(p: &Path) -> Result<File, String> {
    OpenOptions::new().create(true).append(true).read(true).open(p).map_err(io("open", p))
}

fn file_id(f: &File) -> (u64, u64) {
    f.metadata().map(|m| (m.dev(), m.ino())).unwrap_or((0, 0))
}

/// The segments of a chain directory, in order.
pub fn segments(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix("segment-")?.strip_suffix(".jsonl")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The end of a file: the last `n` bytes or more, growing the window until it
/// holds two newlines (a last line and the one before it) or the whole file.
/// Recovery reads only this, so a large segment costs no memory at start.
fn tail(f: &mut File, path: &Path) -> Result<(u64, Vec<u8>), String> {
    let len = f.metadata().map_err(io("stat", path))?.len();
    let mut back = len.min(64 << 10);
    loop {
        let offset = len - back;
        f.seek(SeekFrom::Start(offset)).map_err(io("seek", path))?;
        let mut data = Vec::with_capacity(back as usize);
        f.read_to_end(&mut data).map_err(io("read", path))?;
        if offset == 0 || data.iter().filter(|b| **b == b'\n').count() >= 2 {
            return Ok((offset, data));
        }
        back = len.min(back * 4);
    }
}

/// Cut a torn last line off `path`: returns the torn bytes.
fn cut_torn_tail(path: &Path) -> Result<Vec<u8>, String> {
    let mut f = OpenOptions::new().read(true).write(true).open(path).map_err(io("open", path))?;
    let (offset, data) = tail(&mut f, path)?;
    let keep = data.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    // A complete last line that is not valid JSON is torn too (a crash can
    // leave zeros after a partial write on some filesystems).
    let mut keep = keep;
    if keep > 0 {
        let start = data[..keep - 1].iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
        if serde_json::from_slice::<serde_json::Value>(&data[start..keep - 1]).is_err() {
            keep = start;
        }
    }
    if keep == data.len() {
        return Ok(Vec::new());
    }
    let torn = data[keep..].to_vec();
    f.set_len(offset + keep as u64).map_err(io("truncate", path))?;
    f.sync_all().map_err(io("sync", path))?;
    Ok(torn)
}

/// The last complete line of a file, if any.
fn last_line(path: &Path) -> Result<Option<serde_json::Value>, String> {
    let mut f = File::open(path).map_err(io("open", path))?;
    let (_, data) = tail(&mut f, path)?;
    let text = String::from_utf8_lossy(&data);
    match text.trim_end_matches('\n').rsplit('\n').next() {
        Some(l) if !l.is_empty() => Ok(Some(serde_json::from_str(l).map_err(|e| format!("{}: last line: {e}", path.display()))?)),
        _ => Ok(None),
    }
}

impl ChainWriter {
    /// Open (or create) the chain in `dir`, recovering a torn tail.
    pub fn open(dir: PathBuf, chain: String, settings: WriterSettings, shared: Arc<Shared>) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let segs = segments(&dir);
        let mut torn: Vec<u8> = Vec::new();
        let (seg_index, mut seq, mut head) = match segs.last() {
            None => (1, 0, genesis(&chain)),
            Some((i, p)) => {
                torn = cut_torn_tail(p)?;
                // The newest non-empty segment holds the last event.
                let mut found = None;
                for (_, sp) in segs.iter().rev() {
                    if let Some(v) = last_line(sp)? {
                        found = Some(v);
                        break;
                    }
                }
                match found {
                    None => (*i, 0, genesis(&chain)),
                    Some(v) => {
                        let seq = v.get("seq").and_then(|s| s.as_u64()).ok_or("last event has no seq")?;
                        let hash = v.get("hash").and_then(|s| s.as_str()).ok_or("last event has no hash")?.to_owned();
                        if v.get("chain").and_then(|c| c.as_str()) != Some(chain.as_str()) {
                            return Err(format!("{}: the chain id does not match {chain}", dir.display()));
                        }
                        (*i, seq, hash)
                    }
                }
            }
        };
        let seg_path = dir.join(segment_name(seg_index));
        let seg = open_append(&seg_path)?;
        let seg_len = seg.metadata().map_err(io("stat", &seg_path))?.len();
        let roots_path = dir.join("roots.jsonl");
        if roots_path.exists() {
            cut_torn_tail(&roots_path)?;
        }
        let roots = open_append(&roots_path)?;
        let last_root_seq = match last_line(&roots_path)? {
            Some(v) => v.get("seq").and_then(|s| s.as_u64()).unwrap_or(0),
            None => 0,
        };
        let mut w = ChainWriter {
            seg_id: file_id(&seg),
            dir,
            chain,
            seq: 0,
            head: String::new(),
            seg_index,
            seg,
            seg_len,
            roots,
            last_root_seq,
            last_root_at: Instant::now(),
            settings,
            shared,
            batch: Vec::new(),
            buf: Vec::new(),
        };
        std::mem::swap(&mut w.seq, &mut seq);
        std::mem::swap(&mut w.head, &mut head);
        if !torn.is_empty() {
            let name = format!(
                "torn-{}-{}.bin",
                w.seq + 1,
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
            );
            let p = w.dir.join(&name);
            std::fs::write(&p, &torn).map_err(io("write", &p))?;
            let note = RequestEvent {
                event: "torn_tail".into(),
                decision: "error".into(),
                reason: "torn_tail_recovered".into(),
                torn_bytes: Some(torn.len() as u64),
                torn_file: Some(name),
                ..Default::default()
            };
            w.batch.push(render(&note));
            w.commit()?;
        }
        Ok(w)
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Write and sync the batch. On failure the batch is kept, the file is
    /// cut back to its last durable length, and the error is returned.
    fn commit(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let seg_path = self.dir.join(segment_name(self.seg_index));
        let on_disk = std::fs::metadata(&seg_path).map(|m| (m.dev(), m.ino()));
        if on_disk.ok() != Some(self.seg_id) {
            return Err(format!("{} was removed or replaced", seg_path.display()));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let (mut seq, mut head) = (self.seq, self.head.clone());
        let ts = rfc3339_now();
        for ev in &self.batch {
            head = seal_rendered_into(ev, seq + 1, &ts, &self.chain, &head, &mut buf);
            seq += 1;
        }
        let res = self.seg.write_all(&buf).and_then(|_| self.seg.sync_data());
        let written = buf.len() as u64;
        self.buf = buf;
        if let Err(e) = res {
            let _ = self.seg.set_len(self.seg_len);
            return Err(format!("write {}: {e}", seg_path.display()));
        }
        self.seg_len += written;
        self.shared.events.with_label_values(&["written"]).inc_by(self.batch.len() as u64);
        self.batch.clear();
        self.seq = seq;
        self.head = head;
        if self.seg_len >= self.settings.segment_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), String> {
        let next = self.dir.join(segment_name(self.seg_index + 1));
        let f = open_append(&next)?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.seg_index += 1;
        self.seg_id = file_id(&f);
        self.seg = f;
        self.seg_len = 0;
        Ok(())
    }

    /// Append a signed root for the current head, if it advanced.
    fn write_root(&mut self) -> Result<(), String> {
        self.last_root_at = Instant::now();
        if self.seq == 0 || self.seq == self.last_root_seq {
            return Ok(());
        }
        let root = Root::sign(&self.settings.signing_key, &self.chain, self.seq, &self.head, &rfc3339_now())?;
        let mut line = serde_json::to_vec(&root).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.roots.write_all(&line).and_then(|_| self.roots.sync_data()).map_err(|e| format!("roots: {e}"))?;
        self.last_root_seq = self.seq;
        Ok(())
    }

    fn set_health(&self, ok: bool) {
        let drained = self.shared.pending.load(Ordering::Relaxed) < self.settings.channel_capacity / 2;
        self.shared.unhealthy.store(!(ok && drained), Ordering::Relaxed);
    }

    fn try_commit(&mut self) {
        match self.commit() {
            Ok(()) => self.set_health(true),
            Err(e) => {
                if !self.shared.unhealthy.swap(true, Ordering::Relaxed) {
                    tracing::error!(chain = %self.chain, error = %e, "audit chain cannot persist; refusing requests");
                }
                self.shared.events.with_label_values(&["failed"]).inc();
            }
        }
    }

    /// The writer loop; returns at shutdown or when every sender is gone.
    ///
    /// While events flow it sleeps for `commit_interval`, then drains the
    /// channel and commits in groups of at most `commit_events`. It does not
    /// block in `recv` then, so a proxy thread's send never has to wake it:
    /// one wake-up per interval, not one per request.
    ///
    /// An interval that brought nothing, with nothing held, makes it idle: it
    /// parks in `recv` until the next event (whose send wakes it once) or
    /// until `idle_check` has passed, when it checks the segment and the
    /// root schedule. So an idle chain costs about one wake-up a second, not
    /// one per `commit_interval` (a gateway with 100 tenants would otherwise
    /// wake 10,000 times a second doing nothing), and an event that ends an
    /// idle spell is still written within one `commit_interval` of its
    /// arrival.
    ///
    /// While commits fail it holds one group and takes nothing more from the
    /// channel, where `pending` counts the backlog against `audit.queue`
    /// (beyond it [`super::Auditor::record`] drops and counts), and retries
    /// once per interval. A shutdown (`Shared::stopping`) that finds it so
    /// stalled makes one last attempt; any shutdown that leaves events
    /// unwritten logs and counts them as `lost`.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut idle = false;
        loop {
            if idle {
                match rx.recv_timeout(self.idle_wait()) {
                    Ok(Msg::Event(ev)) => {
                        self.shared.pending.fetch_sub(1, Ordering::Relaxed);
                        self.batch.push(ev);
                    }
                    Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                        self.finish();
                        return;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        self.set_health(self.seg_still_ours());
                        self.root_if_due();
                        continue;
                    }
                }
            }
            std::thread::sleep(self.settings.commit_interval);
            let mut stop = false;
            let mut stalled = false;
            let mut took = idle;
            loop {
                if self.batch.len() >= self.settings.commit_events {
                    self.try_commit();
                    if !self.batch.is_empty() {
                        stalled = true;
                        break;
                    }
                }
                match rx.try_recv() {
                    Ok(Msg::Event(ev)) => {
                        self.shared.pending.fetch_sub(1, Ordering::Relaxed);
                        self.batch.push(ev);
                        took = true;
                    }
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => {
                        stop = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            if self.batch.is_empty() {
                self.set_health(self.seg_still_ours());
            } else if !stalled {
                self.try_commit();
            }
            if stop || (stalled && self.shared.stopping.load(Ordering::Relaxed)) {
                self.finish();
                return;
            }
            self.root_if_due();
            idle = !took && self.batch.is_empty();
        }
    }

    /// How long an idle writer parks: until the next idle check or the next
    /// root, whichever comes first.
    fn idle_wait(&self) -> Duration {
        let to_root = self.settings.root_interval.saturating_sub(self.last_root_at.elapsed());
        self.settings.idle_check.min(to_root).max(self.settings.commit_interval)
    }

    fn root_if_due(&mut self) {
        if self.last_root_at.elapsed() >= self.settings.root_interval {
            if let Err(e) = self.write_root() {
                tracing::error!(chain = %self.chain, error = %e, "audit: root not written");
                self.shared.unhealthy.store(true, Ordering::Relaxed);
            }
        }
    }

    /// At shutdown: a final root over what is durable, and an account of
    /// what is not (events held or still queued: counted as `lost`).
    fn finish(&mut self) {
        if let Err(e) = self.write_root() {
            tracing::error!(chain = %self.chain, error = %e, "audit: final root not written");
        }
        let lost = self.batch.len() + self.shared.pending.load(Ordering::Relaxed);
        if lost > 0 {
            tracing::error!(chain = %self.chain, lost, "audit: shutting down with events that could not be persisted");
            self.shared.events.with_label_values(&["lost"]).inc_by(lost as u64);
        }
    }

    fn seg_still_ours(&self) -> bool {
        let p = self.dir.join(segment_name(self.seg_index));
        std::fs::metadata(&p).map(|m| (m.dev(), m.ino())).ok() == Some(self.seg_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("segment-000001.jsonl");
        std::fs::write(&p, content).expect("write");
        (dir, p)
    }

    fn lines(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| format!("{{\"seq\":{i},\"pad\":\"{}\"}}\n", "x".repeat(200)).into_bytes()).collect()
    }

    #[test]
    fn torn_tails_are_cut_from_large_segments_by_reading_only_the_end() {
        // ~1 MiB of complete lines, far beyond the first 64 KiB window.
        let good = lines(5000);
        assert!(good.len() > 1 << 20);
        let (_d, p) = file_with(&good);
        assert!(cut_torn_tail(&p).expect("cut").is_empty(), "a clean file is left alone");
        assert_eq!(std::fs::read(&p).expect("read"), good);
        assert_eq!(last_line(&p).expect("last").and_then(|v| v["seq"].as_u64()), Some(4999));

        // A partial last line.
        let mut torn = good.clone();
        torn.extend_from_slice(b"{\"seq\":5000,\"pa");
        let (_d, p) = file_with(&torn);
        assert_eq!(cut_torn_tail(&p).expect("cut"), b"{\"seq\":5000,\"pa");
        assert_eq!(std::fs::read(&p).expect("read"), good);

        // A complete but invalid last line (zeros after a crash).
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0u8; 300]);
        zeros.push(b'\n');
        let (_d, p) = file_with(&zeros);
        assert_eq!(cut_torn_tail(&p).expect("cut").len(), 301);
        assert_eq!(std::fs::read(&p).expect("read"), good);

        // A torn tail longer than the first window (no newline in it).
        let mut long = good.clone();
        long.extend(std::iter::repeat_n(b'y', 200 << 10));
        let (_d, p) = file_with(&long);
        assert_eq!(cut_torn_tail(&p).expect("cut").len(), 200 << 10);
        assert_eq!(std::fs::read(&p).expect("read"), good);
    }
}
