//! `template-eval`: the template miner (`engine::template`) on the ten Loghub
//! systems: grouping accuracy exactly as the logparser benchmark computes it, each
//! line's `Content` column fed as `_msg`, beside Drain's published numbers; then the
//! miner's speed over the whole corpus (`--repeat` passes, one core) and peak memory.
//!
//! `--loso`: leave-one-system-out. The miner's two settings are chosen from a grid
//! by their mean accuracy on nine systems and scored on the tenth, for all ten
//! rotations, beside the default settings' score: how the accuracy holds on a
//! system no setting was chosen on.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use engine::template::{grouping_accuracy, Miner, MinerConfig};

/// The server's allocator, so the numbers are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Template mining accuracy and speed on the Loghub samples")]
struct Args {
    /// The Loghub directory (one subdirectory per system).
    #[arg(long, default_value = "../shared/data/loghub")]
    loghub: PathBuf,
    /// Least share of equal token positions to join a template.
    #[arg(long, default_value_t = 0.65)]
    similarity: f64,
    /// Distinct words a position may hold in sibling templates before they fold.
    #[arg(long, default_value_t = 3)]
    siblings_max: usize,
    /// Tokens of a message that allow no difference (see `MinerConfig::rigid`).
    #[arg(long, default_value_t = 2)]
    rigid: usize,
    /// Passes over the whole corpus for the speed figure.
    #[arg(long, default_value_t = 200)]
    repeat: usize,
    /// Leave-one-system-out evaluation over a grid of settings (no speed run).
    #[arg(long)]
    loso: bool,
    /// With `--loso`: a system's accuracy is the mean of its `Content` column's
    /// and its whole lines' (headers included, as the engine mines raw input).
    #[arg(long)]
    lines: bool,
    /// Score the generated corpus of other log kinds (`heimdall_benches::corpus`,
    /// ground truth by construction): `--generated N` lines per kind (no speed run).
    #[arg(long)]
    generated: Option<usize>,
    /// With `--generated`: also write each kind's lines (`KIND.log`) and their true
    /// template indexes (`KIND.truth`, one per line) into this directory.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Also time one pass over this file's whole lines (what `heimdall ingest`
    /// stores as `_msg` of raw input, headers included), e.g. `heimdall-gen` output.
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Print where the miner and the ground truth disagree on one system or
    /// generated kind (a name's prefix, case-insensitive): each true event split
    /// over several templates or sharing one with another event, with examples.
    #[arg(long)]
    explain: Option<String>,
    /// With `--explain`: on a Loghub system's whole lines instead of `Content`.
    #[arg(long)]
    whole_lines: bool,
}

/// Drain's grouping accuracy (He et al., ICSE-SEIP 2019).
const SYSTEMS: [(&str, f64); 10] = [
    ("HDFS", 0.998),
    ("Hadoop", 0.948),
    ("Spark", 0.920),
    ("BGL", 0.963),
    ("HPC", 0.887),
    ("Windows", 0.997),
    ("Linux", 0.690),
    ("Android", 0.911),
    ("Apache", 1.0),
    ("OpenSSH", 0.788),
];

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One system's messages (`Content`) and their true event ids.
struct System {
    name: &'static str,
    drain: f64,
    msgs: Vec<String>,
    truth: Vec<String>,
    /// The whole lines (`{name}_2k.log`, headers included: what the engine mines
    /// from raw input), one per message; empty for generated kinds.
    lines: Vec<String>,
}

fn load(loghub: &std::path::Path) -> Result<Vec<System>> {
    let mut out = Vec::new();
    for (name, drain) in SYSTEMS {
        let path = loghub
            .join(name)
            .join(format!("{name}_2k.log_structured.csv"));
        let mut r =
            csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
        let headers = r.headers()?.clone();
        let col = |c: &str| {
            headers
                .iter()
                .position(|h| h == c)
                .with_context(|| format!("no {c} column in {}", path.display()))
        };
        let (content, event) = (col("Content")?, col("EventId")?);
        let raw = loghub.join(name).join(format!("{name}_2k.log"));
        let lines: Vec<String> = std::fs::read_to_string(&raw)
            .with_context(|| format!("reading {}", raw.display()))?
            .lines()
            .map(str::to_string)
            .collect();
        let mut sys = System {
            name,
            drain,
            msgs: Vec::new(),
            truth: Vec::new(),
            lines,
        };
        for rec in r.records() {
            let rec = rec?;
            sys.msgs.push(rec.get(content).unwrap_or("").to_string());
            sys.truth.push(rec.get(event).unwrap_or("").to_string());
        }
        anyhow::ensure!(
            sys.lines.len() == sys.msgs.len(),
            "{}: {} lines but {} structured rows",
            raw.display(),
            sys.lines.len(),
            sys.msgs.len()
        );
        out.push(sys);
    }
    Ok(out)
}

/// `n` lines of a generated kind (seed 42) with their true templates.
fn generated_system(kind: &heimdall_benches::corpus::Kind, n: usize) -> System {
    let lines = heimdall_benches::corpus::generate(kind, n, 42);
    System {
        name: kind.name,
        drain: 0.0,
        truth: lines.iter().map(|(_, t)| t.to_string()).collect(),
        msgs: lines.into_iter().map(|(l, _)| l).collect(),
        lines: Vec::new(),
    }
}

/// Grouping accuracy of a fresh miner with `cfg` on `sys`, and its template count.
fn score(cfg: &MinerConfig, sys: &System) -> (f64, usize) {
    score_of(cfg, sys, &sys.msgs)
}

/// The same on the whole lines (1.0 where there are none).
fn score_lines(cfg: &MinerConfig, sys: &System) -> f64 {
    if sys.lines.is_empty() {
        return 1.0;
    }
    score_of(cfg, sys, &sys.lines).0
}

fn score_of(cfg: &MinerConfig, sys: &System, msgs: &[String]) -> (f64, usize) {
    let mut m = Miner::new(cfg.clone());
    let pred: Vec<u64> = msgs.iter().map(|msg| m.mine(msg, 0)).collect();
    // Ids folded into another template count as that one (as queries resolve them).
    let pred: Vec<u64> = pred.into_iter().map(|id| m.canonical(id)).collect();
    (grouping_accuracy(&sys.truth, &pred), m.templates().len())
}

/// Where the miner's templates and the true events of `sys` disagree.
fn explain(cfg: &MinerConfig, sys: &System) {
    use std::collections::BTreeMap;
    let mut m = Miner::new(cfg.clone());
    let pred: Vec<u64> = sys.msgs.iter().map(|msg| m.mine(msg, 0)).collect();
    let pred: Vec<u64> = pred.into_iter().map(|id| m.canonical(id)).collect();
    let text = |id: u64| {
        id.checked_sub(1)
            .and_then(|i| m.templates().get(i as usize))
            .map_or_else(|| "(other)".to_string(), |t| m.text(t))
    };
    // true event -> template -> (lines, first line)
    let mut by_event: BTreeMap<&str, BTreeMap<u64, (usize, usize)>> = BTreeMap::new();
    let mut events_of: BTreeMap<u64, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for (i, (t, p)) in sys.truth.iter().zip(&pred).enumerate() {
        by_event.entry(t).or_default().entry(*p).or_insert((0, i)).0 += 1;
        events_of.entry(*p).or_default().insert(t);
    }
    println!(
        "{}: accuracy {:.3}",
        sys.name,
        grouping_accuracy(&sys.truth, &pred)
    );
    for (event, templates) in &by_event {
        let merged = templates
            .keys()
            .any(|p| events_of.get(p).is_some_and(|e| e.len() > 1));
        if templates.len() == 1 && !merged {
            continue;
        }
        let lines: usize = templates.values().map(|v| v.0).sum();
        println!(
            "\nevent {event} ({lines} lines) in {} templates:",
            templates.len()
        );
        for (p, (count, first)) in templates.iter().take(8) {
            let others = events_of.get(p).map_or(0, |e| e.len() - 1);
            println!(
                "  {count:>5} x [{p}] {}   (shared with {others} other events)\n        e.g. {}",
                text(*p),
                sys.msgs.get(*first).map_or("", String::as_str)
            );
        }
    }
}

/// Leave-one-system-out: for each system, the grid setting with the best mean
/// accuracy on the other nine (ties: the earlier in the grid), scored on it. With
/// `lines`, a system's accuracy is the mean of its `Content` column's and its
/// whole lines' (the engine mines whole raw lines, headers included).
fn loso(systems: &[System], default: &MinerConfig, lines: bool) {
    let mut grid = Vec::new();
    for s in (8..=19).map(|i| f64::from(i) * 0.05) {
        for siblings_max in 1..=6 {
            for rigid in 0..=3 {
                grid.push(MinerConfig {
                    similarity: s,
                    siblings_max,
                    rigid,
                    ..MinerConfig::default()
                });
            }
        }
    }
    let both = |cfg: &MinerConfig, sys: &System| {
        if lines {
            (score(cfg, sys).0 + score_lines(cfg, sys)) / 2.0
        } else {
            score(cfg, sys).0
        }
    };
    // acc[g][s]: setting g on system s.
    let acc: Vec<Vec<f64>> = grid
        .iter()
        .map(|cfg| systems.iter().map(|sys| both(cfg, sys)).collect())
        .collect();
    let mean_without = |g: usize, out: Option<usize>| -> f64 {
        let (sum, n) = acc[g]
            .iter()
            .enumerate()
            .filter(|(s, _)| Some(*s) != out)
            .fold((0.0, 0usize), |(sum, n), (_, a)| (sum + a, n + 1));
        sum / n.max(1) as f64
    };
    let best = |out: Option<usize>| -> usize {
        (0..grid.len()).fold(0, |b, g| {
            if mean_without(g, out) > mean_without(b, out) + 1e-12 {
                g
            } else {
                b
            }
        })
    };
    println!(
        "grid: similarity 0.40..0.95 step 0.05 x siblings_max 1..6 x rigid 0..3 ({} settings); default similarity {} siblings_max {} rigid {}",
        grid.len(),
        default.similarity,
        default.siblings_max,
        default.rigid
    );
    if lines {
        println!("accuracy = mean of the Content column's and the whole lines'");
    } else {
        println!("accuracy = the Content column's (whole lines shown beside)");
    }
    println!("| held out | chosen on the other nine (similarity, siblings, rigid) | their mean | held-out accuracy (Content / lines) | default settings (Content / lines) |");
    println!("|---|---|---:|---:|---:|");
    let (mut sum, mut worst, mut dsum) = (0.0, f64::MAX, 0.0);
    for (s, sys) in systems.iter().enumerate() {
        let g = best(Some(s));
        let held = acc[g][s];
        let d = both(default, sys);
        println!(
            "| {} | {:.2}, {}, {} | {:.3} | {held:.3} ({:.3} / {:.3}) | {d:.3} ({:.3} / {:.3}) |",
            sys.name,
            grid[g].similarity,
            grid[g].siblings_max,
            grid[g].rigid,
            mean_without(g, Some(s)),
            score(&grid[g], sys).0,
            score_lines(&grid[g], sys),
            score(default, sys).0,
            score_lines(default, sys),
        );
        sum += held;
        dsum += d;
        worst = worst.min(held);
    }
    let n = systems.len().max(1) as f64;
    let all = best(None);
    println!(
        "| **mean** | | | **{:.3}** (lowest {worst:.3}) | {:.3} |",
        sum / n,
        dsum / n
    );
    println!(
        "\nbest single setting on all ten (chosen and scored on the same data): similarity {:.2}, siblings_max {}, rigid {}: mean {:.3}",
        grid[all].similarity,
        grid[all].siblings_max,
        grid[all].rigid,
        mean_without(all, None)
    );
}

/// The miner with `cfg` on `n` generated lines of every kind of the corpus.
fn generated(cfg: &MinerConfig, n: usize, dump: Option<&std::path::Path>) -> Result<()> {
    println!("| kind | accuracy | templates found | true templates |");
    println!("|---|---:|---:|---:|");
    let (mut sum, mut worst, mut kinds) = (0.0, f64::MAX, 0usize);
    for kind in heimdall_benches::corpus::kinds() {
        let sys = generated_system(&kind, n);
        if let Some(dir) = dump {
            std::fs::create_dir_all(dir)?;
            let slug: String = kind
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let mut text = sys.msgs.join("\n");
            text.push('\n');
            std::fs::write(dir.join(format!("{slug}.log")), text)?;
            let mut truth = sys.truth.join("\n");
            truth.push('\n');
            std::fs::write(dir.join(format!("{slug}.truth")), truth)?;
        }
        let (acc, found) = score(cfg, &sys);
        let truth = sys
            .truth
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        println!("| {} | {acc:.3} | {found} | {truth} |", kind.name);
        sum += acc;
        worst = worst.min(acc);
        kinds += 1;
    }
    println!(
        "| **mean** | **{:.3}** (lowest {worst:.3}) | | |",
        sum / kinds.max(1) as f64
    );
    Ok(())
}

fn main() -> Result<()> {
    let a = Args::parse();
    let cfg = MinerConfig {
        similarity: a.similarity,
        siblings_max: a.siblings_max,
        rigid: a.rigid,
        ..MinerConfig::default()
    };
    if let Some(name) = &a.explain {
        let mut systems = load(&a.loghub)?;
        for kind in heimdall_benches::corpus::kinds() {
            systems.push(generated_system(&kind, a.generated.unwrap_or(2000)));
        }
        let want = name.to_ascii_lowercase();
        let sys = systems
            .iter()
            .find(|s| s.name.to_ascii_lowercase().starts_with(&want))
            .with_context(|| format!("no system or generated kind named {name}"))?;
        if a.whole_lines && !sys.lines.is_empty() {
            let whole = System {
                name: sys.name,
                drain: sys.drain,
                msgs: sys.lines.clone(),
                truth: sys.truth.clone(),
                lines: Vec::new(),
            };
            explain(&cfg, &whole);
        } else {
            explain(&cfg, sys);
        }
        return Ok(());
    }
    if let Some(n) = a.generated {
        return generated(&cfg, n, a.dump.as_deref());
    }
    let systems = load(&a.loghub)?;
    if a.loso {
        loso(&systems, &cfg, a.lines);
        return Ok(());
    }
    let corpus: Vec<&str> = systems
        .iter()
        .flat_map(|s| s.msgs.iter().map(String::as_str))
        .collect();
    let mut sum = 0.0;
    let mut worst = f64::MAX;
    println!("| system | Heimdall | Drain (published) | templates | true events |");
    println!("|---|---:|---:|---:|---:|");
    for sys in &systems {
        let (acc, templates) = score(&cfg, sys);
        let events = sys
            .truth
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        println!(
            "| {} | {acc:.3} | {:.3} | {templates} | {events} |",
            sys.name, sys.drain
        );
        sum += acc;
        worst = worst.min(acc);
    }
    let mean = sum / SYSTEMS.len() as f64;
    let drain_mean = SYSTEMS.iter().map(|s| s.1).sum::<f64>() / SYSTEMS.len() as f64;
    println!("| **mean** | **{mean:.3}** | {drain_mean:.3} | | |");
    println!("\nlowest system: {worst:.3}");
    // Speed: one miner over the whole corpus, `repeat` times (after the first pass
    // every template exists, as in a long-running server).
    let mut m = Miner::new(cfg);
    let t = Instant::now();
    let mut n = 0u64;
    let mut check = 0u64;
    for pass in 0..a.repeat {
        for (i, msg) in corpus.iter().enumerate() {
            check = check.wrapping_add(m.mine(msg, (pass * corpus.len() + i) as i64));
            n += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "speed: {n} lines in {s:.2} s = {:.0} lines/s on one core ({} templates, peak RSS {} KiB, checksum {check})",
        n as f64 / s,
        m.templates().len(),
        peak_rss_kib()
    );
    if let Some(path) = &a.raw {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut m = Miner::new(MinerConfig {
            similarity: a.similarity,
            siblings_max: a.siblings_max,
            rigid: a.rigid,
            ..MinerConfig::default()
        });
        let t = Instant::now();
        let (mut n, mut check) = (0u64, 0u64);
        for (i, line) in text.lines().enumerate() {
            check = check.wrapping_add(m.mine(line, i as i64));
            n += 1;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "raw lines of {}: {n} lines ({:.1} MB) in {s:.2} s = {:.0} lines/s, {:.1} MB/s on one core ({} templates, peak RSS {} KiB, checksum {check})",
            path.display(),
            text.len() as f64 / 1e6,
            n as f64 / s,
            text.len() as f64 / 1e6 / s,
            m.templates().len(),
            peak_rss_kib()
        );
    }
    Ok(())
}
