use std::io::{Read, Write};
use std::net::TcpListener;

mod version;

fn main() {
    let listener = TcpListener::bind("0.0.0.0:8080").expect("bind 8080");
    for stream in listener.incoming().flatten() {
        let mut stream = stream;
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let body = format!("hello from the backend, version {}\n", version::VERSION);
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}", body.len(), body);
    }
}
