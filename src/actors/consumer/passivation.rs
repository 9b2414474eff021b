//! The live aggregates of one partition consumer: routing table, LRU order
//! and passivation (idle timeout and cap).
//!
//! An aggregate is only ever stopped when it has nothing outstanding (every
//! command sent to it was answered), so stopping it cannot drop a message.
//! Busy aggregates hold at least one unacknowledged delivery each, and the
//! supervisor keeps the in-flight window below the cap, so when the cap is
//! reached there is always an idle aggregate to passivate: the cap holds.
//!
//! Entries live in slots (a slab, freed slots reused); a user's slot in
//! [`Users`] holds the index of its aggregate's, an entry the index of
//! its user's, and the actor map points at entries. The LRU is a queue of (slot, generation) with lazy
//! deletion: each touch stamps the entry with a new generation and pushes
//! it, stale ones (an older generation, or a freed slot: generations only
//! grow, so a reused slot never matches an older stamp) are skipped when
//! popped, and the queue is compacted when it grows past a few times the
//! live count. A touch and a pop are an array access, with no string
//! copied or hashed: both happen for every command at the cap. So is a
//! rebind: the entry changes user by index. A busy
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
use super::users::Users;
use crate::hash::Map;
use crate::health::Health;
use crate::internal_events as ev;
use ractor::{ActorId, ActorRef};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Entry {
    /// Its user's slot in [`Users`] (whose `aggregate` is this entry's).
    user: usize,
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
    /// Entries in `slots`.
    live: usize,
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
            live: 0,
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

    /// The actor of user `user`'s live aggregate, if it has one, with a
    /// batch more outstanding (sent now).
    pub fn dispatch(&mut self, users: &Users, user: usize) -> Option<ActorRef<AggregateMsg>> {
        let slot = users.get(user)?.aggregate?;
        let e = self.entry_mut(slot).filter(|e| e.user == user)?;
        e.outstanding += 1;
        let actor = e.actor.clone();
        self.touch(slot);
        Some(actor)
    }

    /// Serves user `user` by `actor` from now on, with a batch outstanding
    /// (sent right after). A user already live is served by the new actor
    /// (its old actor is no longer tracked).
    pub fn insert(&mut self, users: &mut Users, user: usize, actor: ActorRef<AggregateMsg>) {
        let Some(u) = users.get_mut(user) else {
            return;
        };
        let entry = Entry {
            user,
            actor,
            outstanding: 1,
            generation: 0,
            last_used: Instant::now(),
        };
        let id = entry.actor.get_id();
        let slot = match u.aggregate {
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
                self.slots[slot] = Some(entry);
                u.aggregate = Some(slot);
                self.live += 1;
                self.changed(1);
                slot
            }
        };
        self.by_id.insert(id, slot);
        self.touch(slot);
    }

    /// A batch of user `user`'s aggregate was answered.
    pub fn completed(&mut self, users: &Users, user: usize) {
        let Some(slot) = users.get(user).and_then(|u| u.aggregate) else {
            return;
        };
        let Some(e) = self.entry_mut(slot) else {
            return;
        };
        e.outstanding = e.outstanding.saturating_sub(1);
        let idle = e.outstanding == 0;
        self.touch(slot);
        if idle {
            self.warm.push((slot, self.generation));
            self.compact_warm();
        }
    }

    /// Forgets an aggregate that stopped or failed; returns its user's
    /// slot, which it leaves in place (the caller forgets it if unused).
    pub fn remove_by_id(&mut self, users: &mut Users, id: ActorId) -> Option<usize> {
        let slot = self.by_id.remove(&id)?;
        let e = self.release(users, slot)?;
        Some(e.user)
    }

    /// Passivates least recently used idle aggregates until there is room
    /// for user `user` (not live). Returns how many were passivated and,
    /// when the cap was reached, an idle actor: not stopped, but already
    /// recorded as `user`'s in its slot (same actor id, same count, a
    /// batch outstanding), to be sent `AggregateMsg::Rebind`; the one that
    /// became idle most recently (see the module docs), else the least
    /// recently used. Its old user is forgotten if nothing else uses it.
    /// If that send fails (the actor stopped), the caller forgets it
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
    pub fn make_room_for(
        &mut self,
        users: &mut Users,
        user: usize,
    ) -> (u64, Option<ActorRef<AggregateMsg>>) {
        let mut passivated = 0;
        let mut spare = None;
        while self.live >= self.cap {
            if self.live == self.cap {
                if let Some(slot) = self.warmest_idle() {
                    passivated += 1;
                    spare = self.rebind(users, slot, user);
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
            if self.live == self.cap {
                spare = self.rebind(users, slot, user);
                break;
            }
            self.stop(users, slot);
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
        if self.warm.len() > 4 * self.live + 64 {
            let slots = &self.slots;
            self.warm.retain(|&(slot, g)| current(slots, slot, g));
        }
    }

    /// Passivates aggregates unused for the idle timeout (their users
    /// forgotten if nothing else uses them). Busy ones leave the queue as
    /// in [`Self::make_room_for`].
    pub fn passivate_idle(&mut self, users: &mut Users) -> u64 {
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
                self.stop(users, slot);
                stopped += 1;
            }
        }
        self.metrics.passivated_idle(stopped);
        stopped
    }

    pub fn stop_all(&mut self, users: &mut Users) {
        let stopped = self.live;
        for e in self.slots.drain(..).flatten() {
            if let Some(u) = users.get_mut(e.user) {
                u.aggregate = None;
            }
            e.actor.stop(None);
        }
        self.changed(-(stopped as isize));
        self.live = 0;
        self.free.clear();
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

    /// Records a slot's aggregate as user `user`'s from now on, with a
    /// batch outstanding (its old user forgotten if nothing else uses it)
    /// and returns its actor, still running. The slot, the actor's id and
    /// the live count stay: no entry of `by_id` to redo (the actor's id is
    /// in a cell the CPU's caches no longer hold) and the gauge does not
    /// move.
    fn rebind(
        &mut self,
        users: &mut Users,
        slot: usize,
        user: usize,
    ) -> Option<ActorRef<AggregateMsg>> {
        debug_assert!(
            users.get(user).is_some_and(|u| u.aggregate.is_none()),
            "user {user} is live"
        );
        let e = self.slots.get_mut(slot)?.as_mut()?;
        let old = std::mem::replace(&mut e.user, user);
        e.outstanding = 1;
        let actor = e.actor.clone();
        if let Some(u) = users.get_mut(old) {
            u.aggregate = None;
        }
        users.forget_if_unused(old);
        if let Some(u) = users.get_mut(user) {
            u.aggregate = Some(slot);
        }
        self.touch(slot);
        Some(actor)
    }

    /// Stops a slot's aggregate; its user is forgotten if nothing else
    /// uses it.
    fn stop(&mut self, users: &mut Users, slot: usize) {
        if let Some(e) = self.release(users, slot) {
            self.by_id.remove(&e.actor.get_id());
            e.actor.stop(None);
            users.forget_if_unused(e.user);
        }
    }

    /// Frees a slot: its user no longer has an aggregate, and the count
    /// drops.
    fn release(&mut self, users: &mut Users, slot: usize) -> Option<Entry> {
        let e = self.slots.get_mut(slot)?.take()?;
        if let Some(u) = users.get_mut(e.user).filter(|u| u.aggregate == Some(slot)) {
            u.aggregate = None;
        }
        self.free.push(slot);
        self.live -= 1;
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
        if self.lru.len() > 4 * self.live + 64 {
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
impl Aggregates {
    /// The id of user `user`'s live aggregate.
    fn actor_of(&self, users: &Users, user: usize) -> Option<ActorId> {
        let slot = users.get(user)?.aggregate?;
        self.entry(slot).map(|e| e.actor.get_id())
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

    /// The live aggregates and the users table they point into, driven by
    /// user id as the consumer drives them by slot.
    struct Live {
        users: Users,
        live: Aggregates,
    }

    impl Live {
        fn new(health: Arc<Health>, cap: usize, idle: Duration) -> Live {
            Live {
                users: Users::default(),
                live: Aggregates::new(health, cap, idle),
            }
        }

        fn user(&mut self, id: &str) -> usize {
            self.users.find_or_add(id)
        }

        /// A new aggregate for `id`, with a batch outstanding.
        fn spawned(&mut self, id: &str, actor: &ActorRef<AggregateMsg>) {
            let user = self.user(id);
            self.live.insert(&mut self.users, user, actor.clone());
        }

        fn dispatch(&mut self, id: &str) -> Option<ActorId> {
            let user = self.user(id);
            self.live.dispatch(&self.users, user).map(|a| a.get_id())
        }

        fn completed(&mut self, id: &str) {
            let user = self.user(id);
            self.live.completed(&self.users, user);
        }

        fn room_for(&mut self, id: &str) -> (u64, Option<ActorId>) {
            let user = self.user(id);
            let (n, spare) = self.live.make_room_for(&mut self.users, user);
            (n, spare.map(|a| a.get_id()))
        }

        fn actor_of(&self, id: &str) -> Option<ActorId> {
            self.live.actor_of(&self.users, self.users.find(id)?)
        }

        fn removed(&mut self, actor: &ActorRef<AggregateMsg>) -> Option<String> {
            let user = self.live.remove_by_id(&mut self.users, actor.get_id())?;
            self.users.get(user).map(|u| u.id().to_string())
        }
    }

    #[tokio::test]
    async fn at_the_cap_an_idle_actor_is_rebound_and_its_user_forgotten() {
        let health = Arc::new(Health::default());
        let mut l = Live::new(health.clone(), 2, Duration::from_secs(60));
        let (a, b) = (actor().await, actor().await);
        // Given "a" and "b" live and answered, then "a" busy again
        l.spawned("a", &a);
        assert_eq!(l.room_for("b"), (0, None), "room below the cap");
        l.spawned("b", &b);
        l.completed("a");
        l.completed("b");
        assert_eq!(l.dispatch("a"), Some(a.get_id()));
        // When room is made for "c", "b" (idle) is handed back
        assert_eq!(l.room_for("c"), (1, Some(b.get_id())));
        assert_eq!(l.users.find("b"), None, "its user is forgotten");
        assert_eq!(health.aggregates().0, 2, "rebound, not stopped");
        // Then it is "c"'s, and a stop or failure of it is "c"'s
        assert_eq!(l.actor_of("c"), Some(b.get_id()));
        assert_eq!(l.removed(&b).as_deref(), Some("c"));
        assert_eq!(l.actor_of("c"), None);
        assert_eq!(health.aggregates().0, 1);
        l.spawned("c", &b);
        // Every live aggregate busy: nothing to hand back.
        assert_eq!(l.room_for("d"), (0, None));
        for r in [a, b] {
            r.stop(None);
        }
    }

    #[tokio::test]
    async fn at_the_cap_the_actor_idle_most_recently_is_handed_back() {
        let health = Arc::new(Health::default());
        let mut l = Live::new(health, 3, Duration::from_secs(60));
        let (a, b, c) = (actor().await, actor().await, actor().await);
        // Given three users whose work was answered in the order a, c, b,
        for (user, r) in [("a", &a), ("b", &b), ("c", &c)] {
            l.spawned(user, r);
        }
        for user in ["a", "c", "b"] {
            l.completed(user);
        }
        // when room is made, "b" (the latest to go idle) is handed back,
        assert_eq!(l.room_for("d"), (1, Some(b.get_id())));
        assert_eq!(l.actor_of("b"), None);
        // then, "c" being busy again, "a": an aggregate used since it went
        // idle is not taken for its old stamp.
        assert_eq!(l.dispatch("c"), Some(c.get_id()));
        assert_eq!(l.room_for("e"), (1, Some(a.get_id())));
        // With every one busy, nothing is.
        assert_eq!(l.room_for("f"), (0, None));
        for r in [a, b, c] {
            r.stop(None);
        }
    }

    #[tokio::test]
    async fn a_freed_slots_old_stamps_do_not_count_for_the_user_now_in_it() {
        let health = Arc::new(Health::default());
        let mut l = Live::new(health, 2, Duration::from_secs(60));
        let (a, b, c) = (actor().await, actor().await, actor().await);
        // Given "a" answered twice, then gone (its slot freed),
        l.spawned("a", &a);
        l.completed("a");
        l.dispatch("a");
        l.completed("a");
        assert_eq!(l.removed(&a).as_deref(), Some("a"));
        assert_eq!(l.removed(&a), None, "forgotten once");
        // and "b" in that slot, then "c", both answered, then "b" busy,
        l.spawned("b", &b);
        l.spawned("c", &c);
        l.completed("b");
        l.completed("c");
        l.dispatch("b");
        // when room is made at the cap, "c" is handed back,
        assert_eq!(l.room_for("d"), (1, Some(c.get_id())));
        // and then nothing: "b" is busy, whatever "a"'s and its own older
        // stamps of that slot say.
        assert_eq!(l.room_for("e"), (0, None));
        assert_eq!(l.actor_of("b"), Some(b.get_id()));
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
        let mut l = metrics::with_local_recorder(&recorder, || {
            Live::new(health.clone(), 1, Duration::ZERO)
        });
        let a = actor().await;
        l.spawned("a", &a);
        l.completed("a");
        assert_eq!(l.room_for("b"), (1, Some(a.get_id())), "a, handed back");
        assert_eq!(l.users.find("a"), None);
        assert_eq!(l.live.passivate_idle(&mut l.users), 0, "b's batch is out");
        l.completed("b");
        assert_eq!(
            l.live.passivate_idle(&mut l.users),
            1,
            "idle timeout 0: b goes"
        );
        assert_eq!(l.users.find("b"), None, "and its user with it");
        assert_eq!(l.live.passivate_idle(&mut l.users), 0);
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
