//! Viewer events as they travel: what a viewer posts ([`Event`]), and what edges relay to the
//! origin ([`Record`]: an event with its room). Parsing and validation live here so the edge
//! (intake) and the origin (relay intake) agree on what is valid.

use serde::{Deserialize, Serialize};

/// Most events in one POST.
pub const MAX_BATCH: usize = 500;
/// Longest id, user and sku, in bytes.
pub const MAX_NAME: usize = 64;
/// Largest quantity of one cart or order line.
pub const MAX_QTY: u32 = 10_000;

/// What a viewer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Like,
    Comment,
    CartAdd,
    CartRemove,
    Order,
}

impl Kind {
    /// Cart and order events are money: spooled durably, never shed.
    pub fn is_commerce(self) -> bool {
        matches!(self, Kind::CartAdd | Kind::CartRemove | Kind::Order)
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Like => "like",
            Kind::Comment => "comment",
            Kind::CartAdd => "cart_add",
            Kind::CartRemove => "cart_remove",
            Kind::Order => "order",
        }
    }
}

/// One viewer event. `id` is made by the client and is the idempotency key end to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Likes merged at an edge: how many this record stands for (set by edges, not viewers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// An event on its way to the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub room: String,
    pub event: Event,
}

/// Why a posted body was refused (a 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not an event or a list of events: {0}")]
    Json(String),
    #[error("empty batch")]
    Empty,
    #[error("batch of {0} events; at most {MAX_BATCH}")]
    TooMany(usize),
    #[error("event {index}: {why}")]
    Invalid { index: usize, why: String },
}

/// Parses a viewer's POST body: one event object or an array of them, each validated;
/// `max_text` bounds comment length (characters).
pub fn parse_posted(body: &[u8], max_text: usize) -> Result<Vec<Event>, EventError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Posted {
        One(Event),
        Many(Vec<Event>),
    }
    let events = match serde_json::from_slice::<Posted>(body) {
        Ok(Posted::One(e)) => vec![e],
        Ok(Posted::Many(v)) => v,
        // untagged hides the reason: parse again as the likelier shape to say what is wrong.
        Err(_) => {
            let why = match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => serde_json::from_slice::<Vec<Event>>(body).err(),
                _ => serde_json::from_slice::<Event>(body).err(),
            };
            return Err(EventError::Json(
                why.map_or_else(|| "not JSON".to_string(), |e| e.to_string()),
            ));
        }
    };
    if events.is_empty() {
        return Err(EventError::Empty);
    }
    if events.len() > MAX_BATCH {
        return Err(EventError::TooMany(events.len()));
    }
    for (index, e) in events.iter().enumerate() {
        validate(e, max_text).map_err(|why| EventError::Invalid { index, why })?;
    }
    Ok(events)
}

/// Checks one viewer event.
pub fn validate(e: &Event, max_text: usize) -> Result<(), String> {
    name("id", &e.id)?;
    name("user", &e.user)?;
    if e.count.is_some() {
        return Err("count is set by edges, not viewers".into());
    }
    match e.kind {
        Kind::Like => no_fields(e, &["sku", "qty", "text"]),
        Kind::Comment => {
            no_fields(e, &["sku", "qty"])?;
            let text = e.text.as_deref().ok_or("comment needs text")?;
            let chars = text.chars().count();
            if chars == 0 || chars > max_text {
                return Err(format!("text must be 1 to {max_text} characters"));
            }
            if text.chars().any(|c| c.is_control() && c != '\n') {
                return Err("text has control characters".into());
            }
            Ok(())
        }
        Kind::CartAdd | Kind::CartRemove | Kind::Order => {
            no_fields(e, &["text"])?;
            name("sku", e.sku.as_deref().ok_or("needs sku")?)?;
            match e.qty {
                Some(q) if (1..=MAX_QTY).contains(&q) => Ok(()),
                _ => Err(format!("qty must be 1 to {MAX_QTY}")),
            }
        }
    }
}

/// Ids, users and skus: 1 to 64 of A-Z a-z 0-9 and `-_.:@`.
fn name(field: &str, value: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} must be 1 to {MAX_NAME} of A-Z a-z 0-9 - _ . : @"
        ))
    }
}

fn no_fields(e: &Event, fields: &[&str]) -> Result<(), String> {
    for f in fields {
        let set = match *f {
            "sku" => e.sku.is_some(),
            "qty" => e.qty.is_some(),
            _ => e.text.is_some(),
        };
        if set {
            return Err(format!("{} events have no {f}", e.kind.label()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_many() {
        let one = br#"{"id":"a1","type":"cart_add","user":"u1","sku":"S-1","qty":2}"#;
        assert_eq!(parse_posted(one, 200).unwrap().len(), 1);
        let many = br#"[{"id":"a1","type":"like","user":"u1"},
                        {"id":"a2","type":"comment","user":"u1","text":"hello"}]"#;
        let events = parse_posted(many, 200).unwrap();
        assert_eq!(events[1].kind, Kind::Comment);
    }

    #[test]
    fn bad_input_says_why() {
        let cases: [(&[u8], &str); 9] = [
            (b"{", "EOF"),
            (b"[]", "empty batch"),
            (br#"{"id":"a","type":"tip","user":"u"}"#, "unknown variant"),
            (
                br#"{"id":"a","type":"like","user":"u","x":1}"#,
                "unknown field",
            ),
            (br#"{"id":"a b","type":"like","user":"u"}"#, "id must be"),
            (
                br#"{"id":"a","type":"cart_add","user":"u","sku":"s","qty":0}"#,
                "qty must be",
            ),
            (
                br#"{"id":"a","type":"cart_add","user":"u","qty":1}"#,
                "needs sku",
            ),
            (
                br#"{"id":"a","type":"comment","user":"u","text":""}"#,
                "text must be",
            ),
            (
                br#"{"id":"a","type":"like","user":"u","count":9}"#,
                "count is set by edges",
            ),
        ];
        for (body, why) in cases {
            let e = parse_posted(body, 200).unwrap_err().to_string();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(body));
        }
        let huge: Vec<String> = (0..MAX_BATCH + 1)
            .map(|i| format!(r#"{{"id":"a{i}","type":"like","user":"u"}}"#))
            .collect();
        let body = format!("[{}]", huge.join(","));
        assert_eq!(
            parse_posted(body.as_bytes(), 200),
            Err(EventError::TooMany(MAX_BATCH + 1))
        );
    }
}
