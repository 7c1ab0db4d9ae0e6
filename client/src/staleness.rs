//! Staleness is loud: when events are queued but will not reach the server,
//! `emit` says so in one line on stderr with the command that fixes it, at
//! most once an hour per home. The conditions and their wording are shared
//! with `status` ([`kitty_cli_common::staleness`]); what an emit's answer
//! says is the client's own.

pub use kitty_cli_common::staleness::{Condition, restart_hint};
use kitty_proto::home::Home;

use crate::{DeliveryPath, Emitted};

/// What an emit's answer says, if anything is wrong.
pub fn of_emit(e: &Emitted) -> Option<Condition> {
    match e.path {
        DeliveryPath::Direct => Some(Condition::NotRunning {
            why: e.note.clone(),
        }),
        DeliveryPath::Spool => Some(Condition::NotAnswering {
            why: e.note.clone(),
        }),
        DeliveryPath::Daemon => e.health.as_ref().and_then(Condition::of_health),
    }
}

/// After a successful emit: warns when the event will not be delivered, once
/// an hour per home.
pub fn after_emit(home: &Home, e: &Emitted) {
    if let Some(c) = of_emit(e)
        && crate::warn_once::due(home, "delivery")
    {
        eprintln!(
            "kitty-sync: warning: {} (shown at most once an hour)",
            c.describe(home)
        );
    }
}
