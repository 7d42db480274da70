//! `cairn-example-kv-server [ADDR]`: a key-value store marble over mutual TLS.
//!
//! Started by `cairn-premain`, which sets `MARBLE_PREDEFINED_*`. Only clients with a marble
//! certificate of the same deployment (chained to the marble root) get through the handshake.
//! ADDR: first argument, else `KV_LISTEN_ADDR`, else 127.0.0.1:8443 (port 0 picks a free port; the
//! bound address is printed as `kv-server listening on ADDR`).

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cairn_examples::{apply, parse_request, Request, DEFAULT_ADDR, MAX_LINE};
use cairn_marble::MarbleTls;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type Store = Arc<Mutex<HashMap<String, String>>>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv-server: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("-h") | Some("--help")) {
        println!(
            "Usage: cairn-example-kv-server [ADDR]\n\nServes PUT/GET over mutual TLS with the marble \
             identity from MARBLE_PREDEFINED_*.\n\nExample:\n  EDG_MARBLE_TYPE=kv-server cairn-premain \
             cairn-example-kv-server 127.0.0.1:8443"
        );
        return Ok(());
    }
    let addr = arg
        .or_else(|| std::env::var("KV_LISTEN_ADDR").ok())
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let tls = MarbleTls::from_process_env().context("loading the marble TLS identity")?;
    let acceptor = TlsAcceptor::from(tls.server_config()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(addr, acceptor))
}

async fn serve(addr: String, acceptor: TlsAcceptor) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    println!("kv-server listening on {bound}");
    std::io::stdout().flush()?;
    let store: Store = Arc::default();
    loop {
        let (tcp, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let store = store.clone();
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(stream) => {
                    eprintln!("kv-server: {peer}: mutual TLS established");
                    if let Err(e) = session(stream, store).await {
                        eprintln!("kv-server: {peer}: {e}");
                    }
                }
                Err(e) => eprintln!(
                    "kv-server: {peer}: refused: TLS handshake failed: {e} (the client has no \
                     marble certificate of this deployment)"
                ),
            }
        });
    }
}

async fn session<S>(stream: S, store: Store) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut lines = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n >= MAX_LINE {
            w.write_all(b"ERR line too long\n").await?;
            return Ok(());
        }
        let reply = match parse_request(&line) {
            Ok(req) => {
                let reply = {
                    let mut guard = match store.lock() {
                        Ok(g) => g,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    apply(&mut guard, &req)
                };
                if req == Request::Quit {
                    w.write_all(format!("{reply}\n").as_bytes()).await?;
                    w.shutdown().await?;
                    return Ok(());
                }
                reply
            }
            Err(e) => format!("ERR {e}"),
        };
        w.write_all(format!("{reply}\n").as_bytes()).await?;
        w.flush().await?;
    }
}
