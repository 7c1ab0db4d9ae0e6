//! Finding a key that one JSON object repeats.
//!
//! An envelope is stored byte for byte, and readers of a repeated key
//! disagree: serde_json (the daemon) keeps the last value, SQLite's
//! `json_extract` the first. The same row would then have one `event_id` or
//! `lamport_clock` for the daemon and another for the CLI or the server. So an
//! event that repeats a key in any of its objects, at any depth, is refused.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Why [`parse_unique`] refused a text.
#[derive(Debug)]
pub enum Unique {
    /// The path (`payload.wp_id`, `a.b[2].c`) of the first key, in document
    /// order, that one object repeats.
    Repeated(String),
    /// Not JSON, or JSON that serde_json refuses (nested deeper than 128).
    Unreadable(serde_json::Error),
}

/// Parses `text` into a [`Value`] and refuses it if any of its objects repeats
/// a key: the check and the parse are one pass over the text, where a walk for
/// repeated keys and then a parse read it twice (the request path's largest
/// cost but one at 64 clients, BENCHMARKS.md "Issue 10, third round").
pub fn parse_unique(text: &str) -> Result<Value, Unique> {
    let repeated = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Build {
        repeated: &repeated,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match (parsed, repeated.into_inner()) {
        (_, Some(path)) => Err(Unique::Repeated(path)),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(Unique::Unreadable(e)),
    }
}

/// Builds one value. A repeat stops the parse: the innermost object writes
/// the repeated key into `repeated` and fails, and each enclosing object or
/// array puts its own key or index in front as the failure passes through it,
/// so the path costs nothing unless there is a repeat.
#[derive(Clone, Copy)]
struct Build<'a> {
    repeated: &'a RefCell<Option<String>>,
}

impl Build<'_> {
    /// `segment` (`key` or `[i]`) in front of the path found inside it.
    fn enclose(&self, segment: &str) {
        if let Some(path) = self.repeated.borrow_mut().as_mut() {
            if !path.starts_with('[') {
                path.insert(0, '.');
            }
            path.insert_str(0, segment);
        }
    }
}

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json yields finite numbers only; null as its own Value does.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(v)) => items.push(v),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    self.enclose(&format!("[{}]", items.len()));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // Grown as serde_json grows its own: room reserved up front would be
        // paid by every empty object, and a hostile body of `[{},{},...]`
        // would then cost hundreds of bytes per three it sends. An entry
        // hashes each key once for both the check and the insert.
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match obj.entry(key) {
                Entry::Occupied(seen) => {
                    *self.repeated.borrow_mut() = Some(seen.key().clone());
                    return Err(de::Error::custom("a key appears twice in one object"));
                }
                Entry::Vacant(slot) => match map.next_value_seed(self) {
                    Ok(v) => {
                        slot.insert(v);
                    }
                    Err(e) => {
                        self.enclose(slot.key());
                        return Err(e);
                    }
                },
            }
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path of the first repeated key, `None` when there is none; an error
    /// when `text` is not JSON, even after a repeat.
    fn first_duplicate_key(text: &str) -> Result<Option<String>, serde_json::Error> {
        match parse_unique(text) {
            Ok(_) => Ok(None),
            Err(Unique::Repeated(path)) => {
                serde_json::from_str::<serde::de::IgnoredAny>(text)?;
                Ok(Some(path))
            }
            Err(Unique::Unreadable(e)) => Err(e),
        }
    }

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
        // A repeat does not hide broken text after it.
        assert!(first_duplicate_key(r#"{"a":1,"a":2} x"#).is_err());
        assert!(first_duplicate_key(r#"{"a":1,"a":2,"#).is_err());
    }

    #[test]
    fn a_repeat_is_named_by_its_whole_path() {
        for (text, want) in [
            (r#"{"a":[[{"x":1}],[1,{"b":1,"b":2}]]}"#, "a[1][1].b"),
            (r#"[0,[{"k":{"z":1,"z":1}}]]"#, "[1][0].k.z"),
            (r#"{"p":{"w":1,"w":1},"x":1,"x":2}"#, "p.w"),
            (r#"{"x":1,"x":2,"p":{"w":1,"w":1}}"#, "x"),
        ] {
            match parse_unique(text) {
                Err(Unique::Repeated(path)) => assert_eq!(path, want, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn parses_as_serde_json_does() {
        for text in [
            r#"{"n":null,"t":true,"f":false,"u":18446744073709551615,"i":-9223372036854775808}"#,
            r#"{"x":1.5,"e":1e300,"z":-0.0,"s":"\u00e9\n\"","a":[],"o":{},"deep":[[[{}]]]}"#,
            r#"  [1, "two", {"three": 3}]  "#,
            r#""just a string""#,
            r#"{"b":1,"a":2,"c":{"y":1,"x":2}}"#,
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            let got = parse_unique(text).unwrap();
            assert_eq!(got, want, "{text}");
            // Key order is kept (serde_json's preserve_order): the same text back.
            assert_eq!(got.to_string(), want.to_string(), "{text}");
        }
        for bad in ["", "{", r#"{"a":}"#, "[1,]", r#"{"a":1}{"b":2}"#, "nul"] {
            assert!(
                matches!(parse_unique(bad), Err(Unique::Unreadable(_))),
                "{bad}"
            );
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(parse_unique(&deep), Err(Unique::Unreadable(_))));
    }

    proptest::proptest! {
        #[test]
        fn any_value_reads_as_serde_json_reads_it(v in arb_json()) {
            // Against serde_json's reading, not `v`: without its float_roundtrip
            // feature serde_json may read back a float a last digit off.
            let text = v.to_string();
            let want: Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(parse_unique(&text).unwrap(), want);
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
