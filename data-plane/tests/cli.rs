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

/// Starts the binary on loopback ports and reads its addresses from the log.
fn start(extra: &[&str]) -> Running {
    let mut args = vec![
        "--proxy-listen",
        "127.0.0.1:0",
        "--status-listen",
        "127.0.0.1:0",
        "--workers",
        "1",
    ];
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
    let mut running = start(&[]);
    let (status, body) = http_get(running.status, "/status/ready");
    assert_eq!(status, 503, "{body}");
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
    let output = serve(&[
        "--config-file",
        file.to_str().unwrap(),
        "--proxy-listen",
        "127.0.0.1:0",
        "--status-listen",
        "127.0.0.1:0",
    ])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("kong.yml"), "{stderr}");
}
