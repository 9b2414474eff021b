//! The live aggregates of one partition consumer: routing table, LRU order
//! and passivation (idle timeout and cap).
//!
//! An aggregate is only ever stopped when it has nothing outstanding (every
//! command sent to it was answered), so stopping it cannot drop a message.
//! Busy aggregates hold at least one unacknowledged delivery each, and the
//! supervisor keeps the in-flight window below the cap, so when the cap is
//! reached there is always an idle aggregate to passivate: the cap holds.
//! The LRU is a queue of (user, generation) entries with lazy deletion:
//! each touch pushes a new entry, stale ones are skipped when popped, and
//! the queue is compacted when it grows past a few times the live count.
//! A busy aggregate met at the front leaves the queue; `completed` puts it
//! back at the end when its work is answered.

use super::super::aggregate::AggregateMsg;
use crate::hash::Map;
use crate::health::Health;
use crate::internal_events as ev;
use ractor::{ActorId, ActorRef};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Entry {
    actor: ActorRef<AggregateMsg>,
    outstanding: usize,
    generation: u64,
    last_used: Instant,
}

pub struct Aggregates {
    health: Arc<Health>,
    /// `tracking_live_aggregates` and the passivation counters, registered
    /// once (this is built in the consumer's `pre_start`).
    metrics: ev::Aggregates,
    cap: usize,
    idle: Duration,
    live: Map<String, Entry>,
    by_id: Map<ActorId, String>,
    lru: VecDeque<(String, u64)>,
    generation: u64,
}

impl Aggregates {
    pub fn new(health: Arc<Health>, cap: usize, idle: Duration) -> Self {
        Self {
            health,
            metrics: ev::Aggregates::register(),
            cap: cap.max(1),
            idle,
            live: Map::default(),
            by_id: Map::default(),
            lru: VecDeque::new(),
            generation: 0,
        }
    }

    pub fn get(&mut self, user_id: &str) -> Option<ActorRef<AggregateMsg>> {
        let actor = self.live.get(user_id)?.actor.clone();
        self.touch(user_id);
        Some(actor)
    }

    pub fn insert(&mut self, user_id: String, actor: ActorRef<AggregateMsg>) {
        self.by_id.insert(actor.get_id(), user_id.clone());
        let previous = self.live.insert(
            user_id.clone(),
            Entry {
                actor,
                outstanding: 0,
                generation: 0,
                last_used: Instant::now(),
            },
        );
        if previous.is_none() {
            self.changed(1);
        }
        self.touch(&user_id);
    }

    pub fn dispatched(&mut self, user_id: &str, n: usize) {
        if let Some(e) = self.live.get_mut(user_id) {
            e.outstanding += n;
        }
    }

    pub fn completed(&mut self, user_id: &str, n: usize) {
        if let Some(e) = self.live.get_mut(user_id) {
            e.outstanding = e.outstanding.saturating_sub(n);
            self.touch(user_id);
        }
    }

    /// Forgets an aggregate that stopped or failed; returns its user.
    pub fn remove_by_id(&mut self, id: ActorId) -> Option<String> {
        let user_id = self.by_id.remove(&id)?;
        if self
            .live
            .get(&user_id)
            .is_some_and(|e| e.actor.get_id() == id)
        {
            self.live.remove(&user_id);
            self.changed(-1);
        }
        Some(user_id)
    }

    /// Passivates least recently used idle aggregates until there is room
    /// for one more. Returns how many were passivated and, when the cap
    /// was reached, the actor of the last one: not stopped, but handed
    /// back to be rebound to the user that needs the room
    /// (`AggregateMsg::Rebind`). Spawning an aggregate and stopping one per
    /// new user at the cap cost about 9 % of the pipeline's capacity in a
    /// profile; a rebound actor drops its
    /// user's state exactly as a stopped one does, and it is idle (nothing
    /// outstanding), so no message of the old user can reach it.
    ///
    /// A busy aggregate's entry is dropped from the queue, not put back:
    /// `completed` touches it (a new entry at the back) when its work is
    /// answered, the only way it becomes idle again. Putting busy entries
    /// back at the front made every call walk all of them again: with cold
    /// users at the cap, one walk over the in-flight window per new user
    /// (2.4 % of the worker's CPU under 10,000/s of HTTP ingest).
    pub fn make_room(&mut self) -> (u64, Option<ActorRef<AggregateMsg>>) {
        let mut passivated = 0;
        let mut spare = None;
        while self.live.len() >= self.cap {
            let Some((user_id, generation)) = self.lru.pop_front() else {
                break;
            };
            if !self
                .live
                .get(&user_id)
                .is_some_and(|e| e.generation == generation && e.outstanding == 0)
            {
                continue;
            }
            passivated += 1;
            if self.live.len() == self.cap {
                spare = self.take(&user_id);
                break;
            }
            self.stop(&user_id);
        }
        self.metrics.passivated_cap(passivated);
        (passivated, spare)
    }

    /// Passivates aggregates unused for the idle timeout. Busy ones leave
    /// the queue as in [`Self::make_room`].
    pub fn passivate_idle(&mut self) -> u64 {
        let cutoff = Instant::now().checked_sub(self.idle);
        let mut stopped = 0;
        while let Some((user_id, generation)) = self.lru.front().cloned() {
            let Some(e) = self.live.get(&user_id) else {
                self.lru.pop_front();
                continue;
            };
            if e.generation != generation {
                self.lru.pop_front();
                continue;
            }
            if cutoff.is_none_or(|c| e.last_used > c) {
                break;
            }
            self.lru.pop_front();
            if e.outstanding == 0 {
                self.stop(&user_id);
                stopped += 1;
            }
        }
        self.metrics.passivated_idle(stopped);
        stopped
    }

    pub fn stop_all(&mut self) {
        let stopped = self.live.len();
        for (_, e) in self.live.drain() {
            e.actor.stop(None);
        }
        self.changed(-(stopped as isize));
        self.by_id.clear();
        self.lru.clear();
    }

    /// Live aggregates went up or down by `delta`: the health report and
    /// the gauge.
    fn changed(&self, delta: isize) {
        self.health.aggregates_changed(delta);
        self.metrics.live_changed(delta);
    }

    fn stop(&mut self, user_id: &str) {
        if let Some(actor) = self.take(user_id) {
            actor.stop(None);
        }
    }

    /// Forgets a user's aggregate and returns its actor, still running.
    fn take(&mut self, user_id: &str) -> Option<ActorRef<AggregateMsg>> {
        let e = self.live.remove(user_id)?;
        self.by_id.remove(&e.actor.get_id());
        self.changed(-1);
        Some(e.actor)
    }

    fn touch(&mut self, user_id: &str) {
        self.generation += 1;
        let generation = self.generation;
        if let Some(e) = self.live.get_mut(user_id) {
            e.generation = generation;
            e.last_used = Instant::now();
            self.lru.push_back((user_id.to_string(), generation));
        }
        if self.lru.len() > 4 * self.live.len() + 64 {
            let live = &self.live;
            self.lru
                .retain(|(u, g)| live.get(u).is_some_and(|e| e.generation == *g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::{Actor, ActorProcessingErr};

    /// An actor of the aggregate's message type that does nothing.
    struct Idle;

    impl Actor for Idle {
        type Msg = AggregateMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<Self::Msg>,
            _: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    async fn actor() -> ActorRef<AggregateMsg> {
        Actor::spawn(None, Idle, ()).await.expect("spawn").0
    }

    #[tokio::test]
    async fn at_the_cap_the_least_recently_used_idle_actor_is_handed_back() {
        let health = Arc::new(Health::default());
        let mut live = Aggregates::new(health.clone(), 2, Duration::from_secs(60));
        let (a, b) = (actor().await, actor().await);
        live.insert("a".into(), a.clone());
        let (n, spare) = live.make_room();
        assert_eq!(n, 0, "room below the cap");
        assert!(spare.is_none());
        live.insert("b".into(), b.clone());

        // "a" is the least recently used, but busy: "b" goes.
        live.get("a");
        live.get("b");
        live.dispatched("a", 1);
        let (n, spare) = live.make_room();
        assert_eq!(n, 1);
        let spare = spare.expect("an idle actor at the cap");
        assert_eq!(spare.get_id(), b.get_id());
        assert!(live.get("b").is_none(), "its user is forgotten");
        assert_eq!(health.aggregates().0, 1);

        // Rebound to "c": found under "c", and a stop or failure of that
        // actor is now "c"'s.
        live.insert("c".into(), spare.clone());
        assert_eq!(health.aggregates().0, 2);
        assert_eq!(live.remove_by_id(spare.get_id()).as_deref(), Some("c"));
        live.insert("c".into(), spare.clone());

        // Every live aggregate busy: nothing to hand back.
        live.dispatched("c", 1);
        let (n, spare) = live.make_room();
        assert_eq!(n, 0);
        assert!(spare.is_none());
        for r in [a, b] {
            r.stop(None);
        }
    }

    /// The handles registered in `new` follow every change: the gauge of
    /// live aggregates and the passivations by cause.
    #[tokio::test]
    async fn the_gauge_and_the_counters_follow_the_live_aggregates() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let render = recorder.handle();
        let health = Arc::new(Health::default());
        let mut live = metrics::with_local_recorder(&recorder, || {
            Aggregates::new(health.clone(), 1, Duration::ZERO)
        });
        let a = actor().await;
        live.insert("a".into(), a.clone());
        let (n, spare) = live.make_room();
        assert_eq!(n, 1);
        live.insert("b".into(), spare.expect("a, handed back at the cap"));
        assert_eq!(live.passivate_idle(), 1, "idle timeout 0: b goes");
        assert_eq!(live.passivate_idle(), 0);
        let text = render.render();
        for want in [
            "tracking_live_aggregates 0",
            "tracking_aggregates_passivated_total{cause=\"cap\"} 1",
            "tracking_aggregates_passivated_total{cause=\"idle\"} 1",
        ] {
            assert!(text.lines().any(|l| l == want), "no {want:?} in:\n{text}");
        }
        assert_eq!(health.aggregates(), (0, 1));
        a.stop(None);
    }
}
