//! protogate-build compiles `.proto` files annotated with `google.api.http` into a REST/JSON
//! gateway: prost messages and tonic clients (through tonic-prost-build), proto3-JSON mappers for
//! every message, and for every annotated service an axum-ready set of routes that forward to a
//! tonic client or to an in-process implementation.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     protogate_build::configure().compile(&["proto/acme/library/v1/library.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! No `protoc` is needed: protos are compiled by protox, and protogate's own, wire-compatible
//! copies of `google/api/{annotations,http,httpbody,field_behavior,client,resource,launch_stage,
//! field_info,routing}.proto`, `google/rpc/{status,code,error_details}.proto` and
//! `google/longrunning/operations.proto` are built in, looked up after your own include paths,
//! and so is protogate's `protogate/api/policy.proto`: with it a method (or a service, for all
//! its methods) declares its edge policy — `option (protogate.api.policy) = { access:
//! AUTHENTICATED scopes: "books.write" rate_limit: { requests: 10 period: { seconds: 1 } } };`
//! — which reaches the generated `ServiceInfo::policies` and the OpenAPI document
//! (`x-protogate-policy`).
//!
//! The generated code is mounted with `protogate::include_gateway!()`, which creates one module
//! per proto package (`acme::library::v1`) holding prost's messages, tonic's client and server,
//! and a `<service>_gateway` module per service, and an `OPENAPI` constant: the OpenAPI 3.1
//! document of the build, also written to `OUT_DIR` as `protogate_openapi.json`.

mod error;
mod generate;
mod load;
mod model;
mod naming;
mod openapi;
mod policy;
pub mod surface;
mod template;
mod validated;

use std::path::{Path, PathBuf};

pub use error::{BindingConflict, Error, LocatedError, Location, RuleError};
pub use generate::{GeneratedFile, INCLUDE_FILE};
pub use openapi::OPENAPI_FILE;
pub use template::TemplateError;

/// The path template parser, for the fuzz targets of `protogate-fuzz` (the repository's
/// `fuzz/` directory). Not for any other use: it may change in any release.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::template::{
        FlatSegment, FlatVariable, PathTemplate, Segment, Variable, parse as parse_template,
    };
}
pub use validated::{Route, Validated};

/// The file, beside the generated code, holding the encoded descriptor set (with source info and
/// options), for tools such as a descriptor-driven proxy.
pub const DESCRIPTOR_SET_FILE: &str = "protogate_descriptor.bin";

/// Starts a build with default settings: messages, clients, servers and gateways for every
/// annotated service.
pub fn configure() -> Builder {
    Builder::default()
}

/// Configures and runs a protogate build.
#[must_use]
pub struct Builder {
    tonic: tonic_prost_build::Builder,
    prost: Option<prost_build::Config>,
    build_server: bool,
    out_dir: Option<PathBuf>,
    emit_rerun_if_changed: bool,
    openapi_info: Option<openapi::OpenApiInfo>,
    strict_bindings: bool,
    unbound_methods: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            tonic: tonic_prost_build::configure(),
            prost: None,
            build_server: true,
            out_dir: None,
            emit_rerun_if_changed: true,
            openapi_info: None,
            strict_bindings: false,
            unbound_methods: false,
        }
    }
}

impl Builder {
    /// Adjusts the tonic-prost-build settings (attributes, extern paths, transport…), as you would
    /// on `tonic_prost_build::configure()`. The client is always built (gateways call it); use
    /// [`Builder::build_server`] rather than tonic's own switch for the server.
    pub fn tonic(
        mut self,
        configure: impl FnOnce(tonic_prost_build::Builder) -> tonic_prost_build::Builder,
    ) -> Self {
        self.tonic = configure(self.tonic);
        self
    }

    /// Uses this prost-build configuration for the messages.
    pub fn prost_config(mut self, config: prost_build::Config) -> Self {
        self.prost = Some(config);
        self
    }

    /// Whether to generate tonic's server trait, and with it the in-process backend
    /// (`<service>_gateway::local`). On by default.
    pub fn build_server(mut self, enable: bool) -> Self {
        self.build_server = enable;
        self
    }

    /// Writes the generated files to `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.out_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// The title and version of the OpenAPI document (by default the name and version of the
    /// crate being built).
    pub fn openapi_info(mut self, title: impl Into<String>, version: impl Into<String>) -> Self {
        self.openapi_info = Some(openapi::OpenApiInfo {
            title: title.into(),
            version: version.into(),
        });
        self
    }

    /// Whether two bindings with the same HTTP method and path shape (so matching the same
    /// requests) stop the build. Off by default: the binding declared first serves, the later
    /// one is left out of the route table and the OpenAPI document, and a build script prints a
    /// `cargo:warning` naming both (file:line). Real APIs have such pairs (BigQuery Storage's
    /// `GET /v1/{name=projects/*/locations/*/sessions/*/streams/*}` and
    /// `GET /v1/{read_stream=projects/*/locations/*/sessions/*/streams/*}`).
    pub fn strict_bindings(mut self, enable: bool) -> Self {
        self.strict_bindings = enable;
        self
    }

    /// Whether RPCs without a `google.api.http` rule are served too (off by default): each at
    /// `POST /{package}.{Service}/{Method}` (its gRPC path), with the whole request message as
    /// the JSON body and the whole response as the answer, as Envoy's `auto_mapping` and
    /// grpc-gateway's `generate_unbound_methods` do. Every streaming shape is served as an
    /// annotated one is: request streams as NDJSON bodies or WebSocket messages, response streams
    /// as NDJSON, Server-Sent Events or WebSocket messages. Services with no rule at all are
    /// served too; an RPC with a rule keeps its rule's bindings only.
    ///
    /// The routes are generated marked as unbound (`RouteInfo::unbound`, and
    /// `x-protogate-unbound: true` on their OpenAPI operations), and a gateway serves them only
    /// when asked (`protogate::Gateway::unbound_methods(true)`), so one build can serve them or
    /// not. An annotated binding always wins over an unbound one that matches the same requests:
    /// the unbound one is left out with a warning, or is an error with
    /// [`Builder::strict_bindings`]. protogate's own `protogate.api` services (the external auth
    /// check, which the gateway calls) never get unbound routes, and an RPC whose request or
    /// response is a well-known type other than `google.protobuf.Empty` is left out with a
    /// warning (an error with `strict_bindings`).
    pub fn unbound_methods(mut self, enable: bool) -> Self {
        self.unbound_methods = enable;
        self
    }

    /// Whether to print `cargo:rerun-if-changed` for every proto read (on by default).
    pub fn emit_rerun_if_changed(mut self, enable: bool) -> Self {
        self.emit_rerun_if_changed = enable;
        self
    }

    /// Compiles `protos`, looking up imports in `includes` (then in protogate's built-in google/api
    /// and google/rpc files, then in the well-known types), and writes the generated code.
    pub fn compile(
        self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), Error> {
        let protos: Vec<PathBuf> = protos.iter().map(|p| p.as_ref().to_owned()).collect();
        let includes: Vec<PathBuf> = includes.iter().map(|p| p.as_ref().to_owned()).collect();
        let loaded = load::compile(&protos, &includes)?;
        if self.emit_rerun_if_changed {
            for source in &loaded.sources {
                println!("cargo:rerun-if-changed={}", source.display());
            }
        }
        self.write(&loaded)
    }

    /// Generates from a ready, encoded `FileDescriptorSet` (as `protoc --include_imports
    /// --descriptor_set_out` or protox write it). Bindings of every service in it are generated.
    /// The set must be the encoded bytes, not a `prost_types` value: prost-types drops the
    /// `google.api.http` options.
    pub fn compile_descriptor_set(self, encoded: impl Into<Vec<u8>>) -> Result<(), Error> {
        let loaded = load::from_descriptor_set(encoded.into())?;
        self.write(&loaded)
    }

    /// Generates protogate's own files in memory, without running prost or writing anything.
    pub fn generate(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<Vec<GeneratedFile>, Error> {
        self.generate_with_warnings(protos, includes)
            .map(|(files, _)| files)
    }

    /// Like [`Builder::generate`], and also returns the warnings a build script would print:
    /// bindings left out because an earlier one matches the same requests
    /// (see [`Builder::strict_bindings`]), and RPCs that cannot be served unbound
    /// (see [`Builder::unbound_methods`]).
    pub fn generate_with_warnings(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(Vec<GeneratedFile>, Vec<LocatedError>), Error> {
        let protos: Vec<PathBuf> = protos.iter().map(|p| p.as_ref().to_owned()).collect();
        let includes: Vec<PathBuf> = includes.iter().map(|p| p.as_ref().to_owned()).collect();
        let loaded = load::compile(&protos, &includes)?;
        self.generate_loaded(&loaded, None)
    }

    /// Loads `protos` and validates their rules, generating nothing: the route table, the
    /// OpenAPI document and the REST surface of the build, in a fraction of a build's time (no
    /// prost, no Rust compiled). What the `protogate-build` command line works from.
    pub fn validate(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<Validated, Error> {
        let protos: Vec<PathBuf> = protos.iter().map(|p| p.as_ref().to_owned()).collect();
        let includes: Vec<PathBuf> = includes.iter().map(|p| p.as_ref().to_owned()).collect();
        let loaded = load::compile(&protos, &includes)?;
        self.validated(&loaded)
    }

    /// The model of `loaded`, validated: the one place a build's model is made.
    fn validated(&self, loaded: &load::Loaded) -> Result<Validated, Error> {
        let options = model::Options {
            strict_bindings: self.strict_bindings,
            unbound_methods: self.unbound_methods,
        };
        let model = model::Model::build(loaded.pool.clone(), &loaded.requested, options)
            .map_err(Error::Rules)?;
        let options = generate::GatewayOptions {
            server: self.build_server,
        };
        Ok(Validated::new(model, options, self.document_info()))
    }

    fn generate_loaded(
        &self,
        loaded: &load::Loaded,
        out_dir: Option<&str>,
    ) -> Result<(Vec<GeneratedFile>, Vec<LocatedError>), Error> {
        let validated = self.validated(loaded)?;
        let files = validated.files(out_dir)?;
        Ok((files, validated.into_warnings()))
    }

    /// The document's info: as configured, or the crate being built.
    fn document_info(&self) -> openapi::OpenApiInfo {
        self.openapi_info
            .clone()
            .unwrap_or_else(|| openapi::OpenApiInfo {
                title: std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "protogate".into()),
                version: std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "0.0.0".into()),
            })
    }

    fn write(self, loaded: &load::Loaded) -> Result<(), Error> {
        let (out_dir, from_env) = match &self.out_dir {
            Some(dir) => (dir.clone(), false),
            None => (
                PathBuf::from(std::env::var_os("OUT_DIR").ok_or(Error::NoOutDir)?),
                true,
            ),
        };
        let out_dir_text = out_dir.to_string_lossy().into_owned();
        let (files, warnings) =
            self.generate_loaded(loaded, if from_env { None } else { Some(&out_dir_text) })?;
        // `TARGET` is set for build scripts only: elsewhere a `cargo:` line means nothing.
        if std::env::var_os("TARGET").is_some() {
            for warning in &warnings {
                println!("cargo:warning={}", warning_text(warning));
            }
        }

        let tonic = self
            .tonic
            .build_client(true)
            .build_server(self.build_server)
            .out_dir(&out_dir);
        let prost_set = loaded.for_prost()?;
        match self.prost {
            Some(config) => tonic.compile_fds_with_config(prost_set, config),
            None => tonic.compile_fds(prost_set),
        }
        .map_err(Error::Prost)?;

        write_if_changed(&out_dir.join(DESCRIPTOR_SET_FILE), &loaded.encoded)?;
        for file in files {
            write_if_changed(&out_dir.join(&file.name), file.contents.as_bytes())?;
        }
        Ok(())
    }
}

/// The text of the `cargo:warning` for a binding left out: as a duplicate, or an RPC that
/// cannot be served unbound.
fn warning_text(warning: &LocatedError) -> String {
    match &warning.error {
        RuleError::Conflict(conflict) if conflict.unbound => format!(
            "{warning}; the annotated binding serves and this unbound one is left out \
             (`strict_bindings(true)` makes this an error)"
        ),
        RuleError::Conflict(_) => format!(
            "{warning}; the first declared serves and this one is left out \
             (`strict_bindings(true)` makes this an error)"
        ),
        _ => format!(
            "{warning}; it is not served unbound (`strict_bindings(true)` makes this an error)"
        ),
    }
}

/// Every `.proto` file under `root`, as paths relative to it (the form `compile` takes with `root`
/// as an include path), sorted.
pub fn protos_under(root: impl AsRef<Path>) -> std::io::Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|ext| ext == "proto") {
                out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
            }
        }
        Ok(())
    }
    let root = root.as_ref();
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// Writes `contents` unless the file already holds exactly that, so cargo does not rebuild for
/// nothing.
fn write_if_changed(path: &Path, contents: &[u8]) -> Result<(), Error> {
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    std::fs::write(path, contents).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}
