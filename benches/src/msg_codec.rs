//! Issue 8, deliverable 5: how big is `_msg` stored as the miner's template id plus
//! its variables, against the split the segment format uses now (CLP-style: the
//! tokens with a digit are the variables, everything else is the "logtype")?
//!
//! Both splits go through one encoder, so only the split differs: per system (one
//! 2,000-line block), the distinct logtypes (text with a placeholder per variable,
//! separators kept: lossless), each message's logtype ordinal, each variable as an
//! ordinal into the block's sorted dictionary of variable values, and that
//! dictionary; every stream zstd-compressed at the segment's level. The miner's
//! logtype is its template with the message's own whitespace between tokens.
//!
//! `cargo run --release -p heimdall-benches --bin msg-codec -- [--level L] [LOGHUB_DIR]`

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use engine::ingest::{parse_raw, IngestContext};
use engine::template::{Miner, MinerConfig};

#[derive(Parser, Debug)]
struct Args {
    /// zstd level of every stream.
    #[arg(long, default_value_t = 3)]
    level: i32,
    /// Loghub sample directory.
    #[arg(default_value = "../shared/data/loghub")]
    loghub: PathBuf,
}

const SYSTEMS: [&str; 10] = [
    "Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "Linux", "OpenSSH", "Spark", "Windows",
];

/// Placeholder of a variable in a logtype.
const PH: char = '\u{11}';

/// A message split into its logtype and variables.
struct Split {
    logtype: String,
    vars: Vec<String>,
}

/// `msg` split at `toks` (slices of it, in order): each token marked a variable
/// becomes a placeholder in the logtype; everything else, separators included,
/// stays in it.
fn split<'a>(msg: &str, toks: impl Iterator<Item = (&'a str, bool)>) -> Split {
    let mut logtype = String::with_capacity(msg.len());
    let mut vars = Vec::new();
    let mut at = 0;
    for (tok, variable) in toks {
        let start = tok.as_ptr() as usize - msg.as_ptr() as usize;
        logtype.push_str(&msg[at..start]);
        if variable {
            logtype.push(PH);
            vars.push(tok.to_string());
        } else {
            logtype.push_str(tok);
        }
        at = start + tok.len();
    }
    logtype.push_str(&msg[at..]);
    Split { logtype, vars }
}

/// The segment's split: tokens ([`engine::token`]) with a digit are variables.
fn clp_split(msg: &str) -> Split {
    split(
        msg,
        engine::token::tokens(msg).map(|t| (t, t.chars().any(char::is_numeric))),
    )
}

/// The miner's split: the tokens ([`engine::template::tokens`]) at its
/// template's `<*>` are variables.
fn miner_split(msg: &str, template: &[&str]) -> Split {
    let fits = engine::template::tokens(msg).count() == template.len();
    split(
        msg,
        engine::template::tokens(msg)
            .enumerate()
            .map(|(i, t)| (t, fits && template.get(i) == Some(&"<*>"))),
    )
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Bytes of the block encoded from `splits`: (logtype dictionary, logtype
/// ordinals, variable ordinals, variable dictionary), and the logtype count.
fn encode(splits: &[Split], level: i32) -> Result<([usize; 4], usize)> {
    let types: BTreeSet<&str> = splits.iter().map(|s| s.logtype.as_str()).collect();
    let type_ord: BTreeMap<&str, u64> = types.iter().zip(0..).map(|(t, i)| (*t, i)).collect();
    let values: BTreeSet<&str> = splits
        .iter()
        .flat_map(|s| s.vars.iter().map(String::as_str))
        .collect();
    let value_ord: BTreeMap<&str, u64> = values.iter().zip(0..).map(|(v, i)| (*v, i)).collect();
    let (mut ords, mut var_ords) = (Vec::new(), Vec::new());
    for s in splits {
        varint(type_ord[s.logtype.as_str()], &mut ords);
        for v in &s.vars {
            varint(value_ord[v.as_str()], &mut var_ords);
        }
    }
    let join = |set: &BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join("\n");
    let z = |b: &[u8]| zstd::bulk::compress(b, level).map(|c| c.len());
    Ok((
        [
            z(join(&types).as_bytes())?,
            z(&ords)?,
            z(&var_ords)?,
            z(join(&values).as_bytes())?,
        ],
        types.len(),
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ctx = IngestContext {
        now_ns: 1_764_115_200_000_000_000,
        ..Default::default()
    };
    println!("| system | zstd -3 | zstd -19 | CLP split: logtypes | bytes (dict / ords / var ords / var dict) | miner split: logtypes | bytes (dict / ords / var ords / var dict) | miner / CLP |");
    println!("|---|---:|---:|---:|---|---:|---|---:|");
    let (mut sum_clp, mut sum_miner, mut sum_z3, mut sum_z19) = (0, 0, 0, 0);
    for s in SYSTEMS {
        let text = std::fs::read_to_string(args.loghub.join(s).join(format!("{s}_2k.log")))
            .with_context(|| format!("reading {s}"))?;
        let msgs: Vec<String> = text.lines().map(|l| parse_raw(l, &ctx).msg).collect();
        let mut miner = Miner::new(MinerConfig::default());
        let ids: Vec<u64> = msgs.iter().map(|m| miner.mine(m, 0)).collect();
        // The templates as of the block's flush.
        let texts: BTreeMap<u64, String> = miner
            .templates()
            .iter()
            .map(|t| (t.id, miner.text(t)))
            .collect();
        let clp: Vec<Split> = msgs.iter().map(|m| clp_split(m)).collect();
        let mined: Vec<Split> = msgs
            .iter()
            .zip(&ids)
            .map(|(m, id)| {
                let t: Vec<&str> = texts
                    .get(id)
                    .map_or_else(Vec::new, |t| t.split(' ').collect());
                miner_split(m, &t)
            })
            .collect();
        // Lossless, both: the logtype with its variables put back is the message.
        for sp in [&clp, &mined] {
            for (m, x) in msgs.iter().zip(sp.iter()) {
                let mut vars = x.vars.iter();
                let back: String = x
                    .logtype
                    .chars()
                    .map(|c| {
                        if c == PH {
                            vars.next().cloned().unwrap_or_default()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                anyhow::ensure!(back == *m, "{s}: not lossless: {m:?}");
            }
        }
        let (a, na) = encode(&clp, args.level)?;
        let (b, nb) = encode(&mined, args.level)?;
        let raw: String = msgs.join("\n");
        let z3 = zstd::bulk::compress(raw.as_bytes(), 3)?.len();
        let z19 = zstd::bulk::compress(raw.as_bytes(), 19)?.len();
        let (ta, tb): (usize, usize) = (a.iter().sum(), b.iter().sum());
        sum_clp += ta;
        sum_miner += tb;
        sum_z3 += z3;
        sum_z19 += z19;
        println!(
            "| {s} | {z3} | {z19} | {na} | {ta} ({} / {} / {} / {}) | {nb} | {tb} ({} / {} / {} / {}) | {:.2} |",
            a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3],
            tb as f64 / ta as f64
        );
    }
    println!(
        "| all ten | {sum_z3} | {sum_z19} | | {sum_clp} | | {sum_miner} | {:.2} |",
        sum_miner as f64 / sum_clp as f64
    );
    Ok(())
}
