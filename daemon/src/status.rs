//! `GET /v1/status`: the report a running daemon gives of itself.

use kitty_proto::api::Status;

use crate::server::AppState;

pub async fn report(state: &AppState) -> Result<Status, kitty_store::StoreError> {
    let settings = state.settings.borrow().clone();
    let mut status = kitty_store::report::base(
        &state.home,
        &state.socket,
        &settings.config,
        &settings.credentials,
    );
    let mut conn = crate::server::reader(state).await?;
    status.queue = kitty_store::queue::stats(
        &mut conn,
        settings.config.max_queue_size,
        Some(state.writer.current_depth().await?),
    )
    .await?;
    status.running = true;
    status.pid = Some(std::process::id());
    status.uptime_secs = Some(state.started.elapsed().as_secs());
    status.clock.value = *state.clock.borrow();
    status.clock.node_id = state.node_id.clone();
    status.supervisor = Some(crate::supervisor());
    status.config_loaded_at = Some(kitty_proto::rules::format_utc(settings.config_loaded_at));
    status.uplink = state.uplink.snapshot();
    status.uplink.dead_letters = kitty_store::outbox::dead_count(&mut conn).await?;
    status.connection = status.uplink.state;
    let writer = state.writer.health();
    let at = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(kitty_proto::rules::format_utc);
    status.writer = kitty_proto::api::WriterStatus {
        ok: writer.ok(),
        last_error: writer.last_error,
        failing_since: at(writer.failing_since),
        consecutive_failures: writer.consecutive_failures,
        last_commit_at: at(writer.last_commit_at),
    };
    status.health = Some(crate::health::of_status(&status, &settings.config));
    Ok(status)
}
