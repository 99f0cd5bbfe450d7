//! The WebSocket message path (`runtime/src/stream/ws.rs`): what one text or binary frame of a
//! client's request stream goes through, with the query and the path of the request that
//! opened the socket applied to it.

use generated_tests::pb::__PROTOGATE_REGISTRY as REGISTRY;
use generated_tests::pb::protogate::tests::v1::{Addend, ChatMessage};
use protogate::__codegen::{
    Binding, BodyRule, I64, JsonMessage, ResponseRule, RouteInfo, Seg, Str, Template, Var,
    read_singular, set_text,
};
use protogate::fuzzing::{Frame, json_options, websocket_frame};

use crate::roundtrip::check_message;

static CHAT_ROUTE: RouteInfo = RouteInfo {
    method: "POST",
    rpc: "protogate.tests.v1.StreamService.Chat",
    template: Template {
        text: "/v1/streams/rooms/{room}:chat",
        segments: &[
            Seg::Literal("v1"),
            Seg::Literal("streams"),
            Seg::Literal("rooms"),
            Seg::Any,
        ],
        verb: Some("chat"),
        vars: &[Var {
            field: "room",
            start: 3,
            end: 4,
        }],
    },
    unbound: false,
};

/// `Chat`'s binding as protogate-build describes it: the whole frame is the message.
static CHAT: Binding<ChatMessage, ChatMessage> = Binding {
    route: &CHAT_ROUTE,
    body: BodyRule::Whole,
    query_skip: &["room"],
    path: &[|message, text| set_text::<Str>(&mut message.room, text)],
    response: ResponseRule::Message,
};

static SUM_ROUTE: RouteInfo = RouteInfo {
    method: "POST",
    rpc: "protogate.tests.v1.StreamService.Sum",
    template: Template {
        text: "/v1/streams/sums/{label}:values",
        segments: &[
            Seg::Literal("v1"),
            Seg::Literal("streams"),
            Seg::Literal("sums"),
            Seg::Any,
        ],
        verb: Some("values"),
        vars: &[Var {
            field: "label",
            start: 3,
            end: 4,
        }],
    },
    unbound: false,
};

/// `Sum`'s `body: "value"` binding: each frame is the `value` field; the query may set the rest.
static SUM: Binding<Addend, Addend> = Binding {
    route: &SUM_ROUTE,
    body: BodyRule::Field {
        name: "value",
        read: |message, reader| read_singular::<I64>(&mut message.value, reader),
        array_value: false,
    },
    query_skip: &["label", "value"],
    path: &[|message, text| set_text::<Str>(&mut message.label, text)],
    response: ResponseRule::Message,
};

/// The path segments a room or a label may take in the request's URI.
const NAMES: &[&str] = &["lobby", "a%20b", "%C3%A9", "%FF", "%zz", "x+y", ""];

/// A frame of arbitrary bytes on a socket opened with a query the input chooses: the first
/// byte picks the binding, the room or label, and the frame's place in the stream; the second
/// is the query's length, then come the query and the frame. A frame is a message, the end of the
/// request stream (a blank frame) or a refusal; a refusal closes the session with 4003
/// (INVALID_ARGUMENT) and a reason of at most 123 bytes that is the status as JSON; a message
/// survives round trips, and holds the room or label from the path whatever the frame and the
/// query say.
pub fn websocket(data: &[u8]) {
    let [pick, length, rest @ ..] = data else {
        return;
    };
    let (query, frame) = rest.split_at(usize::from(*length).min(rest.len()));
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let pick = *pick;
    let name = NAMES[usize::from(pick >> 1) % NAMES.len()];
    let index = usize::from(pick >> 5);
    if pick & 1 == 0 {
        let uri = format!("/v1/streams/rooms/{name}:chat?{query}");
        let outcome = websocket_frame(&CHAT, &uri, frame, index, &REGISTRY);
        check(outcome, room, name);
    } else {
        let uri = format!("/v1/streams/sums/{name}:values?{query}");
        let outcome = websocket_frame(&SUM, &uri, frame, index, &REGISTRY);
        check(outcome, label, name);
    }
}

fn room(message: &ChatMessage) -> &str {
    &message.room
}

fn label(message: &Addend) -> &str {
    &message.label
}

fn check<M: JsonMessage + std::fmt::Debug>(
    outcome: Result<Frame<M>, protogate::fuzzing::FrameSetupError>,
    bound: fn(&M) -> &str,
    name: &str,
) {
    // A URI that does not parse, or a room the route does not match, never opens a socket.
    let Ok(frame) = outcome else {
        return;
    };
    match frame {
        Frame::Message(message) => {
            let decoded = percent_decoded(name);
            assert_eq!(Some(bound(&message)), decoded.as_deref(), "{message:?}");
            check_message(&message, json_options(0));
        }
        Frame::EndOfRequests => {}
        Frame::Closed { code, reason } => {
            assert_eq!(code, 4003, "{reason}");
            assert!(
                reason.len() <= 123,
                "a close reason of {} bytes",
                reason.len()
            );
            let status: serde_json::Value = serde_json::from_str(&reason)
                .unwrap_or_else(|error| panic!("the reason {reason:?} is not JSON: {error}"));
            assert_eq!(status["code"], 3, "{reason}");
        }
    }
}

/// The path segment as the room or label it sets.
fn percent_decoded(name: &str) -> Option<String> {
    match name {
        "a%20b" => Some("a b".to_owned()),
        "%C3%A9" => Some("é".to_owned()),
        "%FF" | "%zz" | "" => None,
        plain => Some(plain.to_owned()),
    }
}
