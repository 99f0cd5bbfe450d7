//! Durations as a config file writes them: `"250ms"`, `"5s"`, `"1.5m"`, `"2h"`, or a bare number
//! of seconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive duration read from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    /// Reads `"250ms"`, `"5s"`, `"1.5m"`, `"2h"` (or `"5"`, seconds).
    pub fn parse(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration (like \"250ms\", \"5s\", \"2m\")"))?;
        let scale = match unit.trim() {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m or h)"
                ));
            }
        };
        Span::from_secs(number * scale).ok_or_else(|| format!("`{text}` must be above zero"))
    }

    fn from_secs(seconds: f64) -> Option<Span> {
        Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis.is_multiple_of(1000) && millis > 0 {
            write!(f, "{}s", millis / 1000)
        } else if self.0.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{millis}ms")
        } else {
            write!(f, "{}s", self.0.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Span, D::Error> {
        struct Expect;
        impl Visitor<'_> for Expect {
            type Value = Span;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"250ms\", \"5s\" or \"2m\", or a number of seconds")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Span, E> {
                Span::parse(text).map_err(E::custom)
            }

            fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Span, E> {
                Span::from_secs(seconds)
                    .ok_or_else(|| E::custom(format!("{seconds} seconds must be above zero")))
            }

            fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Span, E> {
                self.visit_f64(seconds as f64)
            }

            fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Span, E> {
                self.visit_f64(seconds as f64)
            }
        }
        deserializer.deserialize_any(Expect)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units_and_print_back() {
        for (text, millis, printed) in [
            ("250ms", 250, "250ms"),
            ("5s", 5000, "5s"),
            ("5", 5000, "5s"),
            ("1.5m", 90_000, "90s"),
            ("2h", 7_200_000, "7200s"),
            ("0.25", 250, "250ms"),
        ] {
            let span = Span::parse(text).expect(text);
            assert_eq!(span.0, Duration::from_millis(millis), "{text}");
            assert_eq!(span.to_string(), printed);
        }
        for bad in ["", "s", "5d", "-1s", "0s", "1e3s", "five"] {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
    }
}
