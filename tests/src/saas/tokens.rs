//! Login, refresh and ws-token (CONTRACT.md §3).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::TokenKind;
use super::http::{ApiError, json_body};

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct Refresh {
    refresh: String,
}

pub(crate) async fn login(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: Login = json_body(&body)?;
    let Some(user) = st.users.check(&req.username, &req.password) else {
        st.counters.bad_logins.bump();
        return Err(ApiError::unauthorized(
            "No active account found with the given credentials",
        ));
    };
    let reply = session(&st, &user.username).await?;
    st.counters.logins.bump();
    tracing::info!(username = %user.username, "login");
    Ok(reply)
}

/// Rotating: the presented refresh token is consumed, so a second use of it is
/// refused even while it is unexpired.
pub(crate) async fn refresh(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: Refresh = json_body(&body)?;
    let refused = |why: &str| {
        st.counters.refresh_refused.bump();
        ApiError::unauthorized(why)
    };
    if st.faults().refuse_refresh {
        return Err(refused("refresh refused (fault refuse_refresh)"));
    }
    let claims = st
        .keys
        .verify(&req.refresh, TokenKind::Refresh)
        .map_err(|e| refused(&e.error))?;
    if !st.store.consume_refresh(&claims.jti).await? {
        return Err(refused(
            "token not valid: this refresh token was already used",
        ));
    }
    if st.users.get(&claims.sub).is_none() {
        return Err(refused("token not valid: unknown user"));
    }
    let reply = session(&st, &claims.sub).await?;
    st.counters.refreshes.bump();
    Ok(reply)
}

pub(crate) async fn ws_token(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let claims = st.keys.bearer(&headers, TokenKind::Access)?;
    // The ws token shares the access lifetime, so the access_ttl_secs fault
    // also expires the WebSocket's credentials.
    let ttl = st.faults().access_ttl_secs;
    let (token, _) = st
        .keys
        .issue(&claims.sub, &claims.team, TokenKind::Ws, ttl)?;
    st.counters.ws_tokens.bump();
    Ok(Json(json!({ "ws_token": token, "expires_in": ttl })))
}

/// A fresh access and refresh pair, with the lifetimes in force now.
async fn session(st: &AppState, username: &str) -> Result<Json<Value>, ApiError> {
    let user = st
        .users
        .get(username)
        .ok_or_else(|| ApiError::unauthorized("unknown user"))?;
    let faults = st.faults();
    let (access, _) = st.keys.issue(
        &user.username,
        user.tenant(),
        TokenKind::Access,
        faults.access_ttl_secs,
    )?;
    let (refresh, rc) = st.keys.issue(
        &user.username,
        user.tenant(),
        TokenKind::Refresh,
        faults.refresh_ttl_secs,
    )?;
    st.store
        .save_refresh(&rc.jti, &user.username, rc.exp)
        .await?;
    let mut reply = json!({
        "access": access,
        "refresh": refresh,
        "access_lifetime": faults.access_ttl_secs,
        "refresh_lifetime": faults.refresh_ttl_secs,
        "username": user.username,
    });
    if let Some(team) = &user.team {
        reply["team_slug"] = team.clone().into();
    }
    Ok(Json(reply))
}
