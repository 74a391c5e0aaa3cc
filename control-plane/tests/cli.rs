//! The `tollgate-cp` binary: settings precedence, refusals with one clear line,
//! migrate, and serving on a Unix socket or behind a token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate-cp");

fn cp() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("TOLLGATE_") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs to completion; returns (success, stderr).
fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn refusals_are_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/cp.db", dir.path().display());
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["serve", "--admin-listen", "0.0.0.0:8001"],
            vec![],
            "--admin-listen 0.0.0.0:8001: not a loopback address",
        ),
        (
            vec!["serve"],
            vec![("TOLLGATE_ADMIN_LISTEN", "nowhere")],
            "--admin-listen \"nowhere\"",
        ),
        // the flag wins over the environment
        (
            vec!["serve", "--admin-listen", "10.1.2.3:8001"],
            vec![("TOLLGATE_ADMIN_LISTEN", "nowhere")],
            "--admin-listen 10.1.2.3:8001: not a loopback",
        ),
        (
            vec!["serve", "--database-url", "mysql://x"],
            vec![],
            "--database-url",
        ),
        (
            vec!["migrate"],
            vec![("TOLLGATE_DATABASE_URL", "redis://x")],
            "--database-url",
        ),
        (
            vec!["serve", "--no-such-flag"],
            vec![],
            "unexpected argument",
        ),
        (
            vec![
                "serve",
                "--database-url",
                &db,
                "--admin-token-file",
                "/nonexistent",
            ],
            vec![],
            "--admin-token-file",
        ),
        (
            vec![
                "serve",
                "--database-url",
                &db,
                "--secrets-key-file",
                "/nonexistent",
            ],
            vec![],
            "--secrets-key-file",
        ),
        (
            vec!["serve", "--database-url", &db],
            vec![("TOLLGATE_SECRETS_KEY_FILE", "/dev/null")],
            "--secrets-key-file \"/dev/null\": holds no key",
        ),
    ];
    for (args, env, expected) in cases {
        let mut command = cp();
        command.args(&args).envs(env.iter().copied());
        let (ok, stderr) = run(&mut command);
        assert!(!ok, "{args:?} should fail");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn config_file_is_below_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cp.toml");
    std::fs::write(&file, "admin_listen = \"192.0.2.1:8001\"\n").unwrap();
    let (_, from_file) = run(cp().args(["serve", "--config", file.to_str().unwrap()]));
    assert!(from_file.contains("192.0.2.1:8001"), "{from_file}");
    let (_, from_env) = run(cp()
        .args(["serve", "--config", file.to_str().unwrap()])
        .env("TOLLGATE_ADMIN_LISTEN", "192.0.2.2:8001"));
    assert!(from_env.contains("192.0.2.2:8001"), "{from_env}");
}

#[test]
fn migrate_is_idempotent_and_creates_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", path.display());
    for _ in 0..2 {
        let (ok, stderr) = run(cp().args(["migrate", "--database-url", &url]));
        assert!(ok, "{stderr}");
    }
    assert!(path.exists());
}

/// A running `serve`, killed on drop.
struct Server {
    child: Child,
    admin: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` and waits for its "serving" log line (which names the address).
fn serve(args: &[&str]) -> Server {
    let mut child = cp()
        .arg("serve")
        .args(args)
        .args(["--cluster-listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let admin = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if line.contains("serving the Admin API") {
            let admin = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("admin="))
                .unwrap()
                .to_string();
            break admin;
        }
    };
    // keep draining stderr so the child never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    Server { child, admin }
}

fn http_get(stream: &mut impl ReadWrite, path: &str, token: Option<&str>) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn unix_socket_is_private_and_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/cp.db", dir.path().display());
    let socket = dir.path().join("admin.sock");
    let listen = format!("unix:{}", socket.display());
    let server = serve(&["--database-url", &db, "--admin-listen", &listen]);
    assert_eq!(server.admin, listen);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let response = http_get(&mut stream, "/status", None);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"reachable\":true"));

    // SIGKILL leaves the socket file behind; the next start replaces it
    drop(server);
    assert!(socket.exists());
    let server = serve(&["--database-url", &db, "--admin-listen", &listen]);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    assert!(http_get(&mut stream, "/", None).starts_with("HTTP/1.1 200"));

    // a live socket is not stolen
    let mut second = cp()
        .args([
            "serve",
            "--database-url",
            &db,
            "--admin-listen",
            &listen,
            "--cluster-listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = second.wait().unwrap();
    assert!(!status.success());
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("another process is serving"), "{stderr}");
    drop(server);
}

#[test]
fn exposed_listener_requires_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/cp.db", dir.path().display());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "# admin token\ncorrect-horse-battery-staple\n").unwrap();
    let server = serve(&[
        "--database-url",
        &db,
        "--admin-listen",
        "0.0.0.0:0",
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ]);
    let port = server.admin.rsplit(':').next().unwrap().to_string();
    let connect = || std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let denied = http_get(&mut connect(), "/services", None);
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(denied.contains("{\"message\":\"Unauthorized\"}"));
    let wrong = http_get(
        &mut connect(),
        "/services",
        Some("correct-horse-battery-stapl"),
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let allowed = http_get(
        &mut connect(),
        "/services",
        Some("correct-horse-battery-staple"),
    );
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    let root = http_get(&mut connect(), "/", Some("correct-horse-battery-staple"));
    assert!(!root.contains("correct-horse-battery-staple"));
    assert!(root.contains("\"admin_token\":\"******\""));
    let status = http_get(
        &mut connect(),
        "/status",
        Some("correct-horse-battery-staple"),
    );
    let body: serde_json::Value =
        serde_json::from_str(status.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        body["server"]["connections_accepted"].as_u64().unwrap() >= 5,
        "{body}"
    );
    assert!(
        body["server"]["total_requests"].as_u64().unwrap() >= 5,
        "{body}"
    );
    assert!(
        body["server"]["connections_active"].as_u64().unwrap() >= 1,
        "{body}"
    );
}
