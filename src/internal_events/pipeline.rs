//! Handles for the metrics the pipeline records once per command, per
//! event or per cold user (an aggregate bound and one passivated).
//!
//! `histogram!` and `gauge!` look their series up in the recorder's
//! registry on every call: build the key, hash the name and the labels,
//! find the entry (and `partition.to_string()` allocated besides). At tens
//! of thousands of events a second those lookups took about 2 % of the
//! pipeline's CPU in a profile. The
//! actors on that path register their series once, in `pre_start`, and
//! record through the handle: the same series, the same values.
//!
//! A handle registered before the recorder is installed records nowhere;
//! the service installs it before it spawns the actor tree (`app::serve`).

use super::{E2E_LATENCY, IN_FLIGHT, LIVE_AGGREGATES, PASSIVATED, PROCESSING};
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// `tracking_end_to_end_latency_seconds{stage}`: from the publication of a
/// command to the stage (`persisted` by the writer, `projected` by each
/// projector).
#[derive(Clone)]
pub struct EndToEnd(Histogram);

impl EndToEnd {
    pub fn register(stage: &'static str) -> Self {
        Self(histogram!(E2E_LATENCY, "stage" => stage))
    }

    /// A negative latency (clocks apart) counts as 0.
    pub fn record(&self, seconds: f64) {
        self.0.record(seconds.max(0.0));
    }
}

/// `tracking_processing_duration_seconds`: the time an aggregate spends
/// on a batch of commands. One handle per consumer, cloned into the
/// aggregates it spawns.
#[derive(Clone)]
pub struct Processing(Histogram);

impl Processing {
    pub fn register() -> Self {
        Self(histogram!(PROCESSING))
    }

    pub fn record(&self, seconds: f64) {
        self.0.record(seconds);
    }
}

/// `tracking_in_flight_messages{partition}`: deliveries a consumer holds
/// unacknowledged.
pub struct InFlight(Gauge);

impl InFlight {
    pub fn register(partition: u32) -> Self {
        Self(gauge!(IN_FLIGHT, "partition" => partition.to_string()))
    }

    pub fn set(&self, n: usize) {
        self.0.set(n as f64);
    }
}

/// `tracking_live_aggregates` and `tracking_aggregates_passivated_total{cause}`:
/// one consumer's changes to its live aggregates (each cold user at the
/// cap passivates one and binds one).
pub struct Aggregates {
    live: Gauge,
    passivated_cap: Counter,
    passivated_idle: Counter,
}

impl Aggregates {
    pub fn register() -> Self {
        Self {
            live: gauge!(LIVE_AGGREGATES),
            passivated_cap: counter!(PASSIVATED, "cause" => "cap"),
            passivated_idle: counter!(PASSIVATED, "cause" => "idle"),
        }
    }

    pub fn live_changed(&self, delta: isize) {
        self.live.increment(delta as f64);
    }

    /// Aggregates passivated to make room under the cap.
    pub fn passivated_cap(&self, n: u64) {
        self.passivated_cap.increment(n);
    }

    /// Aggregates passivated after their idle timeout.
    pub fn passivated_idle(&self, n: u64) {
        self.passivated_idle.increment(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each handle records into the series the old per-call macros wrote:
    /// same name, same labels, every value.
    #[test]
    fn handles_record_into_the_named_series() {
        let text = super::super::rendered(|| {
            let persisted = EndToEnd::register("persisted");
            persisted.record(0.002);
            persisted.record(-1.0);
            let processing = Processing::register();
            processing.clone().record(0.5);
            let in_flight = InFlight::register(3);
            in_flight.set(7);
            in_flight.set(5);
            let aggregates = Aggregates::register();
            aggregates.live_changed(3);
            aggregates.live_changed(-1);
            aggregates.passivated_cap(2);
            aggregates.passivated_cap(0);
            aggregates.passivated_idle(1);
        });
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
                .to_owned()
        };
        assert_eq!(
            line("tracking_end_to_end_latency_seconds_count{stage=\"persisted\"}"),
            "tracking_end_to_end_latency_seconds_count{stage=\"persisted\"} 2"
        );
        // The negative latency was recorded as 0: the sum is the other one.
        assert_eq!(
            line("tracking_end_to_end_latency_seconds_sum{stage=\"persisted\"}"),
            "tracking_end_to_end_latency_seconds_sum{stage=\"persisted\"} 0.002"
        );
        assert_eq!(
            line("tracking_processing_duration_seconds_count"),
            "tracking_processing_duration_seconds_count 1"
        );
        assert_eq!(
            line("tracking_in_flight_messages{partition=\"3\"}"),
            "tracking_in_flight_messages{partition=\"3\"} 5"
        );
        assert_eq!(
            line("tracking_live_aggregates "),
            "tracking_live_aggregates 2"
        );
        assert_eq!(
            line("tracking_aggregates_passivated_total{cause=\"cap\"}"),
            "tracking_aggregates_passivated_total{cause=\"cap\"} 2"
        );
        assert_eq!(
            line("tracking_aggregates_passivated_total{cause=\"idle\"}"),
            "tracking_aggregates_passivated_total{cause=\"idle\"} 1"
        );
    }
}
