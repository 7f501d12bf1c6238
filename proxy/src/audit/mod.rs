//! The audit chain: one hash-chained, signed, crash-safe receipt per request.
//!
//! - [`record`]: the event and root formats, hashing and signing;
//! - [`canonical`]: an event's canonical JSON, written without intermediates;
//! - [`writer`]: one writer thread per chain, group commit, recovery;
//! - [`verify`]: the offline verifier behind `capgate audit verify`.
//!
//! Chains are per (tenant, instance): the chain id is `<tenant>:<instance>`,
//! and files live in `audit.dir/<tenant>/<instance>/`. Each gateway instance
//! (its id is `audit.instance`, or a random id kept in `audit.dir/instance`)
//! writes its own chain per tenant, so replicas never fork a chain and a
//! tenant's export holds only its own events. Requests that never identified
//! a tenant (no route, no or bad token) go to the `_unauthenticated` chain.
//!
//! Proxy threads never touch the disk: [`Auditor::record`] renders the
//! event's canonical JSON into one buffer and sends it on a channel, without
//! blocking; the writer only stitches in its members, hashes and writes.
//! Metrics count writes and failures; nothing reads audit payloads for
//! telemetry.

pub mod canonical;
pub mod record;
pub mod verify;
pub mod writer;

use capgate_filters::fast_hash::FastMap;
use record::RequestEvent;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use writer::{ChainWriter, Msg, Shared, WriterSettings};

/// The tenant id of the chain for requests without a tenant.
pub const UNAUTHENTICATED: &str = "_unauthenticated";

struct Chain {
    /// Unbounded as a channel (its memory follows the backlog); bounded by
    /// `Shared::pending` against `audit.queue`.
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Every chain of this gateway instance.
pub struct Auditor {
    /// Empty when the trail is disabled (`audit.enabled = false`).
    chains: FastMap<String, Chain>,
    enabled: bool,
    capacity: usize,
    pub instance: String,
    pub pubkey_did: String,
}

/// Read or create the instance id kept in the audit directory.
pub fn instance_id(dir: &Path, configured: Option<&str>) -> Result<String, String> {
    if let Some(i) = configured {
        return Ok(i.to_owned());
    }
    let p = dir.join("instance");
    match std::fs::read_to_string(&p) {
        Ok(s) if crate::config::valid_name(s.trim()) => Ok(s.trim().to_owned()),
        Ok(_) => Err(format!("{} does not hold a valid instance id", p.display())),
        Err(_) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut b = [0u8; 6];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
            let id = format!("i{}", record::hex(&b));
            std::fs::write(&p, &id).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(id)
        }
    }
}

impl Auditor {
    /// Open (recovering) one chain per tenant plus the unauthenticated chain.
    pub fn open(
        dir: &Path,
        instance: &str,
        tenants: &[String],
        settings: WriterSettings,
        events: prometheus::IntCounterVec,
    ) -> Result<Auditor, String> {
        let pubkey_did = capgate_filters::ucan::did::did_key(&settings.signing_key.verifying_key());
        let mut chains = FastMap::default();
        let all = tenants.iter().map(String::as_str).chain(std::iter::once(UNAUTHENTICATED));
        for tenant in all {
            let chain_dir: PathBuf = dir.join(tenant).join(instance);
            let chain_id = format!("{tenant}:{instance}");
            let shared = Arc::new(Shared {
                unhealthy: AtomicBool::new(false),
                pending: AtomicUsize::new(0),
                stopping: AtomicBool::new(false),
                events: events.clone(),
            });
            let w = ChainWriter::open(chain_dir, chain_id.clone(), settings.clone(), shared.clone())?;
            let (tx, rx) = channel();
            let thread = std::thread::Builder::new()
                .name(format!("audit-{tenant}"))
                .spawn(move || w.run(rx))
                .map_err(|e| format!("audit writer thread: {e}"))?;
            chains.insert(tenant.to_owned(), Chain { tx, shared, thread: Mutex::new(Some(thread)) });
        }
        Ok(Auditor { chains, enabled: true, capacity: settings.channel_capacity, instance: instance.to_owned(), pubkey_did })
    }

    /// No trail at all (`audit.enabled = false`, benchmarks only).
    pub fn disabled(instance: &str, pubkey_did: String) -> Auditor {
        Auditor { chains: FastMap::default(), enabled: false, capacity: 1, instance: instance.to_owned(), pubkey_did }
    }

    /// False when any chain cannot persist: new requests must be refused.
    pub fn healthy(&self) -> bool {
        self.chains.values().all(|c| !c.shared.unhealthy.load(Ordering::Relaxed))
    }

    /// Render and queue an event without blocking. A queue at 90 % of
    /// `audit.queue` marks the chain unhealthy (new requests are refused
    /// before the queue is full, so events are not lost); a full one drops
    /// the event and says so.
    pub fn record(&self, ev: &RequestEvent<'_>) {
        if !self.enabled {
            return;
        }
        let Some(chain) = self.chains.get(&*ev.tenant).or_else(|| self.chains.get(UNAUTHENTICATED)) else {
            return;
        };
        let pending = chain.shared.pending.fetch_add(1, Ordering::Relaxed) + 1;
        if pending * 10 >= self.capacity * 9 {
            chain.shared.unhealthy.store(true, Ordering::Relaxed);
        }
        if pending > self.capacity || chain.tx.send(Msg::Event(canonical::render(ev))).is_err() {
            chain.shared.pending.fetch_sub(1, Ordering::Relaxed);
            chain.shared.unhealthy.store(true, Ordering::Relaxed);
            chain.shared.events.with_label_values(&["dropped"]).inc();
            tracing::error!(tenant = %ev_tenant(&self.chains, chain), "audit queue full: event dropped; refusing requests");
        }
    }

    /// Flush every chain, write final roots and stop the writers.
    pub fn shutdown(&self) {
        for c in self.chains.values() {
            c.shared.stopping.store(true, Ordering::Relaxed);
            let _ = c.tx.send(Msg::Shutdown);
        }
        for c in self.chains.values() {
            if let Some(t) = c.thread.lock().ok().and_then(|mut t| t.take()) {
                let _ = t.join();
            }
        }
    }
}

fn ev_tenant<'a>(chains: &'a FastMap<String, Chain>, c: &Chain) -> &'a str {
    chains.iter().find(|(_, v)| std::ptr::eq(*v, c)).map(|(k, _)| k.as_str()).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn event() -> RequestEvent<'static> {
        RequestEvent {
            event: "request".into(),
            tenant: "acme".into(),
            method: "GET".into(),
            decision: "allow".into(),
            ..Default::default()
        }
    }

    /// A writer that retries every millisecond (the writer's tests use it too).
    pub(super) fn settings(queue: usize, group: usize) -> WriterSettings {
        WriterSettings {
            commit_interval: Duration::from_millis(1),
            commit_events: group,
            segment_bytes: 1 << 20,
            root_interval: Duration::from_secs(3600),
            channel_capacity: queue,
            signing_key: Arc::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
            idle_check: Duration::from_secs(3600),
        }
    }

    /// The voluntary context switches of this process's threads named `name`.
    fn wakeups(name: &str) -> u64 {
        let mut total = 0;
        for t in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
            let status = std::fs::read_to_string(t.path().join("status")).expect("status");
            let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches:")).expect("switches");
            total += line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).expect("count");
        }
        total
    }

    /// A chain with nothing to write parks instead of waking every commit
    /// interval; the next event's send wakes it and is written at once (the
    /// idle check here is an hour, so nothing else could), and a shutdown
    /// wakes it too.
    #[test]
    fn an_idle_writer_parks_until_its_next_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = prometheus::IntCounterVec::new(prometheus::Opts::new("t", "t"), &["result"]).expect("counter");
        let count = |r: &str| events.with_label_values(&[r]).get() as usize;
        let a = Auditor::open(dir.path(), "i1", &["idle".to_owned()], settings(64, 4), events.clone()).expect("open");
        let ev = RequestEvent { tenant: "idle".into(), ..event() };
        a.record(&ev);
        wait_for("the first event to be written", Duration::from_secs(5), || count("written") == 1);
        std::thread::sleep(Duration::from_millis(20));
        let before = wakeups("audit-idle");
        assert!(before > 0, "the writer thread was not found");
        std::thread::sleep(Duration::from_millis(300));
        // Polling at its 1-ms commit interval it would have woken ~300 times.
        let woke = wakeups("audit-idle") - before;
        assert!(woke <= 3, "the idle writer woke {woke} times in 300 ms");
        a.record(&ev);
        a.record(&ev);
        wait_for("the events that end the idle spell", Duration::from_secs(5), || count("written") == 3);
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        a.shutdown();
        assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited for the idle check");
        assert_eq!(count("lost"), 0);
        let lines = std::fs::read_to_string(dir.path().join("idle/i1/segment-000001.jsonl")).expect("segment");
        assert_eq!(lines.lines().count(), 3);
    }

    fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Events held by a writer that cannot commit are counted as lost at
    /// shutdown even when it holds less than a group.
    #[test]
    fn a_partial_batch_that_cannot_be_written_is_counted_as_lost_at_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = prometheus::IntCounterVec::new(prometheus::Opts::new("t", "t"), &["result"]).expect("counter");
        let count = |r: &str| events.with_label_values(&[r]).get() as usize;
        let a = Auditor::open(dir.path(), "i1", &["acme".to_owned()], settings(64, 4), events.clone()).expect("open");
        a.record(&event());
        wait_for("the first event to be written", Duration::from_secs(5), || count("written") >= 1);
        std::fs::remove_dir_all(dir.path().join("acme")).expect("remove");
        a.record(&event());
        a.record(&event());
        wait_for("a failed commit", Duration::from_secs(5), || count("failed") >= 1);
        a.shutdown();
        assert_eq!(count("lost"), 2);
        assert_eq!(count("written"), 1);
    }

    /// A chain whose files vanish underneath its writer: the backlog stays
    /// within `audit.queue` however long the failure lasts (the writer takes
    /// one group, not one more event per retry), everything beyond it is
    /// dropped and counted, and shutdown does not wait for the disk.
    #[test]
    fn a_failing_chain_keeps_its_backlog_within_the_queue_and_still_shuts_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (capacity, group) = (64, 4);
        let events = prometheus::IntCounterVec::new(prometheus::Opts::new("t", "t"), &["result"]).expect("counter");
        let count = |r: &str| events.with_label_values(&[r]).get() as usize;
        let a = Auditor::open(dir.path(), "i1", &["acme".to_owned()], settings(capacity, group), events.clone()).expect("open");
        let chain = &a.chains["acme"];
        a.record(&event());
        wait_for("the first event to be written", Duration::from_secs(5), || count("written") >= 1);
        assert!(a.healthy());

        std::fs::remove_dir_all(dir.path().join("acme")).expect("remove");
        a.record(&event());
        wait_for("a failed commit", Duration::from_secs(5), || count("failed") >= 1 && !a.healthy());

        // Fill the queue and let the writer fill its group.
        for _ in 0..200 {
            a.record(&event());
        }
        let held = || 201 - chain.shared.pending.load(Ordering::Relaxed) - count("dropped");
        wait_for("the writer to hold one group", Duration::from_secs(5), || held() >= group);
        let queued = chain.shared.pending.load(Ordering::Relaxed);
        assert!(queued <= capacity, "pending {queued} > queue {capacity}");
        let held = held();
        assert_eq!(held, group, "the writer holds more than one group");
        // Its retries take nothing more from the queue.
        let failed_before = count("failed");
        wait_for("twenty retries", Duration::from_secs(5), || count("failed") > failed_before + 20);
        assert_eq!(chain.shared.pending.load(Ordering::Relaxed), queued, "a retry took events from the queue");

        // A second burst tops the queue up to `audit.queue`; the rest is dropped.
        let dropped = count("dropped");
        for _ in 0..100 {
            a.record(&event());
        }
        assert_eq!(count("dropped"), dropped + 100 - (capacity - queued));
        assert_eq!(chain.shared.pending.load(Ordering::Relaxed), capacity);
        assert!(!a.healthy());

        let started = Instant::now();
        a.shutdown();
        assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited for the disk");
        assert_eq!(count("lost"), capacity + held, "what could not be written is counted at shutdown");
        assert_eq!(count("written"), 1);
    }
}
