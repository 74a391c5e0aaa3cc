//! The `tollgate-dp` binary: settings errors, signals, the declarative file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate-dp");

fn serve(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.arg("serve").args(args).env("RUST_LOG", "info");
    command
}

/// (arguments, environment, the setting the error must name)
type SettingsCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn invalid_settings_exit_non_zero_with_one_line() {
    let cases: &[SettingsCase] = &[
        (&["--proxy-listen", "not-an-address"], &[], "--proxy-listen"),
        (&["--workers", "0"], &[], "--workers"),
        (
            &[],
            &[("TOLLGATE_TRUSTED_IPS", "10.0.0.0/8,nonsense")],
            "--trusted-ips",
        ),
        (&["--control-plane", "https://cp:8005"], &[], "--cluster-ca"),
        (&["--tls-key", "/nonexistent.pem"], &[], "--tls-cert"),
        // Neither a control plane nor a file: nothing to serve, so refuse.
        (&[], &[], "--control-plane https://CP:8005"),
        (
            &["--config-file", "k.yml"],
            &[("TOLLGATE_LOG_FORMAT", "xml")],
            "--log-format",
        ),
    ];
    for (args, env, setting) in cases {
        let mut command = serve(args);
        for (name, value) in *env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
    }
    // A flag wins over the environment.
    let output = serve(&["--workers", "0"])
        .env("TOLLGATE_WORKERS", "2")
        .output()
        .unwrap();
    assert!(!output.status.success());
}

struct Running {
    child: Child,
    status: SocketAddr,
    proxy: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
}

/// `extra` with the proxy and status listeners on free loopback ports.
fn on_loopback<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--proxy-listen",
        "127.0.0.1:0",
        "--status-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    args
}

/// Starts the binary on loopback ports and reads its addresses from the log.
fn start(extra: &[&str]) -> Running {
    let mut args = on_loopback(&["--workers", "1"]);
    args.extend_from_slice(extra);
    let mut child = serve(&args).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let listening = wait_for_line(&lines, "data plane listening");
    let addr_after = |key: &str| -> SocketAddr {
        let rest = &listening[listening.find(key).unwrap() + key.len()..];
        let text: String = rest
            .trim_start_matches('[')
            .chars()
            .take_while(|c| !matches!(c, ' ' | ']' | ','))
            .collect();
        text.parse().unwrap()
    };
    Running {
        status: addr_after("status_addr="),
        proxy: addr_after("proxy_addrs="),
        child,
        lines,
    }
}

fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no log line containing {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn sigterm_stops_gracefully_with_exit_zero() {
    let (_dir, file) = empty_config();
    let mut running = start(&["--config-file", file.to_str().unwrap()]);
    let (status, body) = http_get(running.status, "/status/ready");
    assert_eq!(status, 200, "{body}");
    let (_, body) = http_get(running.status, "/status");
    assert!(
        body.contains("\"control_plane\":null"),
        "no control plane in file mode: {body}"
    );
    assert_eq!(http_get(running.proxy, "/").0, 404);
    signal(&running.child, "TERM");
    let exit = running.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    wait_for_line(&running.lines, "shutting down");
}

/// A minimal keep-alive HTTP/1.1 upstream answering `200 ok` to everything.
fn tiny_upstream() -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if stream.write_all(reply).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn declarative(upstream: SocketAddr, path: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://{upstream}\n  routes:\n  - name: r\n    paths: [\"{path}\"]\n"
    )
}

#[test]
fn config_file_is_applied_and_reloaded_on_sighup() {
    let upstream = tiny_upstream();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yml");
    std::fs::write(&file, declarative(upstream, "/a")).unwrap();
    let mut running = start(&["--config-file", file.to_str().unwrap()]);
    assert_eq!(http_get(running.status, "/status/ready").0, 200);
    assert_eq!(http_get(running.proxy, "/a").0, 200);
    assert_eq!(http_get(running.proxy, "/b").0, 404);

    std::fs::write(&file, declarative(upstream, "/b")).unwrap();
    signal(&running.child, "HUP");
    wait_for_line(&running.lines, "configuration reloaded");
    assert_eq!(http_get(running.proxy, "/b").0, 200);
    assert_eq!(http_get(running.proxy, "/a").0, 404);

    std::fs::write(&file, "_format_version: \"3.0\"\nservices: [ {{ not yaml").unwrap();
    signal(&running.child, "HUP");
    wait_for_line(&running.lines, "keeping the previous configuration");
    assert_eq!(http_get(running.proxy, "/b").0, 200);

    signal(&running.child, "TERM");
    assert!(running.child.wait().unwrap().success());
}

#[test]
fn invalid_config_file_at_start_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yml");
    std::fs::write(&file, "services: [ {{").unwrap();
    let output = serve(&on_loopback(&["--config-file", file.to_str().unwrap()]))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("kong.yml"), "{stderr}");
}

/// A declarative file with nothing in it, in a directory kept while the guard lives.
fn empty_config() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yml");
    std::fs::write(&file, "_format_version: \"3.0\"\n").unwrap();
    (dir, file)
}

/// Runs to completion; returns (success, stderr).
fn output(args: &[&str]) -> (bool, String) {
    let output = serve(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A cluster CA, and certificates it signs, written as PEM files.
struct TestPki {
    dir: tempfile::TempDir,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    fn new() -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test cluster CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), cert.pem()).unwrap();
        TestPki {
            dir,
            ca: rcgen::Issuer::new(params, key),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `NAME.crt`/`NAME.key` valid from `from` to `until` days from now.
    fn issue(&self, name: &str, from: i64, until: i64) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let now = std::time::SystemTime::now();
        let day = Duration::from_secs(86_400);
        let at = |days: i64| {
            if days >= 0 {
                now + day * days as u32
            } else {
                now - day * (-days) as u32
            }
        };
        params.not_before = at(from).into();
        params.not_after = at(until).into();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.dir.path().join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(
            self.dir.path().join(format!("{name}.key")),
            key.serialize_pem(),
        )
        .unwrap();
    }

    /// `serve` arguments for a control plane at a closed port with `cert`/`key`.
    fn args(&self, cert: &str, key: &str) -> Vec<String> {
        vec![
            "--control-plane".into(),
            "https://127.0.0.1:9".into(),
            "--cluster-ca".into(),
            self.path("ca.crt"),
            "--cluster-cert".into(),
            self.path(cert),
            "--cluster-key".into(),
            self.path(key),
            "--cache-dir".into(),
            self.dir.path().display().to_string(),
            "--proxy-listen".into(),
            "127.0.0.1:0".into(),
            "--status-listen".into(),
            "127.0.0.1:0".into(),
        ]
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn unusable_cluster_certificates_stop_start_up_naming_the_setting() {
    let pki = TestPki::new();
    pki.issue("dp", -1, 365);
    pki.issue("other", -1, 365);
    pki.issue("expired", -30, -1);
    let cases: &[(&str, &str, &str)] = &[
        (
            "dp.crt",
            "other.key",
            "invalid setting --cluster-key: it does not match --cluster-cert",
        ),
        (
            "expired.crt",
            "expired.key",
            "--cluster-cert: the certificate 'CN=expired' expired on",
        ),
        (
            "missing.crt",
            "dp.key",
            "invalid setting --cluster-cert: cannot read",
        ),
    ];
    for (cert, key, expected) in cases {
        let (ok, stderr) = output(&strs(&pki.args(cert, key)));
        assert!(!ok, "{cert}/{key} should be refused");
        assert!(stderr.contains(expected), "{cert}/{key}: {stderr}");
        assert!(
            !stderr.contains("data plane listening"),
            "refused before listening: {stderr}"
        );
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.starts_with("tollgate-dp: "))
                .count(),
            1,
            "{stderr}"
        );
    }
}

#[test]
fn a_certificate_expiring_within_30_days_is_a_warning() {
    let pki = TestPki::new();
    pki.issue("soon", -300, 10);
    let mut child = serve(&strs(&pki.args("soon.crt", "soon.key")))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let warning = wait_for_line(&lines, "expires in");
    assert!(
        warning.contains("--cluster-cert") && warning.contains("day(s)"),
        "{warning}"
    );
    // It still starts, and says why it cannot sync.
    let failure = wait_for_line(&lines, "cannot sync with the control plane");
    assert!(
        failure.contains("connection refused by 127.0.0.1:9"),
        "{failure}"
    );
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_busy_port_names_the_listener_and_address_once() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (_dir, file) = empty_config();
    let (ok, stderr) = output(&[
        "--config-file",
        file.to_str().unwrap(),
        "--proxy-listen",
        "127.0.0.1:0",
        "--status-listen",
        &addr,
    ]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("--status-listen {addr}: address already in use")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
}

#[test]
fn malformed_toml_names_the_line_and_typos_get_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dp.toml");
    std::fs::write(&file, "workers = 1\n\nproxy_listen = [\"127.0.0.1:0\"\n").unwrap();
    let (ok, stderr) = output(&["--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("dp.toml: line 3: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    let (ok, stderr) = output(&["--proxy-lisen", "x"]);
    assert!(!ok);
    assert!(
        stderr.contains("did you mean '--proxy-listen'?"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn help_describes_every_flag_with_its_variable() {
    let output = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let mut flags = 0;
    let lines: Vec<&str> = help.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(flag) = line.trim().strip_prefix("--") else {
            continue;
        };
        let name = flag.split_whitespace().next().unwrap();
        if name == "help" {
            continue;
        }
        flags += 1;
        let description = lines.get(i + 1).copied().unwrap_or("");
        let variable = format!("[env: TOLLGATE_{}=", name.to_uppercase().replace('-', "_"));
        assert!(
            description.trim().len() > variable.len() && description.contains(&variable),
            "--{name} needs a description and {variable}: {description:?}"
        );
    }
    assert!(flags >= 20, "{help}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let (_dir, file) = empty_config();
    let mut child = serve(&on_loopback(&[
        "--config-file",
        file.to_str().unwrap(),
        "--log-format",
        "json",
    ]))
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    let object: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(object["level"], "INFO", "{first}");
    assert!(object["fields"]["message"].is_string(), "{first}");
}
