//! `govctl`: the local control plane and operator commands of agent-governance.

use clap::Parser;

mod cli;
mod commands;
mod example;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let _logs = commands::init_tracing(&args);
    match commands::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
