//! `cairn-premain [--] PROGRAM [ARGS...]`: activate this marble with the Coordinator, write the
//! returned Files, set Env and exec PROGRAM.
//!
//! Exit codes: 2 usage/configuration/local I/O error before activation, 1 activation refused or
//! failed, or the program cannot be started; otherwise the exit code is PROGRAM's (exec).

use std::convert::Infallible;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use cairn_marble::client::{activate_with_retry, CoordinatorTrust, RetryPolicy};
use cairn_marble::config::{PlatformConfig, PremainConfig, ProcessEnv, RootSource};
use cairn_marble::identity::ActivationIdentity;
use cairn_marble::launch::{env_pairs, plan_argv, resolve_program, write_files};
use cairn_marble::{uuid_file, MarbleError};
use cairn_platform::Issuer;

const USAGE: &str = "\
Usage: cairn-premain [--] PROGRAM [ARGS...]

Activates this marble with the Cairn (MarbleRun-compatible) Coordinator, writes the Files and sets
the Env from the manifest, then executes PROGRAM. A non-empty manifest Argv replaces ARGS (argv[0]
included) but never changes which executable runs.

Environment:
  EDG_MARBLE_TYPE              marble name in the manifest (required)
  EDG_MARBLE_COORDINATOR_ADDR  Coordinator mesh address (default localhost:2001)
  EDG_MARBLE_DNS_NAMES         comma list of names for the marble certificate (default localhost)
  EDG_MARBLE_UUID_FILE         where the marble UUID is kept (default ./uuid)
  CAIRN_COORDINATOR_ROOT_CA    Coordinator root PEM file to pin (unset: not verified, warning)
  CAIRN_SIM_DIR                simulated platform dir (unset: Gramine /dev/attestation)
  CAIRN_SIM_PRODUCT_ID, CAIRN_SIM_SVN, CAIRN_SIM_DEBUG=1   simulated identity of PROGRAM
  EDG_LOG_FORMAT=json          JSON logs

Example:
  CAIRN_SIM_DIR=./data/sim EDG_MARBLE_TYPE=kv-server \\
    cairn-premain cairn-example-kv-server

Exit codes: 2 usage/configuration error, 1 activation refused/failed or PROGRAM cannot start.";

/// A failure with the exit code it maps to.
struct Fatal {
    code: u8,
    message: String,
}

impl Fatal {
    fn usage(message: impl Into<String>) -> Fatal {
        Fatal {
            code: 2,
            message: message.into(),
        }
    }
    fn failed(message: impl Into<String>) -> Fatal {
        Fatal {
            code: 1,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    cairn_crypto::install_default_provider();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let cmdline = match parse_args(args) {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("cairn-premain: error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cfg = match PremainConfig::from_source(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cairn-premain: error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.log_json);
    match run(&cfg, &cmdline) {
        // run() only returns on failure: success execs PROGRAM.
        Ok(never) => match never {},
        Err(f) => {
            tracing::error!("{}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// `None` = help requested.
fn parse_args(mut args: Vec<OsString>) -> Result<Option<Vec<OsString>>, String> {
    match args.first().and_then(|a| a.to_str()) {
        Some("--") => {
            args.remove(0);
        }
        Some("-h") | Some("--help") => return Ok(None),
        Some("-V") | Some("--version") => {
            println!("cairn-premain {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0);
        }
        Some(s) if s.starts_with('-') => {
            return Err(format!(
                "unknown option {s:?}; to run a program whose name starts with '-', put '--' first"
            ))
        }
        _ => {}
    }
    Ok(Some(args))
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cfg: &PremainConfig, cmdline: &[OsString]) -> Result<Infallible, Fatal> {
    let cwd = std::env::current_dir()
        .map_err(|e| Fatal::usage(format!("cannot read the working directory: {e}")))?;
    let path_var = std::env::var_os("PATH");

    // The executable that will run; in simulation it is also what gets measured.
    let program: Option<PathBuf> = match cmdline.first() {
        Some(name) => Some(
            resolve_program(name, path_var.as_deref(), &cwd)
                .map_err(|e| Fatal::usage(e.to_string()))?,
        ),
        None => None,
    };

    let trust = coordinator_trust(cfg)?;
    let issuer = make_issuer(cfg, program.as_deref())?;
    tracing::info!(
        marble_type = %cfg.marble_type,
        coordinator = %cfg.coordinator_addr,
        identity = %issuer.identity_summary(),
        "activating marble"
    );

    let (uuid, created) = uuid_file::load_or_create(&cwd.join(&cfg.uuid_file))
        .map_err(|e| Fatal::usage(e.to_string()))?;
    tracing::info!(%uuid, new = created, file = %cfg.uuid_file.display(), "marble UUID");

    let identity =
        ActivationIdentity::generate(&cfg.dns_names).map_err(|e| Fatal::usage(e.to_string()))?;
    let raw_quote = issuer
        .quote(&identity.report_data())
        .map_err(|e| Fatal::failed(format!("quote generation failed: {e}")))?;
    let quote = cairn_attest::oe::wrap(&raw_quote);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal::usage(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime
        .block_on(activate_with_retry(
            &cfg.coordinator_addr,
            &trust,
            &identity,
            &quote,
            &cfg.marble_type,
            &uuid,
            &RetryPolicy::default(),
        ))
        .map_err(activation_failure)?;
    drop(runtime);
    let params = outcome.parameters;
    tracing::info!(
        attempts = outcome.attempts,
        files = params.files.len(),
        env = params.env.len(),
        argv = params.argv.len(),
        "activation successful"
    );

    if params.env.contains_key("MARBLE_TTLS_CONFIG") {
        return Err(Fatal::failed(
            "the manifest configures transparent TLS (\"TLS\" tags) for this marble, which \
             cairn-premain does not support; remove the marble's TLS entry or use MarbleTls",
        ));
    }
    // Decide argv before touching the file system, so an FR-37 mistake leaves nothing behind.
    let plan = plan_argv(
        program.as_deref(),
        cmdline,
        &params.argv,
        path_var.as_deref(),
        &cwd,
    )
    .map_err(|e| Fatal::failed(e.to_string()))?;
    let env = env_pairs(&params.env).map_err(|e| Fatal::failed(e.to_string()))?;
    let written = write_files(&params.files, &cwd).map_err(|e| Fatal::failed(e.to_string()))?;
    for p in &written {
        tracing::info!(path = %p.display(), "wrote file");
    }
    let names: Vec<String> = env
        .iter()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    tracing::info!(variables = ?names, "setting environment");
    tracing::info!(
        program = %plan.program.display(),
        argv0 = %plan.arg0.to_string_lossy(),
        args = plan.args.len(),
        "starting program"
    );

    let err = Command::new(&plan.program)
        .arg0(&plan.arg0)
        .args(&plan.args)
        .envs(env)
        .exec();
    Err(Fatal::failed(format!(
        "cannot execute {}: {err}",
        plan.program.display()
    )))
}

fn activation_failure(e: MarbleError) -> Fatal {
    let hint = match &e {
        MarbleError::Unreachable { .. } => {
            " (gave up after retrying; check EDG_MARBLE_COORDINATOR_ADDR and that the Coordinator runs)"
        }
        MarbleError::Rejected { code, .. } if *code == tonic::Code::FailedPrecondition => {
            " (the Coordinator has no manifest yet: run `cairn manifest set`)"
        }
        MarbleError::Rejected { code, message }
            if *code == tonic::Code::PermissionDenied && message.contains("SecurityVersion too low") =>
        {
            " (this build is older than the manifest allows: start the updated version of the program)"
        }
        MarbleError::Rejected { code, .. } if *code == tonic::Code::PermissionDenied => {
            " (check EDG_MARBLE_TYPE and that this program's measurement matches the manifest package)"
        }
        MarbleError::Tls { .. } => {
            " (does CAIRN_COORDINATOR_ROOT_CA hold this Coordinator's root certificate?)"
        }
        _ => "",
    };
    Fatal::failed(format!("activation failed: {e}{hint}"))
}

fn coordinator_trust(cfg: &PremainConfig) -> Result<CoordinatorTrust, Fatal> {
    let pem = match &cfg.coordinator_root {
        None => {
            tracing::warn!(
                "!!! CAIRN_COORDINATOR_ROOT_CA is not set: the Coordinator's certificate is NOT verified. \
                 Any server at {} could hand this marble its configuration. Set \
                 CAIRN_COORDINATOR_ROOT_CA to the root saved by `cairn verify` / `cairn certificate root`. !!!",
                cfg.coordinator_addr
            );
            return Ok(CoordinatorTrust::AcceptAny);
        }
        Some(RootSource::Inline(pem)) => pem.clone().into_bytes(),
        Some(RootSource::File(p)) => std::fs::read(p).map_err(|e| {
            Fatal::usage(format!(
                "CAIRN_COORDINATOR_ROOT_CA: cannot read {}: {e}",
                p.display()
            ))
        })?,
    };
    let trust = CoordinatorTrust::from_pem(&pem)
        .map_err(|e| Fatal::usage(format!("CAIRN_COORDINATOR_ROOT_CA: {e}")))?;
    tracing::info!(
        root_sha256 = %trust.fingerprint().unwrap_or_default(),
        "Coordinator root pinned"
    );
    Ok(trust)
}

fn make_issuer(cfg: &PremainConfig, program: Option<&Path>) -> Result<Box<dyn Issuer>, Fatal> {
    match &cfg.platform {
        PlatformConfig::Simulation {
            dir,
            product_id,
            svn,
            debug,
        } => {
            let program = program.ok_or_else(|| {
                Fatal::usage(
                    "in simulation (CAIRN_SIM_DIR set) PROGRAM is required: its executable is the \
                     measured identity; usage: cairn-premain [--] PROGRAM [ARGS...]",
                )
            })?;
            if !dir.join(cairn_platform::PLATFORM_FILE).is_file() {
                return Err(Fatal::usage(format!(
                    "CAIRN_SIM_DIR={} holds no simulated platform: point it at the Coordinator's \
                     simulated platform dir (cairn-coordinator --sim-dir, or `cairn sim init DIR`)",
                    dir.display()
                )));
            }
            let platform =
                cairn_platform::SimPlatformDir::open_at(dir, time::OffsetDateTime::now_utc())
                    .map_err(|e| Fatal::usage(format!("CAIRN_SIM_DIR={}: {e}", dir.display())))?;
            let id = platform
                .identity_for_executable(program, *product_id, *svn, *debug)
                .map_err(|e| Fatal::usage(format!("cannot measure {}: {e}", program.display())))?;
            Ok(Box::new(platform.issuer(id)))
        }
        PlatformConfig::Gramine => Ok(Box::new(cairn_platform::GramineIssuer::default())),
    }
}
