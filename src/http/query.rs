//! Query-string and path helpers: percent-decoding and typed parameters
//! with errors a client can act on.

use crate::domain::codec::parse_day;
use crate::domain::InteractionType;
use chrono::NaiveDate;
use std::collections::HashMap;

/// A parameter that could not be used, as a 400 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadParam(pub String);

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`).
/// Invalid escapes or invalid UTF-8 are errors.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, BadParam> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| BadParam(format!("invalid percent-escape in {s:?}")))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| BadParam("invalid UTF-8 after percent-decoding".into()))
}

/// Parsed query parameters (last value wins).
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Self, BadParam> {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k, true)?, percent_decode(v, true)?);
        }
        Ok(Self(map))
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn day(&self, name: &str) -> Result<Option<NaiveDate>, BadParam> {
        self.str(name)
            .map(|s| {
                parse_day(s).ok_or_else(|| {
                    BadParam(format!(
                        "{name} must be a date YYYY-MM-DD from 0001-01-01 to 9999-12-31, got {s:?}"
                    ))
                })
            })
            .transpose()
    }

    pub fn limit(&self, default: usize, max: usize) -> Result<usize, BadParam> {
        match self.str("limit") {
            None => Ok(default),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(BadParam(format!(
                    "limit must be an integer from 1 to {max}, got {s:?}"
                ))),
            },
        }
    }

    pub fn cursor(&self) -> Result<Option<u64>, BadParam> {
        self.str("cursor")
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| BadParam(format!("invalid cursor {s:?}")))
            })
            .transpose()
    }

    pub fn interaction_type(&self) -> Result<Option<InteractionType>, BadParam> {
        self.str("interaction_type")
            .map(|s| {
                InteractionType::parse(s).ok_or_else(|| {
                    BadParam(format!(
                        "interaction_type must be click, view or like, got {s:?}"
                    ))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("a%20b+c", true).unwrap(), "a b c");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert!(percent_decode("%zz", true).is_err());
        assert!(percent_decode("%ff", true).is_err());
        assert!(percent_decode("%2", true).is_err());
    }

    #[test]
    fn typed_params() {
        let q = Query::parse(Some(
            "from=2026-11-01&limit=10&cursor=5&interaction_type=LIKE",
        ))
        .unwrap();
        assert_eq!(q.day("from").unwrap(), NaiveDate::from_ymd_opt(2026, 11, 1));
        assert_eq!(q.limit(100, 1000).unwrap(), 10);
        assert_eq!(q.cursor().unwrap(), Some(5));
        assert_eq!(q.interaction_type().unwrap(), Some(InteractionType::Like));
        let bad = Query::parse(Some("from=nope&limit=0&cursor=x&interaction_type=share")).unwrap();
        assert!(bad.day("from").is_err());
        assert!(bad.limit(100, 1000).is_err());
        assert!(bad.cursor().is_err());
        assert!(bad.interaction_type().is_err());
    }
}
