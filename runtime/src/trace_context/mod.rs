//! W3C Trace Context: the `traceparent` and `tracestate` headers, read from a client and written
//! to an upstream (<https://www.w3.org/TR/trace-context/>).
//!
//! `traceparent` is `version-traceid-parentid-flags` in lowercase hex. Version `00` is exactly 55
//! characters; a later version is read as far as version `00` goes (its ids and its sampled bit),
//! provided what follows is a `-`; version `ff`, ids of zeros, uppercase or short fields make the
//! header invalid, and the request is then traced as if it had none. `tracestate` is carried
//! through as the client sent it, bounded in members and in length.
//!
//! Below the metadata rules, which pass a valid context on, and the `trace` module, which
//! records spans in it; its types are public as `protogate::trace::*`.

mod ids;

use std::fmt;

use http::{HeaderMap, HeaderValue};

/// The header naming the caller's trace and span.
pub const TRACEPARENT: &str = "traceparent";
/// The header of vendor-specific trace data, carried along with `traceparent`.
pub const TRACESTATE: &str = "tracestate";

/// A trace's id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// A span's id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The id with these bytes, or `None` for all zeros (which W3C Trace Context forbids).
    pub fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        (bytes != [0; 16]).then_some(TraceId(bytes))
    }

    /// A new random id, from this thread's generator (no system call).
    pub fn random() -> TraceId {
        loop {
            let (high, low) = (ids::next(), ids::next());
            let mut bytes = [0; 16];
            bytes[..8].copy_from_slice(&high.to_be_bytes());
            bytes[8..].copy_from_slice(&low.to_be_bytes());
            if let Some(id) = TraceId::from_bytes(bytes) {
                return id;
            }
        }
    }

    /// Its bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// The id with these bytes, or `None` for all zeros (which W3C Trace Context forbids).
    pub fn from_bytes(bytes: [u8; 8]) -> Option<SpanId> {
        (bytes != [0; 8]).then_some(SpanId(bytes))
    }

    /// A new random id, from this thread's generator (no system call).
    pub fn random() -> SpanId {
        loop {
            if let Some(id) = SpanId::from_bytes(ids::next().to_be_bytes()) {
                return id;
            }
        }
    }

    /// Its bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
}

/// Lowercase hex into bytes; `None` for any other character or a wrong length.
fn read_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if text.len() != 2 * N {
        return None;
    }
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0; 32];
        write_hex(&self.0, &mut text);
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0; 16];
        write_hex(&self.0, &mut text);
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// A `traceparent`: the trace, the caller's span in it, and whether the caller sampled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The span of the caller (the parent of the next span).
    pub span_id: SpanId,
    /// Whether the caller records this trace (the `sampled` flag).
    pub sampled: bool,
}

/// Why a `traceparent` value is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Not the length its version needs (55 characters for version `00`, at least 55 after).
    #[error("traceparent has the wrong length")]
    Length,
    /// The version is not two lowercase hex digits, or is `ff`.
    #[error("traceparent has an invalid version")]
    Version,
    /// A field is not lowercase hex, or a separator is not `-`.
    #[error("traceparent is not lowercase hex fields separated by `-`")]
    Syntax,
    /// The trace id is all zeros.
    #[error("traceparent has a trace id of zeros")]
    ZeroTraceId,
    /// The parent id is all zeros.
    #[error("traceparent has a parent id of zeros")]
    ZeroSpanId,
}

impl TraceParent {
    /// The length of a version `00` value.
    const LENGTH: usize = 55;

    /// Reads a `traceparent` value (surrounding spaces and tabs allowed).
    pub fn parse(value: &[u8]) -> Result<TraceParent, TraceParentError> {
        let value = value.trim_ascii();
        if value.len() < Self::LENGTH {
            return Err(TraceParentError::Length);
        }
        let version = read_hex::<1>(&value[0..2]).ok_or(TraceParentError::Version)?[0];
        if version == 0xff {
            return Err(TraceParentError::Version);
        }
        match (version, value.get(Self::LENGTH)) {
            (0, None) => {}
            (0, Some(_)) => return Err(TraceParentError::Length),
            // A later version may add fields, each after a `-`.
            (_, None | Some(b'-')) => {}
            (_, Some(_)) => return Err(TraceParentError::Syntax),
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return Err(TraceParentError::Syntax);
        }
        let trace = read_hex::<16>(&value[3..35]).ok_or(TraceParentError::Syntax)?;
        let span = read_hex::<8>(&value[36..52]).ok_or(TraceParentError::Syntax)?;
        let flags = read_hex::<1>(&value[53..55]).ok_or(TraceParentError::Syntax)?[0];
        Ok(TraceParent {
            trace_id: TraceId::from_bytes(trace).ok_or(TraceParentError::ZeroTraceId)?,
            span_id: SpanId::from_bytes(span).ok_or(TraceParentError::ZeroSpanId)?,
            sampled: flags & 0x01 != 0,
        })
    }

    /// The value of the header, version `00`.
    pub fn to_header(&self) -> HeaderValue {
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&self.trace_id.0, &mut text[3..35]);
        write_hex(&self.span_id.0, &mut text[36..52]);
        if self.sampled {
            text[54] = b'1';
        }
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = if self.sampled { "01" } else { "00" };
        write!(f, "00-{}-{}-{flags}", self.trace_id, self.span_id)
    }
}

/// A `tracestate`, carried through as received: its list-members in their order, joined by
/// commas, at most [`TraceState::MAX_MEMBERS`] of them and [`TraceState::MAX_LENGTH`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceState(HeaderValue);

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TraceState").field(&self.as_str()).finish()
    }
}

impl TraceState {
    /// The most list-members a `tracestate` may have.
    pub const MAX_MEMBERS: usize = 32;
    /// The longest `tracestate` passed on: members beyond it are left out, those longer than
    /// 128 bytes first, as the specification suggests.
    pub const MAX_LENGTH: usize = 512;

    /// The `tracestate` of every header field given (a list may be split over several), or
    /// `None` if there is no member or one is malformed (the specification's advice: a
    /// `tracestate` that cannot be read is dropped, not repaired).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Option<TraceState> {
        let mut members: Vec<&[u8]> = Vec::new();
        for value in values {
            for member in value.as_bytes().split(|&b| b == b',') {
                let member = member.trim_ascii();
                if member.is_empty() {
                    continue;
                }
                if !valid_member(member) || members.len() == Self::MAX_MEMBERS {
                    return None;
                }
                members.push(member);
            }
        }
        if members.is_empty() {
            return None;
        }
        let mut length = members.iter().map(|m| m.len() + 1).sum::<usize>() - 1;
        if length > Self::MAX_LENGTH {
            // Long members go first, then the last ones, until the rest fits.
            let mut kept: Vec<&[u8]> = members.iter().copied().filter(|m| m.len() <= 128).collect();
            length = kept
                .iter()
                .map(|m| m.len() + 1)
                .sum::<usize>()
                .saturating_sub(1);
            while length > Self::MAX_LENGTH {
                let dropped = kept.pop().map_or(0, |m| m.len() + 1);
                length = length.saturating_sub(dropped);
            }
            members = kept;
            if members.is_empty() {
                return None;
            }
        }
        let joined = members.join(&b","[..]);
        HeaderValue::from_bytes(&joined).ok().map(TraceState)
    }

    /// Its text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    /// The value of the header.
    pub fn to_header(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// Whether `member` is `key=value` as W3C Trace Context defines them.
fn valid_member(member: &[u8]) -> bool {
    let Some(eq) = member.iter().position(|&b| b == b'=') else {
        return false;
    };
    let (key, value) = (&member[..eq], &member[eq + 1..]);
    valid_key(key) && valid_value(value)
}

/// `lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`, or `tenant@system` where the tenant
/// may start with a digit (up to 241 characters) and the system has up to 14.
fn valid_key(key: &[u8]) -> bool {
    let allowed = |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    match key.iter().position(|&b| b == b'@') {
        None => {
            (1..=256).contains(&key.len()) && key[0].is_ascii_lowercase() && key.iter().all(allowed)
        }
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant.iter().all(allowed)
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system.iter().all(allowed)
        }
    }
}

/// Up to 256 printable ASCII characters but `,` and `=`, not ending in a space.
fn valid_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && value.last() != Some(&b' ')
}

/// The trace context a request arrived with: its `traceparent`, and its `tracestate` if that
/// can be read too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The caller's trace and span.
    pub parent: TraceParent,
    /// The vendors' state, carried through.
    pub state: Option<TraceState>,
}

impl Incoming {
    /// The context in `headers`: `None` without a `traceparent`, with more than one, or with
    /// one that cannot be read (the request then starts a trace of its own).
    pub fn from_headers(headers: &HeaderMap) -> Option<Incoming> {
        let mut all = headers.get_all(TRACEPARENT).iter();
        let (first, None) = (all.next()?, all.next()) else {
            return None;
        };
        let parent = TraceParent::parse(first.as_bytes()).ok()?;
        let state = TraceState::parse(headers.get_all(TRACESTATE));
        Some(Incoming { parent, state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_version_00_header_round_trips() {
        let parent = TraceParent::parse(VALID.as_bytes()).expect("valid");
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id.to_string(), "00f067aa0ba902b7");
        assert!(parent.sampled);
        assert_eq!(parent.to_header(), VALID);
        assert_eq!(parent.to_string(), VALID);

        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let parent = TraceParent::parse(unsampled.as_bytes()).expect("valid");
        assert!(!parent.sampled);
        assert_eq!(parent.to_header(), unsampled);
    }

    #[test]
    fn only_the_sampled_bit_of_the_flags_is_read_and_spaces_around_are_allowed() {
        let other_flags = " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe\t";
        let parent = TraceParent::parse(other_flags.as_bytes()).expect("valid");
        assert!(!parent.sampled);
        assert_eq!(
            parent.to_header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }

    #[test]
    fn malformed_headers_are_rejected_with_their_reason() {
        use TraceParentError::*;
        let cases = [
            ("", Length),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                Length,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                Length,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                Length,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Version,
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Version,
            ),
            (
                "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Version,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                Syntax,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
                Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
                Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47-3600f067aa0ba902b7-01",
                Syntax,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ZeroSpanId,
            ),
        ];
        for (value, reason) in cases {
            assert_eq!(
                TraceParent::parse(value.as_bytes()),
                Err(reason),
                "{value:?}"
            );
        }
    }

    #[test]
    fn later_versions_are_read_as_far_as_version_00_goes() {
        let longer = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        let parent = TraceParent::parse(longer.as_bytes()).expect("a later version");
        assert!(parent.sampled);
        assert_eq!(parent.to_header(), VALID, "passed on as version 00");
        let same_length = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(TraceParent::parse(same_length.as_bytes()).is_ok());
        let glued = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(
            TraceParent::parse(glued.as_bytes()),
            Err(TraceParentError::Syntax)
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn the_incoming_context_needs_exactly_one_valid_traceparent() {
        let one = headers(&[(TRACEPARENT, VALID), (TRACESTATE, "congo=t61rcWkgMzE")]);
        let incoming = Incoming::from_headers(&one).expect("a context");
        assert!(incoming.parent.sampled);
        assert_eq!(
            incoming.state.map(|s| s.as_str().to_owned()).as_deref(),
            Some("congo=t61rcWkgMzE")
        );

        let two = headers(&[(TRACEPARENT, VALID), (TRACEPARENT, VALID)]);
        assert_eq!(Incoming::from_headers(&two), None);
        assert_eq!(Incoming::from_headers(&HeaderMap::new()), None);
        let bad = headers(&[(TRACEPARENT, "00-xyz"), (TRACESTATE, "a=b")]);
        assert_eq!(Incoming::from_headers(&bad), None);
        let no_state = headers(&[(TRACEPARENT, VALID), (TRACESTATE, "not a member")]);
        let incoming = Incoming::from_headers(&no_state).expect("a context");
        assert_eq!(incoming.state, None, "a bad tracestate is dropped");
    }

    fn state(values: &[&str]) -> Option<String> {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_str(v).expect("value"))
            .collect();
        TraceState::parse(&values).map(|s| s.as_str().to_owned())
    }

    #[test]
    fn tracestate_members_are_kept_as_given_across_header_fields() {
        assert_eq!(
            state(&[
                "rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE",
                "",
                "ab@sys=x y"
            ])
            .as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,ab@sys=x y")
        );
        assert_eq!(state(&[" , "]), None, "no member");
        for bad in [
            "Rojo=1",
            "rojo",
            "rojo=",
            "rojo=a,b",
            "rojo=a=b",
            "rojo=a\tb",
            "9x=1",
            "a@B=1",
            "a@=1",
            "a@abcdefghijklmno=1",
            "ro jo=1",
        ] {
            assert_eq!(state(&[bad]), None, "{bad:?}");
        }
        assert_eq!(
            state(&["9tenant@vendor=1"]).as_deref(),
            Some("9tenant@vendor=1")
        );
        assert_eq!(
            state(&["rojo=spaced out "]).as_deref(),
            Some("rojo=spaced out")
        );
    }

    #[test]
    fn tracestate_is_bounded_in_members_and_length() {
        let members: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(state(&[&members.join(",")]).is_some());
        let too_many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(state(&[&too_many.join(",")]), None);

        let long = format!("long={}", "x".repeat(200));
        let short: Vec<String> = (0..20)
            .map(|i| format!("key{i:02}={}", "y".repeat(20)))
            .collect();
        let mut all = vec![long];
        all.extend(short.iter().cloned());
        let kept = state(&[&all.join(",")]).expect("some members fit");
        assert!(kept.len() <= TraceState::MAX_LENGTH, "{}", kept.len());
        assert!(!kept.contains("long="), "the long member goes first");
        assert!(kept.starts_with("key00="), "the first ones stay: {kept}");
        let count = kept.split(',').count();
        assert!(count < 20, "the last ones go: {count}");
    }

    #[test]
    fn random_ids_are_never_zero_and_differ() {
        let traces: std::collections::HashSet<TraceId> =
            (0..1000).map(|_| TraceId::random()).collect();
        assert_eq!(traces.len(), 1000);
        let spans: std::collections::HashSet<SpanId> =
            (0..1000).map(|_| SpanId::random()).collect();
        assert_eq!(spans.len(), 1000);
        assert_eq!(TraceId::from_bytes([0; 16]), None);
        assert_eq!(SpanId::from_bytes([0; 8]), None);
    }
}
