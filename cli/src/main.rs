//! `govctl`: the local control plane and operator commands of agent-governance.

use clap::Parser;

mod cli;
mod commands;
mod example;

fn main() -> std::process::ExitCode {
    // A usage error exits 1 like any other error: 2 is `govctl authorize`'s
    // "denied", which a script must not confuse with a typo.
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    let _logs = commands::init_tracing(&args);
    match commands::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
