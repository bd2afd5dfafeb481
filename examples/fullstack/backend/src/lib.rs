//! Request parsing and routing as pure functions, so they can be unit-tested
//! without sockets; `main.rs` only moves bytes.

pub mod version;

use version::VERSION;

/// The parts of a request line the router needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
}

/// Parses the request line (`GET /path HTTP/1.1`) at the head of `head`.
/// Headers are ignored: no route depends on them.
pub fn parse_request(head: &str) -> Option<Request<'_>> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?;
    let target = parts.next()?;
    let proto = parts.next()?;
    if !proto.starts_with("HTTP/") || parts.next().is_some() {
        return None;
    }
    // The query string never selects a route.
    let path = target.split('?').next().unwrap_or(target);
    Some(Request { method, path })
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Response { status, body: body.into() }
    }

    /// Serializes the response; `Connection: close` because every connection
    /// carries exactly one request.
    pub fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Unknown",
        };
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.status,
            reason,
            self.body.len(),
            self.body
        )
        .into_bytes()
    }
}

pub fn route(req: &Request) -> Response {
    if req.method != "GET" {
        return Response::text(405, "method not allowed\n");
    }
    match req.path {
        "/version" => Response::text(200, format!("backend {VERSION}\n")),
        "/health" => Response::text(200, "ok\n"),
        "/" => Response::text(
            200,
            format!("fullstack example api, backend {VERSION}\ntry /version or /health\n"),
        ),
        _ => Response::text(404, "not found\n"),
    }
}

/// Whole pipeline for one request head; a malformed head gets a 400.
pub fn handle(head: &str) -> Response {
    match parse_request(head) {
        Some(req) => route(&req),
        None => Response::text(400, "bad request\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_line() {
        let req = parse_request("GET /version HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(req, Request { method: "GET", path: "/version" });
    }

    #[test]
    fn strips_query_string() {
        assert_eq!(parse_request("GET /health?x=1 HTTP/1.0\r\n").unwrap().path, "/health");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_request("").is_none());
        assert!(parse_request("GET /").is_none());
        assert!(parse_request("GET / FTP/1").is_none());
        assert_eq!(handle("nonsense").status, 400);
    }

    #[test]
    fn routes() {
        let get = |path| route(&Request { method: "GET", path });
        assert_eq!(get("/version").body, format!("backend {VERSION}\n"));
        assert_eq!(get("/health").body, "ok\n");
        assert!(get("/").body.contains(VERSION));
        assert_eq!(get("/nope").status, 404);
        assert_eq!(route(&Request { method: "POST", path: "/health" }).status, 405);
    }

    #[test]
    fn serializes_with_length_and_close() {
        let text = String::from_utf8(handle("GET /health HTTP/1.1\r\n\r\n").to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nok\n"));
    }
}
