//! The append queue both backends share: a request carries its batch, the channel its
//! receipts go back on, and the queue permits it holds until it is written (backpressure).

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use custos_core::entry::PreparedEntry;

use crate::{Appended, Result, StoreError};

/// One caller's batch, waiting for the writer.
pub(crate) struct WriteRequest {
    pub(crate) entries: Vec<PreparedEntry>,
    reply: oneshot::Sender<Result<Vec<Appended>>>,
    permit: OwnedSemaphorePermit,
}

impl WriteRequest {
    /// Answers the caller. The batch's queue places are given back first, so a caller that
    /// appends again as soon as it is answered finds them free.
    pub(crate) fn answer(self, result: Result<Vec<Appended>>) {
        drop(self.permit);
        let _ = self.reply.send(result);
    }
}

/// The writer's channel, while the store is open (`close` takes it).
pub(crate) fn sender(
    tx: &std::sync::Mutex<Option<mpsc::Sender<WriteRequest>>>,
) -> Result<mpsc::Sender<WriteRequest>> {
    tx.lock()
        .ok()
        .and_then(|t| t.clone())
        .ok_or_else(|| StoreError::Unavailable("store is closed".into()))
}

/// Hands `batch` to the writer behind `tx` and waits for its receipts.
pub(crate) async fn submit(
    tx: mpsc::Sender<WriteRequest>,
    batch: Vec<PreparedEntry>,
    permit: OwnedSemaphorePermit,
) -> Result<Vec<Appended>> {
    let (reply, rx) = oneshot::channel();
    tx.send(WriteRequest {
        entries: batch,
        reply,
        permit,
    })
    .await
    .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
    rx.await
        .map_err(|_| StoreError::Unavailable("writer stopped before acknowledging".into()))?
}

/// Admission to the append queue: at most `max_queued` entries wait for the writer at once.
pub(crate) struct Admission {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    max_queued: usize,
}

impl Admission {
    pub(crate) fn new(max_queued: usize) -> Self {
        Admission {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(max_queued)),
            max_queued,
        }
    }

    /// Checks a batch's shape: 1 to `MAX_BATCH` entries.
    fn check(batch: &[PreparedEntry]) -> Result<u32> {
        let max = crate::embedded::MAX_BATCH;
        if batch.is_empty() {
            return Err(StoreError::Invalid("empty batch".into()));
        }
        if batch.len() > max {
            return Err(StoreError::Invalid(format!(
                "batch of {} entries is over the limit of {max}",
                batch.len()
            )));
        }
        u32::try_from(batch.len()).map_err(|_| StoreError::Invalid("batch too large".into()))
    }

    /// Waits until `batch` fits in the queue. A batch larger than the whole queue never would:
    /// it is refused rather than left waiting forever.
    pub(crate) async fn admit(&self, batch: &[PreparedEntry]) -> Result<OwnedSemaphorePermit> {
        let n = Self::check(batch)?;
        if batch.len() > self.max_queued {
            return Err(StoreError::Invalid(format!(
                "batch of {} entries is larger than the append queue ({})",
                batch.len(),
                self.max_queued
            )));
        }
        self.permits
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))
    }

    /// Admits `batch` if it fits now; [`StoreError::Overloaded`] if not.
    pub(crate) fn try_admit(&self, batch: &[PreparedEntry]) -> Result<OwnedSemaphorePermit> {
        let n = Self::check(batch)?;
        self.permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::Closed => {
                    StoreError::Unavailable("store is closed".into())
                }
                tokio::sync::TryAcquireError::NoPermits => StoreError::Overloaded {
                    queued: self.max_queued - self.permits.available_permits(),
                },
            })
    }

    /// Refuses every later admission (the store is closing).
    pub(crate) fn close(&self) {
        self.permits.close();
    }
}
