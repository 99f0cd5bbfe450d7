//! Edge policy declared in the protos reaches the generated `ServiceInfo` and the OpenAPI
//! document: a service default, overridden field by field by each method.

use std::time::Duration;

use generated_tests::pb::protogate::tests::policy::v1::{guarded_gateway, plain_gateway};
use protogate::{Access, DeclaredPolicy, DeclaredRateLimit};

#[test]
fn methods_declare_their_service_default_changed_field_by_field() {
    let service_rate = Some(DeclaredRateLimit {
        requests: 100,
        period: Duration::from_secs(60),
        burst: 10,
    });
    assert_eq!(
        guarded_gateway::INFO.policies,
        [
            DeclaredPolicy {
                rpc: "protogate.tests.policy.v1.Guarded.Read",
                access: Access::Authenticated,
                scopes: &[],
                rate_limit: service_rate,
            },
            DeclaredPolicy {
                rpc: "protogate.tests.policy.v1.Guarded.Ping",
                access: Access::Public,
                scopes: &[],
                rate_limit: service_rate,
            },
            DeclaredPolicy {
                rpc: "protogate.tests.policy.v1.Guarded.Write",
                access: Access::Authenticated,
                scopes: &["policy.write"],
                rate_limit: Some(DeclaredRateLimit {
                    requests: 5,
                    period: Duration::from_millis(500),
                    burst: 0,
                }),
            },
        ]
    );
    assert!(guarded_gateway::INFO.policies[2].requires_credentials());
    assert!(!guarded_gateway::INFO.policies[1].requires_credentials());
    assert!(plain_gateway::INFO.policies.is_empty());
}

#[test]
fn the_document_says_each_operations_policy() {
    let document: serde_json::Value =
        serde_json::from_str(generated_tests::pb::OPENAPI).expect("JSON");
    let write = &document["paths"]["/policy/write"]["post"]["x-protogate-policy"];
    assert_eq!(
        *write,
        serde_json::json!({
            "access": "AUTHENTICATED",
            "scopes": ["policy.write"],
            "rateLimit": {"requests": 5, "period": "0.5s", "burst": 0}
        })
    );
    assert_eq!(
        document["paths"]["/policy/ping"]["get"]["x-protogate-policy"]["access"],
        "PUBLIC"
    );
    assert!(
        document["paths"]["/plain"]["get"]
            .get("x-protogate-policy")
            .is_none()
    );
}
