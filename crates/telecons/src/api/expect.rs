//! Deserializers for body fields whose serde default would name a Rust type in an error
//! ("expected i64", "expected a sequence"): these say what belongs there in the API's words
//! ("a whole number of seconds"), which `super::body` puts after the field's path.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor,
};

/// A JSON integer; `what` names it in errors ("a whole number of seconds"). A fraction,
/// even `.0`, is refused: the field is documented as an integer.
pub fn whole_number<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &'static str,
) -> Result<i64, D::Error> {
    deserializer.deserialize_i64(WholeNumber(what))
}

/// [`whole_number`], or `null` for none.
pub fn optional_whole_number<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &'static str,
) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionalWholeNumber(what))
}

/// A JSON array of objects; `what` names the array in errors ("an array of participants"),
/// `each` an element ("a participant: an object with userId, …"). An element given as an
/// array is refused: serde's derived structs would read its values by position.
pub fn array_of_objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
    what: &'static str,
    each: &'static str,
) -> Result<Vec<T>, D::Error> {
    deserializer.deserialize_seq(ArrayOfObjects {
        what,
        each,
        items: PhantomData,
    })
}

struct WholeNumber(&'static str);

impl Visitor<'_> for WholeNumber {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }
}

struct ArrayOfObjects<T> {
    what: &'static str,
    each: &'static str,
    items: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ArrayOfObjects<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(Object(self.each, PhantomData))? {
            items.push(item);
        }
        Ok(items)
    }
}

/// One JSON object, read as `T`.
struct Object<T>(&'static str, PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Object<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// `null`, or a [`WholeNumber`].
struct OptionalWholeNumber(&'static str);

impl<'de> Visitor<'de> for OptionalWholeNumber {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<i64>, D::Error> {
        whole_number(deserializer, self.0).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Sample {
        #[serde(deserialize_with = "seconds")]
        seconds: i64,
        #[serde(default, deserialize_with = "maybe_seconds")]
        maybe: Option<i64>,
        #[serde(default, deserialize_with = "points")]
        points: Vec<Point>,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Point {
        x: i64,
    }

    fn points<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Point>, D::Error> {
        array_of_objects(d, "an array of points", "a point: an object with x")
    }

    fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        whole_number(d, "a whole number of seconds")
    }

    fn maybe_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        optional_whole_number(d, "a whole number of seconds")
    }

    fn read(json: &str) -> Result<Sample, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn values_of_the_right_type_are_read() {
        let sample = read(r#"{"seconds": 3600, "maybe": null, "points": [{"x": 1}]}"#).unwrap();
        assert_eq!(sample.seconds, 3600);
        assert_eq!(sample.points, [Point { x: 1 }]);
        assert_eq!(sample.maybe, None);
        assert_eq!(
            read(r#"{"seconds": -5, "maybe": 7}"#).unwrap().maybe,
            Some(7)
        );
    }

    #[test]
    fn errors_say_what_belongs_there_in_words() {
        for (json, expected) in [
            (
                r#"{"seconds": "3600"}"#,
                r#"invalid type: string "3600", expected a whole number of seconds"#,
            ),
            (
                r#"{"seconds": 3600.0}"#,
                "invalid type: floating point `3600.0`, expected a whole number of seconds",
            ),
            (
                r#"{"seconds": 18446744073709551615}"#,
                "invalid value: integer `18446744073709551615`, expected a whole number of seconds",
            ),
            (
                r#"{"seconds": 1, "maybe": true}"#,
                "invalid type: boolean `true`, expected a whole number of seconds",
            ),
            (
                r#"{"seconds": 1, "points": {}}"#,
                "invalid type: map, expected an array of points",
            ),
            // Not read by position, as serde's derived struct would.
            (
                r#"{"seconds": 1, "points": [[1]]}"#,
                "invalid type: sequence, expected a point: an object with x",
            ),
        ] {
            let message = read(json).unwrap_err();
            assert!(message.starts_with(expected), "{json}: {message}");
        }
    }
}
