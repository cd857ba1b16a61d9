//! `heimdall templates`: the templates mined from a tenant's messages, from a data
//! directory or (`--connect`) from a server's `templates` Flight action; and
//! `heimdall tasks`: a server's background tasks (the `tasks` action).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use engine::model::Tenant;

pub(super) fn run(
    data_dir: &Path,
    connect: Option<&str>,
    tenant: &str,
    limit: usize,
    json: bool,
) -> Result<()> {
    let v = match connect {
        Some(addr) => super::remote::action(
            addr,
            "templates",
            serde_json::json!({ "tenant": tenant, "limit": limit }),
            Duration::from_secs(60),
        )?,
        None => {
            let t = Tenant::new(tenant).context("--tenant")?;
            let engine = super::data::open(data_dir)?;
            crate::serve::flight::templates_json(&engine, &t, limit)
        }
    };
    let Some(mut out) = stdout_unless_json(&v, json)? else {
        return Ok(());
    };
    let list = v["templates"].as_array().cloned().unwrap_or_default();
    writeln!(
        out,
        "{:>7} {:>10}  {:<20}  {:<20}  TEMPLATE",
        "ID", "COUNT", "FIRST SEEN", "LAST SEEN"
    )?;
    let short = |t: &serde_json::Value| {
        // Seconds are enough at a glance: 2026-11-26T21:50:26.
        let s = t.as_str().unwrap_or("");
        s.get(..19).unwrap_or(s).to_string()
    };
    for t in &list {
        let folded = match t["alias_of"].as_u64() {
            Some(a) => format!("  (folded into {a})"),
            None => String::new(),
        };
        writeln!(
            out,
            "{:>7} {:>10}  {:<20}  {:<20}  {}{folded}",
            // As text: a JSON value's Display ignores the column widths.
            t["id"].to_string(),
            t["count"].to_string(),
            short(&t["first_seen"]),
            short(&t["last_seen"]),
            t["text"].as_str().unwrap_or("")
        )?;
    }
    let total = v["total"].as_u64().unwrap_or(0);
    if total as usize > list.len() {
        writeln!(
            out,
            "({} of {total} templates; --limit N for more)",
            list.len()
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `heimdall tasks`: the `tasks` action of the server at `addr`, as a table.
pub(super) fn tasks(addr: &str, json: bool) -> Result<()> {
    let v = super::remote::action(
        addr,
        "tasks",
        serde_json::json!({}),
        Duration::from_secs(30),
    )?;
    let Some(mut out) = stdout_unless_json(&v, json)? else {
        return Ok(());
    };
    let text = |x: &serde_json::Value| match x {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    };
    writeln!(
        out,
        "{:<24} {:<12} {:>8} {:>9} {:>10}  LAST ERROR",
        "TASK", "STATE", "RUNS", "FAILURES", "LAST (S)"
    )?;
    for t in v["tasks"].as_array().cloned().unwrap_or_default() {
        writeln!(
            out,
            "{:<24} {:<12} {:>8} {:>9} {:>10}  {}",
            text(&t["name"]),
            text(&t["state"]),
            text(&t["runs"]),
            text(&t["failures"]),
            text(&t["last_duration_seconds"]),
            text(&t["last_error"]),
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Standard output for a table; `None` once `v` was printed as JSON instead.
fn stdout_unless_json(
    v: &serde_json::Value,
    json: bool,
) -> Result<Option<std::io::BufWriter<std::io::StdoutLock<'static>>>> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        writeln!(out, "{v}")?;
        out.flush()?;
        return Ok(None);
    }
    Ok(Some(out))
}
