//! Shape errors: where in a catalog document serde gave up. The catalog
//! types alone decide what is well-shaped; this module deserializes the
//! parsed document through a [`Deserializer`] that remembers the path of
//! the value being read, so a serde error comes back with the field it is
//! about (`models[0].base_price`), and words a few of serde's messages the
//! way the catalog format describes itself ("a model is a JSON object").
//!
//! Invariant: no field list lives here; the types' own `Deserialize`
//! implementations are the only schema.

use std::cell::RefCell;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;

use super::catalog::CatalogError;

/// One step from a value to a member of it.
#[derive(Debug, Clone)]
enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// Renders a path as `models[3].price_rules[0].multiplier` (empty for the
/// document itself).
fn render(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(key) if text.is_empty() => text.push_str(key),
            Step::Key(key) => {
                text.push('.');
                text.push_str(key);
            }
            Step::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// Where the first error happened, and whether it was an object's key.
#[derive(Debug, Default)]
struct Failure {
    path: Option<Vec<Step>>,
    at_key: bool,
    /// The Rust type of the object whose key failed, when it is a struct.
    within: Option<&'static str>,
}

/// A `&Value` deserializer that records its path when an error leaves it
/// and no deeper value recorded one first.
struct Tracked<'a, 'f> {
    value: &'a Value,
    path: Vec<Step>,
    failure: &'f RefCell<Failure>,
}

impl<'a, 'f> Tracked<'a, 'f> {
    fn record<T>(&self, result: Result<T, serde_json::Error>) -> Result<T, serde_json::Error> {
        if result.is_err() {
            let mut failure = self.failure.borrow_mut();
            if failure.path.is_none() {
                failure.path = Some(self.path.clone());
            }
        }
        result
    }

    /// Visits the value; an object's members are read as those of `within`
    /// (a struct's name) when given.
    fn walk<'de, V: Visitor<'de>>(
        &self,
        within: Option<&'static str>,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error>
    where
        'a: 'de,
    {
        let result = match self.value {
            Value::Object(object) => visitor.visit_map(Members {
                path: self.path.clone(),
                within,
                failure: self.failure,
                members: object.iter(),
                current: None,
            }),
            Value::Array(items) => visitor.visit_seq(Elements {
                path: self.path.clone(),
                failure: self.failure,
                elements: items.iter().enumerate(),
            }),
            scalar => scalar.deserialize_any(visitor),
        };
        self.record(result)
    }
}

/// Deserializes `seed` from `value`, one `step` below `parent`; an error a
/// deeper value did not claim (a `try_from` conversion, a custom
/// `Deserialize`) is this value's.
fn below<'de, 'a: 'de, T: DeserializeSeed<'de>>(
    parent: &[Step],
    step: Step,
    value: &'a Value,
    failure: &RefCell<Failure>,
    seed: T,
) -> Result<T::Value, serde_json::Error> {
    let mut path = parent.to_vec();
    path.push(step);
    let child = Tracked {
        value,
        path,
        failure,
    };
    let result = seed.deserialize(&child);
    child.record(result)
}

/// Reads an object's members, each value tracked under its key.
struct Members<'a, 'f> {
    path: Vec<Step>,
    /// The struct being read, if the visitor is a struct's.
    within: Option<&'static str>,
    failure: &'f RefCell<Failure>,
    members: serde_json::map::Iter<'a>,
    current: Option<(&'a String, &'a Value)>,
}

impl<'de, 'a: 'de> MapAccess<'de> for Members<'a, '_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.members.next() else {
            return Ok(None);
        };
        self.current = Some((key, value));
        let result = seed.deserialize(BorrowedStrDeserializer::<serde_json::Error>::new(key));
        if result.is_err() {
            let mut failure = self.failure.borrow_mut();
            if failure.path.is_none() {
                let mut path = self.path.clone();
                path.push(Step::Key(key.clone()));
                failure.path = Some(path);
                failure.at_key = true;
                failure.within = self.within;
            }
        }
        result.map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (key, value) = self
            .current
            .take()
            .ok_or_else(|| de::Error::custom("a value was read before its key"))?;
        below(
            &self.path,
            Step::Key(key.clone()),
            value,
            self.failure,
            seed,
        )
    }
}

/// Reads an array's elements, each tracked under its index.
struct Elements<'a, 'f> {
    path: Vec<Step>,
    failure: &'f RefCell<Failure>,
    elements: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
}

impl<'de, 'a: 'de> SeqAccess<'de> for Elements<'a, '_> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        match self.elements.next() {
            None => Ok(None),
            Some((i, value)) => {
                below(&self.path, Step::Index(i), value, self.failure, seed).map(Some)
            }
        }
    }
}

/// Scalars are read by serde_json's own `&Value` deserializer (so an
/// arbitrary-precision number stays exact and messages stay serde's);
/// objects and arrays are walked here, member by member.
macro_rules! scalar_or_walk {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                match self.value {
                    Value::Object(_) | Value::Array(_) => self.deserialize_any(visitor),
                    scalar => self.record(scalar.$method(visitor)),
                }
            }
        )*
    };
}

impl<'de, 'a: 'de> Deserializer<'de> for &Tracked<'a, '_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.walk(None, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => self.record(visitor.visit_none()),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let result = self.value.deserialize_enum(name, variants, visitor);
        self.record(result)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Object(_) => self.walk(Some(name), visitor),
            other => self.record(Err(de::Error::custom(format!(
                "{} is a JSON object, not {}",
                describe(name),
                json_kind(other)
            )))),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Array(_) => self.deserialize_any(visitor),
            other => self.record(Err(de::Error::custom(format!(
                "expected an array, not {}",
                json_kind(other)
            )))),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let result = self.value.deserialize_unit_struct(name, visitor);
        self.record(result)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let _ = len;
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    scalar_or_walk! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_map deserialize_identifier deserialize_ignored_any
    }
}

/// How the format names the object a type reads ("a model"); the type's
/// name where the format has no word for it.
fn describe(type_name: &str) -> String {
    match type_name {
        "Catalog" => "a catalog".into(),
        "ModelSpec" => "a model".into(),
        "OptionSpec" => "an option".into(),
        "RawPriceRule" => "a price rule".into(),
        "InputImages" => "input_images".into(),
        other => format!("a {other}"),
    }
}

/// The kind of a JSON value, for messages ("an array").
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Rewords serde's message about a member that is not expected (`unknown
/// field` of a struct, `unknown variant` of a map keyed by an enum) as the
/// format says it: "unknown field in options; expected one of: count, ...".
fn unknown_member(message: &str, within: Option<&'static str>, parent: &[Step]) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (_, expected) = rest.split_once("`, expected ")?;
    let expected = expected.strip_prefix("one of ").unwrap_or(expected);
    let names: Vec<&str> = expected
        .split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|name| name.trim_matches('`'))
        .collect();
    let within = match (within, parent.last()) {
        (Some(type_name), _) => describe(type_name),
        (None, None) => "the document".to_string(),
        (None, Some(Step::Key(key))) => key.clone(),
        (None, Some(Step::Index(_))) => render(parent),
    };
    Some(format!(
        "unknown field in {within}; expected one of: {}",
        names.join(", ")
    ))
}

/// Deserializes `document` as `T`; a failure names the path of the value it
/// is about. A missing member is reported at the member's own path.
pub(super) fn deserialize_located<T: DeserializeOwned>(
    document: &Value,
) -> Result<T, CatalogError> {
    let failure = RefCell::new(Failure::default());
    let root = Tracked {
        value: document,
        path: Vec::new(),
        failure: &failure,
    };
    let error = match T::deserialize(&root) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    let Failure {
        path,
        at_key,
        within,
    } = failure.into_inner();
    let mut path = path.unwrap_or_default();
    let message = error.to_string();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        path.push(Step::Key(field.to_string()));
        return Err(CatalogError::new(render(&path), "missing required field"));
    }
    if at_key {
        let parent = &path[..path.len().saturating_sub(1)];
        if let Some(reworded) = unknown_member(&message, within, parent) {
            return Err(CatalogError::new(render(&path), reworded));
        }
    }
    Err(CatalogError::new(render(&path), message))
}
