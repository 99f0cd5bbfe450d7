//! `protogate`: the stock gateway's command line.

use std::io::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use protogate::observe::Metrics;
use protogate_gateway::config::{self, Config};
use protogate_gateway::{admin, docs, observe, reload, server, upstream};

#[cfg(protogate_demo)]
mod demo;

/// A REST/JSON front door for gRPC services annotated with google.api.http.
#[derive(Parser)]
#[command(name = "protogate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST/JSON API.
    Serve(Box<ServeArgs>),
    /// Print the route table: HTTP method, path template, RPC.
    Routes(UnboundArgs),
    /// Print the OpenAPI 3.1 document of every compiled service (also served at /openapi.json).
    Openapi {
        /// YAML instead of JSON.
        #[arg(long)]
        yaml: bool,
        #[command(flatten)]
        unbound: UnboundArgs,
    },
    /// Check a config file, or print the effective config.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check FILE against this build, as `serve --config FILE` would, without serving.
    Check {
        /// The config file (TOML; YAML or JSON by extension).
        file: PathBuf,
    },
    /// Print the effective config: the file, the environment's PROTOGATE_… variables and the
    /// flags merged, each upstream with the defaults applied.
    Show(Box<ServeArgs>),
}

/// Whether `routes` and `openapi` include the unbound routes, as a gateway serving them does.
#[derive(clap::Args)]
struct UnboundArgs {
    /// Include the unbound routes (RPCs without an http rule, at POST /package.Service/Method),
    /// as `serve --unbound-methods` serves them.
    #[arg(long)]
    unbound_methods: bool,
    /// Include them when this config file's `[gateway] unbound_methods` says so.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl UnboundArgs {
    /// Whether the unbound routes are in: the flag, or the config file (with the environment's
    /// overrides).
    fn wanted(&self) -> Result<bool, String> {
        if self.unbound_methods {
            return Ok(true);
        }
        match &self.config {
            Some(path) => config::load(path, std::env::vars())
                .map(|(config, _)| config.gateway.serves_unbound())
                .map_err(|e| e.to_string()),
            None => Ok(false),
        }
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The config file (TOML; YAML or JSON by extension). Environment variables
    /// `PROTOGATE_SECTION__KEY` override its keys, and flags override both.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (127.0.0.1:8080 by default).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address of the admin listener (/healthz, /readyz, /config); none unless given here or in
    /// the config's [admin] section.
    #[arg(long, value_name = "ADDRESS")]
    admin: Option<SocketAddr>,
    /// gRPC upstream: `URL[,URL…]` for every service, or `package.Service=URL[,URL…]` for one
    /// (repeatable). URLs are `http://host:port`, `https://host:port` or `unix:///path`; a host
    /// name stands for all its addresses, resolved again every 30 s; calls go to the less
    /// loaded of two endpoints. Without a default upstream the demo service, when built in, runs
    /// in-process.
    #[arg(long = "upstream", value_name = "[SERVICE=]URL[,URL…]")]
    upstreams: Vec<String>,
    #[command(flatten)]
    upstream_settings: UpstreamArgs,
    /// Worker threads, each serving its share of the connections with its own upstream
    /// connections (by default one per CPU).
    #[arg(long, value_name = "N")]
    workers: Option<NonZeroUsize>,
    /// Seconds an HTTP/1 client may take to send a request's headers, and a kept-alive
    /// connection may stay idle, before the connection is closed (30 by default).
    #[arg(long, value_name = "SECONDS")]
    header_read_timeout: Option<f64>,
    /// Serve the RPCs without an http rule too, each at POST /package.Service/Method with the
    /// whole request message as the body (`[gateway] unbound_methods = true`).
    #[arg(long)]
    unbound_methods: bool,
}

impl ServeArgs {
    /// The config: the file (if any) with the environment's overrides, then the flags over it.
    fn config(&self) -> Result<(Config, Option<upstream::Document>), String> {
        let (mut config, document) = match &self.config {
            Some(path) => {
                let (config, text) =
                    config::load(path, std::env::vars()).map_err(|e| e.to_string())?;
                let document = upstream::Document {
                    origin: path.display().to_string(),
                    text,
                    format: config::Format::of(path),
                };
                let mut config = config;
                // A file that names upstreams is a production config: no demo unless asked for.
                if !config.upstreams.is_empty() && config.server.demo.is_none() {
                    config.server.demo = Some(false);
                }
                (config, Some(document))
            }
            None => (Config::default(), None),
        };
        if let Some(listen) = self.listen {
            // One cleartext listener, in place of any the file gives.
            config.server.listen = Some(listen);
            config.listeners.clear();
        }
        if let Some(workers) = self.workers {
            config.server.workers = Some(workers);
        }
        if let Some(admin) = self.admin {
            config.admin = Some(config::Admin {
                listen: Some(admin),
            });
        }
        if self.unbound_methods {
            config.gateway.unbound_methods = Some(true);
        }
        if let Some(seconds) = self.header_read_timeout {
            config.server.header_read_timeout =
                Some(config::Span(seconds_of("--header-read-timeout", seconds)?));
        }
        upstream::apply_upstream_flags(&mut config, &self.upstreams)?;
        self.upstream_settings
            .apply(&mut config.defaults.upstream_settings)?;
        Ok((config, document))
    }

    /// The config, checked against this build, and the plan it makes (its upstreams counting
    /// into `metrics`).
    fn plan(&self, metrics: Option<&Metrics>) -> Result<(Config, upstream::Plan), String> {
        let (config, document) = self.config()?;
        let plan = upstream::Plan::counted(&config, document.as_ref(), metrics)
            .map_err(|e| e.to_string())?;
        Ok((config, plan))
    }
}

/// Settings of every upstream.
#[derive(clap::Args)]
struct UpstreamArgs {
    /// PEM file of the certificate authorities `https://` upstreams are verified against
    /// (repeatable; the system's roots when none is given).
    #[arg(long = "upstream-ca", value_name = "FILE")]
    ca_files: Vec<PathBuf>,
    /// PEM certificate chain the gateway presents to `https://` upstreams (mutual TLS).
    #[arg(long = "upstream-cert", value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM private key of `--upstream-cert`.
    #[arg(long = "upstream-key", value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// TLS server name asked for and verified, instead of each URL's host.
    #[arg(long = "upstream-server-name", value_name = "NAME")]
    server_name: Option<String>,
    /// The `:authority` of requests to upstreams, instead of each URL's host and port.
    #[arg(long = "upstream-authority", value_name = "HOST[:PORT]")]
    authority: Option<String>,
    /// Seconds connecting to an endpoint may take.
    #[arg(long = "upstream-connect-timeout", value_name = "SECONDS")]
    connect_timeout: Option<f64>,
    /// Calls in flight per upstream; beyond them (and a short queue) calls are shed with 503
    /// and Retry-After.
    #[arg(long = "upstream-max-in-flight", value_name = "N")]
    max_in_flight: Option<NonZeroUsize>,
    /// Deadline in seconds of calls whose client sends no Grpc-Timeout.
    #[arg(long = "upstream-timeout", value_name = "SECONDS")]
    timeout: Option<f64>,
    /// The longest deadline in seconds a client may ask for with Grpc-Timeout.
    #[arg(long = "upstream-max-timeout", value_name = "SECONDS")]
    max_timeout: Option<f64>,
    /// The largest response message accepted from an upstream, in bytes (4 MiB by default).
    #[arg(long = "upstream-max-response-bytes", value_name = "BYTES")]
    max_response_bytes: Option<usize>,
    /// Health-checks every endpoint with grpc.health.v1.Health/Check for SERVICE ("" for the
    /// server as a whole); an endpoint that fails takes no calls.
    #[arg(long = "upstream-health-check", value_name = "SERVICE")]
    health_check: Option<String>,
    /// Spread calls over endpoints round robin instead of by least requests.
    #[arg(long = "upstream-round-robin")]
    round_robin: bool,
}

impl UpstreamArgs {
    /// The flags given, over the config's upstream defaults.
    fn apply(&self, defaults: &mut config::UpstreamSettings) -> Result<(), String> {
        let span = |flag: &str, seconds: Option<f64>| {
            seconds
                .map(|s| seconds_of(flag, s).map(config::Span))
                .transpose()
        };
        let tls_given =
            !self.ca_files.is_empty() || self.client_cert.is_some() || self.server_name.is_some();
        if tls_given {
            let tls = defaults.tls.get_or_insert_with(Default::default);
            if !self.ca_files.is_empty() {
                tls.ca = self.ca_files.clone();
            }
            if self.client_cert.is_some() {
                tls.cert = self.client_cert.clone();
                tls.key = self.client_key.clone();
            }
            if self.server_name.is_some() {
                tls.server_name = self.server_name.clone();
            }
        }
        let set = |value: Option<config::Span>, slot: &mut Option<config::Span>| {
            if value.is_some() {
                *slot = value;
            }
        };
        set(
            span("--upstream-connect-timeout", self.connect_timeout)?,
            &mut defaults.connect_timeout,
        );
        set(
            span("--upstream-timeout", self.timeout)?,
            &mut defaults.timeout,
        );
        set(
            span("--upstream-max-timeout", self.max_timeout)?,
            &mut defaults.max_timeout,
        );
        if self.authority.is_some() {
            defaults.authority = self.authority.clone();
        }
        if self.max_in_flight.is_some() {
            defaults.max_in_flight = self.max_in_flight;
        }
        if self.max_response_bytes.is_some() {
            defaults.max_response_bytes = self.max_response_bytes;
        }
        if let Some(service) = &self.health_check {
            defaults.health_check = Some(config::HealthCheckSection {
                service: service.clone(),
                interval: None,
                timeout: None,
            });
        }
        if self.round_robin {
            defaults.balance = Some(config::BalanceName::RoundRobin);
        }
        Ok(())
    }
}

/// A flag's positive number of seconds as a duration.
fn seconds_of(flag: &str, value: f64) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("{flag} {value}: not a positive number of seconds"))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The runtime's events (an endpoint ejected, a health check failing, a response too large)
    // go to stderr; stdout keeps the banner, the printed documents and the access log. `serve`
    // sets its logs up as its config's [log] says.
    if !matches!(cli.command, None | Some(Command::Serve(_))) {
        observe::init_logging(&config::LogSection::default());
    }
    let result = match cli.command {
        None => default_serve_args()
            .map_err(server::Error::from)
            .and_then(serve),
        Some(Command::Serve(args)) => serve(*args),
        // `protogate routes | head` closes the pipe early: that is not an error.
        Some(Command::Routes(unbound)) => unbound.wanted().map_err(Into::into).map(|unbound| {
            let _ = std::io::stdout().write_all(upstream::route_table_of(unbound).as_bytes());
        }),
        Some(Command::Config(ConfigCommand::Check { file })) => check(file),
        Some(Command::Config(ConfigCommand::Show(args))) => show(&args),
        Some(Command::Openapi { yaml, unbound }) => {
            unbound.wanted().map_err(Into::into).map(|unbound| {
                let document = docs::openapi_of(unbound);
                let document = if yaml {
                    docs::openapi_yaml(&document)
                } else {
                    document
                };
                let _ = std::io::stdout().write_all(document.as_bytes());
            })
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("protogate: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `serve` with every option at its default: what `protogate` alone runs.
fn default_serve_args() -> Result<ServeArgs, clap::Error> {
    use clap::{Args as _, FromArgMatches as _};
    let matches =
        ServeArgs::augment_args(clap::Command::new("serve")).try_get_matches_from(["serve"])?;
    ServeArgs::from_arg_matches(&matches)
}

/// `config check FILE`.
fn check(file: PathBuf) -> Result<(), server::Error> {
    let args = ServeArgs::for_file(file)?;
    args.plan(None)?;
    let _ = writeln!(
        std::io::stdout(),
        "{}: valid",
        args.config.unwrap_or_default().display()
    );
    Ok(())
}

/// `config show`.
fn show(args: &ServeArgs) -> Result<(), server::Error> {
    let (config, _) = args.plan(None)?;
    let _ = std::io::stdout().write_all(config::effective(&config).as_bytes());
    Ok(())
}

impl ServeArgs {
    /// `serve --config FILE` with no other flag.
    fn for_file(file: PathBuf) -> Result<ServeArgs, clap::Error> {
        let mut args = default_serve_args()?;
        args.config = Some(file);
        Ok(args)
    }
}

/// The config the flags (and the file they name) make, checked, and its plan (its upstreams
/// counting into `metrics`).
fn build(args: &ServeArgs, metrics: Option<&Metrics>) -> Result<(Config, upstream::Plan), String> {
    let (config, plan) = args.plan(metrics)?;
    #[cfg(protogate_demo)]
    let plan = if config.server.serves_demo() {
        demo::serve_in_process(plan)?
    } else {
        plan
    };
    Ok((config, plan))
}

fn serve(args: ServeArgs) -> Result<(), server::Error> {
    // What the gateway says about itself is set up first, so the plan's upstreams count into the
    // metrics; [metrics] and [log] take effect at start.
    let (first, _) = args.config()?;
    let observing = observe::Observing::new(&first);
    observe::init_logging(&first.log);
    let metrics = observing.metrics().cloned();
    let (config, plan) = build(&args, metrics.as_ref())?;
    // Spans are exported from a thread of their own, started once: `[tracing]` changed by a
    // reload takes effect at the next start.
    let traces = plan.tracing().map(|plan| plan.start()).transpose()?;
    if let (Some(traces), Some(metrics)) = (&traces, &metrics) {
        traces.count_into(metrics);
    }
    let live = Arc::new(reload::Live::new(plan, &config));
    let drain = protogate::Drain::new();
    let admin = match &config.admin {
        Some(admin) => Some(std::net::TcpListener::bind(
            admin.listen.unwrap_or(config::Admin::DEFAULT_LISTEN),
        )?),
        None => None,
    };
    let listeners = bind(&config)?;
    let mut addresses = Vec::with_capacity(listeners.len());
    for listener in &listeners {
        let scheme = if listener.tls.is_some() {
            "https"
        } else {
            "http"
        };
        addresses.push(format!("{scheme}://{}", listener.socket.local_addr()?));
    }
    let address = listeners[0].socket.local_addr()?;
    let options = server::Options {
        workers: config
            .server
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
        header_read_timeout: config
            .server
            .header_read_timeout
            .map_or(server::Options::DEFAULT_HEADER_READ_TIMEOUT, |span| span.0),
        send_timeout: config
            .server
            .send_timeout
            .map_or(server::Options::DEFAULT_SEND_TIMEOUT, |span| span.0),
        generation: Some(live.generation()),
        max_connections: config
            .server
            .max_connections
            .map_or(server::Options::DEFAULT_MAX_CONNECTIONS, NonZeroUsize::get),
        runtimes: server::Runtimes::default(),
    };
    if let Some(metrics) = &metrics {
        process_metrics(metrics, &options.runtimes);
    }
    // The banner is a courtesy: a closed stdout must not stop the server.
    let mut banner = format!("protogate listening on {}\n", addresses[0]);
    for other in &addresses[1..] {
        banner.push_str(&format!("  also listening on {other}\n"));
    }
    if let Some(admin) = admin {
        let admin_address = admin.local_addr()?;
        let paths = if metrics.is_some() {
            "/healthz, /readyz, /config, /metrics"
        } else {
            "/healthz, /readyz, /config"
        };
        banner.push_str(&format!("  admin on http://{admin_address} ({paths})\n"));
        let router = admin::router(Arc::clone(&live), drain.clone(), metrics.clone());
        serve_admin(admin, router, &options.runtimes)?;
    }
    for line in live.plan().describe() {
        banner.push_str(&format!("  {line}\n"));
    }
    banner.push_str(&try_lines(address, config.server.serves_demo()));
    let started = addresses.join(", ");
    let announce = move || {
        tracing::info!(listening = %started, version = env!("CARGO_PKG_VERSION"), "protogate started");
        let mut stdout = std::io::stdout();
        let _ = stdout
            .write_all(banner.as_bytes())
            .and_then(|()| stdout.flush());
    };
    let (gateway_live, gateway_drain) = (Arc::clone(&live), drain.clone());
    let mut observe_layer = observing.layer();
    if let Some(traces) = &traces {
        observe_layer = observe_layer.observer(traces.tracer().clone());
    }
    let app: Arc<server::MakeApp> = Arc::new(move || {
        let server = gateway_live.server();
        let plan = gateway_live.plan();
        let gateway = plan.gateway()?.drain_on(&gateway_drain);
        // The document says what this gateway answers: statuses, headers, credentials, errors.
        let document = plan.openapi(&gateway, docs::openapi());
        let mut router = gateway.into_router();
        if let Some(error_body) = plan.error_body() {
            router = router.layer(error_body.layer());
        }
        if server.serves_docs() {
            router = router.merge(docs::router(document));
        }
        #[cfg(protogate_demo)]
        if server.serves_demo() {
            router = router.merge(demo::page());
        }
        // Outermost: every request is observed (counted, logged, traced), routed or not. The
        // state given turns the docs' handlers into services once, not at every request.
        Ok(router.layer(observe_layer.clone()).with_state(()))
    });
    let shutdown_timeout = config
        .server
        .shutdown_timeout
        .map_or(DEFAULT_SHUTDOWN_TIMEOUT, |span| span.0);
    let file = args.config.clone();
    let served = server::run(listeners, options, app, announce, async move {
        // Reloads go on until a stop signal.
        let reloads = reload::watch(live, file, metrics.clone(), move || {
            build(&args, metrics.as_ref())
        });
        tokio::select! {
            () = stop_signal() => {}
            () = reloads => {}
        }
        shut_down(&drain, shutdown_timeout);
    });
    // Every request is done: the spans still queued go out before the process ends.
    if let Some(traces) = traces {
        let stats = traces.shut_down(SPAN_FLUSH_TIMEOUT.min(shutdown_timeout));
        tracing::info!(
            exported = stats.exported,
            dropped = stats.dropped,
            failed = stats.failed,
            "spans exported"
        );
    }
    served
}

/// How long the spans queued at shutdown may take to be exported.
const SPAN_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The public listeners the config asks for, bound (TLS files read): its `[[listeners]]`, or
/// the one `[server] listen` (127.0.0.1:8080 by default).
fn bind(config: &Config) -> Result<Vec<server::Listener>, server::Error> {
    if config.listeners.is_empty() {
        let listen = config
            .server
            .listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        return Ok(vec![std::net::TcpListener::bind(listen)?.into()]);
    }
    config
        .listeners
        .iter()
        .map(|listener| {
            let tls = listener
                .tls
                .as_ref()
                .map(|tls| protogate_gateway::listen::Tls::load(&tls.cert, &tls.key))
                .transpose()?;
            Ok(server::Listener {
                socket: std::net::TcpListener::bind(listener.listen)?,
                tls,
            })
        })
        .collect()
}

/// How long calls in flight may take to finish after SIGTERM, unless the config says otherwise.
const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The start of a shutdown: readiness fails and open streams end now; the listener stops
/// accepting as this returns, and calls in flight have `timeout` to finish before the process
/// exits with an error, cutting them.
fn shut_down(drain: &protogate::Drain, timeout: std::time::Duration) {
    tracing::info!(
        ?timeout,
        "shutting down: no new connections; open streams end; calls in flight may finish"
    );
    drain.start();
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        eprintln!("protogate: calls still in flight {timeout:?} after the shutdown began: cut");
        std::process::exit(1);
    });
}

/// Counts the process (open files, memory, CPU) and the tasks alive on `runtimes` into
/// `metrics`: what shows that nothing leaks, scraped from `/metrics`.
fn process_metrics(metrics: &Metrics, runtimes: &server::Runtimes) {
    metrics.process_metrics();
    let runtimes = runtimes.clone();
    metrics.polled_gauge(
        "runtime_alive_tasks",
        "Tasks alive on the gateway's runtimes (workers, acceptor, admin)",
        move || i64::try_from(runtimes.alive_tasks()).unwrap_or(i64::MAX),
    );
}

/// Serves the admin routes on `listener` from a thread of their own, whose runtime also runs the
/// upstreams' health checks and name resolution that readiness asks for.
fn serve_admin(
    listener: std::net::TcpListener,
    router: axum::Router,
    runtimes: &server::Runtimes,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtimes.add(runtime.handle().clone());
    std::thread::Builder::new()
        .name("protogate-admin".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(error) = axum::serve(listener, router).await {
                            tracing::error!(%error, "the admin listener stopped");
                        }
                    }
                    Err(error) => tracing::error!(%error, "the admin listener cannot start"),
                }
            });
        })?;
    Ok(())
}

/// The banner's suggestions of what to open first.
#[cfg(protogate_demo)]
fn try_lines(address: SocketAddr, demo: bool) -> String {
    if !demo {
        return format!(
            "try: open http://{address}{} in a browser (the API's documentation)\n",
            docs::DOCS_PATH
        );
    }
    format!(
        "try: curl -s http://{address}{}\n     or open http://{address}{} and http://{address}{} in a browser\n",
        demo::EXAMPLE_PATH,
        demo::PAGE_PATH,
        docs::DOCS_PATH
    )
}

/// The banner's suggestions of what to open first.
#[cfg(not(protogate_demo))]
fn try_lines(address: SocketAddr, _demo: bool) -> String {
    format!(
        "try: open http://{address}{} in a browser (the API's documentation; `protogate routes` lists every route)\n",
        docs::DOCS_PATH
    )
}
