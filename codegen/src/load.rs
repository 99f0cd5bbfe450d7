//! Loading protos: protox compiles them (no protoc anywhere), with protogate's own google/api and
//! google/rpc definitions resolved after the user's include paths.

use std::path::{Path, PathBuf};

use prost::Message;
use prost_reflect::DescriptorPool;
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

use crate::error::Error;

/// The google/api and google/rpc definitions shipped inside protogate-build.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "google/api/annotations.proto",
        include_str!("../../proto/google/api/annotations.proto"),
    ),
    (
        "google/api/http.proto",
        include_str!("../../proto/google/api/http.proto"),
    ),
    (
        "google/api/httpbody.proto",
        include_str!("../../proto/google/api/httpbody.proto"),
    ),
    (
        "google/api/field_behavior.proto",
        include_str!("../../proto/google/api/field_behavior.proto"),
    ),
    (
        "google/api/client.proto",
        include_str!("../../proto/google/api/client.proto"),
    ),
    (
        "google/api/resource.proto",
        include_str!("../../proto/google/api/resource.proto"),
    ),
    (
        "google/api/launch_stage.proto",
        include_str!("../../proto/google/api/launch_stage.proto"),
    ),
    (
        "google/api/field_info.proto",
        include_str!("../../proto/google/api/field_info.proto"),
    ),
    (
        "google/api/routing.proto",
        include_str!("../../proto/google/api/routing.proto"),
    ),
    (
        "protogate/api/auth.proto",
        include_str!("../../proto/protogate/api/auth.proto"),
    ),
    (
        "protogate/api/policy.proto",
        include_str!("../../proto/protogate/api/policy.proto"),
    ),
    (
        "google/longrunning/operations.proto",
        include_str!("../../proto/google/longrunning/operations.proto"),
    ),
    (
        "google/rpc/status.proto",
        include_str!("../../proto/google/rpc/status.proto"),
    ),
    (
        "google/rpc/code.proto",
        include_str!("../../proto/google/rpc/code.proto"),
    ),
    (
        "google/rpc/error_details.proto",
        include_str!("../../proto/google/rpc/error_details.proto"),
    ),
];

/// Files compiled into every build so that error details render as JSON.
const ALWAYS: &[&str] = &["google/rpc/status.proto", "google/rpc/error_details.proto"];

struct EmbeddedResolver;

impl FileResolver for EmbeddedResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match EMBEDDED.iter().find(|(file, _)| *file == name) {
            Some((file, source)) => File::from_source(file, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// The compiled descriptors, in the two forms the back ends need.
pub struct Loaded {
    /// With extension options (google.api.http) and source positions.
    pub pool: DescriptorPool,
    /// The encoded set, for prost-build and for users who want the descriptors.
    pub encoded: Vec<u8>,
    /// Files the user asked for (services in imports get no gateway).
    pub requested: Vec<String>,
    /// Every proto read from disk, for `cargo:rerun-if-changed`.
    pub sources: Vec<PathBuf>,
}

/// Compiles `protos` found under `includes`.
pub fn compile(protos: &[PathBuf], includes: &[PathBuf]) -> Result<Loaded, Error> {
    let mut resolver = ChainFileResolver::new();
    for include in includes {
        resolver.add(IncludeFileResolver::new(include.clone()));
    }
    resolver.add(EmbeddedResolver);
    resolver.add(GoogleFileResolver::new());

    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(protos)?;
    let requested = compiler
        .files()
        .filter(|file| !file.is_import())
        .map(|file| file.name().to_owned())
        .collect();
    for always in ALWAYS {
        compiler.open_file(Path::new(always))?;
    }
    let sources = compiler
        .files()
        .filter_map(|file| file.path().map(Path::to_owned))
        .collect();
    let encoded = compiler.encode_file_descriptor_set();
    let pool = DescriptorPool::decode(encoded.as_slice())?;
    Ok(Loaded {
        pool,
        encoded,
        requested,
        sources,
    })
}

/// Loads a ready descriptor set; every file in it is treated as requested.
pub fn from_descriptor_set(encoded: Vec<u8>) -> Result<Loaded, Error> {
    let pool = DescriptorPool::decode(encoded.as_slice())?;
    let requested = pool.files().map(|file| file.name().to_owned()).collect();
    Ok(Loaded {
        pool,
        encoded,
        requested,
        sources: Vec::new(),
    })
}

impl Loaded {
    /// The set prost-build generates from (its google.protobuf types map to prost-types).
    pub fn for_prost(&self) -> Result<prost_types::FileDescriptorSet, Error> {
        prost_types::FileDescriptorSet::decode(self.encoded.as_slice())
            .map_err(|e| Error::Prost(std::io::Error::other(e)))
    }
}
