//! `protogate-build`: the generator's checks without a Rust build. It loads protos (protox, no
//! protoc), validates their `google.api.http` rules, prints the route table, writes the OpenAPI
//! document and the REST surface, and compares the surface with a committed snapshot — in the
//! time loading takes, with no Rust generated or compiled. Every answer comes from the
//! `protogate_build` library; this file only reads arguments and prints.
//!
//! Exit status: 0 when all is well, 1 when the protos fail the check (rule or compile errors,
//! unaccepted breaking changes), 2 when the command could not run (arguments, files).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use protogate_build::surface::{Acceptance, Surface, SurfaceError, compare};
use protogate_build::{Error, Validated};

/// protogate's generator, from the command line: check google.api.http rules, print routes,
/// write the OpenAPI document and the REST surface, and find REST-breaking changes.
#[derive(Parser)]
#[command(name = "protogate-build", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validates the protos and their rules (errors at file:line:col) and generates protogate's
    /// code in memory, as a build would; exits 1 on any error.
    Check(Inputs),
    /// Prints the route table: method, template and RPC, one binding a line.
    Routes(Inputs),
    /// Writes the OpenAPI 3.1 document.
    Openapi {
        /// Where to write it (standard output by default).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The document's title.
        #[arg(long, default_value = "protogate")]
        title: String,
        /// The document's version (`info.version`).
        #[arg(long = "api-version", default_value = "0.0.0", value_name = "VERSION")]
        api_version: String,
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Writes the REST surface: the snapshot `breaking` compares against.
    Surface {
        /// Where to write it (standard output by default).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Compares the REST surface of the protos with a snapshot; exits 1 if a breaking change is
    /// not accepted.
    Breaking {
        /// The previous surface (written by `protogate-build surface`).
        #[arg(long, value_name = "FILE")]
        against: PathBuf,
        /// Breaking changes accepted on purpose: one change id a line, as the report prints them.
        #[arg(long, value_name = "FILE")]
        accept: Option<PathBuf>,
        #[command(flatten)]
        inputs: Inputs,
    },
}

#[derive(Args)]
struct Inputs {
    /// A directory imports are looked up in (repeatable). By default the directories given as
    /// PROTOS, or the current directory.
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    includes: Vec<PathBuf>,
    /// Makes two bindings that match the same requests an error rather than a warning.
    #[arg(long)]
    strict_bindings: bool,
    /// Gives every RPC without an http rule `POST /{package}.{Service}/{Method}`, as a build
    /// with `unbound_methods(true)` does.
    #[arg(long)]
    unbound_methods: bool,
    /// Proto files, or directories standing for every `.proto` under them.
    #[arg(required = true, value_name = "PROTOS")]
    protos: Vec<PathBuf>,
}

/// Why a command stopped.
enum Failure {
    /// The protos fail the check: exit 1.
    Check(String),
    /// The command could not run: exit 2.
    Usage(String),
}

impl From<SurfaceError> for Failure {
    fn from(error: SurfaceError) -> Self {
        Failure::Usage(error.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Check(message)) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("protogate-build: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Check(inputs) => {
            let validated = validate(&inputs, protogate_build::configure())?;
            validated.generate().map_err(failure)?;
            let routes = validated.routes();
            let mut rpcs: Vec<&str> = routes.iter().map(|r| r.rpc.as_str()).collect();
            rpcs.sort_unstable();
            rpcs.dedup();
            println!("ok: {} routes of {} RPCs", routes.len(), rpcs.len());
            Ok(())
        }
        Command::Routes(inputs) => {
            let validated = validate(&inputs, protogate_build::configure())?;
            print(&validated.route_table())
        }
        Command::Openapi {
            output,
            title,
            api_version,
            inputs,
        } => {
            let builder = protogate_build::configure().openapi_info(title, api_version);
            let validated = validate(&inputs, builder)?;
            emit(output.as_deref(), &validated.openapi())
        }
        Command::Surface { output, inputs } => {
            let validated = validate(&inputs, protogate_build::configure())?;
            emit(output.as_deref(), &validated.surface().to_json())
        }
        Command::Breaking {
            against,
            accept,
            inputs,
        } => {
            let previous = Surface::read(&against)?;
            let acceptance = match &accept {
                Some(path) => Acceptance::read(path)?,
                None => Acceptance::default(),
            };
            let validated = validate(&inputs, protogate_build::configure())?;
            let mut report = compare(&previous, &validated.surface());
            for stale in report.accept(&acceptance) {
                eprintln!("warning: accepted change `{stale}` is not among the changes");
            }
            print(&report.to_string())?;
            if report.passes() {
                Ok(())
            } else {
                Err(Failure::Check(format!(
                    "protogate-build: {} breaking change(s) of the REST surface not accepted; \
                     list their ids in an acceptance file (--accept) to accept them",
                    report.unaccepted().count()
                )))
            }
        }
    }
}

/// Loads and validates the protos, printing the warnings.
fn validate(inputs: &Inputs, builder: protogate_build::Builder) -> Result<Validated, Failure> {
    let (protos, includes) = resolve(inputs)?;
    let validated = builder
        .strict_bindings(inputs.strict_bindings)
        .unbound_methods(inputs.unbound_methods)
        .emit_rerun_if_changed(false)
        .validate(&protos, &includes)
        .map_err(failure)?;
    for warning in validated.warnings() {
        eprintln!("warning: {warning}; the first declared serves and this one is left out");
    }
    Ok(validated)
}

/// Errors in the protos fail the check; anything else stops the command.
fn failure(error: Error) -> Failure {
    match error {
        Error::Compile(_) | Error::Rules(_) | Error::Syntax { .. } => {
            Failure::Check(error.to_string())
        }
        other => Failure::Usage(other.to_string()),
    }
}

/// The protos as the compiler names them (relative to an include directory) and the include
/// directories.
fn resolve(inputs: &Inputs) -> Result<(Vec<PathBuf>, Vec<PathBuf>), Failure> {
    let mut includes = inputs.includes.clone();
    if includes.is_empty() {
        includes = inputs
            .protos
            .iter()
            .filter(|p| p.is_dir())
            .cloned()
            .collect();
    }
    if includes.is_empty() {
        includes.push(PathBuf::from("."));
    }
    let roots: Vec<PathBuf> = includes
        .iter()
        .map(|dir| {
            dir.canonicalize()
                .map_err(|e| Failure::Usage(format!("include directory {}: {e}", dir.display())))
        })
        .collect::<Result<_, _>>()?;
    let mut protos = Vec::new();
    for given in &inputs.protos {
        if given.is_dir() {
            let found = protogate_build::protos_under(given)
                .map_err(|e| Failure::Usage(format!("{}: {e}", given.display())))?;
            if found.is_empty() {
                return Err(Failure::Usage(format!(
                    "{}: no .proto file under it",
                    given.display()
                )));
            }
            for proto in found {
                protos.push(relative(&given.join(proto), &roots)?);
            }
        } else if given.is_file() {
            protos.push(relative(given, &roots)?);
        } else {
            // A name as imports write it, looked up in the include directories.
            protos.push(given.clone());
        }
    }
    Ok((protos, includes))
}

/// A proto file's path relative to the include directory that holds it.
fn relative(file: &Path, roots: &[PathBuf]) -> Result<PathBuf, Failure> {
    let absolute = file
        .canonicalize()
        .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    roots
        .iter()
        .find_map(|root| absolute.strip_prefix(root).ok())
        .map(Path::to_owned)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{} is in no include directory; add one with -I",
                file.display()
            ))
        })
}

/// Writes `text` to `output`, or to standard output.
fn emit(output: Option<&Path>, text: &str) -> Result<(), Failure> {
    match output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Failure::Usage(format!("writing {}: {e}", path.display()))),
        None => print(text),
    }
}

/// Prints to standard output; a reader that closed the pipe early (`| head`) is no error.
fn print(text: &str) -> Result<(), Failure> {
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}
