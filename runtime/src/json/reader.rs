//! A pull parser over a complete JSON document, borrowing strings that need no unescaping.
//!
//! The parser keeps no per-container state besides the nesting depth: whether a `,` is due before
//! the next element is read off the input itself (the last significant byte before the current
//! position is `[` or `{` exactly when the container is still empty). That keeps
//! [`Reader::position`] a plain byte offset.

use std::borrow::Cow;

use super::{JsonError, JsonOptions, Registry};

/// The deepest nesting accepted; deeper input is an error, not a stack overflow.
pub const MAX_DEPTH: u32 = 100;

/// The kind of the next value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// `[`.
    Array,
    /// `{`.
    Object,
}

/// Reads JSON values one at a time.
pub struct Reader<'a> {
    input: &'a [u8],
    /// The longest prefix of `input` that is valid UTF-8 (all of it for valid input): strings
    /// are sliced from it, so UTF-8 is checked once per document.
    text: &'a str,
    pos: usize,
    options: JsonOptions,
    registry: &'a Registry,
    depth: u32,
}

#[inline]
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\n' | b'\r' | b'\t')
}

impl<'a> Reader<'a> {
    /// A reader over a whole document.
    pub fn new(input: &'a [u8], options: JsonOptions, registry: &'a Registry) -> Self {
        let text = match std::str::from_utf8(input) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&input[..e.valid_up_to()]).unwrap_or_default(),
        };
        Reader {
            input,
            text,
            pos: 0,
            options,
            registry,
            depth: 0,
        }
    }

    /// The input options.
    pub fn options(&self) -> JsonOptions {
        self.options
    }

    /// The message types known for `Any`.
    pub fn registry(&self) -> &'a Registry {
        self.registry
    }

    #[cold]
    #[inline(never)]
    fn error<T>(&self, message: impl Into<String>) -> Result<T, JsonError> {
        Err(JsonError::syntax(self.pos, message))
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(&byte) = self.input.get(self.pos) {
            if !is_whitespace(byte) {
                break;
            }
            self.pos += 1;
        }
    }

    #[inline]
    fn next_byte(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.input.get(self.pos).copied()
    }

    /// The kind of the next value, without consuming it (whitespace before it is skipped).
    pub fn peek(&mut self) -> Result<Peek, JsonError> {
        match self.next_byte() {
            Some(b'n') => Ok(Peek::Null),
            Some(b't' | b'f') => Ok(Peek::Bool),
            Some(b'-' | b'0'..=b'9') => Ok(Peek::Number),
            Some(b'"') => Ok(Peek::String),
            Some(b'[') => Ok(Peek::Array),
            Some(b'{') => Ok(Peek::Object),
            Some(other) => self.error(format!("unexpected {}", describe_byte(other))),
            None => self.error("unexpected end of input"),
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        if rest.starts_with(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// Consumes `null` if it comes next; `Ok(false)` (nothing consumed) for any other value.
    #[inline]
    pub fn try_null(&mut self) -> Result<bool, JsonError> {
        if self.next_byte() == Some(b'n') {
            return self.null();
        }
        Ok(false)
    }

    /// `null`, whose `n` is next.
    fn null(&mut self) -> Result<bool, JsonError> {
        if self.literal(b"null") {
            return Ok(true);
        }
        self.error("expected `null`")
    }

    /// A boolean.
    pub fn bool(&mut self) -> Result<bool, JsonError> {
        match self.next_byte() {
            Some(b't') if self.literal(b"true") => Ok(true),
            Some(b'f') if self.literal(b"false") => Ok(false),
            Some(b't' | b'f') => self.error("expected `true` or `false`"),
            _ => Err(self.type_error("a boolean")),
        }
    }

    /// An error saying what was expected and what kind of value was found instead (a syntax
    /// error if the next value is malformed).
    pub fn type_error(&mut self, expected: &str) -> JsonError {
        let found = match self.peek() {
            Ok(Peek::Null) => "null",
            Ok(Peek::Bool) => "a boolean",
            Ok(Peek::Number) => "a number",
            Ok(Peek::String) => "a string",
            Ok(Peek::Array) => "an array",
            Ok(Peek::Object) => "an object",
            Err(error) => return error,
        };
        JsonError::new(format!("expected {expected}, found {found}"))
    }

    /// A string, borrowed from the input when it has no escapes.
    #[inline]
    pub fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        if self.next_byte() != Some(b'"') {
            return Err(self.type_error("a string"));
        }
        self.pos += 1;
        self.string_body()
    }

    /// The rest of a string whose opening quote was just consumed. Text without escapes up to
    /// the closing quote is borrowed here; anything else is left to [`Reader::string_slow`].
    #[inline]
    fn string_body(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or_default();
        let end = start + find_special(rest).unwrap_or(rest.len());
        if self.input.get(end) == Some(&b'"')
            && let Some(text) = self.text.get(start..end)
        {
            self.pos = end + 1;
            return Ok(Cow::Borrowed(text));
        }
        self.string_slow()
    }

    /// The rest of a string (its opening quote consumed) with escapes, or malformed.
    #[inline(never)]
    fn string_slow(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let start = self.pos;
        let run = self.plain_run()?;
        if self.input.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            return Ok(Cow::Borrowed(run));
        }
        let mut out = String::with_capacity(run.len() + 16);
        out.push_str(run);
        self.string_tail(start, Some(&mut out))?;
        Ok(Cow::Owned(out))
    }

    /// The input from `start` to `end` as text; an error if it is not valid UTF-8.
    fn text_between(&self, start: usize, end: usize) -> Result<&'a str, JsonError> {
        let text: &'a str = self.text;
        text.get(start..end)
            .ok_or_else(|| JsonError::syntax(text.len(), "invalid UTF-8 in string"))
    }

    /// Consumes the bytes up to the next `"`, `\` or control byte (or the end of the input)
    /// and returns them as text.
    fn plain_run(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or_default();
        self.pos += find_special(rest).unwrap_or(rest.len());
        self.text_between(start, self.pos)
    }

    /// Reads the rest of a string that started at `start` (after its quote), appending the
    /// unescaped text to `out` when given (only checking it otherwise).
    fn string_tail(&mut self, start: usize, mut out: Option<&mut String>) -> Result<(), JsonError> {
        loop {
            match self.input.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    if let Some(out) = out.as_deref_mut() {
                        out.push(c);
                    }
                }
                Some(0x00..=0x1f) => return self.error("control character in string"),
                Some(_) => {
                    let run = self.plain_run()?;
                    if let Some(out) = out.as_deref_mut() {
                        out.push_str(run);
                    }
                }
                None => return Err(JsonError::syntax(start, "unterminated string")),
            }
        }
    }

    /// Decodes one escape, after its backslash.
    fn escape(&mut self) -> Result<char, JsonError> {
        let Some(&byte) = self.input.get(self.pos) else {
            return self.error("unterminated escape");
        };
        self.pos += 1;
        Ok(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    if !self.literal(b"\\u") {
                        return self.error("lone surrogate in \\u escape");
                    }
                    let second = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return self.error("lone surrogate in \\u escape");
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else if (0xDC00..0xE000).contains(&first) {
                    return self.error("lone surrogate in \\u escape");
                } else {
                    first
                };
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return self.error("invalid \\u escape"),
                }
            }
            other => {
                self.pos -= 1;
                return self.error(format!(
                    "invalid escape `\\{}`",
                    char::from(other).escape_default()
                ));
            }
        })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(digits) = self.input.get(self.pos..self.pos + 4) else {
            return self.error("truncated \\u escape");
        };
        let mut value = 0;
        for &digit in digits {
            let nibble = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                b'A'..=b'F' => digit - b'A' + 10,
                _ => return self.error("invalid \\u escape"),
            };
            value = value * 16 + u32::from(nibble);
        }
        self.pos += 4;
        Ok(value)
    }

    fn digits(&mut self) -> bool {
        let from = self.pos;
        while self.input.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos > from
    }

    /// The text of a JSON number, exactly as written (`-12`, `1.5e3`).
    pub fn number_text(&mut self) -> Result<&'a str, JsonError> {
        self.skip_whitespace();
        let start = self.pos;
        if self.input.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.input.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ if self.pos > start => return self.error("expected digits after `-`"),
            _ => return Err(self.type_error("a number")),
        }
        if self.input.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !self.digits() {
                return self.error("expected digits after `.`");
            }
        }
        if let Some(b'e' | b'E') = self.input.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.input.get(self.pos) {
                self.pos += 1;
            }
            if !self.digits() {
                return self.error("expected digits in the exponent");
            }
        }
        if self.input.get(self.pos).is_some_and(u8::is_ascii_digit) {
            // `01`: a leading zero followed by more digits.
            return self.error("leading zero in a number");
        }
        // Only ASCII digits, signs, `.` and `e` were consumed.
        let text: &'a str = self.text;
        text.get(start..self.pos)
            .ok_or_else(|| JsonError::syntax(start, "invalid number"))
    }

    /// A decimal integer of at most 19 digits, read in one pass as `(negative, magnitude)`:
    /// either a JSON number token without fraction or exponent, or a string of an optional sign
    /// and digits only (no escapes). `None`, with nothing consumed, for anything else, which
    /// [`Reader::number_text`] or [`Reader::string`] then read (and report) in full.
    #[inline]
    pub(crate) fn short_integer(&mut self) -> Option<(bool, u64)> {
        self.skip_whitespace();
        let input = self.input;
        let quoted = input.get(self.pos) == Some(&b'"');
        let mut at = self.pos + usize::from(quoted);
        let negative = input.get(at) == Some(&b'-');
        if negative || (quoted && input.get(at) == Some(&b'+')) {
            at += 1;
        }
        let digits_start = at;
        let (count, magnitude) = leading_digits(input.get(at..).unwrap_or_default());
        if count == 0 || count > MAX_U64_DIGITS {
            return None;
        }
        at += count;
        let next = input.get(at).copied();
        if quoted {
            if next != Some(b'"') {
                return None;
            }
            at += 1;
        } else if matches!(next, Some(b'.' | b'e' | b'E'))
            || (count > 1 && input[digits_start] == b'0')
        {
            return None;
        }
        self.pos = at;
        Some((negative, magnitude))
    }

    /// A well-formed JSON number token read in one pass: its text, and its value when the
    /// decimal converts exactly with one floating-point operation (at most 19 significant digits
    /// making a mantissa up to 2^53, scaled by a power of ten up to 10^22, both exact doubles,
    /// so the one rounding is the correct one). `None`, with nothing consumed, for anything
    /// else, which [`Reader::number_text`] then reads (and reports) in full.
    pub(crate) fn float_token(&mut self) -> Option<(&'a str, Option<f64>)> {
        /// Exponent digits beyond these make the value too large or small for the exact path.
        const MAX_EXPONENT_DIGITS: usize = 4;
        self.skip_whitespace();
        let input = self.input;
        let start = self.pos;
        let negative = input.get(start) == Some(&b'-');
        let mut at = start + usize::from(negative);
        let (int_count, int_value) = digit_run(input.get(at..).unwrap_or_default());
        if int_count == 0 || (int_count > 1 && input[at] == b'0') {
            return None;
        }
        at += int_count;
        let (mut digits, mut mantissa) = (int_count, int_value);
        let mut scale = 0i32;
        if input.get(at) == Some(&b'.') {
            at += 1;
            let (count, value) = digit_run(input.get(at..).unwrap_or_default());
            if count == 0 {
                return None;
            }
            at += count;
            digits += count;
            if digits <= MAX_U64_DIGITS {
                mantissa = mantissa * POW10[count] + value;
                scale = -(count as i32);
            }
        }
        if let Some(b'e' | b'E') = input.get(at) {
            at += 1;
            let exponent_negative = input.get(at) == Some(&b'-');
            if let Some(b'+' | b'-') = input.get(at) {
                at += 1;
            }
            let (count, value) = digit_run(input.get(at..).unwrap_or_default());
            if count == 0 {
                return None;
            }
            at += count;
            if count > MAX_EXPONENT_DIGITS {
                digits = usize::MAX;
            } else if exponent_negative {
                scale -= value as i32;
            } else {
                scale += value as i32;
            }
        }
        if input.get(at).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let text = self.text.get(start..at)?;
        self.pos = at;
        let exact =
            (digits <= MAX_U64_DIGITS && mantissa <= 1 << 53 && scale.abs() <= 22).then(|| {
                let (value, power) = (mantissa as f64, POW10_F64[scale.unsigned_abs() as usize]);
                let magnitude = if scale < 0 {
                    value / power
                } else {
                    value * power
                };
                if negative { -magnitude } else { magnitude }
            });
        Some((text, exact))
    }

    fn enter(&mut self, open: u8, what: &str) -> Result<(), JsonError> {
        if self.next_byte() != Some(open) {
            return Err(self.type_error(what));
        }
        if self.depth >= MAX_DEPTH {
            return self.error(format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.pos += 1;
        self.depth += 1;
        Ok(())
    }

    /// True when the current container has no element yet: the last significant byte before
    /// the current position is its opening bracket.
    #[inline]
    fn container_empty(&self) -> bool {
        let before = self.input.get(..self.pos).unwrap_or_default();
        matches!(
            before.iter().rev().find(|&&b| !is_whitespace(b)),
            Some(b'[' | b'{')
        )
    }

    /// Whether the current container has another element; consumes the `,` or the closing byte.
    #[inline]
    fn more(&mut self, close: u8) -> Result<bool, JsonError> {
        if self.depth == 0 {
            return self.error("not inside an object or array");
        }
        let empty = self.container_empty();
        match self.next_byte() {
            Some(byte) if byte == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if !empty => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) if empty => Ok(true),
            Some(_) => self.error(format!("expected `,` or `{}`", char::from(close))),
            None => self.error("unexpected end of input"),
        }
    }

    /// `{`.
    pub fn begin_object(&mut self) -> Result<(), JsonError> {
        self.enter(b'{', "an object")
    }

    /// The next key of the current object (its `:` consumed), or `None` after its `}`.
    pub fn next_key(&mut self) -> Result<Option<Cow<'a, str>>, JsonError> {
        if !self.more(b'}')? {
            return Ok(None);
        }
        if self.next_byte() != Some(b'"') {
            return self.error("expected a string key");
        }
        self.pos += 1;
        let key = self.string_body()?;
        if self.next_byte() != Some(b':') {
            return self.error("expected `:`");
        }
        self.pos += 1;
        Ok(Some(key))
    }

    /// `[`.
    pub fn begin_array(&mut self) -> Result<(), JsonError> {
        self.enter(b'[', "an array")
    }

    /// Whether the current array has another element (consumes `,` or `]`).
    pub fn next_element(&mut self) -> Result<bool, JsonError> {
        self.more(b']')
    }

    /// Skips one value of any kind, checking that it is well formed.
    pub fn skip_value(&mut self) -> Result<(), JsonError> {
        match self.peek()? {
            Peek::Null => {
                self.try_null()?;
            }
            Peek::Bool => {
                self.bool()?;
            }
            Peek::Number => {
                self.number_text()?;
            }
            Peek::String => {
                self.pos += 1;
                let start = self.pos;
                self.string_tail(start, None)?;
            }
            Peek::Array => {
                self.begin_array()?;
                while self.next_element()? {
                    self.skip_value()?;
                }
            }
            Peek::Object => {
                self.begin_object()?;
                while self.next_key()?.is_some() {
                    self.skip_value()?;
                }
            }
        }
        Ok(())
    }

    /// Checks that only whitespace remains.
    pub fn finish(&mut self) -> Result<(), JsonError> {
        match self.next_byte() {
            None => Ok(()),
            Some(_) => self.error("unexpected data after the JSON value"),
        }
    }

    /// The current byte offset, to come back to with [`Reader::rewind`].
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Returns to an offset saved with [`Reader::position`] at the same nesting depth (for
    /// example the start of a value already read, as `Any` does to find `@type` first).
    pub fn rewind(&mut self, pos: usize) {
        self.pos = pos.min(self.input.len());
    }

    /// The number of objects and arrays entered and not yet left.
    pub(crate) fn depth(&self) -> u32 {
        self.depth
    }

    /// Returns to `pos` at nesting depth `depth`, both saved earlier.
    pub(crate) fn rewind_to(&mut self, pos: usize, depth: u32) {
        self.rewind(pos);
        self.depth = depth.min(MAX_DEPTH);
    }
}

/// The index of the first byte that ends a plain run of string text: `"`, `\\` or a control
/// byte below 0x20. Looks at eight bytes at a time.
#[inline]
pub(crate) fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    const SPACES: u64 = ONES * 0x20;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(chunk);
        let quote = word ^ QUOTES;
        let backslash = word ^ BACKSLASHES;
        // A byte's high bit is set where it is zero (`x - 1` borrows) or below 0x20. Borrows
        // only run upwards from a match, so the lowest flagged byte is the first match.
        let found = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | word.wrapping_sub(SPACES) & !word)
            & HIGHS;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| offset + i)
}

/// The most decimal digits that always fit in a `u64`.
const MAX_U64_DIGITS: usize = 19;

/// The whole run of ASCII digits at the start of `bytes`: its length, and its value when it
/// has at most [`MAX_U64_DIGITS`] digits.
#[inline]
fn digit_run(bytes: &[u8]) -> (usize, u64) {
    let (count, value) = leading_digits(bytes);
    if count <= MAX_U64_DIGITS {
        return (count, value);
    }
    let more = bytes.get(count..).unwrap_or_default();
    (
        count + more.iter().take_while(|b| b.is_ascii_digit()).count(),
        value,
    )
}

/// Powers of ten as integers, up to the 19 digits of [`MAX_U64_DIGITS`].
const POW10: [u64; MAX_U64_DIGITS + 1] = {
    let mut powers = [1; MAX_U64_DIGITS + 1];
    let mut i = 1;
    while i < powers.len() {
        powers[i] = powers[i - 1] * 10;
        i += 1;
    }
    powers
};

/// The powers of ten that are exact doubles: up to 10^22.
const POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The length of the run of ASCII digits at the start of `bytes`, and its value; scanning stops
/// once the run is longer than [`MAX_U64_DIGITS`], and the value is only meaningful up to that.
///
/// One byte at a time: for the runs of up to 19 digits this is for, that beats combining eight
/// bytes at a time, whose longer chain of multiplications comes before any result.
#[inline]
fn leading_digits(bytes: &[u8]) -> (usize, u64) {
    let mut count = 0;
    let mut value = 0u64;
    for &byte in bytes.iter().take(MAX_U64_DIGITS + 1) {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
        count += 1;
    }
    (count, value)
}

fn describe_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("`{}`", char::from(byte))
    } else {
        format!("byte 0x{byte:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Writer;

    fn reader(input: &str) -> Reader<'_> {
        Reader::new(input.as_bytes(), JsonOptions::default(), &Registry::EMPTY)
    }

    fn skip_all(input: &[u8]) -> Result<(), JsonError> {
        let mut r = Reader::new(input, JsonOptions::default(), &Registry::EMPTY);
        r.skip_value()?;
        r.finish()
    }

    #[test]
    fn objects_arrays_and_scalars() {
        let mut r =
            reader(r#" { "a" : [1, -2.5e3, true, false, null], "b\n": "x\u00e9\ud83d\ude00" } "#);
        r.begin_object().expect("object");
        assert_eq!(r.next_key().expect("key").as_deref(), Some("a"));
        r.begin_array().expect("array");
        assert!(r.next_element().expect("more"));
        assert_eq!(r.peek(), Ok(Peek::Number));
        assert_eq!(r.number_text().expect("number"), "1");
        assert!(r.next_element().expect("more"));
        assert_eq!(r.number_text().expect("number"), "-2.5e3");
        assert!(r.next_element().expect("more"));
        assert!(r.bool().expect("bool"));
        assert!(r.next_element().expect("more"));
        assert!(!r.bool().expect("bool"));
        assert!(r.next_element().expect("more"));
        assert!(r.try_null().expect("null"));
        assert!(!r.next_element().expect("end"));
        assert_eq!(r.next_key().expect("key").as_deref(), Some("b\n"));
        assert_eq!(r.string().expect("string"), "xé😀");
        assert_eq!(r.next_key().expect("end"), None);
        r.finish().expect("finished");
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let mut r = reader(r#"["plain é", "esc\"aped", "\/\b\f\n\r\t\\"]"#);
        r.begin_array().expect("array");
        r.next_element().expect("more");
        assert!(matches!(r.string(), Ok(Cow::Borrowed("plain é"))));
        r.next_element().expect("more");
        assert!(matches!(r.string(), Ok(Cow::Owned(s)) if s == "esc\"aped"));
        r.next_element().expect("more");
        assert_eq!(r.string().expect("escapes"), "/\u{8}\u{c}\n\r\t\\");
        assert!(!r.next_element().expect("end"));
    }

    #[test]
    fn empty_containers_and_whitespace() {
        for input in [
            "[]",
            "{}",
            " [ ] ",
            "\t{\n}\r",
            "[[],{},[{}]]",
            "{\"a\":{},\"b\":[]}",
        ] {
            skip_all(input.as_bytes()).unwrap_or_else(|e| panic!("{input}: {e}"));
        }
    }

    #[test]
    fn malformed_input_is_an_error_with_offset() {
        for bad in [
            "",
            " ",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":1,}",
            "[1,]",
            "[,1]",
            "[01]",
            "[-]",
            "[1.]",
            "[.5]",
            "[1e]",
            "[+1]",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\nb\"",
            "{,}",
            "{1:2}",
            "[1 2]",
            "tru",
            "nul",
            "True",
            "NaN",
            "\"unterminated",
            "\"unterminated\\",
            "[1",
            "{\"a\":",
            "\u{feff}{}",
        ] {
            let error = skip_all(bad.as_bytes()).expect_err(bad);
            assert!(error.offset().is_some(), "{bad}: {error}");
            assert!(
                error.to_string().starts_with("malformed JSON at byte"),
                "{error}"
            );
        }
        let error = skip_all(b"[1] x").expect_err("trailing data");
        assert_eq!(error.offset(), Some(4));
        let error = skip_all(b"{\"a\":1 \"b\":2}").expect_err("missing comma");
        assert_eq!(
            error.to_string(),
            "malformed JSON at byte 7: expected `,` or `}`"
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        for bad in [
            &b"\"\xff\""[..],
            b"\"a\\n\xc3\"",
            b"\"\xed\xa0\x80\"",
            b"{\"\xc0\":1}",
        ] {
            let error = skip_all(bad).expect_err("invalid UTF-8");
            assert!(error.to_string().contains("UTF-8"), "{error}");
            let mut r = Reader::new(bad, JsonOptions::default(), &Registry::EMPTY);
            if r.peek() == Ok(Peek::String) {
                assert!(r.string().is_err());
            }
        }
        assert_eq!(
            reader("\"\\u00e9\\ud83d\\ude00\"").string().expect("pairs"),
            "é😀"
        );
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let ok = "[".repeat(100) + &"]".repeat(100);
        skip_all(ok.as_bytes()).expect("100 levels are fine");
        let deep = "[".repeat(101) + &"]".repeat(101);
        let error = skip_all(deep.as_bytes()).expect_err("too deep");
        assert!(error.to_string().contains("nesting"), "{error}");
        let deeper = "{\"a\":".repeat(100_000);
        assert!(skip_all(deeper.as_bytes()).is_err());
    }

    #[test]
    fn type_errors_name_what_was_found() {
        assert_eq!(
            reader("12").string().expect_err("number").to_string(),
            "expected a string, found a number"
        );
        assert_eq!(
            reader("\"x\"").bool().expect_err("string").to_string(),
            "expected a boolean, found a string"
        );
        assert_eq!(
            reader("{}").begin_array().expect_err("object").to_string(),
            "expected an array, found an object"
        );
        assert!(reader("[]").number_text().is_err());
    }

    #[test]
    fn rewind_returns_to_a_value() {
        let mut r = reader(r#"{"a":[1,{"b":2}],"c":3}"#);
        r.begin_object().expect("object");
        r.next_key().expect("key");
        let at = r.position();
        r.skip_value().expect("skipped");
        r.rewind(at);
        r.begin_array().expect("array again");
        assert!(r.next_element().expect("first"));
        assert_eq!(r.number_text(), Ok("1"));
        r.rewind(at);
        r.skip_value().expect("skipped again");
        assert_eq!(r.next_key().expect("key").as_deref(), Some("c"));
        assert_eq!(r.number_text(), Ok("3"));
        assert_eq!(r.next_key().expect("end"), None);
        r.finish().expect("done");
        r.rewind(usize::MAX);
        r.finish().expect("rewinding past the end is clamped");
    }

    #[test]
    fn misuse_does_not_panic() {
        let mut r = reader("]]]");
        assert!(r.next_element().is_err());
        let mut r = reader("}");
        assert!(r.next_key().is_err());
        let mut r = reader("");
        assert!(r.try_null().is_ok_and(|null| !null));
        assert!(r.bool().is_err());
        assert!(r.string().is_err());
    }

    #[test]
    fn strings_of_every_length_around_an_escape_or_a_stop() {
        for len in 0..20 {
            let plain = "a".repeat(len);
            let input = format!("\"{plain}\"");
            let mut r = reader(&input);
            assert!(matches!(r.string(), Ok(Cow::Borrowed(s)) if s == plain));
            r.finish().expect("consumed");

            let input = format!("\"{plain}\\n{plain}\\ud83d\\ude00\"");
            let mut r = reader(&input);
            assert_eq!(r.string().expect("escaped"), format!("{plain}\n{plain}😀"));
            r.finish().expect("consumed");

            for bad in [
                format!("\"{plain}"),
                format!("\"{plain}\n\""),
                format!("\"{plain}\\"),
                format!("\"{plain}\\ud83d\""),
            ] {
                let error = reader(&bad).string().expect_err(&bad);
                assert!(error.offset().is_some(), "{bad}: {error}");
            }
            let mut bad = format!("\"{plain}").into_bytes();
            bad.extend_from_slice(b"\xc3\"");
            let error = Reader::new(&bad, JsonOptions::default(), &Registry::EMPTY)
                .string()
                .expect_err("invalid UTF-8");
            assert!(error.to_string().contains("UTF-8"), "{error}");
        }
    }

    #[test]
    fn leading_digits_of_every_length() {
        assert_eq!(leading_digits(b""), (0, 0));
        assert_eq!(leading_digits(b"x1"), (0, 0));
        assert_eq!(leading_digits(b"0"), (1, 0));
        assert_eq!(leading_digits(b"7\""), (1, 7));
        assert_eq!(leading_digits(b"12345678"), (8, 12_345_678));
        assert_eq!(leading_digits(b"12345678\""), (8, 12_345_678));
        assert_eq!(leading_digits(b"123456789,"), (9, 123_456_789));
        assert_eq!(leading_digits(b"00000000000000000042\""), (20, 42));
        assert_eq!(
            leading_digits(b"9999999999999999999\""),
            (19, 9_999_999_999_999_999_999)
        );
        assert_eq!(leading_digits(b"1000000000005\",").0, 13);
        assert_eq!(leading_digits(b"1000000000005\",").1, 1_000_000_000_005);
        for stop in [b'/', b':', b' ', 0x00, 0x7f, 0x80, 0x8a, 0xb9, 0xff] {
            let mut input = b"31415926535".to_vec();
            input.insert(5, stop);
            assert_eq!(leading_digits(&input), (5, 31_415), "stop byte {stop:#x}");
        }
    }

    fn short_integer(input: &str) -> Option<(bool, u64, usize)> {
        let mut r = reader(input);
        let result = r.short_integer();
        if result.is_none() {
            assert_eq!(r.position(), 0, "{input}: nothing consumed");
        }
        result.map(|(negative, magnitude)| (negative, magnitude, r.position()))
    }

    #[test]
    fn short_integers_and_what_is_left_to_the_general_path() {
        assert_eq!(short_integer("0"), Some((false, 0, 1)));
        assert_eq!(short_integer(" -12,"), Some((true, 12, 4)));
        assert_eq!(short_integer("\"-12\""), Some((true, 12, 5)));
        assert_eq!(short_integer("\"+12\""), Some((false, 12, 5)));
        assert_eq!(short_integer("\"007\""), Some((false, 7, 5)), "as FromStr");
        assert_eq!(short_integer("-0]"), Some((true, 0, 2)));
        assert_eq!(
            short_integer("\"9223372036854775808\""),
            Some((false, 9_223_372_036_854_775_808, 21))
        );
        assert_eq!(
            short_integer("9999999999999999999"),
            Some((false, 9_999_999_999_999_999_999, 19))
        );
        for general in [
            "",
            "-",
            "+1",
            "01",
            "-01",
            "00",
            "1.5",
            "1e2",
            "1E2",
            "5.0",
            "18446744073709551615",
            "\"18446744073709551615\"",
            "\"\"",
            "\"-\"",
            "\"+-1\"",
            "\" 1\"",
            "\"1 \"",
            "\"1e2\"",
            "\"1.0\"",
            "\"\\u0031\"",
            "\"12",
            "true",
            "null",
            "[1]",
        ] {
            assert_eq!(short_integer(general), None, "{general}");
        }
    }

    fn float_token(input: &str) -> Option<(String, Option<f64>, usize)> {
        let mut r = reader(input);
        let result = r.float_token();
        if result.is_none() {
            assert_eq!(r.position(), 0, "{input}: nothing consumed");
        }
        result.map(|(text, exact)| (text.to_owned(), exact, r.position()))
    }

    #[test]
    fn float_tokens_exact_or_left_to_parse() {
        let exact = |input: &str| float_token(input).and_then(|(_, exact, _)| exact);
        assert_eq!(exact("0"), Some(0.0));
        assert!(exact("-0").is_some_and(|v| v == 0.0 && v.is_sign_negative()));
        assert_eq!(exact("4.25"), Some(4.25));
        assert_eq!(exact("-12.5e-1"), Some(-1.25));
        assert_eq!(exact("0.1"), Some(0.1));
        assert_eq!(exact("0.3333333333333333"), Some(1.0 / 3.0));
        assert_eq!(exact("1E+22"), Some(1e22));
        assert_eq!(exact("9007199254740992"), Some(9_007_199_254_740_992.0));
        assert_eq!(exact("123456789e-22"), Some(123456789e-22));
        // Valid tokens the exact path leaves to a full parse: more than 2^53, more than 19
        // digits, powers of ten beyond 10^22, long exponents.
        for parse in [
            "9007199254740993",
            "1.6666666666666667",
            "12345678901234567890",
            "1e23",
            "1e-23",
            "1e400",
            "1e00001",
            "0.00000000000000000001",
            "123456789012345678901234567890",
            "1.23456789012345678901234567890e+123456789012345678901234567890",
        ] {
            assert_eq!(
                float_token(parse),
                Some((parse.to_owned(), None, parse.len())),
                "{parse}"
            );
        }
        assert_eq!(float_token(" 2.5,"), Some(("2.5".to_owned(), Some(2.5), 4)));
        assert_eq!(float_token("7]"), Some(("7".to_owned(), Some(7.0), 1)));
        for general in [
            "", "-", "01", "-01", "1.", ".5", "1e", "1e+", "+1", "\"1\"", "NaN", "-x", "00.5",
        ] {
            assert_eq!(float_token(general), None, "{general}");
        }
    }

    proptest::proptest! {
        #[test]
        fn float_tokens_read_like_str_parse(
            input in "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,24})?([eE][+-]?[0-9]{1,24})?",
        ) {
            let mut r = reader(&input);
            let (text, exact) = r.float_token().expect("a well-formed token");
            proptest::prop_assert_eq!(text, input.as_str());
            proptest::prop_assert_eq!(r.position(), input.len());
            if let Some(exact) = exact {
                let parsed: f64 = input.parse().expect("parses");
                proptest::prop_assert_eq!(exact.to_bits(), parsed.to_bits());
            }
        }

        #[test]
        fn short_decimals_are_exact(
            mantissa in 0u64..=1 << 53,
            scale in -22i32..=22,
            negative in proptest::bool::ANY,
        ) {
            let sign = if negative { "-" } else { "" };
            let input = format!("{sign}{mantissa}e{scale}");
            let (_, exact) = reader(&input).float_token().expect("a well-formed token");
            let parsed: f64 = input.parse().expect("parses");
            proptest::prop_assert_eq!(exact.map(f64::to_bits), Some(parsed.to_bits()));
        }

        #[test]
        fn leading_digits_match_a_byte_scan(
            bytes in proptest::collection::vec(proptest::sample::select(b"0123456789/:\" a\x00\xff".to_vec()), 0..30),
        ) {
            let count = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            let (n, value) = leading_digits(&bytes);
            proptest::prop_assert!(n <= count);
            if count <= MAX_U64_DIGITS {
                proptest::prop_assert_eq!(n, count);
                let text = std::str::from_utf8(&bytes[..count]).expect("digits");
                proptest::prop_assert_eq!(value, text.parse::<u64>().unwrap_or(0));
            } else {
                proptest::prop_assert!(n > MAX_U64_DIGITS);
            }
        }

        #[test]
        fn find_special_finds_the_first_stop(
            bytes in proptest::collection::vec(proptest::sample::select(vec![b'a', b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff]), 0..40),
            prefix in 0usize..20,
        ) {
            let mut input = vec![b'x'; prefix];
            input.extend_from_slice(&bytes);
            let naive = input.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            proptest::prop_assert_eq!(find_special(&input), naive);
        }

        #[test]
        fn word_scan_finds_what_a_byte_scan_finds(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            proptest::prop_assert_eq!(find_special(&bytes), expected);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(input in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = skip_all(&input);
        }

        #[test]
        fn never_panics_on_json_like_input(input in "[\\[\\]{}:,\"\\\\ 0-9a-fnrtuleE.+\\-]{0,128}") {
            let _ = skip_all(input.as_bytes());
            let mut r = Reader::new(input.as_bytes(), JsonOptions::default(), &Registry::EMPTY);
            let _ = r.string();
            let _ = r.number_text();
        }

        #[test]
        fn strings_round_trip(text in ".*") {
            let mut buf = Vec::new();
            let mut w = Writer::new(&mut buf, JsonOptions::default(), &Registry::EMPTY);
            w.str(&text);
            w.finish().expect("written");
            let parsed: String = serde_json::from_slice(&buf).expect("serde_json reads it");
            proptest::prop_assert_eq!(&parsed, &text);
            let mut r = Reader::new(&buf, JsonOptions::default(), &Registry::EMPTY);
            proptest::prop_assert_eq!(r.string().expect("read back"), text);
            r.finish().expect("nothing left");
        }

        #[test]
        fn strings_read_like_serde_json(text in "\"([a-zé😀 ]|\\\\[\"\\\\/bfnrt]|\\\\u00[0-7][0-9a-f]|\\\\u[0-9a-f]{4})*\"") {
            let mut r = Reader::new(text.as_bytes(), JsonOptions::default(), &Registry::EMPTY);
            let ours = r.string().map(Cow::into_owned).ok();
            let theirs = serde_json::from_str::<String>(&text).ok();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
