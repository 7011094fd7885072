//! The append queue both backends share: a request carries its batch, the channel its
//! receipts go back on, and the queue permits it holds until it is written (backpressure).

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use custos_core::entry::PreparedEntry;

use crate::{Appended, Result, StoreError};

/// One caller's batch, waiting for the writer.
pub(crate) struct WriteRequest {
    pub(crate) entries: Vec<PreparedEntry>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Appended>>>,
    pub(crate) _permit: OwnedSemaphorePermit,
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
        _permit: permit,
    })
    .await
    .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
    rx.await
        .map_err(|_| StoreError::Unavailable("writer stopped before acknowledging".into()))?
}
