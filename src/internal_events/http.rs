//! Handles for the series every accepted command records over HTTP.
//!
//! `counter!` and `histogram!` look their series up in the recorder's
//! registry on every call (build the key, hash the name and labels, find
//! the entry): three lookups per accepted command, about 4 % of the
//! ingest thread's CPU in a profile under load. The accepted command's
//! series are registered once, when the server's state is built (after
//! the recorder is installed); every other route and status is looked up
//! by name as before ([`super::http_request`]): the same series, the same
//! values.

use super::{APPENDED, HTTP_DURATION, HTTP_REQUESTS};
use metrics::{counter, histogram, Counter, Histogram};

/// `tracking_http_requests_total{route,status="2xx"}` and
/// `tracking_http_request_duration_seconds{route}` of the ingest route,
/// and `tracking_log_appended_total`.
#[derive(Clone)]
pub struct HttpRequests {
    ingest_route: &'static str,
    accepted: Counter,
    accepted_duration: Histogram,
    appended: Counter,
}

impl HttpRequests {
    /// `ingest_route` is the ingest route's label.
    pub fn register(ingest_route: &'static str) -> Self {
        Self {
            ingest_route,
            accepted: counter!(HTTP_REQUESTS, "route" => ingest_route, "status" => "2xx"),
            accepted_duration: histogram!(HTTP_DURATION, "route" => ingest_route),
            appended: counter!(APPENDED),
        }
    }

    /// A request on `route` (its label) was answered with `status` after
    /// `seconds`.
    pub fn answered(&self, route: &'static str, status: u16, seconds: f64) {
        if route == self.ingest_route && (200..300).contains(&status) {
            self.accepted.increment(1);
            self.accepted_duration.record(seconds);
        } else {
            super::http_request(route, status, seconds);
        }
    }

    /// A command was appended to the command log.
    pub fn appended(&self) {
        self.appended.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handles and the lookups by name write the same series.
    #[test]
    fn accepted_commands_and_other_answers_land_in_the_named_series() {
        let text = super::super::rendered(|| {
            let requests = HttpRequests::register("post_interaction");
            requests.answered("post_interaction", 202, 0.25);
            requests.answered("post_interaction", 202, 0.5);
            requests.appended();
            requests.appended();
            // Not through the handles: a refusal, and another route.
            requests.answered("post_interaction", 400, 0.125);
            requests.answered("stats_daily", 200, 1.0);
            // A lookup by name adds to the handle's series.
            super::super::http_request("post_interaction", 204, 1.0);
        });
        let value = |series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
                .to_owned()
        };
        let ingest = "route=\"post_interaction\"";
        assert_eq!(
            value(&format!(
                "tracking_http_requests_total{{{ingest},status=\"2xx\"}}"
            )),
            "3"
        );
        assert_eq!(
            value(&format!(
                "tracking_http_requests_total{{{ingest},status=\"4xx\"}}"
            )),
            "1"
        );
        assert_eq!(
            value("tracking_http_requests_total{route=\"stats_daily\",status=\"2xx\"}"),
            "1"
        );
        assert_eq!(
            value(&format!(
                "tracking_http_request_duration_seconds_count{{{ingest}}}"
            )),
            "4"
        );
        assert_eq!(
            value(&format!(
                "tracking_http_request_duration_seconds_sum{{{ingest}}}"
            )),
            "1.875"
        );
        assert_eq!(value("tracking_log_appended_total"), "2");
    }
}
