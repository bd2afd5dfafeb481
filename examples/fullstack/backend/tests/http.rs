//! Runs the real binary on a free port and talks HTTP to it over TCP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Kills the server even when an assertion fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    // Bind port 0, read what the kernel chose, release it for the server.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            // Not listening yet: the binary is still starting.
            Err(_) if Instant::now() < deadline => sleep(Duration::from_millis(50)),
            Err(e) => panic!("server did not listen on {port} within 5 s: {e}"),
        }
    };
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_version_and_health() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_api"))
        .env("PORT", port.to_string())
        .env_remove("DATABASE_URL")
        .env_remove("PGHOST")
        .spawn()
        .expect("spawn api");
    let _server = Server(child);

    let version = get(port, "/version");
    assert!(version.starts_with("HTTP/1.1 200 OK\r\n"), "{version}");
    assert!(version.ends_with(&format!("\r\n\r\nbackend {}\n", api::version::VERSION)), "{version}");

    let health = get(port, "/health");
    assert!(health.to_ascii_lowercase().contains("content-length: 3\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");

    assert!(get(port, "/missing").starts_with("HTTP/1.1 404 "));
}

/// The database routes: with PGHOST (the migrated PostgreSQL scripts/services-up.sh starts, or
/// the test suite's), /stats counts the migrations' tables; without one they answer 503 and
/// say why, and the server keeps serving.
#[test]
fn database_routes() {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api"));
    cmd.env("PORT", port.to_string()).env_remove("DATABASE_URL");
    let configured = std::env::var("PGHOST").is_ok();
    let _server = Server(cmd.spawn().expect("spawn api"));
    let stats = get(port, "/stats");
    if configured {
        assert!(stats.starts_with("HTTP/1.1 200 OK\r\n"), "{stats}");
        let body = stats.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["users"].is_i64() && v["notes"].is_i64(), "{body}");
        assert!(get(port, "/notes").contains("\"notes\":["));
    } else {
        assert!(stats.starts_with("HTTP/1.1 503 "), "{stats}");
        assert!(stats.contains("not configured"), "{stats}");
    }
    assert!(get(port, "/health").ends_with("ok\n"));
}
