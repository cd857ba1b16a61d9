//! Helpers for the end-to-end tests: locating the real `heimdall` binary built by cargo.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the `heimdall` binary of the current build profile.
///
/// Integration tests live in `target/<profile>/deps/`; the binary is one level up.
/// Panics with instructions when it has not been built.
pub fn heimdall_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("heimdall");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p heimdall-server`",
        bin.display()
    );
    bin
}

/// The Loghub sample directory of `../shared/data/loghub` (relative to the project
/// root), found from `$HEIMDALL_LOGHUB_DIR`, or by walking up from this crate to a
/// directory holding `shared/data/loghub`. Tests copy what they need out of it: it is
/// read-only in CI.
pub fn loghub_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HEIMDALL_LOGHUB_DIR") {
        return PathBuf::from(dir);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for ancestor in here.ancestors() {
        let candidate = ancestor.join("shared/data/loghub");
        if candidate.is_dir() {
            return candidate;
        }
    }
    let fallback = PathBuf::from("/work/shared/data/loghub");
    assert!(
        fallback.is_dir(),
        "Loghub data not found above {}; set HEIMDALL_LOGHUB_DIR",
        here.display()
    );
    fallback
}

/// A running `heimdall serve`, started on free loopback ports; killed on drop so a
/// failing test leaves no server behind.
#[derive(Debug)]
pub struct Served {
    child: std::process::Child,
    /// The gRPC (ingest + Flight) address.
    pub grpc: String,
    /// The HTTP address.
    pub http: String,
}

impl Served {
    /// `heimdall serve --data-dir DIR` on free loopback ports.
    pub fn start(dir: &std::path::Path) -> Served {
        let dir = dir.to_string_lossy().into_owned();
        Served::start_with(
            &[
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--data-dir",
                &dir,
            ],
            &[],
        )
    }

    /// `heimdall serve ARGS` with extra environment variables; waits for the
    /// "serving" line (so `ARGS` must pick the ports or leave them to a config
    /// that uses port 0).
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Served {
        use std::io::BufRead;
        let mut child = std::process::Command::new(heimdall_bin())
            .arg("serve")
            .args(args)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start heimdall serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(90))
            .expect("the server printed its serving line within 90 s");
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {line:?}"))
                .to_string()
        };
        Served {
            grpc: field("grpc="),
            http: field("http="),
            child,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM; the exit status once it stopped (within 60 s).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit within 60 s of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// kill -9, and wait for it to be gone.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// Waits for the process to end by itself (e.g. a test hook that aborts it);
    /// false when it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A xorshift generator for test choices (kill moments, abort points), replayable
/// from its seed.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The seed of a randomized test: `$HEIMDALL_SEED` to replay a run, else the clock.
pub fn test_seed() -> u64 {
    std::env::var("HEIMDALL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

/// The bucket [`Moto::start`] creates.
pub const BUCKET: &str = "heimdall-test";

/// The test venv's Python (set by `tests/run.sh`).
pub fn python() -> PathBuf {
    match std::env::var_os("HEIMDALL_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "HEIMDALL_TEST_PYTHON is not set: run the suite with tests/run.sh, which installs \
             the Python clients and servers (pyarrow, grpcio, prometheus_client, kafka-python, \
             moto, boto3) in a venv"
        ),
    }
}

/// Runs `tests/py/s3_tool.py ARGS` (boto3, pyarrow.flight); its JSON answer.
pub fn s3_tool(args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/s3_tool.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run s3_tool.py");
    assert!(
        out.status.success(),
        "s3_tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("s3_tool prints JSON")
}

/// A moto S3 server on a free loopback port, with the test bucket; killed on drop.
#[derive(Debug)]
pub struct Moto {
    /// The server process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto and creates bucket [`BUCKET`].
    pub fn start() -> Moto {
        let mut child = std::process::Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start moto");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(at) = line.find("http://127.0.0.1:") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let endpoint = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("moto printed its address within 60 s");
        s3_tool(&["create-bucket", &endpoint, BUCKET]);
        Moto { child, endpoint }
    }

    /// Object keys and sizes under `prefix`.
    pub fn keys(&self, prefix: &str) -> std::collections::BTreeMap<String, u64> {
        let v = s3_tool(&["list", &self.endpoint, BUCKET, prefix]);
        v["keys"]
            .as_object()
            .expect("keys")
            .iter()
            .map(|(k, s)| (k.clone(), s.as_u64().unwrap_or(0)))
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `heimdall query --output jsonl TARGET... Q` (`TARGET`: `--connect ADDR` or
/// `--data-dir DIR`), which must succeed; its JSON lines.
pub fn query_jsonl(target: &[&str], q: &str) -> Vec<serde_json::Value> {
    let mut args = vec!["query", "--output", "jsonl"];
    args.extend_from_slice(target);
    args.push(q);
    heimdall_ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Runs `heimdall ARGS`, which must succeed; its standard output.
pub fn heimdall_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(heimdall_bin())
        .args(args)
        .output()
        .expect("run heimdall");
    assert!(
        out.status.success(),
        "heimdall {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A plain HTTP/1.0 GET on loopback; the body.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut text = String::new();
    c.read_to_string(&mut text).expect("response");
    text.split_once("\r\n\r\n")
        .map_or(text.clone(), |(_, b)| b.to_string())
}

/// A plain HTTP/1.1 POST on loopback; the status code and the body.
pub fn http_post(addr: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        c,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut text = String::new();
    c.read_to_string(&mut text).expect("response");
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (code, body)
}

/// Runs the client script `tests/py/SCRIPT` with scenario `args[0]` against the
/// server `s` (its gRPC and HTTP addresses), then `args[1..]`; its last stdout
/// line, as JSON. The script must succeed.
pub fn py_scenario(script: &str, s: &Served, args: &[&str]) -> serde_json::Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join(script);
    let out = std::process::Command::new(python())
        .arg(path)
        .arg(args[0])
        .arg(&s.grpc)
        .arg(&s.http)
        .args(&args[1..])
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).expect("client JSON")
}

/// A path the test runner (`tests/run.sh`) provides in `var`.
pub fn env_path(var: &str, what: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => panic!("{var} is not set: run the suite with tests/run.sh, which installs {what}"),
    }
}

/// The tansu Kafka broker's binary.
pub fn tansu() -> PathBuf {
    env_path("HEIMDALL_TANSU", "the tansu Kafka broker")
}

/// The kafka-python producer of the tests (`py/kafka_producer.py`).
pub fn kafka_producer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/kafka_producer.py")
}

/// A tansu broker on a free loopback port, in-memory; killed on drop.
#[derive(Debug)]
pub struct Broker {
    child: std::process::Child,
    /// `host:port` on loopback.
    pub addr: String,
    /// `--storage-engine` and the environment it needs.
    storage: String,
    envs: Vec<(String, String)>,
}

impl Broker {
    /// A broker keeping everything in memory (lost when it stops).
    pub fn start() -> Broker {
        Broker::start_on("memory://tansu/", Vec::new())
    }

    /// A broker keeping its data in S3 (moto's test bucket): it survives restarts.
    pub fn start_on_s3(moto: &Moto) -> Broker {
        let envs = [
            ("AWS_ENDPOINT", moto.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        Broker::start_on(&format!("s3://{}/", BUCKET), envs)
    }

    pub fn start_on(storage: &str, envs: Vec<(String, String)>) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Broker::spawn(&addr, storage, &envs);
        Broker {
            child,
            addr,
            storage: storage.to_string(),
            envs,
        }
    }

    fn spawn(addr: &str, storage: &str, envs: &[(String, String)]) -> std::process::Child {
        let url = format!("tcp://{addr}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", storage])
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// kill -9 of the broker, then the same broker (address, storage) again.
    pub fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = Broker::spawn(&self.addr, &self.storage, &self.envs);
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://{}", self.addr))
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "creating topic {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces ids `start..end` over `seconds`, in the background.
    pub fn produce(
        &self,
        start: u64,
        end: u64,
        partitions: u32,
        seconds: f64,
    ) -> std::process::Child {
        Command::new(python())
            .arg(kafka_producer_script())
            .args(["produce", &self.addr, "logs"])
            .args([start, end].map(|x| x.to_string()))
            .arg(partitions.to_string())
            .arg(seconds.to_string())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the producer")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
