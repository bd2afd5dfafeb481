//! The listener: one thread per connection, one request per connection.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;
use std::{env, thread};

fn main() {
    let port = env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    let addr = format!("0.0.0.0:{port}");
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("api: cannot listen on {addr}: {e}");
        std::process::exit(1);
    });
    eprintln!("api {} listening on {addr}", api::version::VERSION);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                thread::spawn(move || {
                    if let Err(e) = serve(stream) {
                        eprintln!("api: connection error: {e}");
                    }
                });
            }
            Err(e) => eprintln!("api: accept failed: {e}"),
        }
    }
}

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    // A client that never finishes its headers must not pin a thread forever.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read until the end of the headers; bodies are never needed. 8 KiB caps
    // the head like most servers do.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    stream.write_all(&api::handle(&head).to_bytes())?;
    stream.flush()
}
