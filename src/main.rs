use clap::{Parser, Subcommand};
use ringmaster::config::plan::Plan;
use ringmaster::config::Format;
use ringmaster::daemon::{self, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// Ringmaster: a process and socket supervisor (the successor to Circus).
#[derive(Parser)]
#[command(name = "ringmaster", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground until SIGTERM/SIGINT.
    Run {
        /// Config file (TOML, or Circus ini by extension).
        config: PathBuf,
        /// Config syntax; guessed from the extension when omitted.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Log level or filter (e.g. "debug", "ringmaster=trace"); default RUST_LOG, then "info".
        #[arg(long)]
        log_level: Option<String>,
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// Validate a config file and print the resolved plan; exit 0 if valid, 1 if not.
    Check {
        config: PathBuf,
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            format,
            log_level,
            log_format,
        } => {
            daemon::init_logging(log_format, log_level.as_deref());
            let Some(cfg) = daemon::load_or_report(&config, format) else {
                return ExitCode::from(1);
            };
            let code = daemon::run(cfg);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Command::Check { config, format } => match daemon::load_or_report(&config, format) {
            Some(cfg) => {
                print!("{}", Plan(&cfg));
                println!("ok");
                ExitCode::SUCCESS
            }
            None => ExitCode::from(1),
        },
    }
}
