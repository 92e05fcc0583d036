use clap::{CommandFactory, Parser};
use ringmaster::cli::{run_client, Cli, Command};
use ringmaster::config::plan::Plan;
use ringmaster::daemon;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            format,
            log_level,
            log_format,
            init,
            http,
        } => {
            // Loaded before logging starts, so that its `log_format` can apply; a
            // config error is printed as a report, not logged.
            let Some(mut cfg) = daemon::load_or_report(&config, format) else {
                return ExitCode::from(1);
            };
            let log_format = log_format
                .or(cfg.global.log_format.map(daemon::LogFormat::from))
                .unwrap_or_default();
            daemon::init_logging(log_format, log_level.as_deref());
            // `run --endpoint ADDR` binds the control channel there instead of the config's endpoint.
            if let Some(ep) = cli.conn.endpoint {
                if let Some(problem) = ringmaster::config::endpoint_problem(&ep) {
                    eprintln!("error: --endpoint: {problem}");
                    return ExitCode::from(1);
                }
                cfg.global.endpoint = Some(ep);
            }
            if let Some(addr) = http {
                cfg.global.http_endpoint = Some(addr);
            }
            let code = daemon::run(cfg, init);
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
        Command::Convert { config } => match ringmaster::config::circus_ini::convert(&config) {
            Ok(c) => {
                use ringmaster::config::circus_ini::Severity;
                let mut failed = false;
                for d in &c.diagnostics {
                    let what = if d.severity == Severity::Error {
                        "error"
                    } else {
                        "warning"
                    };
                    failed |= d.severity == Severity::Error;
                    eprintln!("{what}: {}: {}", d.location, d.message);
                }
                println!("# Converted from {} by `ringmaster convert`.", config.display());
                print!("{}", ringmaster::config::circus_ini::to_toml_string(&c.table));
                if failed {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Dashboard { no_browser } => ringmaster::cli::dashboard(no_browser),
        Command::UpgradePreflight {
            config,
            state_version,
        } => match ringmaster::upgrade::preflight::answer(&config, state_version) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ringmaster", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Top(args) => ringmaster::cli::run_top(args, cli.conn),
        Command::Control(c) => run_client(c, cli.conn),
    }
}
