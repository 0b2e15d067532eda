//! The `knockoff` command: parses arguments, sets up logging on stderr, runs, maps errors to exit codes.

use clap::Parser;

fn main() {
    let cli = knockoff::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KNOCKOFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let code = match knockoff::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("knockoff: error: {}", knockoff::escape(&format!("{e:#}")));
            1
        }
    };
    std::process::exit(code);
}
