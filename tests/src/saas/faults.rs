//! The server's live switches: the faults a test turns on to see how the daemon
//! copes, set at start from the command line and changed through `/admin/faults`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The routes `redirect` can name.
pub const REDIRECTABLE: &[&str] = &["token", "refresh", "ws-token", "batch", "ws"];

/// Every switch, as `GET /admin/faults` shows it. `POST /admin/faults` takes any
/// subset of these keys and leaves the others as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Share of batch requests (0.0 to 1.0) answered 500 before anything else is looked at.
    pub batch_500_fraction: f64,
    /// Share of batch requests (0.0 to 1.0) answered 429 with `Retry-After: retry_after_secs`.
    pub batch_429_fraction: f64,
    /// The `Retry-After` of the injected 429s.
    pub retry_after_secs: u64,
    /// Added before every `/api/v1/` answer, to make the daemon wait.
    pub latency_ms: u64,
    /// Lifetime of access and ws tokens issued from now on (0: already expired).
    pub access_ttl_secs: u64,
    /// Lifetime of refresh tokens issued from now on.
    pub refresh_ttl_secs: u64,
    /// Close each WebSocket once it has received this many frames from its
    /// client (pongs included), after handling the last one; 0 = never.
    pub ws_close_after_frames: u64,
    /// Answer every upgrade to `/ws/v1/events/` with 503, as a server without
    /// WebSocket support would, so the daemon has to fall back to batches.
    pub ws_refuse_upgrade: bool,
    /// Answer every refresh 401, as if the session had been revoked.
    pub refuse_refresh: bool,
    /// Store a batch's events but answer 200 with `"results": []`, a response
    /// that confirms nothing.
    pub empty_results: bool,
    /// When > 0, a user's second batch within this many seconds gets 429 with
    /// the remaining wait as `Retry-After` (the design's "1 batch per 5 s").
    pub rate_limit_batch_secs: u64,
    /// Not a fault: acknowledge each WebSocket envelope as later servers do.
    /// Off is the 2026-02 behaviour (no acknowledgements).
    pub ack: bool,
    /// Read WebSocket envelopes and drop them: neither stored nor answered,
    /// as a server that loses what it is sent.
    pub ws_ignore_events: bool,
    /// Answer each WebSocket envelope `{"type":"ack","event_id":...,"status":<this>}`
    /// without storing it (e.g. "rejected"), as a server whose acks lie.
    pub ws_fake_ack: Option<String>,
    /// Frames sent on each new WebSocket right after the snapshot, verbatim:
    /// acks or errors for events the connection never carried, say.
    pub ws_send_on_connect: Vec<Value>,
    /// Answer a route (`token`, `refresh`, `ws-token`, `batch`, `ws`) with
    /// `307 Temporary Redirect` to the same path at this origin
    /// (`http://HOST:PORT`), before looking at anything else.
    pub redirect: BTreeMap<String, String>,
    /// Hold every batch request this long before handling it, as a server
    /// that hangs.
    pub batch_hang_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            batch_500_fraction: 0.0,
            batch_429_fraction: 0.0,
            retry_after_secs: 1,
            latency_ms: 0,
            access_ttl_secs: 900,
            refresh_ttl_secs: 604_800,
            ws_close_after_frames: 0,
            ws_refuse_upgrade: false,
            refuse_refresh: false,
            empty_results: false,
            rate_limit_batch_secs: 0,
            ack: false,
            ws_ignore_events: false,
            ws_fake_ack: None,
            ws_send_on_connect: Vec::new(),
            redirect: BTreeMap::new(),
            batch_hang_ms: 0,
        }
    }
}

impl Faults {
    /// Applies a partial update such as `{"batch_500_fraction": 1.0}`. Unknown
    /// keys are refused, so a typo in a test fails loudly instead of doing nothing.
    pub fn merged(&self, patch: Map<String, Value>) -> Result<Self, String> {
        let mut whole = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => unreachable!("Faults serializes to an object"),
        };
        whole.extend(patch);
        let next: Self = serde_json::from_value(Value::Object(whole)).map_err(|e| e.to_string())?;
        next.check()?;
        Ok(next)
    }

    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("batch_500_fraction", self.batch_500_fraction),
            ("batch_429_fraction", self.batch_429_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0.0 and 1.0, got {v}"));
            }
        }
        if let Some(route) = self
            .redirect
            .keys()
            .find(|r| !REDIRECTABLE.contains(&r.as_str()))
        {
            return Err(format!(
                "redirect names {route:?}; the routes are {}",
                REDIRECTABLE.join(", ")
            ));
        }
        Ok(())
    }
}

/// True with probability `fraction`; 1.0 is always, 0.0 never.
pub(crate) fn roll(fraction: f64) -> bool {
    fraction > 0.0 && rand::random::<f64>() < fraction
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_keeps_unnamed_switches_and_refuses_typos() {
        let base = Faults {
            latency_ms: 7,
            ..Faults::default()
        };
        let patch = json!({"batch_500_fraction": 1.0})
            .as_object()
            .unwrap()
            .clone();
        let next = base.merged(patch).unwrap();
        assert_eq!(next.batch_500_fraction, 1.0);
        assert_eq!(next.latency_ms, 7);

        let typo = json!({"batch_500_fractoin": 1.0})
            .as_object()
            .unwrap()
            .clone();
        assert!(
            base.merged(typo)
                .unwrap_err()
                .contains("batch_500_fractoin")
        );
        let out_of_range = json!({"batch_429_fraction": 2})
            .as_object()
            .unwrap()
            .clone();
        assert!(base.merged(out_of_range).is_err());
    }
}
