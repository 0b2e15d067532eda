//! Typed fields of input records, for records deserialised with serde derive: a field keeps what
//! was wrong with its value instead of failing the whole record, so the record's parser decides
//! which fields are required, in which order they are checked, and which wrong optional fields
//! are only ignored with a warning; each message names the field (`named`).
//!
//! Values are read leniently, as both JSON Lines and CSV give them: text may be a number, empty
//! text counts as missing, a price or count may be numeric text, a list may be a JSON array or
//! `|`-separated text (CSV).

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// What was wrong with a field's value, said with the field's name by `named`.
#[derive(Debug, Clone, PartialEq)]
enum Problem {
    /// Required but absent, null or empty.
    Missing,
    /// A value of the wrong kind: "must be {expected}, got {kind}".
    Kind { expected: &'static str, got: &'static str },
    /// A JSON number that is not usable as f64.
    UnusableNumber,
    /// Text that is not a number.
    NotNumber(String),
    /// A number below 0 or not finite.
    Negative(f64),
    /// A JSON number that is not a whole number (the message has no value, as before).
    NotWhole,
    /// Text that is not a whole number.
    NotWholeText(String),
    /// A list item (1-based) that is not non-empty text.
    Item { index: usize, got: &'static str },
}

impl Problem {
    fn named(&self, key: &str) -> String {
        match self {
            Problem::Missing => format!("missing field `{key}`"),
            Problem::Kind { expected, got } => {
                format!("field `{key}` must be {expected}, got {got}")
            }
            Problem::UnusableNumber => format!("field `{key}` is not a usable number"),
            Problem::NotNumber(s) => format!("field `{key}` is not a number: {s:?}"),
            Problem::Negative(v) => format!("field `{key}` must be a non-negative number, got {v}"),
            Problem::NotWhole => format!("field `{key}` must be a whole number"),
            Problem::NotWholeText(s) => format!("field `{key}` must be a whole number, got {s:?}"),
            Problem::Item { index, got } => {
                format!("field `{key}` item {index} must be non-empty text, got {got}")
            }
        }
    }
}

/// Defines a field type around `Result<$ok, Problem>`, read from any JSON value by `$read`.
macro_rules! field {
    ($(#[$doc:meta])* $name:ident, $ok:ty, $read:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(Result<$ok, Problem>);

        impl Default for $name {
            /// An absent field.
            fn default() -> Self {
                $name::of(None)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($name::of(Some(&Value::deserialize(d)?)))
            }
        }

        impl $name {
            /// The field from its value (`None` when absent).
            pub fn of(value: Option<&Value>) -> Self {
                $name($read(value.unwrap_or(&Value::Null)))
            }
        }
    };
}

field!(
    /// Optional text (numbers are accepted and written as text; empty text is missing).
    Text,
    Option<String>,
    read_text
);
field!(
    /// An optional price: a finite, non-negative number (JSON number or numeric text).
    Price,
    Option<f64>,
    read_price
);
field!(
    /// An optional whole number (JSON number or numeric text).
    Count,
    Option<u64>,
    read_count
);
field!(
    /// A list of text: a JSON array of strings, or text split on `|` (CSV); absent is empty.
    List,
    Vec<String>,
    read_list
);

impl Text {
    /// The text, if given; an error naming `key` when of the wrong kind.
    pub fn named(self, key: &str) -> Result<Option<String>, String> {
        self.0.map_err(|p| p.named(key))
    }

    /// The text, required: an error naming `key` when absent or of the wrong kind.
    pub fn required(self, key: &str) -> Result<String, String> {
        self.named(key)?.ok_or_else(|| Problem::Missing.named(key))
    }
}

impl Price {
    /// The price, if given; an error naming `key` when not a non-negative number.
    pub fn named(self, key: &str) -> Result<Option<f64>, String> {
        self.0.map_err(|p| p.named(key))
    }

    /// The price, required: an error naming `key` when absent or not a non-negative number.
    pub fn required(self, key: &str) -> Result<f64, String> {
        self.named(key)?.ok_or_else(|| Problem::Missing.named(key))
    }
}

impl Count {
    /// The count, if given; an error naming `key` when not a whole number.
    pub fn named(self, key: &str) -> Result<Option<u64>, String> {
        self.0.map_err(|p| p.named(key))
    }
}

impl List {
    /// The items (none when absent); an error naming `key` when not a list of text.
    pub fn named(self, key: &str) -> Result<Vec<String>, String> {
        self.0.map_err(|p| p.named(key))
    }
}

fn read_text(v: &Value) -> Result<Option<String>, Problem> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(Problem::Kind { expected: "text", got: kind(other) }),
    }
}

fn read_price(v: &Value) -> Result<Option<f64>, Problem> {
    let p = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_f64().ok_or(Problem::UnusableNumber)?,
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| Problem::NotNumber(s.clone()))?,
        other => return Err(Problem::Kind { expected: "a number", got: kind(other) }),
    };
    if !p.is_finite() || p < 0.0 {
        return Err(Problem::Negative(p));
    }
    Ok(Some(p))
}

fn read_count(v: &Value) -> Result<Option<u64>, Problem> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().map(Some).ok_or(Problem::NotWhole),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => {
            s.trim().parse().map(Some).map_err(|_| Problem::NotWholeText(s.clone()))
        }
        other => Err(Problem::Kind { expected: "a whole number", got: kind(other) }),
    }
}

fn read_list(v: &Value) -> Result<Vec<String>, Problem> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => {
            Ok(s.split('|').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(Problem::Item { index: i + 1, got: kind(other) }),
            })
            .collect(),
        other => Err(Problem::Kind { expected: "a list or `|`-separated text", got: kind(other) }),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Deserialises a record's fields into `T` (a struct of the field types above, with
/// `#[serde(default)]`): the fields' problems are kept in them, so this fails only on a record
/// that is not an object of fields.
pub fn record<T: serde::de::DeserializeOwned>(
    fields: &serde_json::Map<String, Value>,
) -> Result<T, String> {
    T::deserialize(Value::Object(fields.clone())).map_err(|e| format!("unreadable record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Record {
        id: Text,
        price: Price,
        sold: Count,
        images: List,
    }

    fn of(v: Value) -> Record {
        record(v.as_object().expect("an object")).expect("fields are kept, not failed")
    }

    #[test]
    fn values_are_read_as_both_formats_give_them_and_messages_name_the_field() {
        let r = of(json!({"id": 42, "price": " 12.5 ", "sold": "7", "images": "a.jpg | b.jpg|"}));
        assert_eq!(r.id.required("id"), Ok("42".to_string()));
        assert_eq!(r.price.required("price"), Ok(12.5));
        assert_eq!(r.sold.named("sold"), Ok(Some(7)));
        assert_eq!(r.images.named("images"), Ok(vec!["a.jpg".to_string(), "b.jpg".to_string()]));
        let r = of(json!({"id": " ", "price": -1, "sold": 1.5, "images": ["a", ""], "x": true}));
        assert_eq!(r.id.required("id"), Err("missing field `id`".to_string()));
        let negative = "field `price` must be a non-negative number, got -1";
        assert_eq!(r.price.required("price"), Err(negative.to_string()));
        assert_eq!(r.sold.named("sold"), Err("field `sold` must be a whole number".to_string()));
        let item = "field `images` item 2 must be non-empty text, got text";
        assert_eq!(r.images.named("images"), Err(item.to_string()));
        let r = of(json!({"id": [1], "price": "ten", "images": {"a": 1}}));
        assert_eq!(r.id.named("id"), Err("field `id` must be text, got a list".to_string()));
        let ten = "field `price` is not a number: \"ten\"";
        assert_eq!(r.price.named("price"), Err(ten.to_string()));
        let images = "field `images` must be a list or `|`-separated text, got an object";
        assert_eq!(r.images.named("images"), Err(images.to_string()));
        assert_eq!(r.sold.named("sold"), Ok(None), "an absent field is missing, not wrong");
    }
}
