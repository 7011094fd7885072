//! The dispatcher: follows the ledger, fills the outbox, delivers to the webhooks, records
//! the outcomes. One task; deliveries run concurrently beside it.
//!
//! Each step, in this order:
//! 1. *settle*: outcomes of finished attempts are recorded in the ledger (`alert_delivered`,
//!    `alert_delivery_failed`), then in the outbox (`done`, or the new attempt count and
//!    time). A delivery is marked done only once its `alert_delivered` entry is durable.
//! 2. *examine*: entries after the cursor are read in seq order (while the outbox has room);
//!    alerts become pending deliveries, made durable before the cursor passes them.
//! 3. *launch*: due deliveries are started, at most `max_in_flight_per_sink` per webhook —
//!    one probe at a time, after a pause growing like a delivery's backoff, while a webhook
//!    is failing, so a dead webhook is not hammered. When it answers again, every delivery
//!    waiting for it is due at once.
//! 4. *wait* for an attempt to finish, the next due time, the poll interval or the stop
//!    signal.
//!
//! On stop, attempts in flight are abandoned (they stay pending), finished ones are settled
//! if the ledger takes them within a moment, and the outbox is compacted. An I/O failure of
//! the outbox is logged and the outbox reopened from disk (at-least-once covers whatever was
//! in progress); a damaged outbox ends the dispatcher with the error.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use custos_core::entry::EntryBody;
use custos_ledger::{Ledger, LedgerError, parse_record};
use custos_store::{Clock, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::AlertError;
use crate::backoff::{backoff, should_report};
use crate::config::{AlertsConfig, WebhookConfig};
use crate::deliver::{Failure, Sink};
use crate::outbox::{self, Change, Delivery, Journal, Outbox, OutboxState};
use crate::payload;
use crate::record::{self, DeliveryFacts};
use crate::rule::AlertRule;

/// Most entries examined in one step.
const EXAMINE_CHUNK: u64 = 4096;
/// How long the final settling on stop may take.
const FINAL_SETTLE: Duration = Duration::from_secs(2);
/// Longest wait between two tries to reopen a failed outbox.
const MAX_REOPEN_DELAY: Duration = Duration::from_secs(30);

/// Counters of a running dispatcher, for `/metrics`. Shared: read them at any time.
#[derive(Debug, Default)]
pub struct DispatcherStats {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    reported: AtomicU64,
    pending: AtomicU64,
    cursor: AtomicU64,
    outbox_full: AtomicBool,
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Successful deliveries (counter).
    pub delivered: u64,
    /// Failed attempts (counter).
    pub failed_attempts: u64,
    /// `alert_delivery_failed` entries recorded (counter).
    pub reported: u64,
    /// Deliveries in the outbox (gauge).
    pub pending: u64,
    /// Entries below this seq have been examined (gauge).
    pub cursor: u64,
    /// The outbox is full and the cursor waits (gauge).
    pub outbox_full: bool,
}

impl DispatcherStats {
    /// Successful deliveries since start.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Failed delivery attempts since start.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }

    /// `alert_delivery_failed` entries recorded since start.
    pub fn reported(&self) -> u64 {
        self.reported.load(Ordering::Relaxed)
    }

    /// Deliveries waiting in the outbox.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// The outbox cursor: entries below it have been examined.
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Relaxed)
    }

    /// Whether the outbox is full (backpressure: new alerts wait in the ledger).
    pub fn outbox_full(&self) -> bool {
        self.outbox_full.load(Ordering::Relaxed)
    }

    /// Every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            delivered: self.delivered(),
            failed_attempts: self.failed_attempts(),
            reported: self.reported(),
            pending: self.pending(),
            cursor: self.cursor(),
            outbox_full: self.outbox_full(),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn show(&self, state: &OutboxState) {
        self.pending.store(state.len() as u64, Ordering::Relaxed);
        self.cursor.store(state.cursor(), Ordering::Relaxed);
    }
}

/// Runs a dispatcher for `config` over `ledger` until `stop` turns true (or its sender is
/// dropped). Fails at once on a bad configuration or outbox; see [`Dispatcher`] to read its
/// [`DispatcherStats`] while it runs.
pub async fn run_dispatcher<S: Store>(
    ledger: Arc<Ledger<S>>,
    config: AlertsConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), AlertError> {
    Dispatcher::open(ledger, config)?.run(stop).await
}

/// One webhook as the dispatcher tracks it.
struct Slot {
    sink: Arc<Sink>,
    /// Scheduled deliveries: (not before, ms; entry seq).
    due: BTreeSet<(u64, u64)>,
    in_flight: usize,
    /// Failed attempts in a row; while > 0 the webhook gets one probe at a time.
    failures: u32,
    /// No probe before this time (ms).
    paused_until: u64,
}

/// A finished attempt, to be recorded.
enum Settled {
    Delivered(Delivery),
    Failed {
        delivery: Delivery,
        report: Option<String>,
    },
}

/// What one attempt task returns.
struct Attempted {
    sink: usize,
    seq: u64,
    result: Result<(), Failure>,
}

/// What examining a stretch of the ledger found.
struct Scan {
    size: u64,
    next: u64,
    deliveries: Vec<Delivery>,
}

enum Step {
    Continue,
    Stop,
}

/// Follows the ledger and delivers its alerts to the configured webhooks. Open it, take its
/// [`Dispatcher::stats`], then [`Dispatcher::run`] it (usually in its own task).
pub struct Dispatcher<S: Store> {
    ledger: Arc<Ledger<S>>,
    config: AlertsConfig,
    dir: PathBuf,
    rule: AlertRule,
    slots: Vec<Slot>,
    by_name: HashMap<String, usize>,
    state: OutboxState,
    journal: Arc<Mutex<Option<Journal>>>,
    journal_lines: u64,
    stats: Arc<DispatcherStats>,
    clock: Clock,
    rng: StdRng,
    settling: Vec<Settled>,
    in_flight: JoinSet<Attempted>,
    tasks: HashMap<tokio::task::Id, (usize, u64)>,
    full: bool,
    removed_sinks_checked: bool,
    ledger_unreadable: bool,
    ledger_unwritable: bool,
}

impl<S: Store> std::fmt::Debug for Dispatcher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("outbox", &self.dir)
            .field("webhooks", &self.by_name.keys().collect::<Vec<_>>())
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl<S: Store> Dispatcher<S> {
    /// Checks `config`, builds the webhook clients and opens (or creates) the outbox in
    /// `config.outbox_dir` — a new one starting at the ledger's end, or at 0 with
    /// `from_start`. Errors: a bad setting, an outbox in use, damaged, or ahead of this
    /// ledger (another ledger's outbox).
    pub fn open(ledger: Arc<Ledger<S>>, config: AlertsConfig) -> Result<Self, AlertError> {
        config.validate().map_err(AlertError::Config)?;
        let dir = config.outbox_dir.clone().ok_or_else(|| {
            AlertError::Config("outbox_dir is not set (the server uses <data_dir>/alerts)".into())
        })?;
        let slots = config
            .webhooks
            .iter()
            .map(|hook| {
                Ok(Slot {
                    sink: Arc::new(Sink::new(hook.clone())?),
                    due: BTreeSet::new(),
                    in_flight: 0,
                    failures: 0,
                    paused_until: 0,
                })
            })
            .collect::<Result<Vec<_>, AlertError>>()?;
        let by_name = config
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, hook)| (hook.name.clone(), i))
            .collect();
        let outbox = open_outbox(&ledger, &dir, config.from_start)?;
        if outbox.created() {
            tracing::info!(
                outbox = %dir.display(),
                cursor = outbox.state().cursor(),
                "created the alert outbox"
            );
        }
        let mut dispatcher = Dispatcher {
            ledger,
            rule: AlertRule::from_config(&config),
            config,
            dir,
            slots,
            by_name,
            state: OutboxState::default(),
            journal: Arc::new(Mutex::new(None)),
            journal_lines: 0,
            stats: Arc::new(DispatcherStats::default()),
            clock: custos_store::system_clock(),
            rng: StdRng::from_entropy(),
            settling: Vec::new(),
            in_flight: JoinSet::new(),
            tasks: HashMap::new(),
            full: false,
            removed_sinks_checked: false,
            ledger_unreadable: false,
            ledger_unwritable: false,
        };
        dispatcher.install(outbox);
        Ok(dispatcher)
    }

    /// Uses `clock` for attempt times (nanoseconds since the epoch).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Draws backoff jitter from an RNG seeded with `seed` (reproducible schedules).
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// The dispatcher's counters.
    pub fn stats(&self) -> Arc<DispatcherStats> {
        self.stats.clone()
    }

    /// Runs until `stop` turns true or its sender is dropped, then abandons attempts in
    /// flight (they stay pending), settles what finished and compacts the outbox.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), AlertError> {
        let result = self.run_until_stopped(&mut stop).await;
        self.shutdown().await;
        result
    }

    async fn run_until_stopped(
        &mut self,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), AlertError> {
        loop {
            if is_stopped(stop) {
                return Ok(());
            }
            let step = if self.removed_sinks_checked {
                self.step(stop).await
            } else {
                tokio::select! {
                    biased;
                    () = stopped(stop) => Ok(Step::Stop),
                    r = self.discard_removed_sinks() => r.map(|()| Step::Continue),
                }
            };
            match step {
                Ok(Step::Continue) => {}
                Ok(Step::Stop) => return Ok(()),
                Err(e @ AlertError::Io { .. }) => {
                    tracing::error!(error = %e, outbox = %self.dir.display(), "the alert outbox failed; reopening it");
                    if self.reopen(stop).await? {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn step(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Step, AlertError> {
        let behind = tokio::select! {
            biased;
            () = stopped(stop) => return Ok(Step::Stop),
            r = async {
                self.settle().await?;
                self.examine().await
            } => r?,
        };
        self.launch();
        if self.journal_wants_compaction() {
            self.compact().await?;
        }
        let wait = if behind {
            Duration::ZERO
        } else {
            self.next_wake()
        };
        tokio::select! {
            biased;
            () = stopped(stop) => return Ok(Step::Stop),
            Some(joined) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                self.joined(joined);
            }
            () = tokio::time::sleep(wait) => {}
        }
        while let Some(joined) = self.in_flight.try_join_next_with_id() {
            self.joined(joined);
        }
        Ok(Step::Continue)
    }

    /// Takes an opened outbox: its state, its journal, the webhooks' schedules.
    fn install(&mut self, outbox: Outbox) {
        let (state, journal) = outbox.into_parts();
        self.journal_lines = journal.lines();
        *self.journal.lock().unwrap_or_else(PoisonError::into_inner) = Some(journal);
        for slot in &mut self.slots {
            slot.due.clear();
            slot.in_flight = 0;
            slot.failures = 0;
            slot.paused_until = 0;
        }
        for d in state.pending() {
            if let Some(&i) = self.by_name.get(&d.sink) {
                self.slots[i].due.insert((d.next_attempt_ms, d.seq));
            }
        }
        self.state = state;
        self.removed_sinks_checked = false;
        self.stats.show(&self.state);
    }

    /// Pending deliveries of webhooks no longer configured are discarded — recorded first as
    /// `alert_sink_removed`, so nothing goes silently. If the ledger refuses, they are kept
    /// (and tried again at the next start).
    async fn discard_removed_sinks(&mut self) -> Result<(), AlertError> {
        let mut removed: HashMap<String, Vec<u64>> = HashMap::new();
        for d in self.state.pending() {
            if !self.by_name.contains_key(&d.sink) {
                removed.entry(d.sink.clone()).or_default().push(d.seq);
            }
        }
        if removed.is_empty() {
            self.removed_sinks_checked = true;
            return Ok(());
        }
        let mut removed: Vec<(String, Vec<u64>)> = removed.into_iter().collect();
        removed.sort();
        let bodies = removed
            .iter()
            .map(|(sink, seqs)| record::sink_removed(sink, seqs))
            .collect();
        if let Err(e) = self.ledger.append_batch(bodies).await {
            tracing::error!(error = %e, "recording the discard of deliveries to removed webhooks failed; keeping them until the next start");
            self.removed_sinks_checked = true;
            return Ok(());
        }
        let mut changes = Vec::new();
        for (sink, seqs) in removed {
            tracing::warn!(sink = %sink, discarded = seqs.len(), "discarded pending alert deliveries of a webhook that is no longer configured");
            changes.extend(seqs.into_iter().map(|seq| Change::Done {
                sink: sink.clone(),
                seq,
            }));
        }
        self.commit(changes).await?;
        self.removed_sinks_checked = true;
        Ok(())
    }

    /// Records finished attempts in the ledger, then in the outbox.
    async fn settle(&mut self) -> Result<(), AlertError> {
        if self.settling.is_empty() {
            return Ok(());
        }
        let mut bodies: Vec<EntryBody> = Vec::new();
        let mut reports = 0;
        for s in &self.settling {
            match s {
                Settled::Delivered(d) => bodies.push(record::delivered(&facts(d))),
                Settled::Failed {
                    delivery,
                    report: Some(error),
                } => {
                    bodies.push(record::delivery_failed(&facts(delivery), error));
                    reports += 1;
                }
                Settled::Failed { report: None, .. } => {}
            }
        }
        if !bodies.is_empty() {
            match self.ledger.append_batch(bodies).await {
                Ok(_) => {
                    if self.ledger_unwritable {
                        tracing::info!("recording alert deliveries in the ledger works again");
                        self.ledger_unwritable = false;
                    }
                    self.stats.reported.fetch_add(reports, Ordering::Relaxed);
                }
                Err(e @ LedgerError::InvalidEntry { .. }) => {
                    // Cannot happen with the bodies record.rs builds; never block on it.
                    tracing::error!(error = %e, "an alert delivery record was refused by the ledger; settling without it");
                }
                Err(e) => {
                    if !self.ledger_unwritable {
                        tracing::error!(error = %e, "recording alert deliveries in the ledger failed; retrying");
                        self.ledger_unwritable = true;
                    }
                    return Ok(());
                }
            }
        }
        let settled = std::mem::take(&mut self.settling);
        let mut changes = Vec::with_capacity(settled.len());
        let mut retries = Vec::new();
        for s in settled {
            match s {
                Settled::Delivered(d) => changes.push(Change::Done {
                    sink: d.sink,
                    seq: d.seq,
                }),
                Settled::Failed { delivery, .. } => {
                    retries.push((
                        delivery.sink.clone(),
                        delivery.next_attempt_ms,
                        delivery.seq,
                    ));
                    changes.push(Change::Pending(delivery));
                }
            }
        }
        self.commit(changes).await?;
        for (sink, at, seq) in retries {
            if let Some(&i) = self.by_name.get(&sink) {
                self.slots[i].due.insert((at, seq));
            }
        }
        Ok(())
    }

    /// Examines entries after the cursor while the outbox has room. Returns whether more are
    /// waiting (then the next step comes at once).
    async fn examine(&mut self) -> Result<bool, AlertError> {
        let cursor = self.state.cursor();
        let room = self.config.max_pending.saturating_sub(self.state.len());
        let ledger = self.ledger.clone();
        let rule = self.rule.clone();
        let hooks: Vec<WebhookConfig> = self.slots.iter().map(|s| s.sink.config.clone()).collect();
        let scanned =
            tokio::task::spawn_blocking(move || scan(&ledger, &rule, &hooks, cursor, room)).await;
        let scan = match scanned {
            Ok(Ok(scan)) => {
                if self.ledger_unreadable {
                    tracing::info!("reading the ledger for alerts works again");
                    self.ledger_unreadable = false;
                }
                scan
            }
            Ok(Err(e)) => {
                self.unreadable(&e.to_string(), cursor);
                return Ok(false);
            }
            Err(e) => {
                self.unreadable(&e.to_string(), cursor);
                return Ok(false);
            }
        };
        if room == 0 && cursor < scan.size {
            self.note_full(cursor).await;
            return Ok(false);
        }
        self.note_room();
        if scan.next == cursor {
            return Ok(false);
        }
        let new: Vec<Delivery> = scan
            .deliveries
            .into_iter()
            .filter(|d| self.state.get(&d.sink, d.seq).is_none())
            .collect();
        let mut changes: Vec<Change> = new.iter().cloned().map(Change::Pending).collect();
        changes.push(Change::Cursor(scan.next));
        self.commit(changes).await?;
        for d in new {
            if let Some(&i) = self.by_name.get(&d.sink) {
                self.slots[i].due.insert((d.next_attempt_ms, d.seq));
            }
        }
        Ok(scan.next < scan.size)
    }

    fn unreadable(&mut self, error: &str, cursor: u64) {
        if !self.ledger_unreadable {
            tracing::error!(
                error,
                cursor,
                "reading the ledger for alerts failed; retrying"
            );
            self.ledger_unreadable = true;
        }
    }

    /// The outbox is full: say so once per episode (log, stats, an `alert_outbox_full` entry).
    async fn note_full(&mut self, cursor: u64) {
        self.stats.outbox_full.store(true, Ordering::Relaxed);
        if self.full {
            return;
        }
        self.full = true;
        tracing::warn!(
            pending = self.state.len(),
            max_pending = self.config.max_pending,
            cursor,
            "the alert outbox is full; new alerts wait in the ledger until deliveries complete"
        );
        let body = record::outbox_full(self.state.len(), self.config.max_pending, cursor);
        if let Err(e) = self.ledger.append(body).await {
            tracing::error!(error = %e, "recording that the alert outbox is full failed");
        }
    }

    fn note_room(&mut self) {
        if self.full {
            self.full = false;
            self.stats.outbox_full.store(false, Ordering::Relaxed);
            tracing::info!(
                pending = self.state.len(),
                "the alert outbox has room again"
            );
        }
    }

    /// Starts due deliveries, within each webhook's limit.
    fn launch(&mut self) {
        let now = self.now_ms();
        let limit = self.config.max_in_flight_per_sink;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let probing = slot.failures > 0;
            if probing && now < slot.paused_until {
                continue;
            }
            let cap = if probing { 1 } else { limit };
            while slot.in_flight < cap {
                let Some(&(at, seq)) = slot.due.first() else {
                    break;
                };
                if at > now {
                    break;
                }
                slot.due.pop_first();
                let Some(d) = self.state.get(slot.sink.name(), seq) else {
                    continue;
                };
                slot.in_flight += 1;
                let handle = self.in_flight.spawn(attempt(
                    self.ledger.clone(),
                    slot.sink.clone(),
                    i,
                    seq,
                    d.entry_id.clone(),
                ));
                self.tasks.insert(handle.id(), (i, seq));
            }
        }
    }

    fn joined(&mut self, joined: Result<(tokio::task::Id, Attempted), tokio::task::JoinError>) {
        let attempted = match joined {
            Ok((id, a)) => {
                self.tasks.remove(&id);
                a
            }
            Err(e) => {
                let Some((sink, seq)) = self.tasks.remove(&e.id()) else {
                    return;
                };
                Attempted {
                    sink,
                    seq,
                    result: Err(Failure::retry(format!("the delivery task failed: {e}"))),
                }
            }
        };
        self.finished(attempted);
    }

    /// Takes the outcome of one attempt: schedules the retry or the settling.
    fn finished(&mut self, Attempted { sink, seq, result }: Attempted) {
        let now = self.now_ms();
        let initial = Duration::from_millis(self.config.initial_backoff_ms);
        let max = Duration::from_millis(self.config.max_backoff_ms);
        let slot = &mut self.slots[sink];
        slot.in_flight = slot.in_flight.saturating_sub(1);
        let Some(mut d) = self.state.get(slot.sink.name(), seq).cloned() else {
            return;
        };
        d.attempts = d.attempts.saturating_add(1);
        match result {
            Ok(()) => {
                DispatcherStats::count(&self.stats.delivered);
                if slot.failures > 0 {
                    tracing::info!(sink = %slot.sink.name(), "alert webhook answers again; sending what waited");
                    slot.failures = 0;
                    slot.due = std::mem::take(&mut slot.due)
                        .into_iter()
                        .map(|(_, seq)| (now, seq))
                        .collect();
                }
                self.settling.push(Settled::Delivered(d));
            }
            Err(failure) => {
                DispatcherStats::count(&self.stats.failed_attempts);
                slot.failures = slot.failures.saturating_add(1);
                let pause = backoff(slot.failures, initial, max, self.rng.gen_range(0.0..1.0));
                slot.paused_until = now.saturating_add(millis(pause));
                let delay = backoff(d.attempts, initial, max, self.rng.gen_range(0.0..1.0));
                d.next_attempt_ms = now.saturating_add(millis(delay));
                let report = should_report(
                    d.attempts,
                    self.config.max_attempts_before_report,
                    failure.rejected,
                    d.reported,
                );
                if report {
                    d.reported = true;
                    tracing::error!(
                        sink = %slot.sink.name(),
                        seq,
                        attempts = d.attempts,
                        error = %failure.message,
                        "alert delivery keeps failing; recording alert_delivery_failed and retrying"
                    );
                } else if slot.failures == 1 {
                    tracing::warn!(
                        sink = %slot.sink.name(),
                        seq,
                        attempts = d.attempts,
                        error = %failure.message,
                        "alert delivery failed; retrying with backoff"
                    );
                } else {
                    tracing::debug!(
                        sink = %slot.sink.name(),
                        seq,
                        attempts = d.attempts,
                        error = %failure.message,
                        "alert delivery failed again"
                    );
                }
                self.settling.push(Settled::Failed {
                    delivery: d,
                    report: report.then_some(failure.message),
                });
            }
        }
    }

    /// How long to wait for the next due delivery (at most the poll interval).
    fn next_wake(&self) -> Duration {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        if !self.settling.is_empty() {
            return poll;
        }
        let now = self.now_ms();
        let limit = self.config.max_in_flight_per_sink;
        let mut wake = poll;
        for slot in &self.slots {
            let probing = slot.failures > 0;
            let cap = if probing { 1 } else { limit };
            if slot.in_flight >= cap {
                continue;
            }
            if let Some(&(at, _)) = slot.due.first() {
                let at = if probing {
                    at.max(slot.paused_until)
                } else {
                    at
                };
                wake = wake.min(Duration::from_millis(at.saturating_sub(now)));
            }
        }
        wake
    }

    /// Makes `changes` durable, then applies them.
    async fn commit(&mut self, changes: Vec<Change>) -> Result<(), AlertError> {
        let n = changes.len() as u64;
        let changes = self
            .with_journal(move |j| j.append(&changes).map(|()| changes))
            .await?;
        for change in changes {
            self.state.apply(change);
        }
        self.journal_lines += n;
        self.stats.show(&self.state);
        Ok(())
    }

    fn journal_wants_compaction(&self) -> bool {
        outbox::wants_compaction(self.journal_lines, self.state.len())
    }

    async fn compact(&mut self) -> Result<(), AlertError> {
        let state = self.state.clone();
        self.with_journal(move |j| j.rewrite(&state)).await?;
        self.journal_lines = 2 + self.state.len() as u64;
        Ok(())
    }

    /// Runs `f` on the journal in a blocking task.
    async fn with_journal<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Journal) -> Result<T, AlertError> + Send + 'static,
    ) -> Result<T, AlertError> {
        let journal = self.journal.clone();
        let context = format!("writing the alert outbox {}", self.dir.display());
        let closed = {
            let context = context.clone();
            move || AlertError::Io {
                context,
                source: std::io::Error::other("the outbox is closed after an earlier failure"),
            }
        };
        tokio::task::spawn_blocking(move || {
            let mut guard = journal.lock().unwrap_or_else(PoisonError::into_inner);
            let j = guard.as_mut().ok_or_else(closed)?;
            f(j)
        })
        .await
        .map_err(|e| AlertError::Io {
            context,
            source: std::io::Error::other(e),
        })?
    }

    /// After an outbox failure: drops everything in progress (at-least-once: it is retried),
    /// releases the journal and reopens it, retrying I/O failures with a growing delay.
    /// Returns whether `stop` came first.
    async fn reopen(&mut self, stop: &mut watch::Receiver<bool>) -> Result<bool, AlertError> {
        self.in_flight.shutdown().await;
        self.tasks.clear();
        self.settling.clear();
        *self.journal.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let mut delay = Duration::from_secs(1);
        loop {
            tokio::select! {
                biased;
                () = stopped(stop) => return Ok(true),
                () = tokio::time::sleep(delay) => {}
            }
            match open_outbox(&self.ledger, &self.dir, self.config.from_start) {
                Ok(outbox) => {
                    tracing::info!(outbox = %self.dir.display(), "reopened the alert outbox");
                    self.install(outbox);
                    return Ok(false);
                }
                Err(e @ AlertError::Io { .. }) => {
                    tracing::error!(error = %e, "reopening the alert outbox failed; retrying");
                    delay = (delay * 2).min(MAX_REOPEN_DELAY);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn shutdown(&mut self) {
        self.in_flight.shutdown().await;
        self.tasks.clear();
        if !self.settling.is_empty()
            && tokio::time::timeout(FINAL_SETTLE, self.settle())
                .await
                .is_err()
        {
            tracing::warn!(
                "stopping before the last alert deliveries were recorded; they will be retried"
            );
        }
        if let Err(e) = self.compact().await {
            tracing::error!(error = %e, "compacting the alert outbox on stop failed");
        }
        *self.journal.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn now_ms(&self) -> u64 {
        u64::try_from((self.clock)() / 1_000_000).unwrap_or(0)
    }
}

/// Opens the outbox for `ledger`; a new one starts at the ledger's end (or 0).
fn open_outbox<S: Store>(
    ledger: &Ledger<S>,
    dir: &std::path::Path,
    from_start: bool,
) -> Result<Outbox, AlertError> {
    let size = ledger.size()?;
    let outbox = Outbox::open(dir, if from_start { 0 } else { size })?;
    if outbox.state().cursor() > size {
        return Err(AlertError::Outbox {
            dir: dir.to_owned(),
            problem: format!(
                "its cursor is at seq {} but the ledger holds {size} entries: is it another \
                 ledger's outbox? Move it away to start alerting afresh",
                outbox.state().cursor()
            ),
        });
    }
    Ok(outbox)
}

/// Reads entries `cursor..` (up to a chunk) and returns the deliveries of the alerts among
/// them, stopping once `room` deliveries are found.
fn scan<S: Store>(
    ledger: &Ledger<S>,
    rule: &AlertRule,
    hooks: &[WebhookConfig],
    cursor: u64,
    room: usize,
) -> Result<Scan, LedgerError> {
    let size = ledger.size()?;
    let mut scan = Scan {
        size,
        next: cursor,
        deliveries: Vec::new(),
    };
    if room == 0 || cursor >= size {
        return Ok(scan);
    }
    let to = size.min(cursor.saturating_add(EXAMINE_CHUNK));
    for record in ledger.store().read_range(cursor, to)? {
        if scan.deliveries.len() >= room {
            break;
        }
        if record.seq != scan.next {
            return Err(LedgerError::Store(custos_store::StoreError::Corrupt {
                seq: scan.next,
                problem: format!("read seq {} where {} was expected", record.seq, scan.next),
            }));
        }
        let entry = parse_record(record.seq, &record.bytes)?;
        if rule.selects_entry(&entry) {
            for hook in hooks {
                if hook.accepts(&entry.tenant, &entry.event_type, entry.severity) {
                    scan.deliveries.push(Delivery::new(
                        &hook.name,
                        entry.seq,
                        &entry.id,
                        &entry.tenant,
                    ));
                }
            }
        }
        scan.next = record.seq + 1;
    }
    Ok(scan)
}

/// One attempt: reads the entry, checks it is the one the outbox means, builds the payload,
/// POSTs it.
async fn attempt<S: Store>(
    ledger: Arc<Ledger<S>>,
    sink: Arc<Sink>,
    index: usize,
    seq: u64,
    entry_id: String,
) -> Attempted {
    let result = async {
        let read = tokio::task::spawn_blocking(move || ledger.get(seq)).await;
        let entry = match read {
            Ok(Ok(entry)) => entry,
            Ok(Err(e)) => return Err(Failure::retry(format!("reading entry {seq}: {e}"))),
            Err(e) => return Err(Failure::retry(format!("reading entry {seq}: {e}"))),
        };
        if entry.id != entry_id {
            return Err(Failure::rejected(format!(
                "the ledger's entry {seq} has id {}, the outbox expects {entry_id}: \
                 the outbox belongs to another ledger",
                entry.id
            )));
        }
        let body = sink.body(&entry)?;
        sink.post(&payload::idempotency_key(&entry), body).await
    }
    .await;
    Attempted {
        sink: index,
        seq,
        result,
    }
}

fn facts(d: &Delivery) -> DeliveryFacts<'_> {
    DeliveryFacts {
        sink: &d.sink,
        tenant: &d.tenant,
        entry_seq: d.seq,
        entry_id: &d.entry_id,
        attempts: d.attempts,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether `stop` says stop: true, or its sender is gone.
fn is_stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Resolves once `stop` says stop. Cancel-safe.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}
