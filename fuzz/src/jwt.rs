//! JWT and JWKS parsing in the auth layer (`runtime/src/auth/jwt.rs`, `jwks.rs`).

use jsonwebtoken::{EncodingKey, Header};
use protogate::JwtAlgorithm;
use protogate::fuzzing::{jwks_keys, peek_token, verify_with_secret};

const ISSUER: &str = "https://issuer.example";
const SECRET: &[u8] = b"a shared secret for the fuzz target";

/// Arbitrary text as a bearer token, for an issuer with a shared secret. Reading and verifying
/// it never panics; a refusal never quotes the token; a token that verifies is one the issuer
/// signed. And when the input is a JSON object, it is signed as the claims of a token that then
/// goes through verification: a token with a valid signature is accepted only with the issuer's
/// `iss` and an `exp`.
pub fn jwt(data: &[u8]) {
    if let Ok(claims) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
        signed(&claims);
    }
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let peeked = peek_token(token);
    let verified = verify_with_secret(
        ISSUER,
        SECRET,
        &[JwtAlgorithm::HS256, JwtAlgorithm::HS512],
        token,
    );
    if let (Err(message), true) = (
        &verified,
        token.len() >= 20 && token.matches('.').count() == 2,
    ) {
        assert!(
            !message.contains(token),
            "the refusal {message:?} quotes the token"
        );
    }
    if let Ok(claims) = &verified {
        assert!(peeked.is_ok(), "{token} verifies but does not peek");
        assert_eq!(claims.get("iss"), Some(&serde_json::Value::from(ISSUER)));
    }
}

fn signed(claims: &serde_json::Map<String, serde_json::Value>) {
    let Ok(key) = EncodingKey::from_secret(SECRET) else {
        return;
    };
    let Ok(token) = jsonwebtoken::encode(&Header::default(), claims, &key) else {
        return;
    };
    let peeked = peek_token(&token);
    assert!(peeked.is_ok(), "{token} does not peek: {peeked:?}");
    if let Ok(verified) = verify_with_secret(ISSUER, SECRET, &[JwtAlgorithm::HS256], &token) {
        assert_eq!(&verified, claims);
        assert_eq!(claims.get("iss"), Some(&serde_json::Value::from(ISSUER)));
        assert!(claims.contains_key("exp"), "{claims:?}");
    }
}

/// Tokens whose signature no published key makes: one per family of keys.
const TOKENS: &[&str] = &[
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.c2lnbmF0dXJl",
    "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
];

/// Arbitrary bytes as a JWKS document: the first byte picks a token. Parsing never panics,
/// gives at least one key when it succeeds, and no key verifies a signature that none of them
/// made.
pub fn jwks(data: &[u8]) {
    let [pick, document @ ..] = data else {
        return;
    };
    let token = TOKENS[usize::from(*pick) % TOKENS.len()];
    let Ok(keys) = jwks_keys(document, token) else {
        return;
    };
    assert!(!keys.is_empty(), "a key set with no key");
    for key in keys {
        assert!(
            key.checks.iter().all(|(_, verified)| !verified),
            "a key verified a forged signature: {key:?}"
        );
    }
}
