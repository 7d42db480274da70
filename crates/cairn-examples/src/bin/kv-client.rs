//! `cairn-example-kv-client [ADDR] [KEY] [VALUE]`: write a key through the kv-server marble and
//! read it back over mutual TLS.
//!
//! ADDR: first argument, else `KV_SERVER_ADDR`, else 127.0.0.1:8443. Exit 0 when the value read
//! back matches; 1 with a clear message otherwise (for example when the TLS handshake fails because
//! client and server hold certificates of different marble roots, as after a SecurityVersion update).

use std::process::ExitCode;

use anyhow::{bail, Context};
use cairn_examples::{server_name_of, DEFAULT_ADDR};
use cairn_marble::MarbleTls;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(
        args.first().map(String::as_str),
        Some("-h") | Some("--help")
    ) {
        println!(
            "Usage: cairn-example-kv-client [ADDR] [KEY] [VALUE]\n\nWrites KEY=VALUE through the kv-server \
             marble and reads it back over mutual TLS.\n\nExample:\n  EDG_MARBLE_TYPE=kv-client cairn-premain \
             cairn-example-kv-client 127.0.0.1:8443 greeting hello"
        );
        return ExitCode::SUCCESS;
    }
    let addr = args
        .first()
        .cloned()
        .or_else(|| std::env::var("KV_SERVER_ADDR").ok())
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let key = args.get(1).cloned().unwrap_or_else(|| "greeting".into());
    let value = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "hello from a cairn marble".into());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kv-client: error: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(&addr, &key, &value)) {
        Ok(()) => {
            println!("kv-client: ok: {key} = {value:?} written and read back over mutual TLS");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kv-client: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn tls_hint(e: &std::io::Error) -> &'static str {
    let is_tls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_tls
        || e.kind() == std::io::ErrorKind::UnexpectedEof
        || e.kind() == std::io::ErrorKind::ConnectionReset
    {
        " (mutual TLS refused: the server and this client do not hold certificates of the same \
         marble root, e.g. one of them was activated before a SecurityVersion update)"
    } else {
        ""
    }
}

async fn run(addr: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let tls = MarbleTls::from_process_env().context("loading the marble TLS identity")?;
    let connector = TlsConnector::from(tls.client_config()?);
    let name = ServerName::try_from(server_name_of(addr))
        .with_context(|| format!("{addr}: not a valid server name"))?;
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the kv-server at {addr}"))?;
    let stream = connector.connect(name, tcp).await.map_err(|e| {
        let hint = tls_hint(&e);
        anyhow::anyhow!("TLS handshake with {addr} failed: {e}{hint}")
    })?;
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let put = ask(&mut w, &mut r, addr, format!("PUT {key} {value}\n")).await?;
    println!("PUT {key} -> {put}");
    if put != "OK" {
        bail!("the server refused PUT: {put}");
    }
    let got = ask(&mut w, &mut r, addr, format!("GET {key}\n")).await?;
    println!("GET {key} -> {got}");
    match got.strip_prefix("VALUE ") {
        Some(v) if v == value => {}
        _ => bail!("read back {got:?}, expected \"VALUE {value}\""),
    }
    let _ = ask(&mut w, &mut r, addr, "QUIT\n".to_string()).await;
    Ok(())
}

/// Send one request line and read one reply line.
async fn ask<W, R>(w: &mut W, r: &mut R, addr: &str, line: String) -> anyhow::Result<String>
where
    W: tokio::io::AsyncWrite + Unpin,
    R: tokio::io::AsyncBufRead + Unpin,
{
    let io = async {
        w.write_all(line.as_bytes()).await?;
        w.flush().await?;
        let mut reply = String::new();
        r.read_line(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    }
    .await;
    match io {
        Ok(reply) if reply.is_empty() => bail!(
            "the kv-server at {addr} closed the connection (it refused this client's certificate: \
             the two marbles do not share a marble root)"
        ),
        Ok(reply) => Ok(reply.trim_end().to_string()),
        Err(e) => {
            let hint = tls_hint(&e);
            bail!("talking to {addr} failed: {e}{hint}")
        }
    }
}
