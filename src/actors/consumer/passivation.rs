//! The live aggregates of one partition consumer: routing table, LRU order
//! and passivation (idle timeout and cap).
//!
//! An aggregate is only ever stopped when it has nothing outstanding (every
//! command sent to it was answered), so stopping it cannot drop a message.
//! Busy aggregates hold at least one unacknowledged delivery each, and the
//! supervisor keeps the in-flight window below the cap, so when the cap is
//! reached there is always an idle aggregate to passivate: the cap holds.
//!
//! Entries live in slots (a slab, freed slots reused); the user and actor
//! maps point at them. The LRU is a queue of (slot, generation) with lazy
//! deletion: each touch stamps the entry with a new generation and pushes
//! it, stale ones (an older generation, or a freed slot: generations only
//! grow, so a reused slot never matches an older stamp) are skipped when
//! popped, and the queue is compacted when it grows past a few times the
//! live count. A touch and a pop are an array access, with no string
//! copied or hashed: both happen for every command at the cap. A busy
//! aggregate met at the front leaves the queue; `completed` puts it back
//! at the end when its work is answered.
//!
//! At the cap, the actor handed back for the new user is the one that
//! became idle most recently (a stack of completions, with the same lazy
//! deletion), not the least recently used: its task, mailboxes and state
//! are still in the CPU's caches, where the least recently used one's
//! (about 10 KiB) are not. Which user loses its actor does not matter for
//! correctness (a rebound actor drops its user's state exactly as a
//! stopped one does), and little for cost: an aggregate's state is one
//! last seq, which a conditional store answers from memory and a
//! deterministic store is asked for on every batch anyway. The idle
//! timeout still stops the least recently used.

use super::super::aggregate::AggregateMsg;
use crate::hash::{InlineStr, Map};
use crate::health::Health;
use crate::internal_events as ev;
use ractor::{ActorId, ActorRef};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Entry {
    user_id: InlineStr,
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
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// User to slot. Keys held in place ([`InlineStr`], ids of up to 22
    /// bytes): a rebinding at the cap, once per new user, then allocates
    /// nothing.
    live: Map<InlineStr, usize>,
    /// Actor to slot.
    by_id: Map<ActorId, usize>,
    lru: VecDeque<(usize, u64)>,
    /// Completions, the latest last: (slot, generation) of an aggregate
    /// that had just become idle; stale as the LRU's entries are.
    warm: Vec<(usize, u64)>,
    generation: u64,
}

impl Aggregates {
    pub fn new(health: Arc<Health>, cap: usize, idle: Duration) -> Self {
        Self {
            health,
            metrics: ev::Aggregates::register(),
            cap: cap.max(1),
            idle,
            slots: Vec::new(),
            free: Vec::new(),
            live: Map::default(),
            by_id: Map::default(),
            lru: VecDeque::new(),
            warm: Vec::new(),
            generation: 0,
        }
    }

    fn entry(&self, slot: usize) -> Option<&Entry> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    fn entry_mut(&mut self, slot: usize) -> Option<&mut Entry> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    pub fn get(&mut self, user_id: &str) -> Option<ActorRef<AggregateMsg>> {
        let slot = *self.live.get(user_id)?;
        let actor = self.entry(slot)?.actor.clone();
        self.touch(slot);
        Some(actor)
    }

    /// Serves `user_id` by `actor` from now on. A user already live is
    /// served by the new actor (its old actor is no longer tracked).
    pub fn insert(&mut self, user_id: &str, actor: ActorRef<AggregateMsg>) {
        let entry = Entry {
            user_id: user_id.into(),
            actor,
            outstanding: 0,
            generation: 0,
            last_used: Instant::now(),
        };
        let id = entry.actor.get_id();
        let slot = match self.live.get(entry.user_id.as_str()).copied() {
            Some(slot) => {
                if let Some(old) = self.slots[slot].replace(entry) {
                    self.by_id.remove(&old.actor.get_id());
                }
                slot
            }
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => slot,
                    None => {
                        self.slots.push(None);
                        self.slots.len() - 1
                    }
                };
                self.live.insert(entry.user_id.clone(), slot);
                self.slots[slot] = Some(entry);
                self.changed(1);
                slot
            }
        };
        self.by_id.insert(id, slot);
        self.touch(slot);
    }

    pub fn dispatched(&mut self, user_id: &str, n: usize) {
        if let Some(&slot) = self.live.get(user_id) {
            if let Some(e) = self.entry_mut(slot) {
                e.outstanding += n;
            }
        }
    }

    pub fn completed(&mut self, user_id: &str, n: usize) {
        if let Some(&slot) = self.live.get(user_id) {
            if let Some(e) = self.entry_mut(slot) {
                e.outstanding = e.outstanding.saturating_sub(n);
                let idle = e.outstanding == 0;
                self.touch(slot);
                if idle {
                    self.warm.push((slot, self.generation));
                    self.compact_warm();
                }
            }
        }
    }

    /// Forgets an aggregate that stopped or failed; returns its user.
    pub fn remove_by_id(&mut self, id: ActorId) -> Option<String> {
        let slot = self.by_id.remove(&id)?;
        let e = self.release(slot)?;
        Some(e.user_id.as_str().to_owned())
    }

    /// Passivates least recently used idle aggregates until there is room
    /// for `user_id` (not live). Returns how many were passivated and,
    /// when the cap was reached, an idle actor: not stopped, but already
    /// recorded as `user_id`'s in its slot (same actor id, same count), to
    /// be sent `AggregateMsg::Rebind`; the one that became idle most
    /// recently (see the module docs), else the least recently used. If
    /// that send fails (the actor stopped), the caller forgets it
    /// ([`Self::remove_by_id`]). Spawning an aggregate and stopping one per
    /// new user at the cap cost about 9 % of the pipeline's capacity in a
    /// profile; a rebound actor keeps nothing of its old user, and it is
    /// idle (nothing outstanding), so no message of the old user can reach
    /// it.
    ///
    /// A busy aggregate's entry is dropped from the queue, not put back:
    /// `completed` touches it (a new entry at the back) when its work is
    /// answered, the only way it becomes idle again. Putting busy entries
    /// back at the front made every call walk all of them again: with cold
    /// users at the cap, one walk over the in-flight window per new user
    /// (2.4 % of the worker's CPU under 10,000/s of HTTP ingest).
    pub fn make_room_for(&mut self, user_id: &str) -> (u64, Option<ActorRef<AggregateMsg>>) {
        let mut passivated = 0;
        let mut spare = None;
        while self.live.len() >= self.cap {
            if self.live.len() == self.cap {
                if let Some(slot) = self.warmest_idle() {
                    passivated += 1;
                    spare = self.rebind(slot, user_id);
                    break;
                }
            }
            let Some((slot, generation)) = self.lru.pop_front() else {
                break;
            };
            if !self.is_idle(slot, generation) {
                continue;
            }
            passivated += 1;
            if self.live.len() == self.cap {
                spare = self.rebind(slot, user_id);
                break;
            }
            self.stop(slot);
        }
        self.metrics.passivated_cap(passivated);
        (passivated, spare)
    }

    /// Whether the stamp is the slot's entry's latest and it is idle.
    fn is_idle(&self, slot: usize, generation: u64) -> bool {
        self.entry(slot)
            .is_some_and(|e| e.generation == generation && e.outstanding == 0)
    }

    /// The slot of the aggregate that became idle most recently and has
    /// not been used since, taken off the stack.
    fn warmest_idle(&mut self) -> Option<usize> {
        while let Some((slot, generation)) = self.warm.pop() {
            if self.is_idle(slot, generation) {
                return Some(slot);
            }
        }
        None
    }

    /// Drops the stale stamps once they outnumber the live entries a few
    /// times (as `touch` does for the LRU).
    fn compact_warm(&mut self) {
        if self.warm.len() > 4 * self.live.len() + 64 {
            let slots = &self.slots;
            self.warm.retain(|&(slot, g)| current(slots, slot, g));
        }
    }

    /// Passivates aggregates unused for the idle timeout. Busy ones leave
    /// the queue as in [`Self::make_room`].
    pub fn passivate_idle(&mut self) -> u64 {
        let cutoff = Instant::now().checked_sub(self.idle);
        let mut stopped = 0;
        while let Some(&(slot, generation)) = self.lru.front() {
            let Some(e) = self.entry(slot).filter(|e| e.generation == generation) else {
                self.lru.pop_front();
                continue;
            };
            if cutoff.is_none_or(|c| e.last_used > c) {
                break;
            }
            let idle = e.outstanding == 0;
            self.lru.pop_front();
            if idle {
                self.stop(slot);
                stopped += 1;
            }
        }
        self.metrics.passivated_idle(stopped);
        stopped
    }

    pub fn stop_all(&mut self) {
        let stopped = self.live.len();
        for e in self.slots.drain(..).flatten() {
            e.actor.stop(None);
        }
        self.changed(-(stopped as isize));
        self.free.clear();
        self.live.clear();
        self.by_id.clear();
        self.lru.clear();
        self.warm.clear();
    }

    /// Live aggregates went up or down by `delta`: the health report and
    /// the gauge.
    fn changed(&self, delta: isize) {
        self.health.aggregates_changed(delta);
        self.metrics.live_changed(delta);
    }

    /// Records a slot's aggregate as `user_id`'s from now on (its old user
    /// forgotten) and returns its actor, still running. The slot, the
    /// actor's id and the live count stay: no entry of `by_id` to redo
    /// (the actor's id is in a cell the CPU's caches no longer hold) and
    /// the gauge does not move.
    fn rebind(&mut self, slot: usize, user_id: &str) -> Option<ActorRef<AggregateMsg>> {
        debug_assert!(!self.live.contains_key(user_id), "{user_id} is live");
        let e = self.slots.get_mut(slot)?.as_mut()?;
        let old = std::mem::replace(&mut e.user_id, user_id.into());
        let actor = e.actor.clone();
        self.live.remove(old.as_str());
        self.live.insert(user_id.into(), slot);
        self.touch(slot);
        Some(actor)
    }

    fn stop(&mut self, slot: usize) {
        if let Some(e) = self.release(slot) {
            self.by_id.remove(&e.actor.get_id());
            e.actor.stop(None);
        }
    }

    /// Frees a slot: its entry leaves the user map and the count.
    fn release(&mut self, slot: usize) -> Option<Entry> {
        let e = self.slots.get_mut(slot)?.take()?;
        self.live.remove(e.user_id.as_str());
        self.free.push(slot);
        self.changed(-1);
        Some(e)
    }

    fn touch(&mut self, slot: usize) {
        self.generation += 1;
        let generation = self.generation;
        if let Some(e) = self.entry_mut(slot) {
            e.generation = generation;
            e.last_used = Instant::now();
            self.lru.push_back((slot, generation));
        }
        if self.lru.len() > 4 * self.live.len() + 64 {
            let slots = &self.slots;
            self.lru.retain(|&(slot, g)| current(slots, slot, g));
        }
    }
}

/// Whether a stamp is its slot's entry's latest (not stale).
fn current(slots: &[Option<Entry>], slot: usize, generation: u64) -> bool {
    slots
        .get(slot)
        .and_then(Option::as_ref)
        .is_some_and(|e| e.generation == generation)
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
        live.insert("a", a.clone());
        let (n, spare) = live.make_room_for("b");
        assert_eq!(n, 0, "room below the cap");
        assert!(spare.is_none());
        live.insert("b", b.clone());

        // "a" is the least recently used, but busy: "b" goes.
        live.get("a");
        live.get("b");
        live.dispatched("a", 1);
        let (n, spare) = live.make_room_for("c");
        assert_eq!(n, 1);
        let spare = spare.expect("an idle actor at the cap");
        assert_eq!(spare.get_id(), b.get_id());
        assert!(live.get("b").is_none(), "its user is forgotten");
        assert_eq!(health.aggregates().0, 2, "rebound, not stopped");

        // Rebound to "c": found under "c", and a stop or failure of that
        // actor is now "c"'s.
        assert_eq!(live.get("c").map(|r| r.get_id()), Some(b.get_id()));
        assert_eq!(live.remove_by_id(spare.get_id()).as_deref(), Some("c"));
        assert_eq!(health.aggregates().0, 1);
        live.insert("c", spare.clone());

        // Every live aggregate busy: nothing to hand back.
        live.dispatched("c", 1);
        let (n, spare) = live.make_room_for("d");
        assert_eq!(n, 0);
        assert!(spare.is_none());
        for r in [a, b] {
            r.stop(None);
        }
    }

    #[tokio::test]
    async fn at_the_cap_the_actor_idle_most_recently_is_handed_back() {
        let health = Arc::new(Health::default());
        let mut live = Aggregates::new(health, 3, Duration::from_secs(60));
        let (a, b, c) = (actor().await, actor().await, actor().await);
        // Given three users whose work was answered in the order a, c, b,
        for (user, r) in [("a", &a), ("b", &b), ("c", &c)] {
            live.insert(user, r.clone());
            live.dispatched(user, 1);
        }
        for user in ["a", "c", "b"] {
            live.completed(user, 1);
        }
        // when room is made, "b" (the latest to go idle) is handed back,
        let (n, spare) = live.make_room_for("d");
        assert_eq!(n, 1);
        assert_eq!(spare.map(|s| s.get_id()), Some(b.get_id()));
        assert!(live.get("b").is_none());
        live.dispatched("d", 1);
        // then, "c" being busy again, "a": an aggregate used since it went
        // idle is not taken for its old stamp.
        live.get("c");
        live.dispatched("c", 1);
        let (_, spare) = live.make_room_for("e");
        assert_eq!(spare.map(|s| s.get_id()), Some(a.get_id()));
        live.dispatched("e", 1);
        // With every one busy, nothing is.
        let (n, spare) = live.make_room_for("f");
        assert_eq!(n, 0);
        assert!(spare.is_none());
        for r in [a, b, c] {
            r.stop(None);
        }
    }

    #[tokio::test]
    async fn a_freed_slots_old_stamps_do_not_count_for_the_user_now_in_it() {
        let health = Arc::new(Health::default());
        let mut live = Aggregates::new(health, 2, Duration::from_secs(60));
        let (a, b, c) = (actor().await, actor().await, actor().await);
        // Given "a" touched twice, then gone (its slot freed),
        live.insert("a", a.clone());
        live.get("a");
        assert_eq!(live.remove_by_id(a.get_id()).as_deref(), Some("a"));
        assert_eq!(live.remove_by_id(a.get_id()), None, "forgotten once");
        // and "b" in that slot, then "c", then "b" used again,
        live.insert("b", b.clone());
        live.insert("c", c.clone());
        live.get("b");
        // when room is made at the cap, the least recently used is "c":
        // "a"'s stamps and "b"'s first one are stale.
        let (n, spare) = live.make_room_for("d");
        assert_eq!(n, 1);
        assert_eq!(spare.map(|s| s.get_id()), Some(c.get_id()));
        assert!(live.get("b").is_some());
        assert!(live.get("c").is_none());
        for r in [a, b, c] {
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
        live.insert("a", a.clone());
        let (n, spare) = live.make_room_for("b");
        assert_eq!(n, 1);
        assert!(spare.is_some(), "a, handed back at the cap");
        assert!(live.get("b").is_some());
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
