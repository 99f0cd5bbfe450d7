//! Request ids: the client's `X-Request-Id` when it is sane, or one made here.
//!
//! A sane id is 1 to [`RequestId::MAX_LEN`] bytes of ASCII letters, digits and `-_.:/+=@`: what
//! UUIDs, ULIDs, hex and base64 ids (and the ids other proxies make) are written with, and
//! nothing that could break a log line, a header or a metadata value. Anything else is replaced.
//!
//! A made id is 32 lowercase hex digits: 16 from a random number drawn once per process, then 16
//! from a counter passed through a bijective mix, so ids never repeat within a process, look
//! unrelated to each other, and cost no system call.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderValue;

/// The header a request id travels in, both ways, and the metadata key it is forwarded as.
pub const REQUEST_ID: &str = "x-request-id";

/// One request's id, as sent back to the client and forwarded upstream.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Bytes);

impl RequestId {
    /// The longest id taken from a client, in bytes.
    pub const MAX_LEN: usize = 128;

    /// The client's id, when `value` is sane; `None` otherwise.
    pub fn sanitize(value: &[u8]) -> Option<RequestId> {
        let sane = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value.iter().all(|&byte| allowed(byte));
        sane.then(|| RequestId(Bytes::copy_from_slice(value)))
    }

    /// The id of a request with `header` (its `X-Request-Id`, if any): the client's when it is
    /// sane, a new one otherwise.
    pub fn from_header(header: Option<&HeaderValue>) -> RequestId {
        header
            .and_then(|value| RequestId::sanitize(value.as_bytes()))
            .unwrap_or_else(RequestId::generate)
    }

    /// A new id, unique within this process.
    pub fn generate() -> RequestId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(process_random);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut text = [0u8; 32];
        write_hex(&mut text[..16], prefix);
        write_hex(&mut text[16..], mix(count));
        RequestId(Bytes::copy_from_slice(&text))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id as a header value, marked never to be indexed by HTTP/2 (`unique_per_request`).
    pub fn header_value(&self) -> HeaderValue {
        // Sane ids are visible ASCII, which any header value may hold.
        let mut value = HeaderValue::from_maybe_shared(self.0.clone())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        unique_per_request(&mut value);
        value
    }

    /// The id as a gRPC metadata value, marked never to be indexed by HTTP/2 (`unique_per_request`).
    pub fn metadata_value(&self) -> tonic::metadata::AsciiMetadataValue {
        let mut value = tonic::metadata::AsciiMetadataValue::try_from(self.0.clone())
            .unwrap_or_else(|_| tonic::metadata::AsciiMetadataValue::from_static("invalid"));
        value.set_sensitive(true);
        value
    }
}

/// Marks `value` as one no other request sends: HTTP/2's header compression then writes it
/// literally and never adds it to the connection's header table (HPACK's "never indexed").
///
/// Each value added to that table costs an insertion on both sides and pushes out the oldest
/// entries, which are the headers that do repeat (the authority, the content type, the
/// forwarded host), so they are sent and added again in turn. A request id or a trace context
/// in the table would be looked up by no later request.
pub(crate) fn unique_per_request(value: &mut HeaderValue) {
    value.set_sensitive(true);
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bytes a sane id is made of.
fn allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(byte, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=' | b'@')
}

/// The first half of every id this process makes.
static PREFIX: OnceLock<u64> = OnceLock::new();

/// A random number, drawn once: the standard library's per-process hash keys (seeded from the
/// operating system's randomness), mixed with the process id and the clock.
fn process_random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

/// A bijection of 64-bit numbers that scatters consecutive ones (SplitMix64's finalizer).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn write_hex(out: &mut [u8], value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (index, slot) in out.iter_mut().enumerate() {
        let shift = 60 - 4 * index;
        *slot = DIGITS[((value >> shift) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn sane_ids_are_kept_as_sent() {
        for id in [
            "abc",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "dGVzdA==",
            "a/b+c",
            "svc:1234@host.example",
            &"x".repeat(RequestId::MAX_LEN),
        ] {
            let kept = RequestId::sanitize(id.as_bytes()).expect(id);
            assert_eq!(kept.as_str(), id);
            assert_eq!(kept.header_value(), id);
            assert_eq!(kept.metadata_value(), id);
        }
    }

    #[test]
    fn an_id_is_never_indexed_by_http2_header_compression() {
        // Each request has its own: in HTTP/2's header table it would only push out the
        // headers that repeat.
        let id = RequestId::generate();
        assert!(id.header_value().is_sensitive());
        assert!(id.metadata_value().is_sensitive());
    }

    #[test]
    fn ids_that_are_not_sane_are_refused() {
        let too_long = "x".repeat(RequestId::MAX_LEN + 1);
        for id in [
            "".as_bytes(),
            b"has space",
            b"quote\"d",
            b"new\nline",
            b"tab\t",
            b"{json}",
            b"comma,separated",
            "caf\u{e9}".as_bytes(),
            b"\x00",
            too_long.as_bytes(),
        ] {
            assert!(RequestId::sanitize(id).is_none(), "{id:?}");
        }
        let header = HeaderValue::from_static("not sane!");
        let replaced = RequestId::from_header(Some(&header));
        assert_ne!(replaced.as_str(), "not sane!");
        assert_eq!(replaced.as_str().len(), 32);
        let kept = RequestId::from_header(Some(&HeaderValue::from_static("ok-1")));
        assert_eq!(kept.as_str(), "ok-1");
    }

    #[test]
    fn made_ids_are_unique_sane_and_share_the_process_prefix() {
        let ids: Vec<RequestId> = (0..10_000).map(|_| RequestId::generate()).collect();
        let distinct: HashSet<&RequestId> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            assert_eq!(id.as_str().len(), 32);
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(RequestId::sanitize(id.as_str().as_bytes()).is_some());
            assert_eq!(id.as_str()[..16], ids[0].as_str()[..16]);
        }
        // Consecutive ids differ in many places, not in the last digit only.
        let (a, b) = (ids[0].as_str(), ids[1].as_str());
        let differing = a[16..]
            .bytes()
            .zip(b[16..].bytes())
            .filter(|(x, y)| x != y)
            .count();
        assert!(differing > 4, "{a} {b}");
    }

    #[test]
    fn made_ids_are_unique_across_threads() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..2000).map(|_| RequestId::generate()).collect::<Vec<_>>())
            })
            .collect();
        let mut seen = HashSet::new();
        for thread in threads {
            for id in thread.join().expect("no panic") {
                assert!(seen.insert(id));
            }
        }
        assert_eq!(seen.len(), 8000);
    }

    #[test]
    fn the_mix_is_a_bijection_on_a_sample() {
        let mixed: HashSet<u64> = (0..100_000u64).map(mix).collect();
        assert_eq!(mixed.len(), 100_000);
    }
}
