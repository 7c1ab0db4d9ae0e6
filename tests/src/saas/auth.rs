//! JWTs: HS256 with one secret per process (or `--jwt-secret`), three kinds
//! that cannot stand in for each other.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::http::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TokenKind {
    Access,
    Refresh,
    Ws,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub sub: String,
    /// The tenant: the user's team, or `local` for a user without one.
    pub team: String,
    pub token_type: TokenKind,
    /// Refresh tokens are rotated by this id: once used, it is gone from the store.
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

pub(crate) struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub(crate) fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // The access_ttl_secs fault must bite on time; the default minute of
        // leeway would hide a short lifetime.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub(crate) fn random() -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        Self::new(&secret)
    }

    /// A token that lives at least `ttl_secs` (at most one second more, since
    /// `exp` is whole seconds); 0 gives one that is expired already.
    pub(crate) fn issue(
        &self,
        sub: &str,
        team: &str,
        kind: TokenKind,
        ttl_secs: u64,
    ) -> Result<(String, Claims), ApiError> {
        let now_ms = now_ms();
        let exp = if ttl_secs == 0 {
            now_ms / 1000
        } else {
            (now_ms + ttl_secs.saturating_mul(1000)).div_ceil(1000)
        };
        let claims = Claims {
            sub: sub.to_owned(),
            team: team.to_owned(),
            token_type: kind,
            jti: ulid::Ulid::generate().to_string(),
            iat: now_ms / 1000,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("signing a {kind:?} token: {e}")))?;
        Ok((token, claims))
    }

    pub(crate) fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| ApiError::unauthorized(format!("token not valid: {e}")))?
            .claims;
        // jsonwebtoken accepts a token in its `exp` second; we count that second as expired.
        if now_ms() >= claims.exp.saturating_mul(1000) {
            return Err(ApiError::unauthorized("token not valid: expired"));
        }
        if claims.token_type != kind {
            return Err(ApiError::unauthorized(format!(
                "token not valid: a {:?} token where a {kind:?} token is needed",
                claims.token_type
            )));
        }
        Ok(claims)
    }

    /// Checks `Authorization: Bearer <token>`.
    pub(crate) fn bearer(&self, headers: &HeaderMap, kind: TokenKind) -> Result<Claims, ApiError> {
        let value = headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("Authorization must be \"Bearer <token>\""))?;
        self.verify(token, kind)
    }
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_do_not_stand_in_for_each_other_and_expiry_bites() {
        let keys = Keys::random();
        let (access, _) = keys.issue("alice", "acme", TokenKind::Access, 60).unwrap();
        let c = keys.verify(&access, TokenKind::Access).unwrap();
        assert_eq!((c.sub.as_str(), c.team.as_str()), ("alice", "acme"));
        assert!(keys.verify(&access, TokenKind::Refresh).is_err());

        let (expired, _) = keys.issue("alice", "acme", TokenKind::Access, 0).unwrap();
        assert!(keys.verify(&expired, TokenKind::Access).is_err());

        let other = Keys::random();
        assert!(other.verify(&access, TokenKind::Access).is_err());
    }
}
