//! Finding a key that one JSON object repeats.
//!
//! An envelope is stored byte for byte, and readers of a repeated key
//! disagree: serde_json (the daemon) keeps the last value, SQLite's
//! `json_extract` the first. The same row would then have one `event_id` or
//! `lamport_clock` for the daemon and another for the CLI or the server. So an
//! event that repeats a key in any of its objects, at any depth, is refused.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The path (`payload.wp_id`, `a.b[2].c`) of the first key that appears twice
/// in one object of `text`, or `None` when there is none.
pub fn first_duplicate_key(text: &str) -> Result<Option<String>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let found = Walk {
        path: String::new(),
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// Walks one value, whose place in the document is `path`.
struct Walk {
    path: String,
}

impl Walk {
    fn child(&self, key: &str) -> Self {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Self { path }
    }
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0;
        loop {
            // Once one is found, the rest is only read to its end.
            if found.is_some() {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                continue;
            }
            let walk = Walk {
                path: format!("{}[{i}]", self.path),
            };
            match seq.next_element_seed(walk)? {
                None => break,
                Some(f) => found = f,
            }
            i += 1;
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = HashSet::new();
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if found.is_some() {
                map.next_value::<IgnoredAny>()?;
            } else if keys.contains(&key) {
                found = Some(self.child(&key).path);
                map.next_value::<IgnoredAny>()?;
            } else {
                found = map.next_value_seed(self.child(&key))?;
                keys.insert(key);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_repeated_key_at_any_depth() {
        for (text, want) in [
            (r#"{"a":1,"b":2}"#, None),
            (r#"{"a":1,"a":2}"#, Some("a")),
            (r#"{"p":{"x":1,"y":{"x":2}},"x":3}"#, None),
            (r#"{"p":{"w":1,"w":1}}"#, Some("p.w")),
            (
                r#"{"l":[{"a":1},{"b":1,"b":2}],"l2":{"c":1,"c":1}}"#,
                Some("l[1].b"),
            ),
            (r#"[{"k":1},{"k":1}]"#, None),
            // The same key after an escape is still the same key.
            (r#"{"event_id":"A","event\u005fid":"B"}"#, Some("event_id")),
            ("3", None),
        ] {
            assert_eq!(
                first_duplicate_key(text).unwrap().as_deref(),
                want,
                "{text}"
            );
        }
        assert!(first_duplicate_key("{").is_err());
        assert!(first_duplicate_key(r#"{"a":1} x"#).is_err());
    }
}
