//! Appending proto3 JSON to a reused buffer.

use base64::Engine as _;

use super::reader::find_special;
use super::{JsonError, JsonOptions, Registry};

/// A message field's name as an object key, ready to write: quoted, escaped where the name needs
/// it and followed by the colon, once as its JSON name and once as its proto name. The
/// generator makes one for every field it writes, so writing a key is one copy, with no scan
/// for characters to escape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldKey {
    json: &'static str,
    proto: &'static str,
}

impl FieldKey {
    /// A key from its two written forms, each a JSON string followed by `:` (`"fileName":`,
    /// `"file_name":`), as the generator writes them.
    pub const fn new(json: &'static str, proto: &'static str) -> Self {
        FieldKey { json, proto }
    }
}

/// Writes JSON into a `Vec<u8>`; commas are placed automatically.
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    options: JsonOptions,
    registry: &'a Registry,
    comma: bool,
    error: Option<JsonError>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'a mut Vec<u8>, options: JsonOptions, registry: &'a Registry) -> Self {
        Writer {
            buf,
            options,
            registry,
            comma: false,
            error: None,
        }
    }

    /// The output options.
    pub fn options(&self) -> JsonOptions {
        self.options
    }

    /// The message types known for `Any`.
    pub fn registry(&self) -> &'a Registry {
        self.registry
    }

    #[inline]
    fn value_start(&mut self) {
        if self.comma {
            self.buf.push(b',');
        }
        self.comma = true;
    }

    /// `null`.
    pub fn null(&mut self) {
        self.value_start();
        self.buf.extend_from_slice(b"null");
    }

    /// `true` or `false`.
    pub fn bool(&mut self, value: bool) {
        self.value_start();
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A 32-bit integer as a number.
    pub fn i32(&mut self, value: i32) {
        self.value_start();
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// An unsigned 32-bit integer as a number.
    pub fn u32(&mut self, value: u32) {
        self.value_start();
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A 64-bit integer as a decimal string.
    pub fn i64(&mut self, value: i64) {
        self.value_start();
        self.quoted(itoa::Buffer::new().format(value).as_bytes());
    }

    /// An unsigned 64-bit integer as a decimal string.
    pub fn u64(&mut self, value: u64) {
        self.value_start();
        self.quoted(itoa::Buffer::new().format(value).as_bytes());
    }

    fn quoted(&mut self, digits: &[u8]) {
        self.buf.push(b'"');
        self.buf.extend_from_slice(digits);
        self.buf.push(b'"');
    }

    /// A float in its shortest round-trip form with f32 precision, printed as serde_json does;
    /// `"NaN"`, `"Infinity"` and `"-Infinity"` as strings.
    pub fn f32(&mut self, value: f32) {
        self.value_start();
        if value.is_finite() {
            self.float_text(ryu::Buffer::new().format_finite(value));
        } else {
            self.non_finite(value.is_nan(), value.is_sign_negative());
        }
    }

    /// A double in its shortest round-trip form, printed as serde_json does (`1.0`, `1e+300`);
    /// `"NaN"`, `"Infinity"` and `"-Infinity"` as strings.
    pub fn f64(&mut self, value: f64) {
        self.value_start();
        if value.is_finite() {
            if !short_decimal(value, self.buf) {
                self.float_text(ryu::Buffer::new().format_finite(value));
            }
        } else {
            self.non_finite(value.is_nan(), value.is_sign_negative());
        }
    }

    /// ryu's shortest form, with `e+` for positive exponents as serde_json prints them
    /// (`1e+300`, `1.5e-7`, `100.0`).
    #[inline]
    fn float_text(&mut self, text: &str) {
        match text.find('e') {
            Some(e) if text.as_bytes().get(e + 1) != Some(&b'-') => {
                self.buf.extend_from_slice(&text.as_bytes()[..=e]);
                self.buf.push(b'+');
                self.buf.extend_from_slice(&text.as_bytes()[e + 1..]);
            }
            _ => self.buf.extend_from_slice(text.as_bytes()),
        }
    }

    fn non_finite(&mut self, nan: bool, negative: bool) {
        let text: &[u8] = match (nan, negative) {
            (true, _) => b"\"NaN\"",
            (false, false) => b"\"Infinity\"",
            (false, true) => b"\"-Infinity\"",
        };
        self.buf.extend_from_slice(text);
    }

    /// A string, escaped.
    pub fn str(&mut self, value: &str) {
        self.value_start();
        self.escaped(value);
    }

    fn escaped(&mut self, value: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = value.as_bytes();
        self.buf.reserve(bytes.len() + 2);
        self.buf.push(b'"');
        let mut start = 0;
        while let Some(found) = find_special(bytes.get(start..).unwrap_or_default()) {
            let at = start + found;
            self.buf.extend_from_slice(&bytes[start..at]);
            let byte = bytes[at];
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                _ => b"",
            };
            if escape.is_empty() {
                self.buf.extend_from_slice(b"\\u00");
                self.buf.push(HEX[usize::from(byte >> 4)]);
                self.buf.push(HEX[usize::from(byte & 0xf)]);
            } else {
                self.buf.extend_from_slice(escape);
            }
            start = at + 1;
        }
        self.buf.extend_from_slice(&bytes[start..]);
        self.buf.push(b'"');
    }

    /// A string from a `Display` value that needs no escaping (no quote, backslash or control
    /// characters), written straight into the buffer.
    pub fn display_str(&mut self, value: &impl std::fmt::Display) {
        use std::io::Write as _;
        self.value_start();
        self.buf.push(b'"');
        // Writing into a Vec cannot fail.
        let _ = write!(self.buf, "{value}");
        self.buf.push(b'"');
    }

    /// A string known to need no escaping (timestamps, durations), copied as is.
    pub(crate) fn plain_str(&mut self, value: &[u8]) {
        self.value_start();
        self.buf.reserve(value.len() + 2);
        self.buf.push(b'"');
        self.buf.extend_from_slice(value);
        self.buf.push(b'"');
    }

    /// A JSON number token written as is; the caller guarantees it is valid JSON.
    pub fn raw_number_str(&mut self, value: &str) {
        self.value_start();
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// Bytes as standard, padded base64.
    pub fn bytes(&mut self, value: &[u8]) {
        self.value_start();
        self.buf.push(b'"');
        let start = self.buf.len();
        let len = base64::encoded_len(value.len(), true).unwrap_or(0);
        self.buf.resize(start + len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(value, &mut self.buf[start..])
            .unwrap_or(0);
        self.buf.truncate(start + written);
        self.buf.push(b'"');
    }

    /// `{`.
    pub fn begin_object(&mut self) {
        self.value_start();
        self.buf.push(b'{');
        self.comma = false;
    }

    /// `}`.
    pub fn end_object(&mut self) {
        self.buf.push(b'}');
        self.comma = true;
    }

    /// `[`.
    pub fn begin_array(&mut self) {
        self.value_start();
        self.buf.push(b'[');
        self.comma = false;
    }

    /// `]`.
    pub fn end_array(&mut self) {
        self.buf.push(b']');
        self.comma = true;
    }

    /// A field's key: its JSON name, or its proto name when the options say so.
    pub fn key(&mut self, json_name: &str, proto_name: &str) {
        let name = if self.options.proto_names {
            proto_name
        } else {
            json_name
        };
        self.key_str(name);
    }

    /// A message field's key, as [`JsonOptions::proto_names`] chooses.
    #[inline]
    pub fn field_key(&mut self, key: FieldKey) {
        let written = if self.options.proto_names {
            key.proto
        } else {
            key.json
        };
        if self.comma {
            self.buf.push(b',');
        }
        self.buf.extend_from_slice(written.as_bytes());
        self.comma = false;
    }

    /// A literal key (map keys, `@type`, `value`).
    pub fn key_str(&mut self, key: &str) {
        self.value_start();
        let bytes = key.as_bytes();
        if find_special(bytes).is_some() {
            self.escaped(key);
            self.buf.push(b':');
        } else {
            // Field names never need escaping: one reservation, no second scan.
            self.buf.reserve(bytes.len() + 3);
            self.buf.push(b'"');
            self.buf.extend_from_slice(bytes);
            self.buf.extend_from_slice(b"\":");
        }
        self.comma = false;
    }

    /// Remembers the first error; the output is then not valid and [`Writer::finish`] says why.
    pub fn fail(&mut self, error: JsonError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// Ok unless something could not be written.
    pub fn finish(self) -> Result<(), JsonError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The powers of ten that a double holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Decimals of up to this many significant digits are told apart by a double: two of them never
/// round to the same one (C's `DBL_DIG`).
const DISTINCT_DIGITS: f64 = 1e15;

/// Writes a finite `value` as ryu's shortest form would print it, when that form is a decimal of
/// at most 15 significant digits without an exponent (`4.25`, `1887.0`, `0.001`); false, with
/// nothing written, otherwise.
///
/// ryu finds the shortest digits of any double by wide multiplications and then strips trailing
/// zeros one division at a time, which costs most for the short decimals APIs mostly carry (a
/// price, a score). Here: the least `k` for which `value × 10^k` is a whole number `n` under
/// 10^15 with `n / 10^k == value`. That division is exact to the last bit (both operands are
/// exact, and IEEE division rounds correctly), so the decimal `n × 10^-k` reads back as `value`.
/// No decimal of 15 or fewer digits reads back as the same double as another, so it is ryu's
/// shortest one, and the least `k` leaves `n` without trailing fraction zeros as ryu does.
fn short_decimal(value: f64, buf: &mut Vec<u8>) -> bool {
    let magnitude = value.abs();
    if magnitude >= DISTINCT_DIGITS {
        return false;
    }
    for (k, &power) in EXACT_POWERS_OF_TEN.iter().enumerate() {
        let scaled = magnitude * power;
        if scaled >= DISTINCT_DIGITS {
            return false;
        }
        // The nearest whole number (`round` is a library call on baseline x86-64; a truncating
        // conversion is one instruction). Were it ever one off, the check below only fails.
        let whole = (scaled + 0.5) as u64;
        // Below 10^15, so the conversion back is exact.
        if whole as f64 / power != magnitude {
            continue;
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(whole).as_bytes();
        // Where the decimal point goes, counted in digits from the left (ryu's `kk`).
        let point = digits.len() as isize - k as isize;
        if point <= -5 {
            // ryu writes an exponent from 0.00000x down.
            return false;
        }
        if value.is_sign_negative() {
            buf.push(b'-');
        }
        if k == 0 {
            buf.extend_from_slice(digits);
            buf.extend_from_slice(b".0");
        } else if point > 0 {
            let (whole_part, fraction) = digits.split_at(point.unsigned_abs());
            buf.extend_from_slice(whole_part);
            buf.push(b'.');
            buf.extend_from_slice(fraction);
        } else {
            buf.extend_from_slice(b"0.");
            buf.extend(std::iter::repeat_n(b'0', point.unsigned_abs()));
            buf.extend_from_slice(digits);
        }
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Writer<'_>)) -> String {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, JsonOptions::default(), &Registry::EMPTY);
        f(&mut w);
        w.finish().expect("no error");
        String::from_utf8(buf).expect("UTF-8")
    }

    #[test]
    fn commas_and_nesting() {
        let out = render(|w| {
            w.begin_object();
            w.key("a", "a");
            w.i32(1);
            w.key("b", "b");
            w.begin_array();
            w.i64(-2);
            w.u64(u64::MAX);
            w.begin_object();
            w.end_object();
            w.end_array();
            w.end_object();
        });
        assert_eq!(out, r#"{"a":1,"b":["-2","18446744073709551615",{}]}"#);
    }

    #[test]
    fn keys_are_escaped_only_when_they_need_it() {
        let out = render(|w| {
            w.begin_object();
            w.key("fileName", "file_name");
            w.bool(true);
            // A `json_name` may hold anything.
            w.key("say \"hi\"\n", "say");
            w.null();
            w.end_object();
        });
        assert_eq!(out, r#"{"fileName":true,"say \"hi\"\n":null}"#);
    }

    #[test]
    fn floats_and_specials() {
        let out = render(|w| {
            w.begin_array();
            w.f64(1.0);
            w.f32(1.1);
            w.f64(f64::NAN);
            w.f64(f64::INFINITY);
            w.f32(f32::NEG_INFINITY);
            w.end_array();
        });
        assert_eq!(out, r#"[1.0,1.1,"NaN","Infinity","-Infinity"]"#);
    }

    /// A double as ryu alone writes it, with serde_json's `e+`.
    fn by_ryu(value: f64) -> String {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, JsonOptions::default(), &Registry::EMPTY);
        w.float_text(ryu::Buffer::new().format_finite(value));
        String::from_utf8(buf).expect("UTF-8")
    }

    /// A double as the writer writes it.
    fn written(value: f64) -> String {
        render(|w| w.f64(value))
    }

    #[test]
    fn short_decimals_are_written_as_ryu_writes_them() {
        let samples = [
            0.0,
            -0.0,
            4.25,
            -4.25,
            0.1,
            0.1 + 0.2,
            1887.0,
            100.0,
            1e-5,
            1.5e-5,
            9.9e-6,
            1e-4,
            0.001234,
            123_456_789_012_345.0,
            999_999_999_999_999.0,
            1e15,
            1e16,
            12_345_678_901_234.5,
            1.234_567_890_123_45,
            0.123_456_789_012_345,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e300,
            2.5e-7,
        ];
        for value in samples {
            assert_eq!(written(value), by_ryu(value), "{value:e}");
        }
        let mut buf = Vec::new();
        assert!(short_decimal(4.25, &mut buf), "4.25 takes the short path");
        assert_eq!(buf, b"4.25");
        assert!(
            !short_decimal(0.1 + 0.2, &mut Vec::new()),
            "17 digits need ryu"
        );
        assert!(
            !short_decimal(2.5e-7, &mut Vec::new()),
            "an exponent needs ryu"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        #[test]
        fn any_double_is_written_as_ryu_writes_it(bits in proptest::num::u64::ANY) {
            let value = f64::from_bits(bits);
            if value.is_finite() {
                proptest::prop_assert_eq!(written(value), by_ryu(value));
            }
        }

        #[test]
        fn any_short_decimal_is_written_as_ryu_writes_it(
            whole in 0u64..1_000_000_000_000_000,
            digits in 1u32..16,
            scale in 0usize..23,
            negative in proptest::bool::ANY,
        ) {
            let whole = whole % 10u64.pow(digits);
            let value = whole as f64 / EXACT_POWERS_OF_TEN[scale];
            let value = if negative { -value } else { value };
            proptest::prop_assert_eq!(written(value), by_ryu(value));
        }
    }

    #[test]
    fn strings_are_escaped() {
        let out = render(|w| w.str("a\"b\\c\n\u{1}é"));
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001é\"");
        assert_eq!(
            render(|w| w.str("\u{8}\u{c}\r\t\u{1f}\u{7f}/😀 long enough to span chunks\"")),
            "\"\\b\\f\\r\\t\\u001f\u{7f}/😀 long enough to span chunks\\\"\""
        );
        assert_eq!(render(|w| w.str("")), "\"\"");
        assert_eq!(render(|w| w.bytes(b"\xff\x00a")), "\"/wBh\"");
        assert_eq!(render(|w| w.bytes(b"")), "\"\"");
    }

    #[test]
    fn keys_follow_the_options() {
        let mut buf = Vec::new();
        let options = JsonOptions {
            proto_names: true,
            ..JsonOptions::default()
        };
        let mut w = Writer::new(&mut buf, options, &Registry::EMPTY);
        assert_eq!(w.options(), options);
        w.begin_object();
        w.key("pageCount", "page_count");
        w.raw_number_str("1e+3");
        w.key_str("k\"ey");
        w.null();
        w.key_str("b");
        w.bool(false);
        w.key_str("u");
        w.u32(7);
        w.end_object();
        w.finish().expect("written");
        assert_eq!(buf, br#"{"page_count":1e+3,"k\"ey":null,"b":false,"u":7}"#);
    }

    #[test]
    fn field_keys_are_written_as_made_and_follow_the_options() {
        let key = FieldKey::new(r#""say \"hi\"":"#, r#""say_hi":"#);
        let out = render(|w| {
            w.begin_object();
            w.field_key(key);
            w.bool(true);
            w.field_key(FieldKey::new(r#""pageCount":"#, r#""page_count":"#));
            w.u32(2);
            w.end_object();
        });
        assert_eq!(out, r#"{"say \"hi\"":true,"pageCount":2}"#);
        let mut buf = Vec::new();
        let options = JsonOptions {
            proto_names: true,
            ..JsonOptions::default()
        };
        let mut w = Writer::new(&mut buf, options, &Registry::EMPTY);
        w.begin_object();
        w.field_key(key);
        w.null();
        w.end_object();
        assert_eq!(buf, br#"{"say_hi":null}"#);
    }

    #[test]
    fn the_first_failure_is_reported() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, JsonOptions::default(), &Registry::EMPTY);
        w.begin_array();
        w.fail(JsonError::new("first"));
        w.fail(JsonError::new("second"));
        w.end_array();
        assert_eq!(
            w.finish().map_err(|e| e.to_string()),
            Err("first".to_owned())
        );
    }
}
