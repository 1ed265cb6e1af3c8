//! Group commit. Writes that arrive while a batch is being committed wait
//! and go together in the next one, so many callers share one transaction
//! and one WAL flush. Under light load a batch holds one write and costs
//! what that write costs alone; under load the batches grow by themselves,
//! with no timer to tune.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::queue::store::StoreError;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One writer task for one kind of write, fed by a queue.
pub(super) struct Batcher<Req, Resp> {
    queue: mpsc::UnboundedSender<(Req, Reply<Resp>)>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Start the writer: `write` commits up to `max` requests in one go and
    /// answers each, in order; its own error fails the whole batch. The
    /// task ends when the batcher is dropped.
    pub(super) fn spawn<F, Fut>(max: usize, write: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Result<Resp, StoreError>>, StoreError>> + Send,
    {
        let (queue, mut pending) = mpsc::unbounded_channel::<(Req, Reply<Resp>)>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            while pending.recv_many(&mut batch, max).await > 0 {
                let (requests, replies): (Vec<Req>, Vec<Reply<Resp>>) = batch.drain(..).unzip();
                match write(requests).await {
                    Ok(answers) => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(answer);
                        }
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Io(message.clone())));
                        }
                    }
                }
            }
        });
        Batcher { queue }
    }

    /// Queue `request` and wait for its batch to commit.
    pub(super) async fn call(&self, request: Req) -> Result<Resp, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .map_err(|_| StoreError::Io("the store's writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Io("the store's writer stopped before answering".into()))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn waiting_requests_share_a_batch_and_each_gets_its_own_answer() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let batcher = Arc::new(Batcher::spawn(8, move |requests: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                // Slow enough that the others queue up behind the first.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(requests
                    .into_iter()
                    .map(|n| {
                        if n == 13 {
                            Err(StoreError::NotFound(13))
                        } else {
                            Ok(n * 2)
                        }
                    })
                    .collect())
            }
        }));
        let calls: Vec<_> = (0..20)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(n).await })
            })
            .collect();
        for (n, call) in calls.into_iter().enumerate() {
            let answer = call.await.unwrap();
            if n == 13 {
                assert!(matches!(answer, Err(StoreError::NotFound(13))));
            } else {
                assert_eq!(answer.unwrap(), n as u32 * 2);
            }
        }
        // 20 requests, at most 8 a batch: at least 3 batches, far fewer than 20.
        let n = batches.load(Ordering::SeqCst);
        assert!((3..=6).contains(&n), "{n} batches");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_request_in_it() {
        let batcher = Batcher::spawn(4, |_: Vec<u32>| async {
            Err::<Vec<Result<u32, StoreError>>, _>(StoreError::Io("connection reset".into()))
        });
        let e = batcher.call(1).await.unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
    }
}
