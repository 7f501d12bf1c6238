//! One chain's writer: a dedicated thread fed by a channel that
//! `Audit::record` bounds with the `pending` count against `audit.queue`.
//!
//! - Group commit: every `commit_interval` the writer drains its channel and
//!   writes and `fdatasync`s the events, in groups of at most `commit_events`.
//!   A chain with nothing to write parks until its next event, waking once
//!   per `idle_check` ([`IDLE_CHECK`]) to check its segment and root schedule.
//! - Segments `segment-NNNNNN.jsonl` rotate at `segment_bytes`; signed roots
//!   go to `roots.jsonl` beside them, every `root_interval` and at shutdown.
//! - The live segment is zero-filled ahead of its events, [`PREALLOC_STEP`]
//!   at a time, and each commit overwrites that space, as databases keep
//!   their logs: the file's size does not change, so a commit's
//!   `fdatasync` has only data blocks to flush and, on a journaling
//!   filesystem (ext4, XFS), no journal commit to wait for. (ext4 without a
//!   journal still writes the inode, for its new mtime.) A finished
//!   segment, and the live one at shutdown, is cut back to its last event,
//!   so closed files are plain JSON lines. The zero bytes after the last
//!   event of a live or crashed segment are space not yet written:
//!   recovery, the verifier and `audit export` ignore them.
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
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
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

/// How far ahead of its events the live segment is zero-filled (capped at
/// `segment_bytes`): one size change (one journal commit) per this many
/// bytes of events instead of one per commit.
pub const PREALLOC_STEP: u64 = 1 << 20;

/// Zeros for filling segment space ahead of the events.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

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
    /// Where the events end: the next commit is written here.
    seg_len: u64,
    /// The segment file's size: `seg_len` plus the zero-filled space ahead.
    seg_alloc: u64,
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

/// A segment is written at explicit offsets (into its zero-filled space),
/// not in append mode.
fn open_segment(p: &Path) -> Result<File, String> {
    OpenOptions::new().create(true).read(true).write(true).truncate(false).open(p).map_err(io("open", p))
}

/// Where the written bytes of a file end: after its last non-zero byte. The
/// zeros after it are segment space filled ahead and never written (an event
/// line never holds a NUL byte). Reads back from the end, 64 KiB at a time.
pub fn data_end(f: &File, path: &Path) -> Result<u64, String> {
    let mut end = f.metadata().map_err(io("stat", path))?.len();
    let mut block = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        f.read_exact_at(chunk, start).map_err(io("read", path))?;
        if let Some(i) = chunk.iter().rposition(|b| *b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Cut the zero-filled space off a file (an exported copy of a live
/// segment), so that it ends at its last event.
pub fn trim_unwritten(path: &Path) -> Result<(), String> {
    let f = OpenOptions::new().read(true).write(true).open(path).map_err(io("open", path))?;
    let end = data_end(&f, path)?;
    if end < f.metadata().map_err(io("stat", path))?.len() {
        f.set_len(end).map_err(io("truncate", path))?;
    }
    Ok(())
}

fn file_id(f: &File) -> (u64, u64) {
    f.metadata().map(|m| (m.dev(), m.ino())).unwrap_or((0, 0))
}

/// The index of a segment file (`segment-NNNNNN.jsonl`), if `name` is one.
pub fn segment_index(name: &str) -> Option<u32> {
    name.strip_prefix("segment-")?.strip_suffix(".jsonl")?.parse().ok()
}

/// The segments of a chain directory, in order.
pub fn segments(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((segment_index(e.file_name().to_str()?)?, e.path())))
        .collect();
    out.sort();
    out
}

/// The end of a file's written bytes (up to `len`, see [`data_end`]): the
/// last 64 KiB or more, growing the window until it holds two newlines (a
/// last line and the one before it) or the whole file. Recovery reads only
/// this, so a large segment costs no memory at start.
fn tail(f: &File, path: &Path, len: u64) -> Result<(u64, Vec<u8>), String> {
    let mut back = len.min(64 << 10);
    loop {
        let offset = len - back;
        let mut data = vec![0u8; back as usize];
        f.read_exact_at(&mut data, offset).map_err(io("read", path))?;
        if offset == 0 || data.iter().filter(|b| **b == b'\n').count() >= 2 {
            return Ok((offset, data));
        }
        back = len.min(back * 4);
    }
}

/// Cut a torn last line, and any zero-filled space after the last event,
/// off `path`: returns the torn bytes (none when only zeros were cut).
fn cut_torn_tail(path: &Path) -> Result<Vec<u8>, String> {
    let f = OpenOptions::new().read(true).write(true).open(path).map_err(io("open", path))?;
    let len = f.metadata().map_err(io("stat", path))?.len();
    let (offset, data) = tail(&f, path, data_end(&f, path)?)?;
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
    if offset + keep as u64 == len {
        return Ok(Vec::new());
    }
    let torn = data[keep..].to_vec();
    f.set_len(offset + keep as u64).map_err(io("truncate", path))?;
    f.sync_all().map_err(io("sync", path))?;
    Ok(torn)
}

/// The last complete line of a file, if any.
fn last_line(path: &Path) -> Result<Option<serde_json::Value>, String> {
    let f = File::open(path).map_err(io("open", path))?;
    let (_, data) = tail(&f, path, data_end(&f, path)?)?;
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
        let seg = open_segment(&seg_path)?;
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
            seg_alloc: seg_len,
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
        let written = buf.len() as u64;
        let res =
            self.reserve(self.seg_len + written).and_then(|_| self.seg.write_all_at(&buf, self.seg_len)).and_then(|_| self.seg.sync_data());
        self.buf = buf;
        if let Err(e) = res {
            // Back to the last durable event: this drops a partial write
            // and the zero-filled space, which the next commit fills again.
            let _ = self.seg.set_len(self.seg_len);
            self.seg_alloc = self.seg_len;
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

    /// Make the segment file at least `end` bytes long, zero-filling up to
    /// [`PREALLOC_STEP`] (capped at `segment_bytes`) past what it has. The
    /// commit's own bytes are written over `seg_len..end` right after, so
    /// only the space beyond `end` is filled here; the commit's `fdatasync`
    /// makes the new size durable with the events.
    fn reserve(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.seg_alloc {
            return Ok(());
        }
        let target = end.max((self.seg_alloc + PREALLOC_STEP).min(self.settings.segment_bytes));
        let mut at = end.max(self.seg_alloc);
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            self.seg.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        self.seg_alloc = target;
        Ok(())
    }

    /// Cut the zero-filled space off the segment, so that it ends at its
    /// last event (before rotating, and at shutdown).
    fn trim_segment(&mut self) -> Result<(), String> {
        if self.seg_alloc > self.seg_len {
            let p = self.dir.join(segment_name(self.seg_index));
            self.seg.set_len(self.seg_len).and_then(|_| self.seg.sync_data()).map_err(io("truncate", &p))?;
            self.seg_alloc = self.seg_len;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), String> {
        self.trim_segment()?;
        let next = self.dir.join(segment_name(self.seg_index + 1));
        let f = open_segment(&next)?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.seg_index += 1;
        self.seg_id = file_id(&f);
        self.seg = f;
        self.seg_len = 0;
        self.seg_alloc = 0;
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
        if let Err(e) = self.trim_segment() {
            tracing::error!(chain = %self.chain, error = %e, "audit: the segment's unwritten space was not cut");
        }
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

    fn writer(dir: &Path, segment_bytes: u64) -> ChainWriter {
        let events = IntCounterVec::new(prometheus::Opts::new("t", "t"), &["result"]).expect("counter");
        let shared =
            Arc::new(Shared { unhealthy: AtomicBool::new(false), pending: AtomicUsize::new(0), stopping: AtomicBool::new(false), events });
        let settings = WriterSettings { segment_bytes, ..crate::audit::tests::settings(64, 64) };
        ChainWriter::open(dir.join("acme/i1"), "acme:i1".into(), settings, shared).expect("open")
    }

    /// Commit `n` request events.
    fn commit(w: &mut ChainWriter, n: usize) {
        for i in 0..n {
            let path = format!("/svc/{i}");
            let ev =
                RequestEvent { event: "request".into(), tenant: "acme".into(), path: Some(path.as_str().into()), ..Default::default() };
            w.batch.push(render(&ev));
        }
        w.commit().expect("commit");
    }

    fn size(p: &Path) -> u64 {
        std::fs::metadata(p).expect("stat").len()
    }

    /// Each line of a segment is an event, with nothing after the last.
    fn seqs(p: &Path) -> Vec<u64> {
        let text = std::fs::read_to_string(p).expect("read");
        assert!(text.ends_with('\n') && !text.contains('\0'), "{p:?} is not plain JSON lines");
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["seq"].as_u64().expect("seq")).collect()
    }

    #[test]
    fn the_live_segment_is_zero_filled_ahead_so_commits_do_not_change_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path(), 64 << 20);
        let seg = w.dir.join(segment_name(1));
        commit(&mut w, 3);
        assert_eq!(size(&seg), PREALLOC_STEP, "the first commit fills a step ahead");
        let first = w.seg_len;
        commit(&mut w, 5);
        assert_eq!(size(&seg), PREALLOC_STEP, "later commits overwrite that space");
        let f = File::open(&seg).expect("open");
        assert_eq!(data_end(&f, &seg).expect("end"), w.seg_len);
        assert!(w.seg_len > first);
        // At shutdown the segment is cut back to its last event.
        w.finish();
        assert_eq!(size(&seg), w.seg_len);
        assert_eq!(seqs(&seg), (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn a_crash_leaves_zeros_that_recovery_cuts_without_calling_them_torn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path(), 64 << 20);
        let chain = w.dir.clone();
        commit(&mut w, 4);
        drop(w); // no shutdown: the zero-filled space stays
        assert_eq!(size(&chain.join(segment_name(1))), PREALLOC_STEP);
        let mut w = writer(dir.path(), 64 << 20);
        assert_eq!(w.seq(), 4, "the chain continues from its last event");
        assert!(!walk_names(&chain).iter().any(|n| n.starts_with("torn-")));
        commit(&mut w, 2);
        w.finish();
        assert_eq!(seqs(&chain.join(segment_name(1))), (1..=6).collect::<Vec<_>>());
    }

    #[test]
    fn a_write_torn_inside_the_zero_filled_space_is_moved_aside_and_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path(), 64 << 20);
        let chain = w.dir.clone();
        commit(&mut w, 4);
        let seg = OpenOptions::new().write(true).open(chain.join(segment_name(1))).expect("open");
        seg.write_all_at(b"{\"seq\":5,\"tena", w.seg_len).expect("torn write");
        drop(w);
        let mut w = writer(dir.path(), 64 << 20);
        assert_eq!(w.seq(), 5, "the recovery note is event 5");
        let torn: Vec<String> = walk_names(&chain).into_iter().filter(|n| n.starts_with("torn-5-")).collect();
        assert_eq!(torn.len(), 1);
        assert_eq!(std::fs::read(chain.join(&torn[0])).expect("torn"), b"{\"seq\":5,\"tena", "exactly the torn bytes, no zeros");
        w.finish();
        assert_eq!(seqs(&chain.join(segment_name(1))), (1..=5).collect::<Vec<_>>());
    }

    #[test]
    fn a_finished_segment_is_cut_back_before_the_next_one_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path(), 4096);
        let chain = w.dir.clone();
        while w.seg_index == 1 {
            commit(&mut w, 3);
        }
        let first = chain.join(segment_name(1));
        let n = seqs(&first).len() as u64;
        assert!(size(&first) >= 4096 && n > 3);
        commit(&mut w, 1);
        w.finish();
        assert_eq!(seqs(&chain.join(segment_name(2))), ((n + 1)..=(n + 1)).collect::<Vec<_>>());
    }

    fn walk_names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir).expect("dir").flatten().filter_map(|e| e.file_name().into_string().ok()).collect()
    }

    #[test]
    fn exported_copies_end_at_their_last_event() {
        let (_d, p) = file_with(&[&lines(3)[..], &[0u8; 5000]].concat());
        trim_unwritten(&p).expect("trim");
        assert_eq!(std::fs::read(&p).expect("read"), lines(3));
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
