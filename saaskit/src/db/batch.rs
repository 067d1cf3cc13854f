//! Batched reads: requests that ask the same question at the same moment, each for its own
//! key, share one statement.
//!
//! A page every customer opens first (the dashboard) is one cheap statement, yet each request
//! paid for its own trip to the database: on SQLite a hop to sqlx's worker thread and back
//! (twice: the statement, then the ping when the connection goes back to the pool), on
//! PostgreSQL three round trips. A [`Batcher`] queues the keys asked for; one task takes every
//! key waiting (up to [`MAX_KEYS`]), runs one load for all of them and answers each caller
//! with its own value. Under load, the trips are shared by the whole batch; alone, a request
//! waits for nothing but its own load.
//!
//! A load starts after every ask of its batch was queued, so a caller sees at least what was
//! committed before it asked (read-your-writes holds).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{OnceCell, Semaphore, mpsc, oneshot};

/// The most keys one load is asked for.
pub const MAX_KEYS: usize = 64;
/// Loads running at once: while one waits on the database, the next batch fills.
const IN_FLIGHT: usize = 2;
/// Asks waiting beyond this make callers wait to queue (bounded memory).
const QUEUE: usize = 4096;
/// A load taking longer is abandoned and its asks answered with an error: two stuck loads
/// would otherwise hold both slots, and every later ask would wait behind them.
const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type LoadFuture<K, V> = Pin<Box<dyn Future<Output = anyhow::Result<HashMap<K, V>>> + Send>>;
type Load<K, V> = Arc<dyn Fn(Vec<K>) -> LoadFuture<K, V> + Send + Sync>;
type Answer<V> = Result<V, Arc<anyhow::Error>>;

/// Answers many asks with one load each batch. Cheap to clone; the task ends with the last
/// clone.
pub struct Batcher<K, V> {
    asks: mpsc::Sender<(K, oneshot::Sender<Answer<V>>)>,
}

impl<K, V> Clone for Batcher<K, V> {
    fn clone(&self) -> Self {
        Batcher {
            asks: self.asks.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for Batcher<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<K, V> Batcher<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Starts the task on the current runtime. `load` gets each batch's distinct keys and
    /// answers with a value for every one of them (a key it leaves out is answered with an
    /// error).
    pub fn start<F, Fut>(load: F) -> Batcher<K, V>
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<HashMap<K, V>>> + Send + 'static,
    {
        let load: Load<K, V> = Arc::new(move |keys| Box::pin(load(keys)));
        let (asks, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(queue, load));
        Batcher { asks }
    }

    /// `key`'s value, loaded with whatever else is asked for at the same moment.
    pub async fn get(&self, key: K) -> anyhow::Result<V> {
        let (reply, answer) = oneshot::channel();
        self.asks
            .send((key, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the batched reader has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the batched reader dropped a question"))?
            .map_err(|e| anyhow::anyhow!("batched read: {e:#}"))
    }
}

async fn run<K, V>(mut queue: mpsc::Receiver<(K, oneshot::Sender<Answer<V>>)>, load: Load<K, V>)
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Wait for a free slot first: the asks arriving meanwhile join the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_KEYS {
            match queue.try_recv() {
                Ok(ask) => batch.push(ask),
                Err(_) => break,
            }
        }
        let mut keys: Vec<K> = Vec::with_capacity(batch.len());
        for (key, _) in &batch {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let load = load(keys);
        tokio::spawn(async move {
            let _slot = slot;
            let answers = match tokio::time::timeout(LOAD_TIMEOUT, load).await {
                Ok(answers) => answers.map_err(Arc::new),
                Err(_) => Err(Arc::new(anyhow::anyhow!(
                    "the load took longer than {} s",
                    LOAD_TIMEOUT.as_secs()
                ))),
            };
            for (key, reply) in batch {
                let answer = match &answers {
                    Ok(values) => values.get(&key).cloned().ok_or_else(|| {
                        Arc::new(anyhow::anyhow!("the load gave no answer for a key"))
                    }),
                    Err(e) => Err(e.clone()),
                };
                // A caller that gave up (its request timed out) no longer listens.
                let _ = reply.send(answer);
            }
        });
    }
}

/// A [`Batcher`] of an [`App`](crate::app::App), started on first use (on the runtime that
/// first uses it).
pub struct BatcherSlot<K, V>(OnceCell<Batcher<K, V>>);

impl<K, V> Default for BatcherSlot<K, V> {
    fn default() -> Self {
        BatcherSlot(OnceCell::new())
    }
}

impl<K, V> std::fmt::Debug for BatcherSlot<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BatcherSlot")
            .field(&self.0.initialized())
            .finish()
    }
}

impl<K, V> BatcherSlot<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// The batcher, started with `load` if this is the first use.
    pub async fn get<F, Fut>(&self, load: impl FnOnce() -> F) -> &Batcher<K, V>
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<HashMap<K, V>>> + Send + 'static,
    {
        self.0
            .get_or_init(|| async { Batcher::start(load()) })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn asks_made_together_share_a_load_and_each_gets_its_own_value() {
        let loads = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let batcher = {
            let loads = loads.clone();
            Batcher::start(move |keys: Vec<u32>| {
                let loads = loads.clone();
                let mut gate = gate_rx.clone();
                async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    // The first load waits for the gate, so the other asks queue behind it.
                    gate.wait_for(|open| *open).await?;
                    Ok(keys.into_iter().map(|k| (k, k * 10)).collect())
                }
            })
        };
        let asks: Vec<_> = (0..40u32)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { (i % 20, b.get(i % 20).await) })
            })
            .collect();
        // Let every ask queue (this runtime has one thread: the tasks run while this one
        // yields), then let the loads run.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        gate_tx.send(true).expect("open");
        for ask in asks {
            let (key, value) = ask.await.expect("joined");
            assert_eq!(value.expect("loaded"), key * 10);
        }
        let loads = loads.load(Ordering::SeqCst);
        assert!(
            (1..=IN_FLIGHT + 1).contains(&loads),
            "40 asks for 20 keys made together took {loads} loads"
        );
    }

    #[tokio::test]
    async fn a_failed_load_fails_its_asks_and_not_the_next_ones() {
        let batcher = Batcher::start(|keys: Vec<u32>| async move {
            if keys.contains(&13) {
                anyhow::bail!("unlucky");
            }
            Ok(keys
                .into_iter()
                .filter(|&k| k != 7)
                .map(|k| (k, k))
                .collect())
        });
        let err = batcher.get(13).await.expect_err("failed load");
        assert!(format!("{err:#}").contains("unlucky"), "{err:#}");
        assert_eq!(batcher.get(3).await.expect("next load"), 3);
        let err = batcher.get(7).await.expect_err("left out");
        assert!(format!("{err:#}").contains("no answer"), "{err:#}");
    }
}
