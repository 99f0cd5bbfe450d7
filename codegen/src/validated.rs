//! A build loaded and validated, before anything is written: what the command line and CI work
//! from. Everything it offers comes from the same model as the generated code, so the route
//! table, the OpenAPI document and the REST surface it gives are those of the build.

use std::fmt::Write as _;

use crate::error::{Error, LocatedError, Location};
use crate::generate::{self, GatewayOptions, GeneratedFile};
use crate::model::Model;
use crate::openapi::{self, OpenApiInfo};
use crate::surface::{self, Surface};

/// Protos loaded and their `google.api.http` rules validated ([`crate::Builder::validate`]):
/// the route table, the OpenAPI document, the REST surface and protogate's generated files, with
/// no Rust compiled and nothing written.
pub struct Validated {
    model: Model,
    options: GatewayOptions,
    info: OpenApiInfo,
}

/// One route of the build: a binding the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method (`GET`, or a custom kind such as `HEAD`).
    pub method: String,
    /// The path template as written.
    pub template: String,
    /// The RPC's full name.
    pub rpc: String,
    /// Where the rule is written.
    pub location: Location,
}

impl Validated {
    pub(crate) fn new(model: Model, options: GatewayOptions, info: OpenApiInfo) -> Self {
        Validated {
            model,
            options,
            info,
        }
    }

    /// Bindings left out because an earlier one matches the same requests (see
    /// [`crate::Builder::strict_bindings`]).
    pub fn warnings(&self) -> &[LocatedError] {
        &self.model.warnings
    }

    /// Every route, in file, service, method and binding order.
    pub fn routes(&self) -> Vec<Route> {
        let mut routes = Vec::new();
        for service in &self.model.services {
            for method in &service.methods {
                for binding in &method.bindings {
                    routes.push(Route {
                        method: binding.http_method.clone(),
                        template: binding.template_text.clone(),
                        rpc: method.descriptor.full_name().to_owned(),
                        location: binding.location.clone(),
                    });
                }
            }
        }
        routes
    }

    /// The route table as the stock gateway's `protogate routes` prints it: method, template
    /// and RPC, one binding a line.
    pub fn route_table(&self) -> String {
        let mut out = String::new();
        for route in self.routes() {
            let _ = writeln!(
                out,
                "{:<7} {:<60} {}",
                route.method, route.template, route.rpc
            );
        }
        out
    }

    /// The OpenAPI 3.1 document, as the build writes it.
    pub fn openapi(&self) -> String {
        openapi::render(&self.model, &self.info)
    }

    /// The REST surface: what a breaking-change check compares.
    pub fn surface(&self) -> Surface {
        surface::describe(&self.model)
    }

    /// protogate's own generated files (handlers, JSON mappers, the route table, the include
    /// file and the OpenAPI document), as [`crate::Builder::generate`] gives them.
    pub fn generate(&self) -> Result<Vec<GeneratedFile>, Error> {
        self.files(None)
    }

    /// The generated files, for the include file's `out_dir` (`None`: `OUT_DIR` at build time).
    pub(crate) fn files(&self, out_dir: Option<&str>) -> Result<Vec<GeneratedFile>, Error> {
        let mut files = generate::generate(&self.model, self.options, out_dir)?;
        files.push(GeneratedFile {
            name: openapi::OPENAPI_FILE.to_owned(),
            contents: self.openapi(),
        });
        Ok(files)
    }

    /// The warnings, taken.
    pub(crate) fn into_warnings(self) -> Vec<LocatedError> {
        self.model.warnings
    }
}
