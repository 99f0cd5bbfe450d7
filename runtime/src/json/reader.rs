//! A pull parser over a complete JSON document, borrowing strings that need no unescaping.

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
    /// The input as text when it is valid UTF-8, checked once so strings need no check of their
    /// own.
    text: Option<&'a str>,
    pos: usize,
    options: JsonOptions,
    registry: &'a Registry,
    depth: u32,
    /// Bit `d` set: the container at depth `d` already holds an element.
    started: u128,
}

impl<'a> Reader<'a> {
    /// A reader over a whole document.
    pub fn new(input: &'a [u8], options: JsonOptions, registry: &'a Registry) -> Self {
        Reader {
            input,
            text: std::str::from_utf8(input).ok(),
            pos: 0,
            options,
            registry,
            depth: 0,
            started: 0,
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

    fn error<T>(&self, message: impl Into<String>) -> Result<T, JsonError> {
        Err(JsonError::syntax(self.pos, message))
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn next_byte(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.input.get(self.pos).copied()
    }

    /// The kind of the next value, without consuming it.
    pub fn peek(&mut self) -> Result<Peek, JsonError> {
        match self.next_byte() {
            Some(b'n') => Ok(Peek::Null),
            Some(b't' | b'f') => Ok(Peek::Bool),
            Some(b'-' | b'0'..=b'9') => Ok(Peek::Number),
            Some(b'"') => Ok(Peek::String),
            Some(b'[') => Ok(Peek::Array),
            Some(b'{') => Ok(Peek::Object),
            Some(other) => self.error(format!("unexpected `{}`", char::from(other))),
            None => self.error("unexpected end of input"),
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.input[self.pos..].starts_with(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// Consumes `null` if it comes next.
    pub fn try_null(&mut self) -> Result<bool, JsonError> {
        if self.next_byte() == Some(b'n') {
            if self.literal(b"null") {
                return Ok(true);
            }
            return self.error("expected `null`");
        }
        Ok(false)
    }

    /// A boolean.
    pub fn bool(&mut self) -> Result<bool, JsonError> {
        self.skip_whitespace();
        if self.literal(b"true") {
            Ok(true)
        } else if self.literal(b"false") {
            Ok(false)
        } else {
            Err(self.type_error("a boolean"))
        }
    }

    /// An error saying what was expected and what kind of value was found.
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
    pub fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        if self.next_byte() != Some(b'"') {
            return Err(self.type_error("a string"));
        }
        self.pos += 1;
        let start = self.pos;
        let special = find_special(&self.input[start..]);
        self.pos = special.map_or(self.input.len(), |offset| start + offset);
        match self.input.get(self.pos) {
            Some(b'"') => {
                let end = self.pos;
                self.pos += 1;
                // Slicing the checked text between two ASCII quotes stays on char boundaries.
                let text = match self.text {
                    Some(text) => text.get(start..end),
                    // Somewhere the input is not UTF-8: check this string alone.
                    None => std::str::from_utf8(&self.input[start..end]).ok(),
                };
                return text
                    .map(Cow::Borrowed)
                    .ok_or_else(|| JsonError::syntax(start, "string is not valid UTF-8"));
            }
            Some(b'\\') => {}
            Some(_) => return self.error("control character in string"),
            None => return self.error("unterminated string"),
        }
        let mut out = Vec::with_capacity(self.pos - start + 16);
        out.extend_from_slice(&self.input[start..self.pos]);
        loop {
            match self.input.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out)
                        .map(Cow::Owned)
                        .map_err(|_| JsonError::syntax(start, "string is not valid UTF-8"));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(0x00..=0x1f) => return self.error("control character in string"),
                Some(&byte) => {
                    out.push(byte);
                    self.pos += 1;
                }
                None => return self.error("unterminated string"),
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), JsonError> {
        let Some(&byte) = self.input.get(self.pos) else {
            return self.error("unterminated escape");
        };
        self.pos += 1;
        let simple = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let first = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    if !self.literal(b"\\u") {
                        return self.error("unpaired surrogate in \\u escape");
                    }
                    let second = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return self.error("unpaired surrogate in \\u escape");
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else if (0xDC00..0xE000).contains(&first) {
                    return self.error("unpaired surrogate in \\u escape");
                } else {
                    first
                };
                let Some(c) = char::from_u32(code) else {
                    return self.error("invalid \\u escape");
                };
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                return Ok(());
            }
            other => return self.error(format!("invalid escape `\\{}`", char::from(other))),
        };
        out.push(simple);
        Ok(())
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

    /// The text of a JSON number.
    pub fn number_text(&mut self) -> Result<&'a str, JsonError> {
        self.skip_whitespace();
        let start = self.pos;
        let digits = |reader: &mut Self| {
            let from = reader.pos;
            while reader.input.get(reader.pos).is_some_and(u8::is_ascii_digit) {
                reader.pos += 1;
            }
            reader.pos > from
        };
        if self.input.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.input.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => {
                self.pos = start;
                return Err(self.type_error("a number"));
            }
        }
        if self.input.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !digits(self) {
                return self.error("expected digits after `.`");
            }
        }
        if let Some(b'e' | b'E') = self.input.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.input.get(self.pos) {
                self.pos += 1;
            }
            if !digits(self) {
                return self.error("expected digits in the exponent");
            }
        }
        // Only ASCII was consumed.
        std::str::from_utf8(&self.input[start..self.pos])
            .map_err(|_| JsonError::syntax(start, "invalid number"))
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
        self.started &= !(1u128 << self.depth);
        Ok(())
    }

    /// Whether the current container has another element; consumes the `,` or the closing byte.
    fn more(&mut self, close: u8) -> Result<bool, JsonError> {
        let bit = 1u128 << self.depth;
        match self.next_byte() {
            Some(byte) if byte == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if self.started & bit != 0 => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) if self.started & bit == 0 => {
                self.started |= bit;
                Ok(true)
            }
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
        let key = self.string()?;
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

    /// Skips one value of any kind.
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
                self.string()?;
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
    pub fn position(&self) -> (usize, u32, u128) {
        (self.pos, self.depth, self.started)
    }

    /// Returns to a position saved with [`Reader::position`].
    pub fn rewind(&mut self, position: (usize, u32, u128)) {
        (self.pos, self.depth, self.started) = position;
    }
}

/// The index of the first byte that ends the plain part of a string: `"`, `\\` or a control
/// character. Eight bytes at a time, then byte by byte.
fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set where it is zero (for the two XORs) or below 0x20; bytes at
        // or above 0x80 never count as below 0x20.
        let hits = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | x.wrapping_sub(ONES * 0x20) & !x)
            & HIGHS;
        if hits != 0 {
            // The lowest flagged byte is exact; later ones may be borrow artefacts.
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| offset + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(input: &str) -> Reader<'_> {
        Reader::new(input.as_bytes(), JsonOptions::default(), &Registry::EMPTY)
    }

    #[test]
    fn objects_arrays_and_scalars() {
        let mut r = reader(r#" { "a" : [1, -2.5e3, true, null], "b\n": "x\u00e9\ud83d\ude00" } "#);
        r.begin_object().expect("object");
        assert_eq!(r.next_key().expect("key").as_deref(), Some("a"));
        r.begin_array().expect("array");
        assert!(r.next_element().expect("more"));
        assert_eq!(r.number_text().expect("number"), "1");
        assert!(r.next_element().expect("more"));
        assert_eq!(r.number_text().expect("number"), "-2.5e3");
        assert!(r.next_element().expect("more"));
        assert!(r.bool().expect("bool"));
        assert!(r.next_element().expect("more"));
        assert!(r.try_null().expect("null"));
        assert!(!r.next_element().expect("end"));
        assert_eq!(r.next_key().expect("key").as_deref(), Some("b\n"));
        assert_eq!(r.string().expect("string"), "xé😀");
        assert_eq!(r.next_key().expect("end"), None);
        r.finish().expect("finished");
    }

    #[test]
    fn malformed_input_is_an_error_with_offset() {
        for bad in [
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "[1,]",
            "[01]",
            "\"\\ud800\"",
            "\"a\nb\"",
            "{,}",
            "[1 2]",
            "tru",
            "\"unterminated",
        ] {
            let mut r = reader(bad);
            assert!(r.skip_value().and_then(|()| r.finish()).is_err(), "{bad}");
        }
        let mut r = reader("[1] x");
        r.skip_value().expect("array");
        let error = r.finish().expect_err("trailing data");
        assert_eq!(error.offset(), Some(4));
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        let mut r = reader(&deep);
        let error = r.skip_value().expect_err("too deep");
        assert!(error.to_string().contains("nesting"), "{error}");
    }

    proptest::proptest! {
        #[test]
        fn word_scan_finds_what_a_byte_scan_finds(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            proptest::prop_assert_eq!(find_special(&bytes), expected);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(input in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut r = Reader::new(&input, JsonOptions::default(), &Registry::EMPTY);
            let _ = r.skip_value().and_then(|()| r.finish());
        }

        #[test]
        fn strings_round_trip(text in ".*") {
            let mut buf = Vec::new();
            let mut w = super::super::Writer::new(&mut buf, JsonOptions::default(), &Registry::EMPTY);
            w.str(&text);
            w.finish().expect("written");
            let mut r = Reader::new(&buf, JsonOptions::default(), &Registry::EMPTY);
            proptest::prop_assert_eq!(r.string().expect("read back"), text);
        }
    }
}
