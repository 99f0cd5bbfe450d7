//! The client side of WebSocket calls in the end-to-end tests: reading a session to its close.

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::{Error, Message};

/// How long a test waits for the next frame.
const PATIENCE: Duration = Duration::from_secs(10);

/// Reads frames until the close frame: the text frames, and the close code and reason (1005
/// for a close frame without them). Each frame must come within the patience, and the close
/// within 10,000 frames.
pub async fn until_close<S>(socket: &mut S) -> (Vec<String>, u16, String)
where
    S: futures_util::Stream<Item = Result<Message, Error>> + Unpin,
{
    let mut texts = Vec::new();
    for _ in 0..10_000 {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a frame within the patience")
            .expect("open")
            .expect("frame");
        match frame {
            Message::Text(text) => texts.push(text.to_string()),
            Message::Close(Some(close)) => {
                return (texts, close.code.into(), close.reason.to_string());
            }
            Message::Close(None) => return (texts, 1005, String::new()),
            _ => {}
        }
    }
    panic!("no close frame in 10,000 frames");
}
