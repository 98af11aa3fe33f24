//! `location` messages: a point, with an optional name and address.
//! Coordinates are numbers; numeric strings, which some clients send, are
//! taken and stored as numbers.

use super::checks;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// Longest name or address, in characters.
const MAX_LABEL: usize = 1000;

/// `location` of a location message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// -180 to 180.
    pub longitude: Option<Coordinate>,
    /// -90 to 90.
    pub latitude: Option<Coordinate>,
    /// The place's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The place's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A coordinate in degrees: a JSON number, or a string holding one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Coordinate(f64);

impl<'de> Deserialize<'de> for Coordinate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Coordinate, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Degrees {
            Number(f64),
            Text(String),
        }
        let degrees = match Degrees::deserialize(deserializer)? {
            Degrees::Number(n) => n,
            Degrees::Text(t) => {
                t.trim().parse().map_err(|_| serde::de::Error::custom(format!("{t:?} is not a number")))?
            }
        };
        if degrees.is_finite() {
            Ok(Coordinate(degrees))
        } else {
            Err(serde::de::Error::custom("a coordinate must be a finite number"))
        }
    }
}

impl Location {
    /// Checks the coordinates' ranges and the labels.
    pub fn checked(self) -> Result<Location, ApiError> {
        let longitude = checks::required(self.longitude, "location.longitude", "degrees east, -180 to 180")?;
        let latitude = checks::required(self.latitude, "location.latitude", "degrees north, -90 to 90")?;
        checks::within(longitude.0, "location.longitude", -180.0..=180.0)?;
        checks::within(latitude.0, "location.latitude", -90.0..=90.0)?;
        checks::optional_text(self.name.as_deref(), "location.name", MAX_LABEL)?;
        checks::optional_text(self.address.as_deref(), "location.address", MAX_LABEL)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn numeric_strings_become_numbers_and_ranges_hold() {
        let location: Location =
            serde_json::from_value(serde_json::json!({"longitude": "-122.4", "latitude": 37.7, "name": "HQ"})).unwrap();
        let stored = serde_json::to_value(location.checked().unwrap()).unwrap();
        assert_eq!(stored, serde_json::json!({"longitude": -122.4, "latitude": 37.7, "name": "HQ"}));
        let north: Location = serde_json::from_value(serde_json::json!({"longitude": 0, "latitude": 91})).unwrap();
        assert_eq!(north.checked().unwrap_err().kind, ErrorKind::InvalidParameter);
        assert!(serde_json::from_value::<Location>(serde_json::json!({"longitude": "east"})).is_err());
    }
}
