//! Shared code of the example marbles: the key-value line protocol.
//!
//! Requests, one per line: `PUT KEY VALUE...` (value = rest of the line), `GET KEY`, `QUIT`.
//! Replies, one line each: `OK`, `VALUE <value>`, `NOTFOUND`, `BYE`, `ERR <reason>`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::collections::HashMap;

/// Default listen/connect address of the example server.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8443";

/// Longest accepted request line (bytes).
pub const MAX_LINE: usize = 64 * 1024;

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Store a value.
    Put(String, String),
    /// Read a value.
    Get(String),
    /// Close the connection.
    Quit,
}

/// Parse one request line (without the newline).
pub fn parse_request(line: &str) -> Result<Request, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    match cmd {
        "PUT" => {
            let (k, v) = rest
                .split_once(' ')
                .ok_or_else(|| "usage: PUT KEY VALUE".to_string())?;
            if k.is_empty() {
                return Err("usage: PUT KEY VALUE".into());
            }
            Ok(Request::Put(k.to_string(), v.to_string()))
        }
        "GET" if !rest.is_empty() && !rest.contains(' ') => Ok(Request::Get(rest.to_string())),
        "GET" => Err("usage: GET KEY".into()),
        "QUIT" => Ok(Request::Quit),
        other => Err(format!("unknown command {other:?}; use PUT, GET or QUIT")),
    }
}

/// Apply a request to the store and produce the reply line (without newline).
pub fn apply(store: &mut HashMap<String, String>, req: &Request) -> String {
    match req {
        Request::Put(k, v) => {
            store.insert(k.clone(), v.clone());
            "OK".into()
        }
        Request::Get(k) => match store.get(k) {
            Some(v) => format!("VALUE {v}"),
            None => "NOTFOUND".into(),
        },
        Request::Quit => "BYE".into(),
    }
}

/// Split `host:port` into the TLS server name (host without brackets) and the address to dial.
pub fn server_name_of(addr: &str) -> String {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_round_trip() {
        let mut s = HashMap::new();
        let put = parse_request("PUT greeting hello world\r\n").unwrap();
        assert_eq!(put, Request::Put("greeting".into(), "hello world".into()));
        assert_eq!(apply(&mut s, &put), "OK");
        assert_eq!(
            apply(&mut s, &parse_request("GET greeting").unwrap()),
            "VALUE hello world"
        );
        assert_eq!(
            apply(&mut s, &parse_request("GET nope").unwrap()),
            "NOTFOUND"
        );
        assert_eq!(parse_request("QUIT").unwrap(), Request::Quit);
        assert!(parse_request("PUT k").is_err());
        assert!(parse_request("GET").is_err());
        assert!(parse_request("DEL k")
            .unwrap_err()
            .contains("unknown command"));
    }

    #[test]
    fn server_names() {
        assert_eq!(server_name_of("localhost:8443"), "localhost");
        assert_eq!(server_name_of("[::1]:8443"), "::1");
        assert_eq!(server_name_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(server_name_of("kv"), "kv");
    }
}
