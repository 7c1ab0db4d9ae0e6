//! The accounts the server knows, given on the command line as
//! `--user NAME:PASSWORD[:TEAM]`.

use std::collections::HashMap;
use std::str::FromStr;

/// The tenant of a user who belongs to no team. It matches what the CLI puts in
/// `team_slug` when the credentials name no team (CONTRACT.md §2), so such a
/// user's events are not cross-tenant.
pub const NO_TEAM: &str = "local";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub password: String,
    /// None: login answers without `team_slug`, and the user's tenant is [`NO_TEAM`].
    pub team: Option<String>,
}

impl User {
    pub fn new(username: &str, password: &str, team: Option<&str>) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
            team: team.map(str::to_owned),
        }
    }

    pub fn tenant(&self) -> &str {
        self.team.as_deref().unwrap_or(NO_TEAM)
    }
}

impl FromStr for User {
    type Err = String;

    /// `NAME:PASSWORD:TEAM` or `NAME:PASSWORD`. The first two colons split, so a
    /// password cannot hold a colon, but a username such as `a@b.c` is fine.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, ':');
        let (Some(name), Some(password)) = (parts.next(), parts.next()) else {
            return Err(format!("expected NAME:PASSWORD[:TEAM], got {s:?}"));
        };
        let team = parts.next();
        if name.is_empty() || password.is_empty() || team.is_some_and(str::is_empty) {
            return Err(format!(
                "NAME, PASSWORD and TEAM must not be empty in {s:?}"
            ));
        }
        if let Some(t) = team
            && (t.contains(':') || t.chars().any(char::is_whitespace))
        {
            return Err(format!(
                "TEAM {t:?} must not hold a colon or white space (passwords cannot hold a colon)"
            ));
        }
        Ok(Self::new(name, password, team))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Users(HashMap<String, User>);

impl Users {
    pub(crate) fn new(list: &[User]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for u in list {
            if map.insert(u.username.clone(), u.clone()).is_some() {
                return Err(format!("user {:?} is given twice", u.username));
            }
        }
        Ok(Self(map))
    }

    /// Compares the password in constant time: a dev server, but one a
    /// newcomer may leave listening.
    pub(crate) fn check(&self, username: &str, password: &str) -> Option<&User> {
        let user = self.0.get(username)?;
        let (a, b) = (user.password.as_bytes(), password.as_bytes());
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        same.then_some(user)
    }

    pub(crate) fn get(&self, username: &str) -> Option<&User> {
        self.0.get(username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flag() {
        assert_eq!(
            "alice@example.com:secret:acme".parse::<User>().unwrap(),
            User::new("alice@example.com", "secret", Some("acme"))
        );
        assert_eq!("bob:pw".parse::<User>().unwrap().tenant(), NO_TEAM);
        for bad in [
            "alice",
            "alice:",
            ":pw:acme",
            "alice:pw:",
            "alice:pw:ac me",
            "a:b:c:d",
        ] {
            assert!(bad.parse::<User>().is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_passwords() {
        let users = Users::new(&[User::new("alice", "secret", Some("acme"))]).unwrap();
        assert!(users.check("alice", "secret").is_some());
        assert!(users.check("alice", "secreT").is_none());
        assert!(users.check("bob", "secret").is_none());
        assert!(Users::new(&[User::new("a", "b", None), User::new("a", "c", None)]).is_err());
    }
}
