//! `ringmaster dashboard`: prints the web dashboard's login URL, read from
//! the `http.json` the daemon writes (0600) in its private runtime
//! directory, and opens it with `$BROWSER` or `xdg-open` when there is one.

use serde_json::Value;
use std::process::{Command, ExitCode, Stdio};

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

pub fn dashboard(no_browser: bool) -> ExitCode {
    let dir = crate::control::transport::default_runtime_dir();
    let path = dir.join(crate::http::RUNTIME_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "error: cannot read {}: {e}\n(is the daemon running with http_endpoint set, as this user?)",
                path.display()
            );
            return ExitCode::from(1);
        }
    };
    let info: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let (Some(addr), Some(token), Some(pid)) = (
        info["addr"].as_str(),
        info["token"].as_str(),
        info["pid"].as_i64(),
    ) else {
        eprintln!("error: {}: no addr, token or pid", path.display());
        return ExitCode::from(1);
    };
    // SAFETY: signal 0 only checks that the process exists.
    let alive = i32::try_from(pid).is_ok_and(|p| unsafe { libc::kill(p, 0) } == 0);
    if !alive {
        eprintln!(
            "error: {} is left from daemon {pid}, which is not running",
            path.display()
        );
        return ExitCode::from(1);
    }
    let url = format!("http://{addr}/?token={token}");
    println!("{url}");
    if no_browser {
        return ExitCode::SUCCESS;
    }
    let browser = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.is_empty())
        .or_else(|| on_path("xdg-open").then(|| "xdg-open".to_string()));
    if let Some(b) = browser {
        let spawned = Command::new(&b)
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!("warning: cannot start {b}: {e}");
        }
    }
    ExitCode::SUCCESS
}
