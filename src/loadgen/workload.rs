//! The synthetic workload: a seeded generator of interaction commands with
//! a chosen user distribution, type mix, share of invalid commands and share
//! of duplicates (an earlier command sent again with the same id), and a
//! share of poison messages (undecodable payloads, see [`super::poison`]).
//!
//! Deterministic for a seed: the same seed gives the same commands in the
//! same order, so runs are reproducible.

use crate::domain::codec::CanonicalCommand;
use crate::domain::Target;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};

/// SplitMix64: small, fast, good enough for load generation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// How users are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    Uniform,
    /// Round robin: user `k mod n` for the k-th command, so n commands
    /// touch exactly n distinct users (for memory tests).
    Sequential,
    /// Zipf with exponent `s` (1.0 is the classic "few users do most").
    Zipf(f64),
}

impl std::str::FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "uniform" => Ok(Self::Uniform),
            None if s == "sequential" => Ok(Self::Sequential),
            None if s == "zipf" => Ok(Self::Zipf(1.0)),
            Some(("zipf", e)) => e
                .parse::<f64>()
                .ok()
                .filter(|e| *e > 0.0 && e.is_finite())
                .map(Self::Zipf)
                .ok_or_else(|| format!("invalid zipf exponent {e:?}")),
            _ => Err(format!(
                "unknown distribution {s:?} (uniform, sequential, zipf, zipf:1.2)"
            )),
        }
    }
}

/// Draws user indexes.
pub struct Users {
    n: u64,
    sequential: bool,
    next: std::cell::Cell<u64>,
    /// Cumulative weights (Zipf only).
    cdf: Vec<f64>,
}

impl Users {
    pub fn new(n: u64, dist: &Distribution) -> Self {
        let cdf = match dist {
            Distribution::Uniform | Distribution::Sequential => Vec::new(),
            Distribution::Zipf(s) => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=n)
                    .map(|k| {
                        acc += 1.0 / (k as f64).powf(*s);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                cdf
            }
        };
        Self {
            n: n.max(1),
            sequential: *dist == Distribution::Sequential,
            next: std::cell::Cell::new(0),
            cdf,
        }
    }

    pub fn draw(&self, rng: &mut Rng) -> u64 {
        if self.sequential {
            let k = self.next.get();
            self.next.set(k + 1);
            return k % self.n;
        }
        if self.cdf.is_empty() {
            return rng.below(self.n);
        }
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u) as u64
    }
}

/// The interaction type mix, as weights of click, view, like.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix(pub [u32; 3]);

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut w = [0u32; 3];
        for part in s.split(',') {
            let (name, n) = part
                .split_once('=')
                .ok_or_else(|| format!("expected type=weight, got {part:?}"))?;
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| format!("invalid weight in {part:?}"))?;
            let i = ["click", "view", "like"]
                .iter()
                .position(|t| *t == name.trim())
                .ok_or_else(|| format!("unknown interaction type {name:?}"))?;
            w[i] = n;
        }
        if w.iter().sum::<u32>() == 0 {
            return Err("the mix needs a positive weight".into());
        }
        Ok(Self(w))
    }
}

/// What the generator produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Valid,
    Invalid,
    Duplicate,
    /// Never decodable (malformed, unknown command, oversize, bad encoding).
    Poison,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Invalid => "invalid",
            Kind::Duplicate => "duplicate",
            Kind::Poison => "poison",
        }
    }
}

/// The message property carrying the generator's id of every message it
/// sends (kept by the dead-letter topic, so a checker can match them).
pub const ID_PROPERTY: &str = "loadgen-id";

/// One generated command.
pub struct Generated {
    pub kind: Kind,
    /// The generator's sequence number of this command (a duplicate
    /// carries the one of the command it repeats); the id ends with it.
    pub seq: u64,
    pub interaction_id: String,
    pub user_id: String,
    pub body: Vec<u8>,
    /// Message properties (log targets): always [`ID_PROPERTY`].
    pub properties: HashMap<String, String>,
}

impl Generated {
    #[cfg(test)]
    pub(super) fn new_for_test(kind: Kind, id: String, user: String) -> Self {
        Self::new(kind, 0, id, user, Vec::new())
    }

    fn new(kind: Kind, seq: u64, interaction_id: String, user_id: String, body: Vec<u8>) -> Self {
        let properties = HashMap::from([(ID_PROPERTY.to_string(), interaction_id.clone())]);
        Self {
            kind,
            seq,
            interaction_id,
            user_id,
            body,
            properties,
        }
    }
}

pub struct Workload {
    rng: Rng,
    users: Users,
    mix: Mix,
    invalid: f64,
    duplicates: f64,
    poison: f64,
    campaign: String,
    run: String,
    seq: u64,
    recent: VecDeque<(u64, String, String, Vec<u8>)>,
}

/// Earlier commands kept to resend as duplicates.
const RECENT: usize = 1024;

impl Workload {
    pub fn new(
        seed: u64,
        users: u64,
        dist: &Distribution,
        mix: Mix,
        invalid: f64,
        duplicates: f64,
        campaign: String,
    ) -> Self {
        Self {
            rng: Rng::new(seed),
            users: Users::new(users, dist),
            mix,
            invalid: invalid.clamp(0.0, 1.0),
            duplicates: duplicates.clamp(0.0, 1.0),
            poison: 0.0,
            run: campaign.clone(),
            campaign,
            seq: 0,
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    /// Adds a share of poison messages (for log targets: HTTP ingest
    /// refuses them before they reach the log).
    pub fn with_poison(mut self, share: f64) -> Self {
        self.poison = share.clamp(0.0, 1.0);
        self
    }

    pub fn campaign(&self) -> &str {
        &self.campaign
    }

    /// What every interaction id of this run starts with; the generator's
    /// sequence number follows it.
    pub fn id_prefix(&self) -> String {
        format!("lg-{}-", self.run)
    }

    /// The next command, occurring at `at`.
    pub fn next(&mut self, at: DateTime<Utc>) -> Generated {
        let roll = self.rng.unit();
        if roll < self.duplicates && !self.recent.is_empty() {
            let i = self.rng.below(self.recent.len() as u64) as usize;
            if let Some((seq, id, user, body)) = self.recent.get(i) {
                return Generated::new(
                    Kind::Duplicate,
                    *seq,
                    id.clone(),
                    user.clone(),
                    body.clone(),
                );
            }
        }
        let invalid = roll >= self.duplicates && roll < self.duplicates + self.invalid;
        let poison = !invalid
            && roll >= self.duplicates + self.invalid
            && roll < self.duplicates + self.invalid + self.poison;
        self.seq += 1;
        let user = format!("lg-u{}", self.users.draw(&mut self.rng));
        let id = format!("{}{}", self.id_prefix(), self.seq);
        if poison {
            let variant = self.rng.below(super::poison::VARIANTS);
            return super::poison::make(
                variant,
                Generated::new(Kind::Poison, self.seq, id, user, Vec::new()),
            );
        }
        let w = self.mix.0;
        let pick = self.rng.below(u64::from(w[0] + w[1] + w[2])) as u32;
        let ty = if invalid {
            "share"
        } else if pick < w[0] {
            "click"
        } else if pick < w[0] + w[1] {
            "view"
        } else {
            "like"
        };
        let cmd = CanonicalCommand {
            interaction_id: Some(id.clone()),
            user_id: user.clone(),
            interaction_type: ty.to_string(),
            target: Target {
                id: format!("post-{}", self.rng.below(1000)),
                kind: "post".into(),
            },
            campaign_id: Some(self.campaign.clone()),
            affiliate_id: Some("a-load".into()),
            occurred_at: at,
        };
        let body = serde_json::to_vec(&cmd).unwrap_or_default();
        // Kept only when duplicates are asked for: three clones per
        // command otherwise spent for nothing.
        if !invalid && self.duplicates > 0.0 {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent
                .push_back((self.seq, id.clone(), user.clone(), body.clone()));
        }
        Generated::new(
            if invalid { Kind::Invalid } else { Kind::Valid },
            self.seq,
            id,
            user,
            body,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let mk = || {
            Workload::new(
                7,
                100,
                &Distribution::Zipf(1.0),
                Mix([1, 1, 1]),
                0.1,
                0.1,
                "c".into(),
            )
        };
        let (mut a, mut b) = (mk(), mk());
        let at = Utc::now();
        for _ in 0..500 {
            let (x, y) = (a.next(at), b.next(at));
            assert_eq!(
                (x.kind, x.interaction_id, x.body),
                (y.kind, y.interaction_id, y.body)
            );
        }
    }

    #[test]
    fn shares_are_respected() {
        let mut w = Workload::new(
            1,
            1000,
            &Distribution::Uniform,
            Mix([1, 0, 0]),
            0.2,
            0.1,
            "c".into(),
        );
        let at = Utc::now();
        let kinds: Vec<Kind> = (0..20_000).map(|_| w.next(at).kind).collect();
        let share = |k| kinds.iter().filter(|x| **x == k).count() as f64 / kinds.len() as f64;
        assert!((share(Kind::Invalid) - 0.2).abs() < 0.02);
        assert!((share(Kind::Duplicate) - 0.1).abs() < 0.02);
        assert_eq!(share(Kind::Poison), 0.0, "no poison unless asked for");
    }

    #[test]
    fn poison_share_and_every_message_carries_its_id() {
        let mut w = Workload::new(
            5,
            100,
            &Distribution::Uniform,
            Mix([1, 1, 1]),
            0.1,
            0.1,
            "c".into(),
        )
        .with_poison(0.2);
        let at = Utc::now();
        let all: Vec<Generated> = (0..5_000).map(|_| w.next(at)).collect();
        let poison = all.iter().filter(|g| g.kind == Kind::Poison).count() as f64 / 5_000.0;
        assert!((poison - 0.2).abs() < 0.03, "poison share {poison}");
        for g in &all {
            assert_eq!(
                g.properties.get(ID_PROPERTY),
                Some(&g.interaction_id),
                "{:?}",
                g.kind
            );
        }
    }

    #[test]
    fn ids_are_the_prefix_and_the_sequence_number() {
        let mut w = Workload::new(
            9,
            100,
            &Distribution::Uniform,
            Mix([1, 1, 1]),
            0.1,
            0.2,
            "c".into(),
        );
        let at = Utc::now();
        let mut seen = std::collections::HashMap::new();
        for _ in 0..2_000 {
            let g = w.next(at);
            assert_eq!(g.interaction_id, format!("{}{}", w.id_prefix(), g.seq));
            // A duplicate repeats its command's number and body.
            if let Some(body) = seen.insert(g.seq, g.body.clone()) {
                assert_eq!(g.kind, Kind::Duplicate);
                assert_eq!(body, g.body);
            }
        }
    }

    #[test]
    fn zipf_favours_the_first_users() {
        let users = Users::new(1000, &Distribution::Zipf(1.0));
        let mut rng = Rng::new(3);
        let draws: Vec<u64> = (0..10_000).map(|_| users.draw(&mut rng)).collect();
        let top = draws.iter().filter(|u| **u < 10).count();
        assert!(top > 3000, "top 10 users got {top} of 10000");
        assert!(draws.iter().all(|u| *u < 1000));
    }

    #[test]
    fn parses_options() {
        assert_eq!(
            "zipf:1.2".parse::<Distribution>(),
            Ok(Distribution::Zipf(1.2))
        );
        assert!("pareto".parse::<Distribution>().is_err());
        assert_eq!("click=5,like=1".parse::<Mix>(), Ok(Mix([5, 0, 1])));
        assert!("share=1".parse::<Mix>().is_err());
    }
}
