//! The well-known types in their special JSON forms, and `Any` with its type registry.

use prost::Message;

use super::{Codec, JsonError, JsonMessage, Peek, Reader, Writer};

const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
const NANOS_PER_SECOND: i32 = 1_000_000_000;

fn no_text<T>(what: &str) -> Result<T, JsonError> {
    Err(JsonError::new(format!("a {what} cannot be given as text")))
}

/// Fails the writer and writes `null` in place of a value that has no JSON form.
fn unwritable(w: &mut Writer<'_>, error: JsonError) {
    w.fail(error);
    w.null();
}

/// Appends `value` as exactly `width` decimal digits (`value < 10^width`).
fn push_digits(out: &mut [u8; 40], len: &mut usize, mut value: u64, width: usize) {
    for i in (0..width).rev() {
        out[*len + i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    *len += width;
}

/// Appends `.` and 3, 6 or 9 fraction digits (nothing for whole seconds), as protobuf prints.
fn push_fraction(out: &mut [u8; 40], len: &mut usize, nanos: u32) {
    if nanos == 0 {
        return;
    }
    out[*len] = b'.';
    *len += 1;
    if nanos.is_multiple_of(1_000_000) {
        push_digits(out, len, u64::from(nanos / 1_000_000), 3);
    } else if nanos.is_multiple_of(1_000) {
        push_digits(out, len, u64::from(nanos / 1_000), 6);
    } else {
        push_digits(out, len, u64::from(nanos), 9);
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day number since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// google.protobuf.Timestamp: RFC 3339 in UTC, `"2024-01-02T03:04:05.123Z"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timestamp;

/// Seconds and non-negative nanos with nanos folded into seconds, as prost normalizes before
/// printing; `None` on overflow.
fn normalize_timestamp(value: &prost_types::Timestamp) -> Option<(i64, u32)> {
    let seconds = value
        .seconds
        .checked_add(i64::from(value.nanos.div_euclid(NANOS_PER_SECOND)))?;
    Some((seconds, value.nanos.rem_euclid(NANOS_PER_SECOND) as u32))
}

/// The RFC 3339 text of a timestamp, or `None` outside 0001-01-01 to 9999-12-31.
fn format_timestamp(value: &prost_types::Timestamp, out: &mut [u8; 40]) -> Option<usize> {
    let (seconds, nanos) = normalize_timestamp(value)?;
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
        return None;
    }
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400) as u64;
    let mut len = 0;
    push_digits(out, &mut len, year as u64, 4);
    out[len] = b'-';
    len += 1;
    push_digits(out, &mut len, u64::from(month), 2);
    out[len] = b'-';
    len += 1;
    push_digits(out, &mut len, u64::from(day), 2);
    out[len] = b'T';
    len += 1;
    push_digits(out, &mut len, second_of_day / 3600, 2);
    out[len] = b':';
    len += 1;
    push_digits(out, &mut len, second_of_day / 60 % 60, 2);
    out[len] = b':';
    len += 1;
    push_digits(out, &mut len, second_of_day % 60, 2);
    push_fraction(out, &mut len, nanos);
    out[len] = b'Z';
    Some(len + 1)
}

/// `time` as RFC 3339 text in UTC, to the microsecond (trailing groups of zeros left out, as
/// for a Timestamp), appended to `out`: the time of a log line.
pub(crate) fn rfc3339(time: std::time::SystemTime, out: &mut Vec<u8>) {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let value = prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: (since.subsec_micros() * 1_000) as i32,
    };
    let mut text = [0; 40];
    if let Some(len) = format_timestamp(&value, &mut text) {
        out.extend_from_slice(&text[..len]);
    }
}

/// A cursor over ASCII text for the timestamp and duration grammars.
struct Scan<'t> {
    text: &'t [u8],
    pos: usize,
}

impl Scan<'_> {
    fn eat(&mut self, byte: u8) -> bool {
        if self.text.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Exactly `n` digits as a number.
    fn fixed(&mut self, n: usize) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + n)?;
        let mut value = 0;
        for &digit in digits {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(digit - b'0');
        }
        self.pos += n;
        Some(value)
    }

    /// One or more digits, as text.
    fn digits(&mut self) -> Option<&[u8]> {
        let start = self.pos;
        while self.text.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// `.` and one or more digits as nanoseconds (digits past the ninth are dropped), or 0 when
    /// there is no `.`.
    fn fraction(&mut self) -> Option<u32> {
        if !self.eat(b'.') {
            return Some(0);
        }
        let digits = self.digits()?;
        let mut nanos = 0;
        for i in 0..9 {
            nanos = nanos * 10 + digits.get(i).map_or(0, |d| u32::from(d - b'0'));
        }
        Some(nanos)
    }

    fn done(&self) -> bool {
        self.pos == self.text.len()
    }
}

/// Strict RFC 3339: `YYYY-MM-DDTHH:MM:SS[.f+](Z|±HH:MM)`, upper-case `T` and `Z`, as
/// prost-reflect accepts; a leap second (`:60`) counts as `:59`.
fn parse_timestamp(text: &str) -> Option<prost_types::Timestamp> {
    let mut s = Scan {
        text: text.as_bytes(),
        pos: 0,
    };
    let year = i64::from(s.fixed(4)?);
    s.eat(b'-').then_some(())?;
    let month = s.fixed(2)?;
    s.eat(b'-').then_some(())?;
    let day = s.fixed(2)?;
    s.eat(b'T').then_some(())?;
    let hour = s.fixed(2)?;
    s.eat(b':').then_some(())?;
    let minute = s.fixed(2)?;
    s.eat(b':').then_some(())?;
    let second = s.fixed(2)?;
    let nanos = s.fraction()?;
    let offset = if s.eat(b'Z') {
        0
    } else {
        let sign = if s.eat(b'+') {
            1
        } else if s.eat(b'-') {
            -1
        } else {
            return None;
        };
        let offset_hour = s.fixed(2)?;
        s.eat(b':').then_some(())?;
        let offset_minute = s.fixed(2)?;
        if offset_hour >= 24 || offset_minute >= 60 {
            return None;
        }
        sign * i64::from(offset_hour * 3600 + offset_minute * 60)
    };
    let valid = s.done()
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60;
    if !valid {
        return None;
    }
    let second = second.min(59);
    let seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset;
    Some(prost_types::Timestamp {
        seconds,
        nanos: nanos as i32,
    })
}

impl Codec for Timestamp {
    type Value = prost_types::Timestamp;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        let mut out = [0; 40];
        match format_timestamp(value, &mut out) {
            Some(len) => w.plain_str(&out[..len]),
            None => unwritable(
                w,
                JsonError::new(format!(
                    "timestamp out of range (0001-01-01 to 9999-12-31): {} s, {} ns",
                    value.seconds, value.nanos
                )),
            ),
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        Self::parse_text(&r.string()?)
    }

    fn is_default(value: &Self::Value) -> bool {
        value.seconds == 0 && value.nanos == 0
    }

    fn parse_text(text: &str) -> Result<Self::Value, JsonError> {
        let value = parse_timestamp(text).ok_or_else(|| {
            JsonError::new(format!(
                "{text:?} is not an RFC 3339 timestamp like \"2024-01-02T03:04:05.678Z\""
            ))
        })?;
        if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&value.seconds) {
            return Err(JsonError::new(format!(
                "timestamp {text:?} is out of range (0001-01-01 to 9999-12-31)"
            )));
        }
        Ok(value)
    }
}

/// google.protobuf.Duration: seconds with an `s` suffix, `"1.5s"`, `"-0.000000001s"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Duration;

/// The text of a duration, or `None` out of range or when seconds and nanos disagree in sign.
fn format_duration(value: &prost_types::Duration, out: &mut [u8; 40]) -> Option<usize> {
    let same_sign =
        value.seconds == 0 || value.nanos == 0 || (value.seconds < 0) == (value.nanos < 0);
    if value.seconds.unsigned_abs() > MAX_DURATION_SECONDS as u64
        || value.nanos.unsigned_abs() >= NANOS_PER_SECOND as u32
        || !same_sign
    {
        return None;
    }
    let mut len = 0;
    if value.seconds < 0 || value.nanos < 0 {
        out[0] = b'-';
        len = 1;
    }
    let seconds = value.seconds.unsigned_abs();
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(seconds).as_bytes();
    out[len..len + digits.len()].copy_from_slice(digits);
    len += digits.len();
    push_fraction(out, &mut len, value.nanos.unsigned_abs());
    out[len] = b's';
    Some(len + 1)
}

/// `-?digits(.digits)?s`, as prost-types parses (fraction digits past the ninth dropped).
fn parse_duration(text: &str) -> Option<prost_types::Duration> {
    let mut s = Scan {
        text: text.as_bytes(),
        pos: 0,
    };
    let negative = s.eat(b'-');
    let digits = s.digits()?;
    let seconds: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let nanos = s.fraction()? as i32;
    if !s.eat(b's') || !s.done() {
        return None;
    }
    Some(if negative {
        prost_types::Duration {
            seconds: -seconds,
            nanos: -nanos,
        }
    } else {
        prost_types::Duration { seconds, nanos }
    })
}

impl Codec for Duration {
    type Value = prost_types::Duration;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        let mut out = [0; 40];
        match format_duration(value, &mut out) {
            Some(len) => w.plain_str(&out[..len]),
            None => unwritable(
                w,
                JsonError::new(format!(
                    "duration out of range (±315576000000s, nanos of the same sign): {} s, {} ns",
                    value.seconds, value.nanos
                )),
            ),
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        Self::parse_text(&r.string()?)
    }

    fn is_default(value: &Self::Value) -> bool {
        value.seconds == 0 && value.nanos == 0
    }

    fn parse_text(text: &str) -> Result<Self::Value, JsonError> {
        let value = parse_duration(text)
            .ok_or_else(|| JsonError::new(format!("{text:?} is not a duration like \"1.5s\"")))?;
        if value.seconds.unsigned_abs() > MAX_DURATION_SECONDS as u64 {
            return Err(JsonError::new(format!(
                "duration {text:?} is out of range (±315576000000s)"
            )));
        }
        Ok(value)
    }
}

/// google.protobuf.FieldMask: comma-separated lowerCamel paths, `"title,author.name"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FieldMask;

/// Appends `snake_case` `part` as `lowerCamel`; false when that would not read back the same
/// (an upper-case letter, or `_` not followed by a lower-case letter), as prost-reflect checks.
fn push_camel(out: &mut String, part: &str) -> bool {
    let mut upper_next = false;
    for c in part.chars() {
        if c.is_ascii_uppercase() {
            return false;
        }
        if upper_next {
            if !c.is_ascii_lowercase() {
                return false;
            }
            out.push(c.to_ascii_uppercase());
            upper_next = false;
        } else if c == '_' {
            upper_next = true;
        } else {
            out.push(c);
        }
    }
    true
}

/// Appends `lowerCamel` `part` as `snake_case`; false if it has a `_`.
fn push_snake(out: &mut String, part: &str) -> bool {
    for c in part.chars() {
        if c == '_' {
            return false;
        }
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    true
}

impl Codec for FieldMask {
    type Value = prost_types::FieldMask;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        let mut text = String::new();
        for path in &value.paths {
            if !text.is_empty() {
                text.push(',');
            }
            for (i, part) in path.split('.').enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if !push_camel(&mut text, part) {
                    return unwritable(
                        w,
                        JsonError::new(format!(
                            "field mask path {path:?} cannot be written in lowerCamelCase"
                        )),
                    );
                }
            }
        }
        w.str(&text);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        Self::parse_text(&r.string()?)
    }

    fn is_default(value: &Self::Value) -> bool {
        value.paths.is_empty()
    }

    fn parse_text(text: &str) -> Result<Self::Value, JsonError> {
        let mut paths = Vec::new();
        if text.is_empty() {
            return Ok(prost_types::FieldMask { paths });
        }
        for path in text.split(',') {
            check_mask_path(path)?;
            let mut snake = String::with_capacity(path.len() + 4);
            for (i, part) in path.split('.').enumerate() {
                if i > 0 {
                    snake.push('.');
                }
                if !push_snake(&mut snake, part) {
                    return Err(JsonError::new(format!(
                        "field mask path {path:?} must be in lowerCamelCase"
                    )));
                }
            }
            paths.push(snake);
        }
        Ok(prost_types::FieldMask { paths })
    }
}

/// Refuses a field mask path that is not dot-separated field names: an empty path or segment, or
/// a character other than an ASCII letter or digit (a name does not start with a digit).
fn check_mask_path(path: &str) -> Result<(), JsonError> {
    let complaint = if path.is_empty() {
        Some("an empty path")
    } else if path.split('.').any(str::is_empty) {
        Some("an empty segment")
    } else if path
        .split('.')
        .any(|s| s.starts_with(|c: char| c.is_ascii_digit()))
    {
        Some("a segment starting with a digit")
    } else if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    {
        Some("a character that is not a letter, a digit or `.`")
    } else {
        None
    };
    match complaint {
        Some(what) => Err(JsonError::new(format!(
            "field mask path {path:?} is not a field path: it has {what}"
        ))),
        None => Ok(()),
    }
}

/// google.protobuf.Empty: `{}` (prost maps it to `()`); any key is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Empty;

impl Codec for Empty {
    type Value = ();

    fn write(_: &(), w: &mut Writer<'_>) {
        w.begin_object();
        w.end_object();
    }

    fn read(r: &mut Reader<'_>) -> Result<(), JsonError> {
        r.begin_object()?;
        match r.next_key()? {
            None => Ok(()),
            Some(key) => Err(JsonError::new(format!(
                "google.protobuf.Empty has no fields, found `{key}`"
            ))),
        }
    }

    fn is_default(_: &()) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<(), JsonError> {
        no_text("google.protobuf.Empty")
    }
}

/// google.protobuf.Value: any JSON value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Value;

fn write_value(value: &prost_types::Value, w: &mut Writer<'_>) {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => w.null(),
        Some(Kind::NumberValue(n)) if n.is_finite() => w.f64(*n),
        Some(Kind::NumberValue(n)) => unwritable(
            w,
            JsonError::new(format!("google.protobuf.Value cannot hold {n}")),
        ),
        Some(Kind::StringValue(s)) => w.str(s),
        Some(Kind::BoolValue(b)) => w.bool(*b),
        Some(Kind::StructValue(s)) => write_struct(s, w),
        Some(Kind::ListValue(l)) => write_list(l, w),
    }
}

fn write_struct(value: &prost_types::Struct, w: &mut Writer<'_>) {
    w.begin_object();
    for (key, field) in &value.fields {
        w.key_str(key);
        write_value(field, w);
    }
    w.end_object();
}

fn write_list(value: &prost_types::ListValue, w: &mut Writer<'_>) {
    w.begin_array();
    for item in &value.values {
        write_value(item, w);
    }
    w.end_array();
}

/// The message nesting a protobuf decoder accepts (prost's recursion limit, and the usual one).
const PROTOBUF_DEPTH: u32 = 100;

/// The message levels left for a `Value`, `Struct` or `ListValue` that starts here: the limit
/// less the JSON levels already open around it (each at least one message).
fn levels_left(r: &Reader<'_>) -> u32 {
    PROTOBUF_DEPTH.saturating_sub(r.depth())
}

/// The complaint about a `Value` nested deeper than a protobuf decoder would take it: JSON
/// nesting counts once, but each array in a `Value` is two messages and each object three
/// (`Value`, `Struct`, its map entry), and the upstream could not decode the request.
fn too_deep() -> JsonError {
    JsonError::new(format!(
        "google.protobuf.Value nested deeper than protobuf's {PROTOBUF_DEPTH} message levels"
    ))
}

fn read_value(r: &mut Reader<'_>, levels: u32) -> Result<prost_types::Value, JsonError> {
    use prost_types::value::Kind;
    let kind = match r.peek()? {
        Peek::Null => {
            r.try_null()?;
            Kind::NullValue(0)
        }
        Peek::Bool => Kind::BoolValue(r.bool()?),
        Peek::Number => {
            let text = r.number_text()?;
            match text.parse::<f64>() {
                Ok(number) if number.is_finite() => Kind::NumberValue(number),
                _ => return Err(JsonError::new(format!("{text} is out of range"))),
            }
        }
        Peek::String => Kind::StringValue(r.string()?.into_owned()),
        Peek::Array => Kind::ListValue(read_list(r, levels.checked_sub(1).ok_or_else(too_deep)?)?),
        Peek::Object => {
            Kind::StructValue(read_struct(r, levels.checked_sub(1).ok_or_else(too_deep)?)?)
        }
    };
    Ok(prost_types::Value { kind: Some(kind) })
}

fn read_struct(r: &mut Reader<'_>, levels: u32) -> Result<prost_types::Struct, JsonError> {
    // The struct, then each field's map entry, then its value.
    let inner = levels.checked_sub(2).ok_or_else(too_deep)?;
    let mut out = prost_types::Struct::default();
    r.begin_object()?;
    while let Some(key) = r.next_key()? {
        let value = read_value(r, inner).map_err(|e| e.at_key(&key))?;
        out.fields.insert(key.into_owned(), value);
    }
    Ok(out)
}

fn read_list(r: &mut Reader<'_>, levels: u32) -> Result<prost_types::ListValue, JsonError> {
    // The list, then each value.
    let inner = levels.checked_sub(1).ok_or_else(too_deep)?;
    let mut out = prost_types::ListValue::default();
    r.begin_array()?;
    while r.next_element()? {
        let index = out.values.len();
        out.values
            .push(read_value(r, inner).map_err(|e| e.at_index(index))?);
    }
    Ok(out)
}

impl Codec for Value {
    type Value = prost_types::Value;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        write_value(value, w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        read_value(r, levels_left(r))
    }

    fn from_null() -> Option<Self::Value> {
        Some(prost_types::Value {
            kind: Some(prost_types::value::Kind::NullValue(0)),
        })
    }

    fn is_default(_: &Self::Value) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<Self::Value, JsonError> {
        no_text("google.protobuf.Value")
    }
}

/// google.protobuf.Struct: a JSON object.
#[derive(Debug, Clone, Copy, Default)]
pub struct Struct;

impl Codec for Struct {
    type Value = prost_types::Struct;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        write_struct(value, w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        read_struct(r, levels_left(r))
    }

    fn is_default(_: &Self::Value) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<Self::Value, JsonError> {
        no_text("google.protobuf.Struct")
    }
}

/// google.protobuf.ListValue: a JSON array.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListValue;

impl Codec for ListValue {
    type Value = prost_types::ListValue;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        write_list(value, w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        read_list(r, levels_left(r))
    }

    fn is_default(_: &Self::Value) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<Self::Value, JsonError> {
        no_text("google.protobuf.ListValue")
    }
}

/// How to write and read one message type inside an `Any`.
#[derive(Clone, Copy)]
pub struct AnyType {
    /// The full proto name, the part of the type URL after the last `/`.
    pub type_name: &'static str,
    /// Writes the keys after `"@type"` for the encoded message.
    pub write: fn(&[u8], &mut Writer<'_>) -> Result<(), JsonError>,
    /// Reads the object (positioned at its `{`), skipping `"@type"`, and encodes the message.
    pub read: fn(&mut Reader<'_>) -> Result<Vec<u8>, JsonError>,
}

impl std::fmt::Debug for AnyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name)
    }
}

fn decode<M: Message + Default>(bytes: &[u8], type_name: &str) -> Result<M, JsonError> {
    M::decode(bytes).map_err(|e| {
        JsonError::new(format!(
            "the Any's `{type_name}` payload does not decode: {e}"
        ))
    })
}

fn write_any_message<M: JsonMessage>(bytes: &[u8], w: &mut Writer<'_>) -> Result<(), JsonError> {
    let message: M = decode(bytes, M::TYPE_NAME)?;
    message.write_fields(w);
    Ok(())
}

fn read_any_message<M: JsonMessage>(r: &mut Reader<'_>) -> Result<Vec<u8>, JsonError> {
    let mut message = M::default();
    r.begin_object()?;
    while let Some(key) = r.next_key()? {
        if key == "@type" {
            r.skip_value()?;
        } else if !message.merge_json_field(&key, r)? {
            if !r.options().ignore_unknown {
                return Err(JsonError::unknown_field(&key));
            }
            r.skip_value()?;
        }
    }
    Ok(message.encode_to_vec())
}

fn write_any_wkt<C: Codec>(bytes: &[u8], w: &mut Writer<'_>) -> Result<(), JsonError>
where
    C::Value: Message,
{
    let value: C::Value = decode(bytes, "well-known type")?;
    w.key_str("value");
    C::write(&value, w);
    Ok(())
}

fn read_any_wkt<C: Codec>(r: &mut Reader<'_>) -> Result<Vec<u8>, JsonError>
where
    C::Value: Message,
{
    let mut value = None;
    r.begin_object()?;
    while let Some(key) = r.next_key()? {
        match key.as_ref() {
            "@type" => r.skip_value()?,
            "value" => {
                let read = if r.try_null()? {
                    C::from_null().ok_or_else(|| JsonError::new("expected a value, found null"))
                } else {
                    C::read(r)
                };
                value = Some(read.map_err(|e| e.at("value"))?);
            }
            _ if r.options().ignore_unknown => r.skip_value()?,
            _ => return Err(JsonError::unknown_field(&key)),
        }
    }
    match value {
        Some(value) => Ok(value.encode_to_vec()),
        None => Err(JsonError::new(
            "an Any holding a well-known type needs its JSON under `value`",
        )),
    }
}

impl AnyType {
    /// The entry for a generated message type.
    pub const fn message<M: JsonMessage>() -> Self {
        AnyType {
            type_name: M::TYPE_NAME,
            write: write_any_message::<M>,
            read: read_any_message::<M>,
        }
    }

    const fn well_known<C: Codec>(type_name: &'static str) -> Self
    where
        C::Value: Message,
    {
        AnyType {
            type_name,
            write: write_any_wkt::<C>,
            read: read_any_wkt::<C>,
        }
    }
}

/// Every message type `Any` can hold in one build, sorted by name. The well-known types are
/// always known, registered or not.
#[derive(Debug)]
pub struct Registry {
    types: &'static [AnyType],
}

/// Sorted by name.
static WELL_KNOWN: &[AnyType] = &[
    AnyType::well_known::<Any>("google.protobuf.Any"),
    AnyType::well_known::<super::Bool>("google.protobuf.BoolValue"),
    AnyType::well_known::<super::Bytes>("google.protobuf.BytesValue"),
    AnyType::well_known::<super::F64>("google.protobuf.DoubleValue"),
    AnyType::well_known::<Duration>("google.protobuf.Duration"),
    AnyType::well_known::<Empty>("google.protobuf.Empty"),
    AnyType::well_known::<FieldMask>("google.protobuf.FieldMask"),
    AnyType::well_known::<super::F32>("google.protobuf.FloatValue"),
    AnyType::well_known::<super::I32>("google.protobuf.Int32Value"),
    AnyType::well_known::<super::I64>("google.protobuf.Int64Value"),
    AnyType::well_known::<ListValue>("google.protobuf.ListValue"),
    AnyType::well_known::<super::Str>("google.protobuf.StringValue"),
    AnyType::well_known::<Struct>("google.protobuf.Struct"),
    AnyType::well_known::<Timestamp>("google.protobuf.Timestamp"),
    AnyType::well_known::<super::U32>("google.protobuf.UInt32Value"),
    AnyType::well_known::<super::U64>("google.protobuf.UInt64Value"),
    AnyType::well_known::<Value>("google.protobuf.Value"),
];

impl Registry {
    /// A registry of `types`, which must be sorted by `type_name`.
    pub const fn new(types: &'static [AnyType]) -> Self {
        Registry { types }
    }

    /// A registry that knows the well-known types only.
    pub const EMPTY: Registry = Registry::new(&[]);

    /// The registered types, sorted by name (the well-known types are not among them).
    pub(crate) fn types(&self) -> &'static [AnyType] {
        self.types
    }

    /// The entry for a full type name: a registered type, else a well-known type (those with a
    /// JSON form of their own, and the ordinary ones: api.proto, type.proto, descriptor.proto…).
    pub fn find(&self, type_name: &str) -> Option<&'static AnyType> {
        let search = |types: &'static [AnyType]| {
            types
                .binary_search_by(|t| t.type_name.cmp(type_name))
                .ok()
                .and_then(|i| types.get(i))
        };
        search(self.types)
            .or_else(|| search(WELL_KNOWN))
            .or_else(|| search(super::api_types::TYPES))
    }
}

/// The type name in a type URL: everything after the last `/` (the whole URL without one).
fn type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}

fn unknown_type(type_url: &str) -> JsonError {
    JsonError::new(format!(
        "the type `{type_url}` of an Any is not part of this build"
    ))
}

/// google.protobuf.Any: `{"@type": url, …fields}`, or `{"@type": url, "value": …}` for a
/// well-known type; the empty Any is `{}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Any;

impl Codec for Any {
    type Value = prost_types::Any;

    fn write(value: &Self::Value, w: &mut Writer<'_>) {
        if value.type_url.is_empty() && value.value.is_empty() {
            w.begin_object();
            w.end_object();
            return;
        }
        let Some(entry) = w.registry().find(type_name(&value.type_url)) else {
            return unwritable(w, unknown_type(&value.type_url));
        };
        w.begin_object();
        w.key_str("@type");
        w.str(&value.type_url);
        if let Err(error) = (entry.write)(&value.value, w) {
            w.fail(error);
        }
        w.end_object();
    }

    fn read(r: &mut Reader<'_>) -> Result<Self::Value, JsonError> {
        let (start, depth) = (r.position(), r.depth());
        r.begin_object()?;
        let mut empty = true;
        let mut type_url = None;
        while let Some(key) = r.next_key()? {
            empty = false;
            if key == "@type" {
                let url = r.string().map_err(|e| e.at("@type"))?;
                type_url = Some(url.into_owned());
                break;
            }
            r.skip_value()?;
        }
        let Some(type_url) = type_url else {
            return if empty {
                Ok(prost_types::Any::default())
            } else {
                Err(JsonError::new("an Any with fields must have `@type`"))
            };
        };
        let entry = r
            .registry()
            .find(type_name(&type_url))
            .ok_or_else(|| unknown_type(&type_url).at("@type"))?;
        // Read the object again from its start, now that the type is known.
        r.rewind_to(start, depth);
        let value = (entry.read)(r)?;
        Ok(prost_types::Any { type_url, value })
    }

    fn is_default(_: &Self::Value) -> bool {
        false
    }

    fn parse_text(_: &str) -> Result<Self::Value, JsonError> {
        no_text("google.protobuf.Any")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::JsonOptions;

    fn read_with<C: Codec>(input: &str, options: JsonOptions) -> Result<C::Value, JsonError> {
        let mut r = Reader::new(input.as_bytes(), options, &Registry::EMPTY);
        let value = C::read(&mut r)?;
        r.finish()?;
        Ok(value)
    }

    fn read<C: Codec>(input: &str) -> Result<C::Value, JsonError> {
        read_with::<C>(input, JsonOptions::default())
    }

    fn write<C: Codec>(value: &C::Value) -> Result<String, JsonError> {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, JsonOptions::default(), &Registry::EMPTY);
        C::write(value, &mut w);
        w.finish()?;
        Ok(String::from_utf8(buf).expect("UTF-8"))
    }

    fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    fn dur(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn well_known_registry_is_sorted_and_complete() {
        assert!(
            WELL_KNOWN
                .windows(2)
                .all(|w| w[0].type_name < w[1].type_name)
        );
        for name in [
            "Any",
            "BoolValue",
            "BytesValue",
            "DoubleValue",
            "Duration",
            "Empty",
            "FieldMask",
            "FloatValue",
            "Int32Value",
            "Int64Value",
            "ListValue",
            "StringValue",
            "Struct",
            "Timestamp",
            "UInt32Value",
            "UInt64Value",
            "Value",
        ] {
            let full = format!("google.protobuf.{name}");
            assert_eq!(
                Registry::EMPTY.find(&full).map(|t| t.type_name),
                Some(full.as_str())
            );
        }
        assert!(Registry::EMPTY.find("google.protobuf.Nope").is_none());
    }

    #[test]
    fn timestamps_read_with_offsets_and_fractions() {
        let value = read::<Timestamp>("\"1970-01-01T00:00:01.5+01:00\"").expect("parses");
        assert_eq!(value, ts(-3599, 500_000_000));
        assert_eq!(
            read::<Timestamp>("\"2024-02-29T12:00:00.123456789Z\""),
            Ok(ts(1_709_208_000, 123_456_789))
        );
        assert_eq!(
            read::<Timestamp>("\"2024-02-29T12:00:00.1234567891Z\""),
            Ok(ts(1_709_208_000, 123_456_789)),
            "digits past nanos are dropped"
        );
        assert_eq!(
            read::<Timestamp>("\"1969-12-31T23:59:59.9-00:30\""),
            Ok(ts(1799, 900_000_000))
        );
        assert_eq!(
            read::<Timestamp>("\"1972-06-30T23:59:60Z\""),
            read::<Timestamp>("\"1972-06-30T23:59:59Z\""),
            "a leap second counts as :59"
        );
        assert_eq!(
            read::<Timestamp>("\"0001-01-01T00:00:00Z\""),
            Ok(ts(MIN_TIMESTAMP_SECONDS, 0))
        );
        assert_eq!(
            read::<Timestamp>("\"9999-12-31T23:59:59.999999999Z\""),
            Ok(ts(MAX_TIMESTAMP_SECONDS, 999_999_999))
        );
        assert_eq!(
            read::<Timestamp>("\"0000-12-31T23:00:00-01:00\""),
            Ok(ts(MIN_TIMESTAMP_SECONDS, 0)),
            "in range once the offset applies"
        );
        for bad in [
            "\"0000-12-31T23:59:59Z\"",
            "\"9999-12-31T23:59:59-00:01\"",
            "\"10000-01-01T00:00:00Z\"",
            "\"2023-02-29T00:00:00Z\"",
            "\"2024-13-01T00:00:00Z\"",
            "\"2024-01-32T00:00:00Z\"",
            "\"2024-01-01T24:00:00Z\"",
            "\"2024-01-01T00:60:00Z\"",
            "\"2024-01-01T00:00:61Z\"",
            "\"2024-01-01t00:00:00Z\"",
            "\"2024-01-01T00:00:00z\"",
            "\"2024-01-01 00:00:00Z\"",
            "\"2024-01-01T00:00:00\"",
            "\"2024-01-01\"",
            "\"2024-01-01T00:00:00.Z\"",
            "\"2024-01-01T00:00:00+0100\"",
            "\"2024-01-01T00:00:00+24:00\"",
            "\"2024-01-01T00:00:00+01:60\"",
            "\"2024-01-01T00:00:00ZZ\"",
            "\"+2024-01-01T00:00:00Z\"",
            "\"2024-01-01T00:00Z\"",
            "\"２０２４-01-01T00:00:00Z\"",
            "\"\"",
            "0",
        ] {
            assert!(read::<Timestamp>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_write_0_3_6_or_9_digits() {
        assert_eq!(
            write::<Timestamp>(&ts(0, 0)).as_deref(),
            Ok("\"1970-01-01T00:00:00Z\"")
        );
        assert_eq!(
            write::<Timestamp>(&ts(-3599, 500_000_000)).as_deref(),
            Ok("\"1969-12-31T23:00:01.500Z\"")
        );
        assert_eq!(
            write::<Timestamp>(&ts(1_709_208_000, 123_456_000)).as_deref(),
            Ok("\"2024-02-29T12:00:00.123456Z\"")
        );
        assert_eq!(
            write::<Timestamp>(&ts(1_709_208_000, 1)).as_deref(),
            Ok("\"2024-02-29T12:00:00.000000001Z\"")
        );
        assert_eq!(
            write::<Timestamp>(&ts(MIN_TIMESTAMP_SECONDS, 0)).as_deref(),
            Ok("\"0001-01-01T00:00:00Z\"")
        );
        assert_eq!(
            write::<Timestamp>(&ts(MAX_TIMESTAMP_SECONDS, 999_999_999)).as_deref(),
            Ok("\"9999-12-31T23:59:59.999999999Z\"")
        );
        assert_eq!(
            write::<Timestamp>(&ts(0, -1)).as_deref(),
            Ok("\"1969-12-31T23:59:59.999999999Z\""),
            "nanos out of range are folded in, as prost does"
        );
        assert!(write::<Timestamp>(&ts(MAX_TIMESTAMP_SECONDS + 1, 0)).is_err());
        assert!(write::<Timestamp>(&ts(MIN_TIMESTAMP_SECONDS - 1, 0)).is_err());
        assert!(write::<Timestamp>(&ts(MAX_TIMESTAMP_SECONDS, NANOS_PER_SECOND)).is_err());
        assert!(write::<Timestamp>(&ts(i64::MAX, i32::MAX)).is_err());
        assert!(write::<Timestamp>(&ts(i64::MIN, i32::MIN)).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(read::<Duration>("\"-1.000000001s\""), Ok(dur(-1, -1)));
        assert_eq!(read::<Duration>("\"-0.5s\""), Ok(dur(0, -500_000_000)));
        assert_eq!(read::<Duration>("\"1.5s\""), Ok(dur(1, 500_000_000)));
        assert_eq!(read::<Duration>("\"0s\""), Ok(dur(0, 0)));
        assert_eq!(read::<Duration>("\"1.0000000019s\""), Ok(dur(1, 1)));
        assert_eq!(
            read::<Duration>("\"315576000000.999999999s\""),
            Ok(dur(315_576_000_000, 999_999_999))
        );
        assert_eq!(
            read::<Duration>("\"-315576000000s\""),
            Ok(dur(-315_576_000_000, 0))
        );
        for bad in [
            "\"1.5\"",
            "\"1.s\"",
            "\".5s\"",
            "\"+1s\"",
            "\"1S\"",
            "\"1s \"",
            "\"- 1s\"",
            "\"--1s\"",
            "\"s\"",
            "\"315576000001s\"",
            "\"-315576000001s\"",
            "\"99999999999999999999s\"",
            "1",
        ] {
            assert!(read::<Duration>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            write::<Duration>(&dur(-1, -1)).as_deref(),
            Ok("\"-1.000000001s\"")
        );
        assert_eq!(
            write::<Duration>(&dur(0, -1)).as_deref(),
            Ok("\"-0.000000001s\"")
        );
        assert_eq!(
            write::<Duration>(&dur(1, 500_000_000)).as_deref(),
            Ok("\"1.500s\"")
        );
        assert_eq!(
            write::<Duration>(&dur(1, 500_000)).as_deref(),
            Ok("\"1.000500s\"")
        );
        assert_eq!(write::<Duration>(&dur(-20, 0)).as_deref(), Ok("\"-20s\""));
        assert!(write::<Duration>(&dur(1, -1)).is_err(), "mixed signs");
        assert!(write::<Duration>(&dur(315_576_000_001, 0)).is_err());
        assert!(write::<Duration>(&dur(0, NANOS_PER_SECOND)).is_err());
        assert!(write::<Duration>(&dur(i64::MIN, 0)).is_err());
    }

    #[test]
    fn field_masks() {
        let mask = read::<FieldMask>("\"title,author.displayName,a1B\"").expect("parses");
        assert_eq!(mask.paths, vec!["title", "author.display_name", "a1_b"]);
        assert_eq!(
            write::<FieldMask>(&mask).as_deref(),
            Ok("\"title,author.displayName,a1B\"")
        );
        assert_eq!(read::<FieldMask>("\"\"").map(|m| m.paths), Ok(vec![]));
        assert!(read::<FieldMask>("\"snake_case\"").is_err());
        for bad in [
            ",",
            "a,,b",
            "a,",
            ".a",
            "a.",
            "a..b",
            "a\\u0000b",
            "a b",
            "a-b",
            "1a",
            "a.2b",
            "é",
        ] {
            let error = read::<FieldMask>(&format!("\"{bad}\"")).expect_err(bad);
            assert!(
                error.message().contains("is not a field path"),
                "{bad}: {error}"
            );
        }
        for bad in ["a__b", "aB", "a_1", "a_é", "A"] {
            let mask = prost_types::FieldMask {
                paths: vec![bad.into()],
            };
            assert!(write::<FieldMask>(&mask).is_err(), "{bad}");
        }
        let mask = prost_types::FieldMask {
            paths: vec!["".into(), "foo_".into(), "x".into()],
        };
        assert_eq!(
            write::<FieldMask>(&mask).as_deref(),
            Ok("\"foo,x\""),
            "prost-reflect's rules: a trailing `_` is dropped, an empty path adds no comma"
        );
    }

    #[test]
    fn empty() {
        assert_eq!(read::<Empty>("{}"), Ok(()));
        assert_eq!(read::<Empty>(" { } "), Ok(()));
        assert!(read::<Empty>("{\"a\":1}").is_err());
        let ignore = JsonOptions {
            ignore_unknown: true,
            ..JsonOptions::default()
        };
        assert!(
            read_with::<Empty>("{\"a\":1}", ignore).is_err(),
            "as prost-reflect"
        );
        assert!(read::<Empty>("[]").is_err());
        assert_eq!(write::<Empty>(&()).as_deref(), Ok("{}"));
    }

    #[test]
    fn values_nested_past_what_protobuf_decodes_are_refused() {
        use prost::Message as _;
        let lists = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        for (shape, nested) in [
            ("lists", &lists as &dyn Fn(usize) -> String),
            ("objects", &objects),
        ] {
            // Every nesting the reader takes decodes again as protobuf; the first it refuses
            // says why.
            let mut deepest = 0;
            for n in 1..=120 {
                match read::<Value>(&nested(n)) {
                    Ok(value) => {
                        let bytes = value.encode_to_vec();
                        let decoded = prost_types::Value::decode(bytes.as_slice());
                        assert!(decoded.is_ok(), "{shape}: {n} deep: {decoded:?}");
                        deepest = n;
                    }
                    Err(error) => {
                        assert!(error.to_string().contains("100 message levels"), "{error}");
                        break;
                    }
                }
            }
            assert!((30..120).contains(&deepest), "{shape}: {deepest}");
        }
    }

    #[test]
    fn struct_value_list_nesting() {
        let input = r#"{"a":[1.5,"x",true,null,{"b":{},"c":[[],[-0.0]]}],"d":{"e":1e300}}"#;
        let value = read::<Struct>(input).expect("parses");
        let back = write::<Struct>(&value).expect("writes");
        assert_eq!(json(input), json(&back));
        let list = read::<ListValue>("[1, [2, [3]], {}]").expect("list");
        assert_eq!(
            json(&write::<ListValue>(&list).expect("writes")),
            json("[1.0,[2.0,[3.0]],{}]")
        );
        assert_eq!(
            read::<Value>("null").map(|v| v.kind),
            Ok(Some(prost_types::value::Kind::NullValue(0)))
        );
        assert_eq!(
            read::<Value>("18446744073709551616").map(|v| v.kind),
            Ok(Some(prost_types::value::Kind::NumberValue(
                18446744073709551616.0
            )))
        );
        assert!(read::<Value>("1e400").is_err());
        assert!(read::<Struct>("[]").is_err());
        assert!(read::<ListValue>("{}").is_err());
        let error = read::<Struct>(r#"{"a":{"b":[1,2,1e999]}}"#).expect_err("out of range");
        assert_eq!(error.path(), "[\"a\"][\"b\"][2]");
        assert_eq!(
            Value::from_null(),
            Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::NullValue(0))
            })
        );
        assert_eq!(
            write::<Value>(&prost_types::Value { kind: None }).as_deref(),
            Ok("null")
        );
        let nan = prost_types::Value {
            kind: Some(prost_types::value::Kind::NumberValue(f64::NAN)),
        };
        assert!(write::<Value>(&nan).is_err());
        // JSON's 100 levels are 200 message levels in a Value: refused (see
        // `values_nested_past_what_protobuf_decodes_are_refused`).
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(read::<Value>(&deep).is_err());
    }

    #[test]
    fn any_of_well_known_types() {
        let input = r#"{"value":"2020-01-01T00:00:00Z","@type":"type.googleapis.com/google.protobuf.Timestamp"}"#;
        let any = read::<Any>(input).expect("parses");
        assert_eq!(
            any.type_url,
            "type.googleapis.com/google.protobuf.Timestamp"
        );
        let value = prost_types::Timestamp::decode(any.value.as_slice()).expect("decodes");
        assert_eq!(value.seconds, 1_577_836_800);
        assert_eq!(
            write::<Any>(&any).as_deref(),
            Ok(
                r#"{"@type":"type.googleapis.com/google.protobuf.Timestamp","value":"2020-01-01T00:00:00Z"}"#
            )
        );

        let nested = r#"{"@type":"x/google.protobuf.Any","value":{"@type":"x/google.protobuf.Int64Value","value":"-5"}}"#;
        let any = read::<Any>(nested).expect("Any in an Any");
        assert_eq!(write::<Any>(&any).as_deref(), Ok(nested));

        let null_value = r#"{"@type":"x/google.protobuf.Value","value":null}"#;
        let any = read::<Any>(null_value).expect("a null Value");
        assert_eq!(write::<Any>(&any).as_deref(), Ok(null_value));
        let empty = r#"{"@type":"x/google.protobuf.Empty","value":{}}"#;
        assert_eq!(
            write::<Any>(&read::<Any>(empty).expect("Empty")).as_deref(),
            Ok(empty)
        );

        assert!(read::<Any>(r#"{"@type":"x/google.protobuf.Timestamp","value":null}"#).is_err());
        assert!(read::<Any>(r#"{"@type":"x/google.protobuf.Timestamp"}"#).is_err());
        assert!(
            read::<Any>(r#"{"@type":"x/google.protobuf.Duration","value":"1s","x":1}"#).is_err()
        );
        let ignore = JsonOptions {
            ignore_unknown: true,
            ..JsonOptions::default()
        };
        assert!(
            read_with::<Any>(
                r#"{"x":[1],"@type":"x/google.protobuf.Duration","value":"1s"}"#,
                ignore
            )
            .is_ok()
        );
        let error = read::<Any>(r#"{"@type":"x/google.protobuf.Duration","value":"1"}"#)
            .expect_err("bad duration");
        assert_eq!(error.path(), "value");
    }

    #[test]
    fn any_edges() {
        assert_eq!(read::<Any>("{}"), Ok(prost_types::Any::default()));
        assert_eq!(
            write::<Any>(&prost_types::Any::default()).as_deref(),
            Ok("{}")
        );
        let error = read::<Any>(r#"{"@type":"x/unknown.Type"}"#).expect_err("unknown");
        assert_eq!(error.path(), "@type");
        assert!(read::<Any>(r#"{"a":1}"#).is_err());
        assert!(read::<Any>(r#"{"@type":5}"#).is_err());
        assert!(read::<Any>(r#"{"@type":"x/google.protobuf.Empty","value":{}"#).is_err());
        assert!(read::<Any>("[]").is_err());
        let unknown = prost_types::Any {
            type_url: "type.googleapis.com/unknown.Type".into(),
            value: vec![1],
        };
        assert!(write::<Any>(&unknown).is_err());
        let garbage = prost_types::Any {
            type_url: "type.googleapis.com/google.protobuf.Duration".into(),
            value: vec![0xff],
        };
        assert!(write::<Any>(&garbage).is_err());
        // Any nested beyond the depth limit fails cleanly.
        let deep =
            r#"{"@type":"x/google.protobuf.Any","value":"#.repeat(150) + "{}" + &"}".repeat(150);
        assert!(read::<Any>(&deep).is_err());
    }

    proptest::proptest! {
        #[test]
        fn timestamps_parse_like_prost_types(
            text in "[0-9]{4}-(0[0-9]|1[0-3])-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{1,12})?(Z|[+-][0-2][0-9]:[0-6][0-9])"
        ) {
            let theirs = text
                .parse::<prost_types::Timestamp>()
                .ok()
                .filter(|t| (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&t.seconds));
            proptest::prop_assert_eq!(Timestamp::parse_text(&text).ok(), theirs);
        }

        #[test]
        fn timestamps_print_like_prost_types(
            seconds in MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS,
            nanos in 0..NANOS_PER_SECOND,
            round in 0..3u32,
        ) {
            let nanos = nanos - nanos % [1, 1_000, 1_000_000][round as usize];
            let value = ts(seconds, nanos);
            let text = write::<Timestamp>(&value).expect("in range");
            proptest::prop_assert_eq!(&text, &format!("\"{value}\""));
            proptest::prop_assert_eq!(read::<Timestamp>(&text), Ok(value));
        }

        #[test]
        fn durations_parse_like_prost_types(text in "-?[0-9]{1,13}(\\.[0-9]{0,12})?s?") {
            let theirs = text
                .parse::<prost_types::Duration>()
                .ok()
                .filter(|d| d.seconds.unsigned_abs() <= MAX_DURATION_SECONDS as u64);
            proptest::prop_assert_eq!(Duration::parse_text(&text).ok(), theirs);
        }

        #[test]
        fn durations_print_like_prost_types(
            seconds in 0..=MAX_DURATION_SECONDS,
            nanos in 0..NANOS_PER_SECOND,
            negative in proptest::bool::ANY,
        ) {
            let value = if negative { dur(-seconds, -nanos) } else { dur(seconds, nanos) };
            let text = write::<Duration>(&value).expect("in range");
            proptest::prop_assert_eq!(&text, &format!("\"{value}\""));
            proptest::prop_assert_eq!(read::<Duration>(&text), Ok(value));
        }

        #[test]
        fn field_masks_round_trip(paths in proptest::collection::vec("[a-z][a-z0-9]{0,3}(_[a-z][a-z0-9]{0,3}){0,2}(\\.[a-z]{1,3}(_[a-z]{1,3})?)?", 0..4)) {
            let mask = prost_types::FieldMask { paths };
            let text = write::<FieldMask>(&mask).expect("round-trippable paths");
            proptest::prop_assert_eq!(read::<FieldMask>(&text), Ok(mask));
        }

        #[test]
        fn values_never_panic(input in "[\\[\\]{}:,\"0-9a-z.\\-]{0,64}") {
            let _ = read::<Value>(&input);
            let _ = read::<Any>(&input);
        }
    }
}
