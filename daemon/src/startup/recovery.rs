//! What start-up says about the clock it recovered.

use kitty_proto::home::Home;
use kitty_store::clockfile::ClockFile;
use kitty_store::ledger::Recovery;

pub fn report_recovery(home: &Home, r: &Recovery) {
    if let Some(raw) = &r.refused_mark {
        tracing::warn!(
            "queue.db's stored high-water mark {raw:?} is no value from 0 to 2^53 - 1; \
             refused it and resumed the clock at {} from clock.json and the queue",
            r.value
        );
    }
    if r.queue_beyond > 0 {
        tracing::warn!(
            "{} queued event(s) carry a lamport_clock beyond 2^53 - 1; left out of the clock",
            r.queue_beyond
        );
    }
    match &r.clock_file {
        ClockFile::Corrupt(why) => {
            // Moved, not copied: a rename replaces whatever is planted at the
            // new name (a symlink is not followed), reads nothing (the file may
            // be huge or a FIFO), and the checkpoint written next takes its place.
            let keep = home.clock_json().with_extension("json.corrupt");
            let kept = match std::fs::rename(home.clock_json(), &keep) {
                Ok(()) => format!("moved it to {}", keep.display()),
                Err(e) => format!("could not move it to {}: {e}", keep.display()),
            };
            tracing::warn!(
                "clock.json is corrupt ({why}); {kept}; resumed the clock at {} \
                 from queue.db (high-water mark {}, largest queued value {})",
                r.value,
                r.high_water_mark,
                r.queue_max
            );
        }
        ClockFile::Missing if r.value > 0 => tracing::warn!(
            "clock.json is missing; resumed the clock at {} from queue.db",
            r.value
        ),
        ClockFile::Valid { value, .. } if *value < r.value => tracing::warn!(
            "clock.json says {value} but queue.db has seen {}; resumed at {}",
            r.high_water_mark.max(r.queue_max),
            r.value
        ),
        _ => {}
    }
}
