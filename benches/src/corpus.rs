//! A corpus of log kinds the shared Loghub samples lack, generated with their ground
//! truth known by construction (issue 18): every line is one of its kind's templates
//! with the variable parts filled in, and the template's index is the line's true
//! event. Used to measure the template miner on logs nothing was tuned on; never to
//! tune it.
//!
//! Templates are written as text with `{slot}` placeholders. Variables are what a
//! log parser's ground truth treats as parameters: addresses, numbers, ids, paths,
//! names of users, hosts, programs and tables (digit-free words from a pool of
//! hundreds, so that a rule keyed on digits or on a token's position cannot tell
//! them from constant words), and a few few-valued ones (HTTP methods, levels).
//! Two templates of a kind always differ in constant text.

/// One log kind: a name and its templates with their relative frequency.
#[derive(Debug)]
pub struct Kind {
    /// What the lines look like.
    pub name: &'static str,
    /// (weight, template).
    pub templates: &'static [(u32, &'static str)],
}

/// The kinds, each with templates of the shapes its real logs have.
pub fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "nginx access + error",
            templates: &[
                (60, r#"{ip} - {userdash} [{clf}] "{method} {path} HTTP/1.1" {status} {int} "{url}" "{ua}""#),
                (8, r#"{ymdhms} [error] {int}#{int}: *{int} open() "{path}" failed (2: No such file or directory), client: {ip}, server: {host}, request: "{method} {path} HTTP/1.1", host: "{host}""#),
                (5, r#"{ymdhms} [error] {int}#{int}: *{int} upstream timed out (110: Connection timed out) while reading response header from upstream, client: {ip}, server: {host}, request: "{method} {path} HTTP/1.1", upstream: "http://{ipport}{path}", host: "{host}""#),
                (3, r#"{ymdhms} [warn] {int}#{int}: *{int} an upstream response is buffered to a temporary file {path} while reading upstream, client: {ip}, server: {host}"#),
                (2, r#"{ymdhms} [notice] {int}#{int}: signal process started"#),
            ],
        },
        Kind {
            name: "PostgreSQL",
            templates: &[
                (30, r#"{ymdhms}.{int3} UTC [{int}] LOG:  duration: {float} ms  statement: SELECT * FROM {word} WHERE id = {int}"#),
                (12, r#"{ymdhms}.{int3} UTC [{int}] LOG:  connection received: host={ip} port={int}"#),
                (12, r#"{ymdhms}.{int3} UTC [{int}] LOG:  connection authorized: user={word} database={word} application_name={word}"#),
                (6, r#"{ymdhms}.{int3} UTC [{int}] ERROR:  duplicate key value violates unique constraint "{word}_pkey""#),
                (4, r#"{ymdhms}.{int3} UTC [{int}] FATAL:  password authentication failed for user "{word}""#),
                (3, r#"{ymdhms}.{int3} UTC [{int}] LOG:  checkpoint complete: wrote {int} buffers ({float}%); {int} WAL file(s) added, {int} removed, {int} recycled; write={float} s, sync={float} s, total={float} s"#),
                (3, r#"{ymdhms}.{int3} UTC [{int}] ERROR:  relation "{word}" does not exist at character {int}"#),
                (2, r#"{ymdhms}.{int3} UTC [{int}] LOG:  automatic vacuum of table "{word}.public.{word}": index scans: {int}"#),
            ],
        },
        Kind {
            name: "systemd journal",
            templates: &[
                (20, r#"{syslogts} {host} systemd[1]: Started {word}.service - {Word} {Word} Daemon."#),
                (10, r#"{syslogts} {host} systemd[1]: Stopping {word}.service - {Word} {Word} Daemon..."#),
                (8, r#"{syslogts} {host} systemd[1]: {word}.service: Main process exited, code=exited, status={int}/FAILURE"#),
                (8, r#"{syslogts} {host} systemd[1]: {word}.service: Consumed {float}s CPU time."#),
                (6, r#"{syslogts} {host} kernel: [{float}] {word}: link up, {int} Mbps, full duplex"#),
                (6, r#"{syslogts} {host} {word}[{int}]: pam_unix({word}:session): session opened for user {word}(uid={int}) by (uid=0)"#),
                (4, r#"{syslogts} {host} systemd-logind[{int}]: New session {int} of user {word}."#),
                (3, r#"{syslogts} {host} {word}[{int}]: Reloading configuration from {path}"#),
            ],
        },
        Kind {
            name: "Kubernetes + containerd",
            templates: &[
                (15, r#"I{mmdd} {hms}.{int6}       {int} {word}.go:{int}] "Successfully assigned pod" pod="{word}/{word}-{hex5}" node="{host}""#),
                (12, r#"E{mmdd} {hms}.{int6}       {int} {word}.go:{int}] "Error syncing pod, skipping" err="failed to \"StartContainer\" for \"{word}\" with CrashLoopBackOff" pod="{word}/{word}-{hex5}""#),
                (10, r#"time="{iso}" level=info msg="StartContainer for \"{hex64}\" returns successfully""#),
                (8, r#"time="{iso}" level=info msg="PullImage \"{image}\" returns image reference \"sha256:{hex64}\"""#),
                (6, r#"time="{iso}" level=error msg="PullImage \"{image}\" failed" error="rpc error: code = NotFound desc = failed to resolve reference \"{image}\"""#),
                (5, r#"W{mmdd} {hms}.{int6}       {int} {word}.go:{int}] "Readiness probe failed" probeResult="failure" output="Get \"http://{ipport}/healthz\": dial tcp {ipport}: connect: connection refused""#),
                (4, r#"I{mmdd} {hms}.{int6}       {int} {word}.go:{int}] "Observed a panic" panic="runtime error: index out of range [{int}] with length {int}""#),
            ],
        },
        Kind {
            name: "Java application + stack traces",
            templates: &[
                (30, "\tat {pkg}.{Word}.{word}({Word}.java:{int})"),
                (12, "{ymdhms},{int3} INFO  [{word}-{int}] {pkg}.{Word} - Processed order {int} for customer {word} in {int} ms"),
                (8, "{ymdhms},{int3} ERROR [{word}-{int}] {pkg}.{Word} - Request {uuid} failed"),
                (6, "Caused by: java.net.SocketTimeoutException: Read timed out after {int} ms"),
                (5, "java.lang.IllegalStateException: Connection pool exhausted: {int} active, {int} idle"),
                (4, "\t... {int} more"),
                (4, "{ymdhms},{int3} WARN  [{word}-{int}] {pkg}.{Word} - Retrying call to {url} (attempt {int} of {int})"),
            ],
        },
        Kind {
            name: "JSON in text",
            templates: &[
                (20, r#"{iso} INFO audit event={"user":"{word}","action":"login","ip":"{ip}","ok":true}"#),
                (12, r#"{iso} INFO audit event={"user":"{word}","action":"delete","object":"{path}","ok":true}"#),
                (10, r#"{iso} WARN retry request={"url":"{url}","attempt":{int},"backoff_ms":{int}}"#),
                (6, r#"{iso} ERROR payment failed body={"order":{int},"amount":{float},"currency":"EUR","reason":"card_declined"}"#),
            ],
        },
        Kind {
            name: "key=value (logfmt)",
            templates: &[
                (30, r#"ts={iso} level=info msg="request completed" method={method} path={path} status={status} duration={dur} request_id={uuid}"#),
                (12, r#"ts={iso} level=debug msg="cache miss" key={word}:{int} ttl={dur}"#),
                (10, r#"ts={iso} level=info msg="db query" table={word} rows={int} took={dur}"#),
                (6, r#"ts={iso} level=warn msg="slow consumer" topic={word} partition={int} lag={int}"#),
                (4, r#"ts={iso} level=error msg="upstream unavailable" upstream={host}:{port} err="dial tcp {ipport}: i/o timeout""#),
            ],
        },
        Kind {
            name: "proxy (host:port pairs)",
            templates: &[
                (30, r#"{ipport} [{clf}] {word}~ {word}/{word} {int}/{int}/{int}/{int}/{int} {status} {int} - - ---- {int}/{int}/{int}/{int}/{int} 0/0 "{method} {path} HTTP/1.1""#),
                (12, r#"{syslogts} {host} haproxy[{int}]: Server {word}/{word} is DOWN, reason: Layer4 connection problem, info: "Connection refused", check duration: {int}ms. {int} active and {int} backup servers left."#),
                (10, r#"CONNECT {host}:{port} from {ipport} tunnel established in {dur}"#),
                (6, r#"{ipport} -> {ipport} TCP handshake timeout after {dur}"#),
                (4, r#"[{iso}] "{method} {path} HTTP/2" {status} - via_upstream - "-" {int} {int} {int} "{ip}" "{ua}" "{uuid}" "{host}" "{ipport}""#),
            ],
        },
        Kind {
            name: "program and host names first",
            templates: &[
                (20, "{host} {word}: Accepted publickey for {word} from {ip} port {int} ssh2: RSA SHA256:{b64}"),
                (15, "{host} {word}: Failed password for invalid user {word} from {ip} port {int} ssh2"),
                (10, "{host} {word}: Disconnected from authenticating user {word} {ip} port {int} [preauth]"),
                (8, "{word} {word}: pam_unix({word}:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip} user={word}"),
                (6, "{word}: {word} is up to date, nothing to do"),
                (5, "{word}: starting {word} version {semver} on {host}"),
                (3, "{word} {word}: cron job {word} finished in {dur}"),
            ],
        },
    ]
}

/// Digit-free words: program, user, table, host and service names.
const WORDS: &[&str] = &[
    "alpha",
    "api",
    "archiver",
    "auth",
    "backup",
    "billing",
    "bravo",
    "broker",
    "cache",
    "carol",
    "catalog",
    "charlie",
    "checkout",
    "collector",
    "cron",
    "daemon",
    "dave",
    "delta",
    "dispatcher",
    "dns",
    "echo",
    "edge",
    "emma",
    "events",
    "exporter",
    "frank",
    "frontend",
    "gateway",
    "grace",
    "heidi",
    "indexer",
    "invoice",
    "ivan",
    "judy",
    "kafka",
    "ledger",
    "loader",
    "mallory",
    "mailer",
    "metrics",
    "nginx",
    "notifier",
    "olivia",
    "orders",
    "payments",
    "peggy",
    "planner",
    "postgres",
    "proxy",
    "queue",
    "ranker",
    "redis",
    "reports",
    "rupert",
    "scheduler",
    "search",
    "sessions",
    "sshd",
    "storage",
    "sybil",
    "syncer",
    "trent",
    "uploader",
    "users",
    "victor",
    "walter",
    "worker",
    "zookeeper",
    "inventory",
    "shipping",
    "reviews",
    "profile",
    "audit",
    "backend",
    "web",
    "primary",
    "replica",
    "canary",
    "blue",
    "green",
    "east",
    "west",
];
const TLDS: &[&str] = &[
    "internal",
    "local",
    "example.com",
    "corp",
    "svc.cluster.local",
];
const METHODS: &[&str] = &[
    "GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH",
];
const STATUS: &[&str] = &[
    "200", "200", "200", "201", "204", "301", "304", "400", "403", "404", "500", "502", "503",
];
const UAS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "python-requests/2.31.0",
    "kube-probe/1.29",
];
const MONTHS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A small deterministic generator (splitmix64, [`crate::gen`]'s mixer).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        let z = crate::gen::mix(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs.get(self.below(xs.len() as u64) as usize)
            .copied()
            .unwrap_or("")
    }
}

fn capitalized(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// `2026-MM-DD`.
fn date(r: &mut Rng, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(out, "2026-{:02}-{:02}", 1 + r.below(12), 1 + r.below(28));
}

/// `HH:MM:SS`.
fn hms(r: &mut Rng, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        r.below(24),
        r.below(60),
        r.below(60)
    );
}

/// The text of one slot.
fn slot(name: &str, r: &mut Rng, out: &mut String) {
    use std::fmt::Write;
    let _ = match name {
        "ip" => write!(
            out,
            "10.{}.{}.{}",
            r.below(256),
            r.below(256),
            1 + r.below(254)
        ),
        "port" => write!(out, "{}", 1024 + r.below(60000)),
        "ipport" => write!(
            out,
            "10.{}.{}.{}:{}",
            r.below(256),
            r.below(256),
            1 + r.below(254),
            1024 + r.below(60000)
        ),
        "int" => {
            let range = if r.below(4) == 0 { 100_000 } else { 1_000 };
            write!(out, "{}", r.below(range))
        }
        "int3" => write!(out, "{:03}", r.below(1000)),
        "int6" => write!(out, "{:06}", r.below(1_000_000)),
        "float" => write!(out, "{}.{:03}", r.below(5000), r.below(1000)),
        "hex5" => write!(out, "{:05x}", r.below(1 << 20)),
        "hex64" => write!(
            out,
            "{:016x}{:016x}{:016x}{:016x}",
            r.next(),
            r.next(),
            r.next(),
            r.next()
        ),
        "uuid" => {
            let (a, b) = (r.next(), r.next());
            write!(
                out,
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                (b >> 48) | 0x8000,
                b & 0xffff_ffff_ffff
            )
        }
        "b64" => {
            const B: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            for _ in 0..43 {
                out.push(char::from(
                    B.get(r.below(64) as usize).copied().unwrap_or(b'A'),
                ));
            }
            Ok(())
        }
        "word" => write!(out, "{}", r.pick(WORDS)),
        "Word" => write!(out, "{}", capitalized(r.pick(WORDS))),
        "userdash" => match r.below(3) {
            0 => write!(out, "{}", r.pick(WORDS)),
            _ => write!(out, "-"),
        },
        "host" => write!(out, "{}-{}.{}", r.pick(WORDS), r.pick(WORDS), r.pick(TLDS)),
        "pkg" => write!(out, "com.{}.{}", r.pick(WORDS), r.pick(WORDS)),
        "path" => {
            for _ in 0..1 + r.below(3) {
                let _ = write!(out, "/{}", r.pick(WORDS));
            }
            if r.below(2) == 0 {
                let _ = write!(out, "/{}", r.below(100_000));
            }
            Ok(())
        }
        "url" => write!(
            out,
            "https://{}-{}.{}/{}",
            r.pick(WORDS),
            r.pick(WORDS),
            r.pick(TLDS),
            r.pick(WORDS)
        ),
        "image" => write!(
            out,
            "registry.{}/{}/{}:v{}.{}",
            r.pick(TLDS),
            r.pick(WORDS),
            r.pick(WORDS),
            r.below(10),
            r.below(30)
        ),
        "semver" => write!(out, "{}.{}.{}", r.below(10), r.below(30), r.below(100)),
        "dur" => write!(
            out,
            "{}{}",
            1 + r.below(2000),
            ["ms", "s", "us"][r.below(3) as usize]
        ),
        "method" => write!(out, "{}", r.pick(METHODS)),
        "status" => write!(out, "{}", r.pick(STATUS)),
        "ua" => write!(out, "{}", r.pick(UAS)),
        "clf" => {
            let _ = write!(out, "{:02}/{}/2026:", 1 + r.below(28), r.pick(MONTHS));
            hms(r, out);
            write!(out, " +0000")
        }
        "ymdhms" => {
            date(r, out);
            out.push(' ');
            hms(r, out);
            Ok(())
        }
        "iso" => {
            date(r, out);
            out.push('T');
            hms(r, out);
            write!(out, ".{:03}Z", r.below(1000))
        }
        "syslogts" => {
            let _ = write!(out, "{} {:2} ", r.pick(MONTHS), 1 + r.below(28));
            hms(r, out);
            Ok(())
        }
        "mmdd" => write!(out, "{:02}{:02}", 1 + r.below(12), 1 + r.below(28)),
        "hms" => {
            hms(r, out);
            Ok(())
        }
        other => write!(out, "{{{other}}}"),
    };
}

/// Renders `template` with fresh slot values into `out`.
fn render(template: &str, r: &mut Rng, out: &mut String) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        // A slot is `{name}` with a name of letters, digits and `_`; anything else
        // (JSON braces) is text.
        let end = after.find('}').filter(|e| {
            after
                .get(1..*e)
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()))
        });
        match end {
            Some(e) => {
                slot(after.get(1..e).unwrap_or(""), r, out);
                rest = after.get(e + 1..).unwrap_or("");
            }
            None => {
                out.push('{');
                rest = after.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
}

/// `n` lines of `kind`, each with its true template's index.
pub fn generate(kind: &Kind, n: usize, seed: u64) -> Vec<(String, usize)> {
    let mut r = Rng::new(seed);
    let total: u64 = kind.templates.iter().map(|t| u64::from(t.0)).sum();
    (0..n)
        .map(|_| {
            let mut x = r.below(total);
            let mut pick = 0;
            for (i, (w, _)) in kind.templates.iter().enumerate() {
                if x < u64::from(*w) {
                    pick = i;
                    break;
                }
                x -= u64::from(*w);
            }
            let mut line = String::new();
            if let Some((_, t)) = kind.templates.get(pick) {
                render(t, &mut r, &mut line);
            }
            (line, pick)
        })
        .collect()
}

/// `n` lines of a load balancer's log with many distinct hosts, addresses, ports
/// and ids (where an index grows: issue 18's size bar), in time order from
/// 2026-03-01: client `ip:port` pairs from a /8 with a host name made of the
/// address, backends `ip:port`, 64-bit request ids, object ids up to ten million,
/// response times and sizes, a few user agents. Deterministic for a seed.
pub fn high_cardinality(n: usize, seed: u64) -> String {
    use std::fmt::Write;
    let mut r = Rng::new(seed);
    let mut out = String::with_capacity(n * 200);
    // Milliseconds since 2026-03-01T00:00:00Z.
    let mut ms: u64 = 0;
    for _ in 0..n {
        ms += r.below(4);
        let (s, milli) = (ms / 1000, ms % 1000);
        let _ = write!(
            out,
            "2026-03-{:02}T{:02}:{:02}:{:02}.{:03}Z lb-{} ",
            1 + s / 86_400,
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60,
            milli,
            r.below(8)
        );
        let client = (r.below(256), r.below(256), 1 + r.below(254));
        let cport = 1024 + r.below(64_000);
        let backend = (r.below(4), 1 + r.below(50));
        let bport = [8080, 8443, 9000][r.below(3) as usize];
        let rid = r.next();
        let _ = match r.below(20) {
            0 => write!(
                out,
                "TLS handshake error from 10.{}.{}.{}:{}: EOF",
                client.0, client.1, client.2, cport
            ),
            1 => write!(
                out,
                "upstream connect error to 172.16.{}.{}:{} after {}ms rid={:016x}",
                backend.0,
                backend.1,
                bport,
                1000 + r.below(3000),
                rid
            ),
            2 => write!(
                out,
                "health check ok backend=172.16.{}.{}:{} latency={}ms",
                backend.0,
                backend.1,
                bport,
                r.below(40)
            ),
            k => {
                let (method, path) = match k % 4 {
                    0 => ("POST", "orders"),
                    1 => ("GET", "users"),
                    2 => ("GET", "items"),
                    _ => ("PUT", "carts"),
                };
                write!(
                    out,
                    "10.{a}.{b}.{c}:{cport} -> 172.16.{}.{}:{bport} \"{method} /api/v2/{path}/{} HTTP/1.1\" {} {} rt={}.{:03} rid={rid:016x} ua=\"{}\" host=ip-10-{a}-{b}-{c}.ec2.internal",
                    backend.0,
                    backend.1,
                    r.below(10_000_000),
                    [200, 200, 200, 201, 204, 304, 404, 500][r.below(8) as usize],
                    r.below(200_000),
                    r.below(3),
                    r.below(1000),
                    r.pick(UAS),
                    a = client.0,
                    b = client.1,
                    c = client.2,
                )
            }
        };
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_without_a_placeholder_left_and_is_used() {
        for kind in kinds() {
            let lines = generate(&kind, 5_000, 7);
            for (line, t) in &lines {
                assert!(
                    !line.contains("{int") && !line.contains("{word}"),
                    "{}: {line}",
                    kind.name
                );
                assert!(*t < kind.templates.len());
            }
            for i in 0..kind.templates.len() {
                assert!(
                    lines.iter().any(|(_, t)| *t == i),
                    "{}: template {i} unused",
                    kind.name
                );
            }
        }
        // JSON braces stay text.
        let mut out = String::new();
        render(r#"x={"a":{int}}"#, &mut Rng::new(1), &mut out);
        assert!(out.starts_with(r#"x={"a":"#) && out.ends_with('}'), "{out}");
    }

    /// A regression floor under the miner's scores on the generated corpus (the
    /// table is `template-eval --generated 2000`, docs/benchmarks.md): lines led by
    /// host and program names without digits group (0.000 with a grouping key of
    /// the first constant tokens), user agents of any length are one value (0.211
    /// before), and the kinds at 1.000 stay there.
    #[test]
    fn the_miner_holds_its_scores_on_the_generated_kinds() {
        use engine::template::{grouping_accuracy, Miner, MinerConfig};
        let mut scores = Vec::new();
        for kind in kinds() {
            let lines = generate(&kind, 2000, 42);
            let mut m = Miner::new(MinerConfig::default());
            let ids: Vec<u64> = lines.iter().map(|(l, _)| m.mine(l, 0)).collect();
            let ids: Vec<u64> = ids.into_iter().map(|i| m.canonical(i)).collect();
            let truth: Vec<usize> = lines.iter().map(|(_, t)| *t).collect();
            scores.push((kind.name, grouping_accuracy(&truth, &ids)));
        }
        let mean = scores.iter().map(|(_, a)| a).sum::<f64>() / scores.len() as f64;
        // The issue's bars (mean >= 0.95, none below 0.85), and above them where
        // the kinds are now.
        assert!(mean >= 0.95, "mean {mean:.3}: {scores:?}");
        for (name, a) in &scores {
            assert!(*a >= 0.90, "{name} {a:.3}: {scores:?}");
        }
        let of = |name: &str| {
            scores
                .iter()
                .find(|(n, _)| n.starts_with(name))
                .map_or(0.0, |(_, a)| *a)
        };
        for name in [
            "nginx",
            "PostgreSQL",
            "systemd",
            "Kubernetes",
            "Java",
            "JSON",
            "key=value",
            "proxy",
        ] {
            assert!(of(name) >= 0.99, "{name}: {scores:?}");
        }
    }

    /// A miner restored from its saved state (through JSON, as the engine keeps
    /// it) gives the same ids as the one that went on, on every generated kind:
    /// families, folds, free variables and absorbed templates included.
    #[test]
    fn a_restored_miner_goes_on_with_the_same_ids_on_every_kind() {
        use engine::template::{Miner, MinerConfig, MinerState};
        let mut folded = 0;
        for kind in kinds() {
            let lines = generate(&kind, 3000, 9);
            let (first, rest) = lines.split_at(1000);
            let mut a = Miner::new(MinerConfig::default());
            for (l, _) in first {
                a.mine(l, 0);
            }
            let json = serde_json::to_string(&a.snapshot()).unwrap();
            let state: MinerState = serde_json::from_str(&json).unwrap();
            state.validate().unwrap();
            let mut b = Miner::restore(MinerConfig::default(), &state);
            for (l, _) in rest {
                assert_eq!(a.mine(l, 1), b.mine(l, 1), "{}: {l}", kind.name);
            }
            assert_eq!(a.snapshot(), b.snapshot(), "{}", kind.name);
            folded += a
                .templates()
                .iter()
                .filter(|t| t.alias_of.is_some())
                .count();
        }
        assert!(folded > 100, "{folded}");
    }

    #[test]
    fn the_same_seed_gives_the_same_lines() {
        let k = kinds();
        let a = generate(&k[0], 100, 3);
        let b = generate(&k[0], 100, 3);
        assert_eq!(a, b);
        assert_ne!(a, generate(&k[0], 100, 4));
    }
}
