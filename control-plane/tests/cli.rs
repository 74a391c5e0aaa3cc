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

/// Writes `ca.crt cp.crt cp.key` (and `other.key`, `expired.crt/.key`) to `dir`.
fn cluster_files(dir: &std::path::Path) {
    use tollgate_control_plane::cert::{ClusterCa, Role, Validity};
    let ca = ClusterCa::generate("test CA").unwrap();
    let cp = ca
        .issue("tollgate-cp", Role::ControlPlane, Validity::leaf())
        .unwrap();
    let other = ca
        .issue("tollgate-cp", Role::ControlPlane, Validity::leaf())
        .unwrap();
    let expired = ca
        .issue(
            "tollgate-cp",
            Role::ControlPlane,
            Validity {
                not_before_days: -30,
                not_after_days: -1,
            },
        )
        .unwrap();
    let soon = ca
        .issue(
            "tollgate-cp",
            Role::ControlPlane,
            Validity {
                not_before_days: -30,
                not_after_days: 5,
            },
        )
        .unwrap();
    for (name, text) in [
        ("ca.crt", &ca.cert_pem),
        ("cp.crt", &cp.cert_pem),
        ("cp.key", &cp.key_pem),
        ("other.key", &other.key_pem),
        ("expired.crt", &expired.cert_pem),
        ("expired.key", &expired.key_pem),
        ("soon.crt", &soon.cert_pem),
        ("soon.key", &soon.key_pem),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn start_up_refuses_local_mistakes_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    cluster_files(dir.path());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let db = format!("sqlite://{}/cp.db", dir.path().display());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let toml = dir.path().join("cp.toml");
    std::fs::write(
        &toml,
        "database_url = \"sqlite://x.db\"\n\nno_migrate = yes\n",
    )
    .unwrap();
    let pg = format!("postgres://postgres@127.0.0.1:{closed_port}/tollgate");
    let cluster = |cert: &str, key: &str| -> Vec<String> {
        [
            "serve",
            "--database-url",
            &db,
            "--admin-listen",
            "127.0.0.1:0",
            "--cluster-listen",
            "127.0.0.1:0",
            "--cluster-ca",
            &file("ca.crt"),
            "--cluster-cert",
            &file(cert),
            "--cluster-key",
            &file(key),
        ]
        .map(String::from)
        .to_vec()
    };
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            cluster("cp.crt", "other.key"),
            "invalid setting --cluster-key: it does not match --cluster-cert".into(),
        ),
        (
            cluster("expired.crt", "expired.key"),
            "invalid setting --cluster-cert: the certificate".into(),
        ),
        (
            cluster("missing.crt", "cp.key"),
            "invalid setting --cluster-cert: cannot read".into(),
        ),
        (
            [
                "serve",
                "--database-url",
                &pg,
                "--admin-listen",
                "127.0.0.1:0",
            ]
            .map(String::from)
            .to_vec(),
            format!("connection refused at 127.0.0.1:{closed_port}"),
        ),
        (
            ["migrate", "--database-url", &pg]
                .map(String::from)
                .to_vec(),
            format!("connection refused at 127.0.0.1:{closed_port}"),
        ),
        (
            ["serve", "--config", toml.to_str().unwrap()]
                .map(String::from)
                .to_vec(),
            "cp.toml: line 3: ".into(),
        ),
        (
            [
                "serve",
                "--database-url",
                &db,
                "--admin-listen",
                &busy_addr,
                "--cluster-listen",
                "127.0.0.1:0",
            ]
            .map(String::from)
            .to_vec(),
            format!("invalid setting --admin-listen: cannot listen on {busy_addr}"),
        ),
        (
            ["serve", "--admin-lisen", "127.0.0.1:0"]
                .map(String::from)
                .to_vec(),
            "did you mean '--admin-listen'?".into(),
        ),
    ];
    for (args, expected) in cases {
        let (ok, stderr) = run(cp().args(&args));
        assert!(!ok, "{args:?} should fail");
        let refusal: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("tollgate-cp: "))
            .collect();
        assert_eq!(refusal.len(), 1, "{args:?}: {stderr}");
        assert!(refusal[0].contains(&expected), "{args:?}: {stderr}");
        assert!(stderr.matches("in use").count() <= 1, "said once: {stderr}");
        assert!(!stderr.contains("pool timed out"), "{stderr}");
    }
    drop(busy);
}

#[test]
fn a_cluster_certificate_expiring_soon_is_a_warning_and_logs_can_be_json() {
    let dir = tempfile::tempdir().unwrap();
    cluster_files(dir.path());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let db = format!("sqlite://{}/cp.db", dir.path().display());
    let mut child = cp()
        .args([
            "serve",
            "--database-url",
            &db,
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--cluster-listen", "127.0.0.1:0"])
        .args(["--cluster-ca", &file("ca.crt")])
        .args(["--cluster-cert", &file("soon.crt")])
        .args(["--cluster-key", &file("soon.key")])
        .env("TOLLGATE_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let object: serde_json::Value = serde_json::from_str(&line).unwrap();
        seen.push(object);
        if line.contains("serving the Admin API") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let warning = seen
        .iter()
        .find(|o| o["level"] == "WARN" && o["fields"]["message"].to_string().contains("expires in"))
        .unwrap_or_else(|| panic!("no expiry warning in {seen:?}"));
    assert!(
        warning["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("--cluster-cert"),
        "{warning}"
    );
}
