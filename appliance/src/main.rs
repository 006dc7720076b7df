//! `mantisd`: parse the configuration, start logging, and hand over to the lifecycle.

use std::process::ExitCode;

use clap::Parser;
use mantisd::config::{Cli, Config};
use mantisd::lifecycle;

/// mimalloc instead of glibc's malloc: a pipelined run of commands allocates and frees its
/// futures in one large block, and glibc consolidated its fast bins on every such block
/// (`malloc_consolidate`, 7% of a pipelined GET load's CPU); per-thread heaps also suit
/// threads that each own a shard.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::load(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mantisd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = lifecycle::init_logging(config.log_format, &config.log_level) {
        eprintln!("mantisd: {e}");
        return ExitCode::from(2);
    }
    exit_on_panic();
    match lifecycle::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mantisd failed");
            eprintln!("mantisd: {e}");
            lifecycle::notify(&[sd_notify::NotifyState::Status(&format!("failed: {e}"))]);
            ExitCode::FAILURE
        }
    }
}

/// A panic on a shard's executor thread leaves that shard dead and every request for its keys
/// hanging. For an appliance under a service manager the right answer is to exit at once (the
/// WAL makes acknowledged writes safe) and let `Restart=on-failure` bring it back.
fn exit_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!(panic = %info, "a thread panicked: exiting so that the service restarts");
        std::process::exit(70);
    }));
}
