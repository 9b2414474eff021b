//! The fan-out of committed records. The writer hands each commit's
//! records, in position order, to every subscriber: the projectors, the
//! event publisher, and any observer the embedding code adds (the load
//! generator's end-to-end latency probe, tests). A subscriber registers
//! itself in its `pre_start` under a key, so a restarted one replaces its
//! entry; references are resolved once, not looked up per commit.
//!
//! Delivery is best effort by design: a subscriber that is stopped or
//! restarting misses records, and every subscriber of the pipeline follows
//! the journal by store-wide position, so it notices the gap and catches up
//! from the store.

use crate::store::JournalRecord;
use ractor::DerivedActorRef;
use std::sync::{Arc, RwLock};

/// Records just committed, in position order (shared, never copied).
#[derive(Debug, Clone)]
pub struct Committed(pub Arc<Vec<JournalRecord>>);

/// Makes `$msg::$variant(Arc<Vec<JournalRecord>>)` the message an actor
/// receives as a subscriber: `From<Committed>` into its message and the
/// `TryFrom` back that `ActorRef::get_derived` needs.
macro_rules! subscriber_msg {
    ($msg:ident :: $variant:ident) => {
        impl From<$crate::actors::subscribers::Committed> for $msg {
            fn from(c: $crate::actors::subscribers::Committed) -> Self {
                $msg::$variant(c.0)
            }
        }

        impl TryFrom<$msg> for $crate::actors::subscribers::Committed {
            type Error = $msg;

            fn try_from(m: $msg) -> Result<Self, $msg> {
                match m {
                    $msg::$variant(r) => Ok($crate::actors::subscribers::Committed(r)),
                    other => Err(other),
                }
            }
        }
    };
}
pub(crate) use subscriber_msg;

/// A subscriber: its key and where its records go.
type Entry = (String, DerivedActorRef<Committed>);

/// The subscribers of one service instance's writer.
#[derive(Clone, Default)]
pub struct Subscribers {
    list: Arc<RwLock<Vec<Entry>>>,
}

impl Subscribers {
    /// Adds `actor` under `key`, replacing an earlier subscriber with the
    /// same key (the same actor, restarted).
    pub fn subscribe(&self, key: impl Into<String>, actor: DerivedActorRef<Committed>) {
        let key = key.into();
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        list.retain(|(k, _)| *k != key);
        list.push((key, actor));
    }

    /// Removes the subscriber under `key`, if any.
    pub fn unsubscribe(&self, key: &str) {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        list.retain(|(k, _)| k != key);
    }

    /// Sends `records` to every subscriber; one that is gone is skipped.
    pub fn publish(&self, records: Arc<Vec<JournalRecord>>) {
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        for (_, actor) in list.iter() {
            let _ = actor.send_message(Committed(records.clone()));
        }
    }

    /// The keys subscribed, in subscription order.
    pub fn keys(&self) -> Vec<String> {
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        list.iter().map(|(k, _)| k.clone()).collect()
    }
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribers")
            .field("keys", &self.keys())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::{Actor, ActorProcessingErr, ActorRef};
    use tokio::sync::mpsc;

    /// Forwards the length of each commit it receives.
    struct Probe;

    impl Actor for Probe {
        type Msg = Committed;
        type State = mpsc::UnboundedSender<usize>;
        type Arguments = mpsc::UnboundedSender<usize>;

        async fn pre_start(
            &self,
            _: ActorRef<Committed>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(tx)
        }

        async fn handle(
            &self,
            _: ActorRef<Committed>,
            msg: Committed,
            tx: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            let _ = tx.send(msg.0.len());
            Ok(())
        }
    }

    async fn probe() -> (ActorRef<Committed>, mpsc::UnboundedReceiver<usize>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (actor, _) = Actor::spawn(None, Probe, tx).await.unwrap();
        (actor, rx)
    }

    fn records(n: usize) -> Arc<Vec<JournalRecord>> {
        let rejection = crate::store::StoredRejection {
            pos: 1,
            rejection: crate::domain::Rejection {
                command_id: "i".into(),
                reason: crate::domain::RejectReason::Malformed,
                detail: String::new(),
                rejected_at: chrono::Utc::now(),
            },
        };
        Arc::new(vec![JournalRecord::Rejection(rejection); n])
    }

    #[tokio::test]
    async fn every_subscriber_gets_each_commit_and_a_restarted_one_replaces_itself() {
        let subs = Subscribers::default();
        let (a, mut ra) = probe().await;
        let (b, mut rb) = probe().await;
        subs.subscribe("a", a.get_derived());
        subs.subscribe("b", b.get_derived());
        subs.publish(records(2));
        assert_eq!((ra.recv().await, rb.recv().await), (Some(2), Some(2)));

        // `a` restarted: a new actor under the same key; the old one is gone.
        a.stop(None);
        let (a2, mut ra2) = probe().await;
        subs.subscribe("a", a2.get_derived());
        assert_eq!(subs.keys(), ["b", "a"]);
        subs.publish(records(3));
        assert_eq!((ra2.recv().await, rb.recv().await), (Some(3), Some(3)));

        subs.unsubscribe("b");
        subs.publish(records(1));
        assert_eq!(ra2.recv().await, Some(1));
        assert!(rb.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_stopped_subscriber_does_not_stop_the_others() {
        let subs = Subscribers::default();
        let (dead, _) = probe().await;
        let (live, mut rl) = probe().await;
        subs.subscribe("dead", dead.get_derived());
        subs.subscribe("live", live.get_derived());
        dead.stop(None);
        subs.publish(records(4));
        assert_eq!(rl.recv().await, Some(4));
    }
}
