//! A password in `--database-url`, in the userinfo or as a query parameter, is
//! masked in `GET /` and never written to the log; a secret parameter the
//! driver does not support (and would log) is refused without being echoed
//! (PostgreSQL only: an SQLite URL has no password).

use crate::support::{Backend, TestDb};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

const QUERY_SECRET: &str = "Query-Secret-4711";
const KEY_SECRET: &str = "Key-Secret-0815";
const USERINFO_SECRET: &str = "Userinfo-Secret-42";

/// A `tollgate-cp serve`, killed on drop, whose stderr lines are collected.
struct Serving {
    child: Child,
    admin: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(database_url: &str) -> Serving {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate-cp"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TOLLGATE_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args(["serve", "--database-url", database_url])
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--cluster-listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let admin = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        log.lock().unwrap().push(line.clone());
        if line.contains("serving the Admin API") {
            break line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("admin="))
                .unwrap()
                .to_string();
        }
    };
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Serving { child, admin, log }
}

fn get_root(admin: &str) -> serde_json::Value {
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_in_the_database_url_are_masked() {
    let db = TestDb::new(Backend::Postgres).await;
    // PostgreSQL trusts local connections here, so any password is accepted.
    let with_userinfo = db.url.replacen(
        "://postgres@",
        &format!("://postgres:{USERINFO_SECRET}@"),
        1,
    );
    assert_ne!(
        with_userinfo, db.url,
        "DATABASE_URL names the user postgres"
    );
    let separator = if with_userinfo.contains('?') {
        '&'
    } else {
        '?'
    };
    let url =
        format!("{with_userinfo}{separator}password={QUERY_SECRET}&application_name=tollgate");

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-cp"))
        .args(["serve", "--admin-listen", "127.0.0.1:0", "--database-url"])
        .arg(format!("{url}&sslpassword={KEY_SECRET}"))
        .env_remove("TOLLGATE_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("--database-url") && stderr.contains("\"sslpassword\" is not supported"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for secret in [QUERY_SECRET, KEY_SECRET, USERINFO_SECRET] {
        assert!(!stderr.contains(secret), "{stderr}");
    }

    let serving = tokio::task::spawn_blocking(move || serve(&url))
        .await
        .unwrap();
    let admin = serving.admin.clone();
    let root = tokio::task::spawn_blocking(move || get_root(&admin))
        .await
        .unwrap();
    let shown = root["configuration"]["database_url"].as_str().unwrap();
    assert!(
        shown.contains("://postgres:******@")
            && shown.contains("password=******&application_name=tollgate"),
        "{shown}"
    );
    let log = serving.log.lock().unwrap().join("\n");
    assert!(log.contains("password=******"), "{log}");
    for secret in [QUERY_SECRET, KEY_SECRET, USERINFO_SECRET] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!log.contains(secret), "{log}");
    }
}
