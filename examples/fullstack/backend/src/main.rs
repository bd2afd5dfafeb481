//! The server: hyper 0.14 on tokio, HTTP/1.1 on 0.0.0.0:$PORT (default 8080). Routes are
//! decided in lib.rs; the database routes connect to PostgreSQL per request (tokio-postgres,
//! no TLS), so the server starts and answers /version and /health without a database.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use api::{db, Note, Reply, Route};
use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Request, Response, Server};
use tokio_postgres::{Client, Config, NoTls};

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let database = match db::config_from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("api: {e}");
            std::process::exit(2);
        }
    };
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let make = make_service_fn(move |_conn| {
        let database = database.clone();
        async move { Ok::<_, Infallible>(service_fn(move |req| handle(req, database.clone()))) }
    });
    let server = match Server::try_bind(&addr) {
        Ok(b) => b.serve(make),
        Err(e) => {
            eprintln!("api: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("api {} listening on {addr}", api::version::VERSION);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = server.with_graceful_shutdown(shutdown).await {
        eprintln!("api: server error: {e}");
    }
}

async fn handle(req: Request<Body>, database: Option<Config>) -> Result<Response<Body>, Infallible> {
    let route = api::route(req.method().as_str(), req.uri().path());
    let reply = match api::static_reply(route) {
        Some(reply) => reply,
        None => match query(route, database).await {
            Ok(reply) => reply,
            Err(e) => api::db_error_reply(&e),
        },
    };
    Ok(Response::builder()
        .status(reply.status)
        .header("Content-Type", reply.content_type)
        .body(Body::from(reply.body))
        .expect("a status and a static header are always valid"))
}

async fn query(route: Route, database: Option<Config>) -> Result<Reply, String> {
    let config = database.ok_or("not configured (set DATABASE_URL or PGHOST)")?;
    let client = connect(&config).await?;
    match route {
        Route::Notes => {
            let rows = client
                .query(
                    "SELECT n.id, u.email, n.body, n.created_at::text FROM notes n \
                     JOIN users u ON u.id = n.user_id ORDER BY n.created_at DESC, n.id DESC LIMIT 50",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
            let notes: Vec<Note> = rows
                .iter()
                .map(|r| Note { id: r.get(0), author: r.get(1), body: r.get(2), created_at: r.get(3) })
                .collect();
            Ok(api::notes_reply(&notes))
        }
        _ => {
            let row = client
                .query_one("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM notes)", &[])
                .await
                .map_err(|e| e.to_string())?;
            Ok(api::stats_reply(row.get(0), row.get(1)))
        }
    }
}

/// One connection per request: the example favours no pool over throughput. A database that
/// does not answer in 3 s is reported, not waited for.
async fn connect(config: &Config) -> Result<Client, String> {
    let (client, connection) = tokio::time::timeout(Duration::from_secs(3), config.connect(NoTls))
        .await
        .map_err(|_| "no answer within 3 s".to_string())?
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("api: database connection: {e}");
        }
    });
    Ok(client)
}
