//! Edge policy declared in the protos: `(protogate.api.policy)` on a method over
//! `(protogate.api.default_policy)` on its service (protogate's own `protogate/api/policy.proto`).

use std::time::Duration;

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};

use crate::error::{LocatedError, RuleError};

/// Field number of both extensions, in `MethodOptions` and in `ServiceOptions`.
const POLICY_EXTENSION: i32 = 72510;
/// Field number of `options` in `ServiceDescriptorProto`.
const SERVICE_OPTIONS: i32 = 3;
/// Field number of `options` in `MethodDescriptorProto`.
const METHOD_OPTIONS: i32 = 4;

/// What a method declares, its service's default under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Who may call.
    pub access: Access,
    /// Scopes the caller's credentials must all grant.
    pub scopes: Vec<String>,
    /// How often one client may call.
    pub rate_limit: Option<RateLimit>,
}

/// Who may call a method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Access {
    /// Not declared.
    #[default]
    Unspecified,
    /// Anyone.
    Public,
    /// Callers with valid credentials.
    Authenticated,
}

impl Access {
    /// The enum value's name in the proto.
    pub fn name(self) -> &'static str {
        match self {
            Access::Unspecified => "ACCESS_UNSPECIFIED",
            Access::Public => "PUBLIC",
            Access::Authenticated => "AUTHENTICATED",
        }
    }
}

/// `requests` per `period`, `burst` at once (0: `requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls per period.
    pub requests: u32,
    /// The period.
    pub period: Duration,
    /// Calls at once after a quiet spell (0: `requests`).
    pub burst: u32,
}

impl Policy {
    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// `self` over `under`, field by field.
    fn over(self, under: &Policy) -> Policy {
        Policy {
            access: match self.access {
                Access::Unspecified => under.access,
                access => access,
            },
            scopes: if self.scopes.is_empty() {
                under.scopes.clone()
            } else {
                self.scopes
            },
            rate_limit: self.rate_limit.or(under.rate_limit),
        }
    }
}

/// The policy `method` declares, over its service's; an error, placed at the option, for a
/// rate limit without requests or period.
pub fn declared(
    pool: &DescriptorPool,
    method: &MethodDescriptor,
) -> Result<Policy, Box<LocatedError>> {
    let service = method.parent_service();
    let under = match pool.get_extension_by_name("protogate.api.default_policy") {
        Some(extension) if service.options().has_extension(&extension) => {
            let mut path = service.path().to_vec();
            path.extend([SERVICE_OPTIONS, POLICY_EXTENSION]);
            read(&service.options().get_extension(&extension), method, &path)?
        }
        _ => Policy::default(),
    };
    let own = match pool.get_extension_by_name("protogate.api.policy") {
        Some(extension) if method.options().has_extension(&extension) => {
            let mut path = method.path().to_vec();
            path.extend([METHOD_OPTIONS, POLICY_EXTENSION]);
            read(&method.options().get_extension(&extension), method, &path)?
        }
        _ => Policy::default(),
    };
    Ok(own.over(&under))
}

/// One `Policy` option's value; `path` is where it is written, for errors.
fn read(
    value: &Value,
    method: &MethodDescriptor,
    path: &[i32],
) -> Result<Policy, Box<LocatedError>> {
    let invalid = |message: String| {
        Box::new(LocatedError {
            location: crate::model::locate_in(method.parent_file(), path),
            error: RuleError::Policy {
                rpc: method.full_name().to_owned(),
                message,
            },
        })
    };
    let Value::Message(policy) = value else {
        return Ok(Policy::default());
    };
    let access = match field(policy, "access") {
        Some(Value::EnumNumber(1)) => Access::Public,
        Some(Value::EnumNumber(2)) => Access::Authenticated,
        _ => Access::Unspecified,
    };
    let scopes: Vec<String> = match field(policy, "scopes") {
        Some(Value::List(scopes)) => scopes
            .iter()
            .filter_map(|scope| scope.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if let Some(blank) = scopes
        .iter()
        .find(|scope| scope.trim().is_empty() || scope.contains(' '))
    {
        return Err(invalid(format!(
            "scope {blank:?} is empty or has a space; name one scope per entry"
        )));
    }
    if access == Access::Public && !scopes.is_empty() {
        return Err(invalid("a PUBLIC method cannot require scopes".to_owned()));
    }
    let rate_limit = match policy.has_field_by_name("rate_limit") {
        true => match field(policy, "rate_limit") {
            Some(Value::Message(limit)) => Some(rate_limit(&limit).map_err(invalid)?),
            _ => None,
        },
        false => None,
    };
    Ok(Policy {
        access,
        scopes,
        rate_limit,
    })
}

fn rate_limit(limit: &DynamicMessage) -> Result<RateLimit, String> {
    let requests = match field(limit, "requests") {
        Some(Value::U32(requests)) => requests,
        _ => 0,
    };
    let period = match field(limit, "period") {
        Some(Value::Message(period)) => {
            let seconds = match field(&period, "seconds") {
                Some(Value::I64(seconds)) => seconds,
                _ => 0,
            };
            let nanos = match field(&period, "nanos") {
                Some(Value::I32(nanos)) => nanos,
                _ => 0,
            };
            match (u64::try_from(seconds), u32::try_from(nanos)) {
                (Ok(seconds), Ok(nanos)) => Duration::new(seconds, nanos),
                _ => return Err("the rate limit's period is negative".to_owned()),
            }
        }
        _ => Duration::ZERO,
    };
    let burst = match field(limit, "burst") {
        Some(Value::U32(burst)) => burst,
        _ => 0,
    };
    if requests == 0 {
        return Err("a rate limit allows at least one request per period".to_owned());
    }
    if period.is_zero() {
        return Err("a rate limit needs a period longer than zero".to_owned());
    }
    Ok(RateLimit {
        requests,
        period,
        burst,
    })
}

fn field(message: &DynamicMessage, name: &str) -> Option<Value> {
    message
        .get_field_by_name(name)
        .map(|value| value.into_owned())
}
