//! Every build error names the proto file and the line of the offending rule.

use protogate_build::{Error, LocatedError, RuleError};

/// Compiles one proto (given as the body of a file that already imports annotations.proto and
/// declares `Req`/`Resp`) and returns the rule errors.
fn rule_errors(service: &str) -> Vec<LocatedError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = format!(
        r#"syntax = "proto3";
package test.v1;
import "google/api/annotations.proto";
message Inner {{ string name = 1; }}
message Req {{
  string name = 1;
  repeated string tags = 2;
  Inner inner = 3;
  int64 id = 4;
}}
message Resp {{ string name = 1; }}
{service}
"#
    );
    std::fs::write(dir.path().join("test.proto"), source).expect("write proto");
    match protogate_build::configure()
        .strict_bindings(true)
        .generate(&["test.proto"], &[dir.path()])
    {
        Err(Error::Rules(errors)) => errors,
        Err(other) => panic!("expected rule errors, got: {other}"),
        Ok(_) => panic!("expected rule errors, the build succeeded"),
    }
}

fn single(service: &str) -> LocatedError {
    let mut errors = rule_errors(service);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.remove(0)
}

#[test]
fn unknown_path_field() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{nme}" };
  }
}"#,
    );
    assert_eq!(error.location.file, "test.proto");
    assert_eq!(error.location.line, 14);
    assert!(matches!(error.error, RuleError::UnknownPathField { .. }));
    assert_eq!(
        error.to_string(),
        "test.proto:14:5: path variable `{nme}` in `test.v1.S.Get`: `nme` is not a field of `test.v1.Req`"
    );
}

#[test]
fn repeated_path_field() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{tags}" };
  }
}"#,
    );
    assert_eq!(error.location.line, 14);
    assert!(
        error
            .to_string()
            .contains("field `test.v1.Req.tags` is repeated"),
        "{error}"
    );
}

#[test]
fn message_path_field() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{inner}" };
  }
}"#,
    );
    assert!(
        error
            .to_string()
            .contains("field `test.v1.Req.inner` is a message"),
        "{error}"
    );
}

#[test]
fn nested_path_field_resolves_and_unknown_nested_segment_fails() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{inner.nam}" };
  }
}"#,
    );
    assert!(
        error
            .to_string()
            .contains("`nam` is not a field of `test.v1.Inner`"),
        "{error}"
    );
}

#[test]
fn unknown_body_field() {
    let error = single(
        r#"service S {
  rpc Create(Req) returns (Resp) {
    option (google.api.http) = { post: "/v1/things" body: "thing" };
  }
}"#,
    );
    assert_eq!(error.location.line, 14);
    assert_eq!(
        error.error.to_string(),
        "body `thing` in `test.v1.S.Create` is not a field of `test.v1.Req`"
    );
}

#[test]
fn unknown_response_body_field() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/things" response_body: "nothing" };
  }
}"#,
    );
    assert!(matches!(
        error.error,
        RuleError::UnknownResponseBodyField { .. }
    ));
}

#[test]
fn body_on_get() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/things" body: "*" };
  }
}"#,
    );
    assert_eq!(error.location.line, 14);
    assert_eq!(
        error.error.to_string(),
        "`test.v1.S.Get` binds GET /v1/things with body `*`: a GET request has no body"
    );
}

#[test]
fn conflicting_bindings_name_both_rpcs() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{name=things/*}" };
  }
  rpc Fetch(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/things/{id}" };
  }
}"#,
    );
    assert_eq!(error.location.line, 17);
    let text = error.to_string();
    assert!(text.contains("test.v1.S.Fetch"), "{text}");
    assert!(text.contains("test.v1.S.Get"), "{text}");
    assert!(text.contains("test.proto:14"), "{text}");
}

#[test]
fn conflict_in_additional_bindings() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = {
      get: "/v1/{name}"
      additional_bindings { get: "/v1/{id}" }
    };
  }
}"#,
    );
    assert!(matches!(error.error, RuleError::Conflict(_)), "{error}");
}

#[test]
fn malformed_template_names_the_column() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{name=things/*" };
  }
}"#,
    );
    assert_eq!(error.location.line, 14);
    match &error.error {
        RuleError::Template {
            template,
            error: parse_error,
        } => {
            assert_eq!(template, "/v1/{name=things/*");
            assert_eq!(parse_error.column, 19);
        }
        other => panic!("expected a template error, got {other}"),
    }
    // The located error leads to the rule's error, and that to the parser's own.
    let rule = std::error::Error::source(&error).expect("the rule's error");
    let parse = rule.source().expect("the parser's error");
    assert!(parse.is::<protogate_build::TemplateError>());
}

#[test]
fn several_errors_are_all_reported() {
    let errors = rule_errors(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{nme}" };
  }
  rpc Create(Req) returns (Resp) {
    option (google.api.http) = { post: "/v1/things" body: "thing" };
  }
}"#,
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].location.line, 14);
    assert_eq!(errors[1].location.line, 17);
}

#[test]
fn proto_syntax_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("broken.proto"),
        "syntax = \"proto3\";\npackage p;\nmessage M {\n  string name = 1\n}\n",
    )
    .expect("write proto");
    let error = protogate_build::configure()
        .generate(&["broken.proto"], &[dir.path()])
        .expect_err("does not compile");
    let text = error.to_string();
    assert!(text.starts_with("broken.proto:5:1: "), "{text}");
}

#[test]
fn request_streams_need_a_body() {
    let error = single(
        r#"service S {
  rpc Upload(stream Req) returns (Resp) {
    option (google.api.http) = { post: "/v1/uploads/{name}" };
  }
}"#,
    );
    assert_eq!(error.location.line, 14);
    assert!(matches!(error.error, RuleError::StreamWithoutBody { .. }));
    assert_eq!(
        error.to_string(),
        "test.proto:14:5: `test.v1.S.Upload` streams its requests, so its binding `/v1/uploads/{name}` needs a body (`*` or a field) to carry them"
    );
}

const DUPLICATES: &str = r#"syntax = "proto3";
package test.v1;
import "google/api/annotations.proto";
message Req { string name = 1; string stream = 2; }
message Resp { string name = 1; }
service S {
  rpc Read(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{stream=sessions/*/streams/*}" };
  }
  rpc Split(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{name=sessions/*/streams/*}" };
  }
}
"#;

/// By default the first declared of two bindings matching the same requests serves; the later
/// one is left out of the routes and the OpenAPI document, with a warning naming both.
#[test]
fn duplicate_bindings_warn_and_the_first_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("test.proto"), DUPLICATES).expect("write proto");
    let (files, warnings) = protogate_build::configure()
        .generate_with_warnings(&["test.proto"], &[dir.path()])
        .expect("duplicates are not an error by default");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let text = warnings[0].to_string();
    assert!(text.starts_with("test.proto:11:5: "), "{text}");
    assert!(text.contains("test.v1.S.Split"), "{text}");
    assert!(text.contains("test.v1.S.Read"), "{text}");
    assert!(text.contains("(at test.proto:8:5)"), "{text}");

    let gateway = files
        .iter()
        .find(|f| f.name.contains("test.v1"))
        .expect("the package's file");
    assert!(gateway.contents.contains("ROUTE_READ_0"));
    assert!(!gateway.contents.contains("ROUTE_SPLIT_0"));
    let openapi = files
        .iter()
        .find(|f| f.name.ends_with(".json"))
        .expect("the OpenAPI document");
    assert!(openapi.contents.contains("S_Read"));
    assert!(!openapi.contents.contains("S_Split"));
}

#[test]
fn strict_bindings_make_duplicates_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("test.proto"), DUPLICATES).expect("write proto");
    match protogate_build::configure()
        .strict_bindings(true)
        .generate(&["test.proto"], &[dir.path()])
    {
        Err(Error::Rules(errors)) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].location.line, 11);
            assert!(matches!(errors[0].error, RuleError::Conflict(_)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A template with two `**` could split a path in several ways: refused at its line and column.
#[test]
fn two_double_wildcards_are_refused() {
    let error = single(
        r#"service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{name=a/**}/b/**" };
  }
}"#,
    );
    assert_eq!(error.location.line, 14);
    assert!(
        error
            .to_string()
            .contains("at column 19: a path template may hold only one `**`"),
        "{error}"
    );
}

#[test]
fn declared_policies_that_cannot_apply_are_placed_at_their_option() {
    let errors = rule_errors(
        r#"import "protogate/api/policy.proto";
service S {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{name}" };
    option (protogate.api.policy) = { rate_limit: { requests: 0 period: { seconds: 1 } } };
  }
  rpc Open(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/open/{name}" };
    option (protogate.api.policy) = { access: PUBLIC scopes: "admin" };
  }
  rpc Soon(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/soon/{name}" };
    option (protogate.api.policy) = { rate_limit: { requests: 3 } };
  }
}"#,
    );
    let described: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        described,
        [
            "test.proto:16:5: `test.v1.S.Get`: policy: a rate limit allows at least one request per period",
            "test.proto:20:5: `test.v1.S.Open`: policy: a PUBLIC method cannot require scopes",
            "test.proto:24:5: `test.v1.S.Soon`: policy: a rate limit needs a period longer than zero",
        ]
    );
    assert!(matches!(errors[0].error, RuleError::Policy { .. }));
}
