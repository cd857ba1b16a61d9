//! `heimdall templates`: the templates mined from a tenant's messages, from a data
//! directory or (`--connect`) from a server's `templates` Flight action.

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
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        writeln!(out, "{v}")?;
        out.flush()?;
        return Ok(());
    }
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
