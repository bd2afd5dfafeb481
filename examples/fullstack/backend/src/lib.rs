//! Routing and response bodies as pure functions, so they are unit-tested without sockets
//! or a database; `main.rs` owns the I/O (hyper, tokio-postgres).

pub mod db;
pub mod version;

use serde_json::{json, Value};
use version::VERSION;

/// What a request asks for, decided from its method and path alone.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Route {
    Version,
    Health,
    Index,
    /// The newest notes with their authors, read from PostgreSQL.
    Notes,
    /// Row counts of the migrations' tables, read from PostgreSQL.
    Stats,
    /// A fixed text answer; routes added by an edit (benchmarks add some this way).
    Extra(&'static str),
    NotFound,
    MethodNotAllowed,
}

/// The query string never selects a route; only GET is served.
pub fn route(method: &str, path: &str) -> Route {
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    match path.split('?').next().unwrap_or(path) {
        "/version" => Route::Version,
        "/health" => Route::Health,
        "/" => Route::Index,
        "/notes" => Route::Notes,
        "/stats" => Route::Stats,
        _ => Route::NotFound,
    }
}

/// A response before hyper sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Reply { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }

    pub fn json(status: u16, body: &Value) -> Self {
        Reply { status, content_type: "application/json", body: format!("{body}\n") }
    }
}

/// The reply of every route that needs no database; `None` for those that do.
pub fn static_reply(route: Route) -> Option<Reply> {
    Some(match route {
        Route::Version => Reply::text(200, format!("backend {VERSION}\n")),
        Route::Health => Reply::text(200, "ok\n"),
        Route::Index => Reply::text(
            200,
            format!("fullstack example api, backend {VERSION}\ntry /version, /health, /notes or /stats\n"),
        ),
        Route::Extra(text) => Reply::text(200, format!("{text}\n")),
        Route::NotFound => Reply::text(404, "not found\n"),
        Route::MethodNotAllowed => Reply::text(405, "method not allowed\n"),
        Route::Notes | Route::Stats => return None,
    })
}

/// A note as `/notes` lists it.
#[derive(Debug, PartialEq, Eq)]
pub struct Note {
    pub id: i64,
    pub author: String,
    pub body: String,
    pub created_at: String,
}

pub fn notes_reply(notes: &[Note]) -> Reply {
    let items: Vec<Value> = notes
        .iter()
        .map(|n| json!({"id": n.id, "author": n.author, "body": n.body, "created_at": n.created_at}))
        .collect();
    Reply::json(200, &json!({ "notes": items }))
}

pub fn stats_reply(users: i64, notes: i64) -> Reply {
    Reply::json(200, &json!({ "users": users, "notes": notes }))
}

/// The database is down or not migrated: 503 with the reason, the server keeps serving.
pub fn db_error_reply(error: &str) -> Reply {
    Reply::json(503, &json!({ "error": format!("database: {error}") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/version"), Route::Version);
        assert_eq!(route("GET", "/health?x=1"), Route::Health);
        assert_eq!(route("GET", "/notes"), Route::Notes);
        assert_eq!(route("GET", "/stats"), Route::Stats);
        assert_eq!(route("GET", "/nope"), Route::NotFound);
        assert_eq!(static_reply(Route::Extra("hi")).unwrap().body, "hi\n");
        assert_eq!(route("POST", "/health"), Route::MethodNotAllowed);
    }

    #[test]
    fn static_replies() {
        assert_eq!(static_reply(Route::Version).unwrap().body, format!("backend {VERSION}\n"));
        assert_eq!(static_reply(Route::Health).unwrap().body, "ok\n");
        assert!(static_reply(Route::Index).unwrap().body.contains(VERSION));
        assert_eq!(static_reply(Route::NotFound).unwrap().status, 404);
        assert_eq!(static_reply(Route::MethodNotAllowed).unwrap().status, 405);
        assert!(static_reply(Route::Notes).is_none());
    }

    #[test]
    fn json_bodies() {
        let note = Note { id: 7, author: "a@x".into(), body: "hi \"there\"".into(), created_at: "t".into() };
        let reply = notes_reply(&[note]);
        let v: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(v["notes"][0]["body"], "hi \"there\"");
        assert_eq!(reply.content_type, "application/json");
        assert_eq!(serde_json::from_str::<Value>(&stats_reply(2, 3).body).unwrap()["notes"], 3);
        assert_eq!(db_error_reply("down").status, 503);
    }
}
