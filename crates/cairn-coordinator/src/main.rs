//! `cairn-coordinator`: thin entry point; everything lives in the library.

use std::process::ExitCode;

use cairn_coordinator::{Config, ProcessEnv};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::parse(std::env::args_os(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<clap::Error>() {
                let _ = ce.print();
                return if ce.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            eprintln!("cairn-coordinator: {e:#}");
            return ExitCode::from(2);
        }
    };
    cairn_coordinator::init_logging(config.log_format);
    #[cfg(not(feature = "etcd"))]
    if config.store == cairn_coordinator::StoreKind::Etcd {
        eprintln!(
            "cairn-coordinator: {}",
            cairn_coordinator::ETCD_FEATURE_HINT
        );
        return ExitCode::from(2);
    }
    match cairn_coordinator::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fatal: {e:#}");
            eprintln!("cairn-coordinator: {e:#}");
            ExitCode::from(1)
        }
    }
}
