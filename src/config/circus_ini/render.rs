//! Writing a converted table as a readable TOML document.

use toml::Table;

fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn quote_key(k: &str) -> String {
    if is_bare_key(k) {
        return k.to_string();
    }
    let mut s = String::with_capacity(k.len() + 2);
    s.push('"');
    for c in k.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c if c.is_control() => s.push_str(&format!("\\u{:04X}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A dotted TOML key path, quoting segments that are not bare keys.
pub fn key_path(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| quote_key(s))
        .collect::<Vec<_>>()
        .join(".")
}

/// Renders a converted table as a readable TOML document: `[ringmaster]`,
/// `[env]`, sockets, then watchers (sorted by name), with each table's
/// important keys first.
pub fn to_toml_string(table: &Table) -> String {
    render(table, &|_, _| None)
}

/// Keys shown first, in this order, in whichever table has them.
const KEY_ORDER: &[&str] = &[
    "endpoint",
    "pubsub_endpoint",
    "stats_endpoint",
    "statsd",
    "cmd",
    "args",
    "shell",
    "shell_args",
    "executable",
    "working_dir",
    "numprocesses",
    "singleton",
    "class",
    "filename",
    "host",
    "port",
    "path",
    "family",
    "type",
];

/// Orders the sockets or watchers of a group: (file index, line) when known.
pub(super) type Rank<'a> = &'a dyn Fn(&str, &str) -> Option<(usize, usize)>;

pub(super) fn render(table: &Table, rank: Rank<'_>) -> String {
    let mut out = String::new();
    // Top-level plain values must precede every header.
    write_values(&mut out, table);
    let mut top: Vec<&String> = table.keys().filter(|k| table[k.as_str()].is_table()).collect();
    let pos = |k: &str| {
        ["ringmaster", "env", "sockets", "watchers"]
            .iter()
            .position(|x| *x == k)
            .unwrap_or(usize::MAX)
    };
    top.sort_by_key(|k| (pos(k), (*k).clone()));
    for k in top {
        let Some(sub) = table[k.as_str()].as_table() else {
            continue;
        };
        if k == "sockets" || k == "watchers" {
            let mut names: Vec<&String> = sub.keys().collect();
            names.sort_by_key(|n| (rank(k, n).unwrap_or((usize::MAX, 0)), (*n).clone()));
            for n in names {
                match sub[n.as_str()].as_table() {
                    Some(t) => write_table(&mut out, &[k.as_str(), n.as_str()], t),
                    None => {
                        // Not produced by convert(); keep it rather than lose it.
                        write_table(
                            &mut out,
                            &[k.as_str()],
                            &Table::from_iter([(n.clone(), sub[n.as_str()].clone())]),
                        )
                    }
                }
            }
        } else {
            write_table(&mut out, &[k.as_str()], sub);
        }
    }
    out
}

fn write_values(out: &mut String, t: &Table) {
    let mut keys: Vec<&String> = t.keys().filter(|k| !t[k.as_str()].is_table()).collect();
    let pos = |k: &str| KEY_ORDER.iter().position(|x| *x == k).unwrap_or(usize::MAX);
    keys.sort_by_key(|k| (pos(k), (*k).clone()));
    for k in keys {
        out.push_str(&quote_key(k));
        out.push_str(" = ");
        out.push_str(&t[k.as_str()].to_string());
        out.push('\n');
    }
}

fn write_table(out: &mut String, path: &[&str], t: &Table) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push('[');
    out.push_str(&key_path(path));
    out.push_str("]\n");
    write_values(out, t);
    for (k, v) in t {
        if let Some(sub) = v.as_table() {
            let mut p = path.to_vec();
            p.push(k.as_str());
            write_table(out, &p, sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths() {
        assert_eq!(key_path(&["watchers", "web", "cmd"]), "watchers.web.cmd");
        assert_eq!(key_path(&["watchers", "a.b", "cmd"]), "watchers.\"a.b\".cmd");
        assert_eq!(key_path(&["watchers", "my app"]), "watchers.\"my app\"");
    }
}
