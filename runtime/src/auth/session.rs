//! Sessions shared by every replica through Redis: a session cookie names a key that the
//! team's login service wrote, and any replica resolves it, so a client's next request may land
//! anywhere and stay signed in. Each replica keeps answers for a few seconds (an
//! [`ExternalAuth`] with Redis as its check), so a busy client costs Redis one read per replica
//! per few seconds, not one per request.
//!
//! The key `{prefix}{cookie value}` holds a JSON object: `sub` (the subject, required), the
//! scopes as `scope` (space-separated) or `scopes` (an array), and any other claims. A key that
//! is missing, expired or malformed is a refused credential; Redis not answering is a check
//! that could not be made (503 unless the checker fails open).

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands as _;
use tokio::sync::OnceCell;

use crate::external_auth::{
    CheckRequest, CheckResponse, CredentialSource, ExternalAuth, ExternalAuthBuilder,
};

/// Where sessions live: a Redis server and the prefix of their keys.
#[derive(Clone, Debug)]
pub struct RedisSessions {
    client: redis::Client,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl RedisSessions {
    /// Sessions in the Redis server at `url` (`redis://host:port/db`), under keys
    /// `session:{id}`.
    pub fn new(url: &str) -> Result<RedisSessions, redis::RedisError> {
        Ok(RedisSessions {
            client: redis::Client::open(url)?,
            prefix: "session:".to_owned(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(500),
        })
    }

    /// The prefix of session keys (`session:` by default).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long connecting may take (1 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one read may take (500 ms by default).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// A checker of the cookie `cookie` against these sessions, answers kept 5 s (change it
    /// with [`ExternalAuthBuilder::ttl`]); give it to `AuthBuilder::external`.
    pub fn checker(self, cookie: &str) -> ExternalAuthBuilder {
        let store = Arc::new(Store {
            sessions: self,
            connection: OnceCell::new(),
        });
        ExternalAuth::with_check(move |request: CheckRequest| {
            let store = Arc::clone(&store);
            async move { store.check(request.credential).await }
        })
        .source(CredentialSource::Cookie(cookie.to_owned()))
        .ttl(Duration::from_secs(5))
        .refused_ttl(Duration::from_secs(1))
    }
}

/// The sessions with their connection, opened at the first check and shared after.
struct Store {
    sessions: RedisSessions,
    connection: OnceCell<redis::aio::ConnectionManager>,
}

impl Store {
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, tonic::Status> {
        let sessions = &self.sessions;
        self.connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(sessions.connect_timeout))
                    .set_response_timeout(Some(sessions.command_timeout))
                    .set_number_of_retries(1);
                let connecting =
                    redis::aio::ConnectionManager::new_with_config(sessions.client.clone(), config);
                match tokio::time::timeout(sessions.connect_timeout, connecting).await {
                    Ok(Ok(connection)) => Ok(connection),
                    Ok(Err(error)) => Err(unreachable(&error.to_string())),
                    Err(_) => Err(unreachable("connecting timed out")),
                }
            })
            .await
            .cloned()
    }

    async fn check(&self, session: String) -> Result<CheckResponse, tonic::Status> {
        // A session id is a cookie value: printable, no spaces; anything else names no key.
        if session.len() > 512 || !session.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(CheckResponse::default());
        }
        let key = format!("{}{session}", self.sessions.prefix);
        // A read is safe to repeat: once more when the connection turns out to have dropped
        // (Redis restarted since the last read), over the connection opened again.
        let mut tries = 2;
        loop {
            tries -= 1;
            let mut connection = self.connection().await?;
            let read = connection.get::<_, Option<String>>(&key);
            match tokio::time::timeout(self.sessions.command_timeout, read).await {
                Ok(Ok(stored)) => {
                    return Ok(stored.map_or_else(CheckResponse::default, |text| answer(&text)));
                }
                Ok(Err(error))
                    if tries > 0 && (error.is_connection_dropped() || error.is_io_error()) => {}
                Ok(Err(error)) => return Err(unreachable(&error.to_string())),
                Err(_) => return Err(unreachable("the read timed out")),
            }
        }
    }
}

fn unreachable(reason: &str) -> tonic::Status {
    tonic::Status::unavailable(format!("the session store does not answer: {reason}"))
}

/// A stored session as the check's answer; refused when it is not an object with a `sub`.
fn answer(text: &str) -> CheckResponse {
    let Ok(serde_json::Value::Object(claims)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        tracing::warn!("a stored session is not a JSON object; refused");
        return CheckResponse::default();
    };
    let Some(subject) = claims.get("sub").and_then(serde_json::Value::as_str) else {
        tracing::warn!("a stored session has no `sub`; refused");
        return CheckResponse::default();
    };
    let scopes = super::scopes_of(&claims);
    CheckResponse {
        allowed: true,
        subject: subject.to_owned(),
        scopes,
        claims: Some(json_struct(&claims)),
        cache_for: None,
    }
}

/// A JSON object as a google.protobuf.Struct.
fn json_struct(object: &serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .iter()
            .map(|(name, value)| (name.clone(), json_value(value)))
            .collect(),
    }
}

fn json_value(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_value).collect(),
        }),
        serde_json::Value::Object(object) => Kind::StructValue(json_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_sessions_become_answers() {
        let answer = answer(r#"{"sub": "ana", "scope": "read write", "team": {"id": 7}}"#);
        assert!(answer.allowed);
        assert_eq!(answer.subject, "ana");
        assert_eq!(answer.scopes, ["read", "write"]);
        let claims = answer.claims.expect("claims");
        assert!(claims.fields.contains_key("team"));

        for refused in ["[]", "{}", r#"{"sub": 3}"#, "not json"] {
            assert!(!super::answer(refused).allowed, "{refused}");
        }
    }
}
