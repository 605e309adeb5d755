//! A misbehaving HTTPS "API server" for deadline and memory tests: it reads a request's head
//! and answers every request the same bad way (see [`Behaviour`]), below HTTP semantics the
//! well-behaved test API server keeps.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tls;

/// How every request is answered.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Headers at once (a `Content-Length` of 1 MB), then one body byte every `interval`.
    Trickle { interval: Duration },
    /// Headers at once, then a chunked body that never ends, as fast as the client reads.
    Endless,
    /// A `200` whose body is `bytes` bytes of text that is not JSON.
    Garbage { bytes: usize },
}

/// The server; dropping it stops it.
pub struct RawServer {
    addr: SocketAddr,
    ca_pem: String,
    requests: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl RawServer {
    pub fn start(behaviour: Behaviour) -> RawServer {
        let pki = tls::generate().expect("test PKI");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let acceptor = pki.acceptor.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let behaviour = behaviour.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // Read the request head.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut byte).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&byte[..n]),
                        }
                        if head.len() > 64 * 1024 {
                            return;
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = answer(&mut tls, &behaviour).await;
                });
            }
        });
        RawServer {
            addr,
            ca_pem: pki.ca_pem,
            requests,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Requests whose head was read.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// A kubeconfig for this server with a bearer token.
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: raw\n  cluster:\n    certificate-authority-data: {}\n    server: {}\nusers:\n- name: raw\n  user:\n    token: {token}\ncontexts:\n- name: raw\n  context:\n    cluster: raw\n    user: raw\ncurrent-context: raw\n",
            tls::base64(self.ca_pem.as_bytes()),
            self.url(),
        )
    }
}

async fn answer<S: AsyncWriteExt + Unpin>(
    io: &mut S,
    behaviour: &Behaviour,
) -> std::io::Result<()> {
    match behaviour {
        Behaviour::Trickle { interval } => {
            io.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{",
            )
            .await?;
            io.flush().await?;
            loop {
                tokio::time::sleep(*interval).await;
                io.write_all(b" ").await?;
                io.flush().await?;
            }
        }
        Behaviour::Garbage { bytes } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {bytes}\r\n\r\n"
            );
            io.write_all(head.as_bytes()).await?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = *bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                io.write_all(&chunk[..n]).await?;
                left -= n;
            }
            io.flush().await?;
            // Keep the connection until the client is done with it.
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
        Behaviour::Endless => {
            io.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .await?;
            let chunk = vec![b' '; 64 * 1024];
            let head = format!("{:x}\r\n", chunk.len());
            loop {
                io.write_all(head.as_bytes()).await?;
                io.write_all(&chunk).await?;
                io.write_all(b"\r\n").await?;
            }
        }
    }
}
