//! `heimdall query`: run a query over a data directory and print the result.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use engine::model::Tenant;
use query::{Cell, Limits, QueryError, Table};

/// How results are printed.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub(super) enum QueryOutput {
    /// Aligned columns with a header.
    Table,
    /// One JSON object per row (null cells left out).
    Jsonl,
    /// Comma-separated values with a header (RFC 4180 quoting).
    Csv,
}

pub(super) struct QueryArgs<'a> {
    pub(super) connect: Option<&'a str>,
    pub(super) data_dir: &'a Path,
    pub(super) tenant: &'a str,
    pub(super) output: QueryOutput,
    pub(super) timeout: Duration,
    pub(super) max_rows: usize,
    pub(super) text: &'a str,
}

pub(super) fn run(a: QueryArgs<'_>) -> Result<()> {
    let tenant = Tenant::new(a.tenant).context("--tenant")?;
    let parse_error = |e: query::ParseError| {
        // Point at the place in the query.
        let caret = " ".repeat(e.column.saturating_sub(1));
        anyhow::anyhow!("{e}\n  {}\n  {caret}^", a.text)
    };
    let table = match a.connect {
        Some(addr) => {
            // Checked here first, so a typo gets the same answer as embedded.
            query::parse(a.text, 0).map_err(parse_error)?;
            super::remote::query(addr, tenant.as_str(), a.text, a.timeout)?
        }
        None => {
            let engine = super::data::open(a.data_dir)?;
            let limits = Limits {
                deadline: a.timeout,
                max_rows: a.max_rows,
                ..Limits::default()
            };
            match query::query(&engine, &tenant, a.text, &limits) {
                Ok(t) => t,
                Err(QueryError::Parse(e)) => return Err(parse_error(e)),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match a.output {
        QueryOutput::Jsonl => {
            for row in &table.rows {
                writeln!(out, "{}", row_json(&table, row))?;
            }
        }
        QueryOutput::Csv => write_csv(&mut out, &table)?,
        QueryOutput::Table => write_table(&mut out, &table)?,
    }
    out.flush()?;
    Ok(())
}

fn cell_json(column: &str, c: &Cell) -> Option<serde_json::Value> {
    Some(match c {
        Cell::Null => return None,
        // `_stream` is the labels object, not its text.
        Cell::Str(s) if column == "_stream" => {
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.clone()))
        }
        Cell::Str(s) => serde_json::Value::String(s.clone()),
        Cell::I64(x) => serde_json::Value::from(*x),
        Cell::F64(x) => serde_json::Number::from_f64(*x)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Cell::Bool(b) => serde_json::Value::Bool(*b),
    })
}

fn row_json(t: &Table, row: &[Cell]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (c, v) in t.columns.iter().zip(row) {
        if let Some(v) = cell_json(c, v) {
            m.insert(c.clone(), v);
        }
    }
    serde_json::Value::Object(m)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv(out: &mut impl Write, t: &Table) -> io::Result<()> {
    let header: Vec<String> = t.columns.iter().map(|c| csv_field(c)).collect();
    writeln!(out, "{}", header.join(","))?;
    for row in &t.rows {
        let cells: Vec<String> = row
            .iter()
            .map(|c| csv_field(&c.text().unwrap_or_default()))
            .collect();
        writeln!(out, "{}", cells.join(","))?;
    }
    Ok(())
}

fn write_table(out: &mut impl Write, t: &Table) -> io::Result<()> {
    // Control characters would break the layout: shown escaped (only they: quotes
    // and backslashes print as they are, so `_stream` reads as its JSON).
    let show = |s: String| {
        let mut o = String::with_capacity(s.len());
        for ch in s.chars() {
            if ch.is_control() {
                o.extend(ch.escape_default());
            } else {
                o.push(ch);
            }
        }
        o
    };
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| show(c.text().unwrap_or_default()))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = t.columns.iter().map(|c| c.chars().count()).collect();
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, items: &[String]| -> io::Result<()> {
        let last = items.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (item, w)) in items.iter().zip(&widths).enumerate() {
            s.push_str(item);
            if i < last {
                s.push_str(&" ".repeat(w.saturating_sub(item.chars().count()) + 2));
            }
        }
        writeln!(out, "{s}")
    };
    line(out, &t.columns)?;
    for r in &cells {
        line(out, r)?;
    }
    Ok(())
}
