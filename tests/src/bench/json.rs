//! `kitty-bench --json PATH`: every figure of a run, machine-readably, so a
//! script can compare runs. Times are in seconds, sizes in bytes, CPU as a
//! share of one core; `ratios` holds the comparisons issue 10 names, each
//! between two figures of the same run.

use serde_json::{Value, json};

use super::stats::Summary;
use super::sys::{Memory, ThreadStat};
use super::{ClosedLoop, LoadCount, Options, ProcessRuns, Results, Startups, Throughput, db};

/// The keys of `ratios`; the smoke test checks each is there.
pub const RATIOS: &[&str] = &[
    "throughput_16_over_multirow_ceiling",
    "rtt_p50_over_sqlx_bare_commit",
    "emit_median_minus_version_median_secs",
    "throughput_16_over_closed_loop_16",
    "throughput_64_over_closed_loop_64",
];

pub fn summary(s: &Summary) -> Value {
    json!({
        "n": s.n, "min": s.min, "p10": s.p10, "p50": s.p50, "p90": s.p90,
        "p99": s.p99, "max": s.max, "mean": s.mean,
    })
}

fn opt_summary(s: Option<&Summary>) -> Value {
    s.map_or(Value::Null, summary)
}

fn memory(m: &Memory) -> Value {
    json!({ "rss": m.rss, "hwm": m.hwm })
}

fn thread(name: &str, t: &ThreadStat) -> Value {
    json!({
        "name": name, "threads": t.threads, "cpu": t.cpu.as_secs_f64(), "switches": t.switches,
    })
}

/// The counts both kinds of load run share, with the fields of `more` (an
/// object) after them.
fn load_and(l: &LoadCount, more: Value) -> Value {
    let mut all = json!({
        "clients": l.clients,
        "events_per_sec": l.events_per_sec(),
        "in_window": l.in_window,
        "window": l.window.as_secs_f64(),
        "accepted": l.accepted,
        "errors": l.errors,
        "first_error": l.first_error,
        "latency": opt_summary(l.latency.as_ref()),
        "bench_cpu": l.bench_cpu,
        "rows": l.rows,
        "verified": l.verified(),
    });
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), more) {
        all.extend(more);
    }
    all
}

fn throughput(t: &Throughput) -> Value {
    load_and(
        &t.load,
        json!({
            "per_second": t.per_second,
            "daemon_cpu": t.daemon_cpu,
            "memory_after": memory(&t.memory_after),
            "count_cost": opt_summary(t.count_cost.as_ref()),
            "stop": t.stop.as_secs_f64(),
            "threads": t.threads.iter().map(|(n, s)| thread(n, s)).collect::<Vec<_>>(),
        }),
    )
}

fn closed_loop(c: &ClosedLoop) -> Value {
    load_and(&c.load, json!({ "server_cpu": c.server_cpu }))
}

fn process(p: &ProcessRuns) -> Value {
    json!({
        "label": p.label,
        "wall": summary(&p.wall),
        "max_rss": summary(&p.max_rss),
        "cpu": summary(&p.cpu),
        "rows_ok": p.rows_ok,
        "exit_codes": p.exit_codes.iter().map(|(c, n)| (c.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
    })
}

fn startup(s: &Startups) -> Value {
    json!({
        "label": s.label,
        "ready": summary(&s.ready),
        "stop": opt_summary(s.stop.as_ref()),
        "rss_at_ready": summary(&s.rss_at_ready),
        "killed_by_sigterm": s.killed_by_sigterm,
    })
}

impl Results {
    /// 16-client events/s over what SQLite alone commits per second as one
    /// multi-row `INSERT` of [`db::GROUP`] events.
    pub fn throughput_over_ceiling(&self) -> Option<f64> {
        let ceiling = db::GROUP as f64 / self.floor.group_multirow.p50;
        self.at_16().map(|t| t.load.events_per_sec() / ceiling)
    }

    /// The daemon's events/s with `clients` clients over the closed-loop
    /// floor's with as many (see [`super::ideal`]).
    pub fn over_closed_loop(&self, clients: usize) -> Option<f64> {
        let daemon = self.throughput.iter().find(|t| t.load.clients == clients)?;
        let floor = self
            .closed_loop
            .iter()
            .find(|c| c.load.clients == clients)?;
        Some(daemon.load.events_per_sec() / floor.load.events_per_sec())
    }

    fn process(&self, label: &str) -> Option<&ProcessRuns> {
        self.processes.iter().find(|p| p.label == label)
    }

    pub fn json(&self, opts: &Options) -> Value {
        let f = &self.floor;
        let r = &self.round_trip;
        let emit = self.process("daemon running");
        let version = self.process("reference: `kitty-sync --version`");
        let emit_over_version = match (emit, version) {
            (Some(e), Some(v)) => Some(e.wall.p50 - v.wall.p50),
            _ => None,
        };
        let m = &self.machine;
        json!({
            "date": self.date,
            "command": opts.command,
            "quick": opts.quick,
            "elapsed": self.elapsed.as_secs_f64(),
            "daemon_bin": opts.daemon_bin,
            "client_bin": opts.client_bin,
            "machine": {
                "nproc": m.nproc, "cpu_model": m.cpu_model, "kernel": m.kernel,
                "memory": m.memory, "temp_fs": m.temp_fs,
                "load_average_before": m.load_average, "load_average_after": self.load_after,
            },
            "floor": {
                "append_fsync": summary(&f.append_fsync),
                "overwrite_fsync": summary(&f.overwrite_fsync),
                "overwrite_fdatasync": summary(&f.overwrite_fdatasync),
                "sqlx_bare_commit": summary(&f.sqlite_bare),
                "sqlx_daemon_like_commit": summary(&f.sqlite_daemon_like),
                "sqlx_select_1": summary(&f.sqlx_statement),
                "group_size": db::GROUP,
                "group_statements": summary(&f.group_statements),
                "group_multirow": summary(&f.group_multirow),
                "multirow_ceiling_events_per_sec": db::GROUP as f64 / f.group_multirow.p50,
                "cpu_per_commit": f.cpu_per_commit.as_secs_f64(),
            },
            "round_trip": {
                "kept_alive": summary(&r.kept_alive),
                "fresh": summary(&r.fresh),
                "health": summary(&r.health),
                "rows": r.rows,
                "expected_rows": r.expected_rows,
                "ready": r.ready.as_secs_f64(),
                "idle_memory": memory(&r.idle_memory),
                "memory_after": memory(&r.memory_after),
                "stop": r.stop.as_secs_f64(),
            },
            "throughput": self.throughput.iter().map(throughput).collect::<Vec<_>>(),
            "closed_loop": self.closed_loop.iter().map(closed_loop).collect::<Vec<_>>(),
            "processes": self.processes.iter().map(process).collect::<Vec<_>>(),
            "startups": self.startups.iter().map(startup).collect::<Vec<_>>(),
            "recovery_count_cost": opt_summary(self.recovery_count_cost.as_ref()),
            "scale": {
                "rows": self.scale.rows,
                "prefill": self.scale.prefill.as_secs_f64(),
                "startup": startup(&self.scale.startup),
                "status": self.scale.status.iter().map(process).collect::<Vec<_>>(),
            },
            "ratios": {
                RATIOS[0]: self.throughput_over_ceiling(),
                RATIOS[1]: r.kept_alive.p50 / f.sqlite_bare.p50,
                RATIOS[2]: emit_over_version,
                RATIOS[3]: self.over_closed_loop(16),
                RATIOS[4]: self.over_closed_loop(64),
            },
        })
    }
}
