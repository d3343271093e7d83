//! Accepting connections without letting anyone exhaust the owner: a cap on open connections and
//! a deadline for each request head.
//!
//! Anyone on the machine can open TCP connections to the loopback port without a key. Without
//! limits, a few hundred idle connections use up the process's file descriptors and the owner
//! stops answering everyone, the user's own UI and CLI included. So:
//! - at most [`ConnLimits::max_connections`] connections are served at once; one past that is
//!   answered at once with `429 RATE_LIMITED` (the contract's envelope, `Retry-After: 1`) and
//!   closed, so a client knows why rather than hanging;
//! - a connection must deliver a complete request head within [`ConnLimits::header_timeout`] of
//!   being accepted, and again of each previous answer: this is both the header-read timeout
//!   (slow-loris) and the keep-alive idle timeout. It never cuts a request that is being answered:
//!   hyper reads no new head while a request is in flight, so a token request waiting for the
//!   user's approval or a long streaming proxy answer runs as long as it needs.
//!
//! The default cap follows the process's descriptor limit (half of it, less a reserve for the
//! vault, the keyring and upstream connections), so it is never higher than what the process can
//! actually hold.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// How long a connection may take to send a request head unless told otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Descriptors kept free for everything that is not a client connection.
const RESERVED_FDS: u64 = 64;
/// The cap when the descriptor limit cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 480;
/// The cap never goes above this, whatever the descriptor limit.
const CEILING_MAX_CONNECTIONS: usize = 16_384;

/// Connection limits of an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections served at once; more are refused with `429`.
    pub max_connections: usize,
    /// Time to deliver a request head, from accept or from the previous answer.
    pub header_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

impl ConnLimits {
    /// The limits with `config.toml`'s values where it sets them.
    pub fn from_config(max_connections: Option<usize>, header_timeout: Option<u64>) -> Self {
        let d = Self::default();
        Self {
            max_connections: max_connections.unwrap_or(d.max_connections).max(1),
            header_timeout: header_timeout
                .map(|s| Duration::from_secs(s.max(1)))
                .unwrap_or(d.header_timeout),
        }
    }
}

/// Half of what the descriptor limit leaves after a reserve: each proxied call may hold an
/// upstream connection as well as the client's.
pub fn default_max_connections() -> usize {
    match soft_fd_limit() {
        Some(n) => usize::try_from(n.saturating_sub(RESERVED_FDS) / 2)
            .unwrap_or(CEILING_MAX_CONNECTIONS)
            .clamp(8, CEILING_MAX_CONNECTIONS),
        None => FALLBACK_MAX_CONNECTIONS,
    }
}

/// `RLIMIT_NOFILE`'s soft value, from `/proc/self/limits` (reading it needs no `unsafe`).
fn soft_fd_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_soft_fd_limit(&text)
}

fn parse_soft_fd_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// The whole answer to a connection past the cap, in the contract's envelope.
fn refusal(max: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "status": "error",
        "error": {
            "code": "RATE_LIMITED",
            "message": format!("Akhrot is already serving {max} connections, its limit; close idle connections and retry"),
        }
    })
    .to_string();
    format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `closing` turns true; then stops accepting, lets each open
/// connection finish the request it is answering, and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    mut closing: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let refusal: Arc<[u8]> = refusal(limits.max_connections).into();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or a connection that died before it was
                    // accepted: not fatal. Back off a little so a full table is not spun on.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = closed(&mut closing) => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "refused a connection: at the connection limit"
            );
            let refusal = refusal.clone();
            tokio::spawn(refuse(stream, refusal));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let http = http.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            serve_connection(http, stream, peer, app, closing).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it is closed: all of them back means all closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Tells a connection past the cap why it is closed, without waiting long for it to listen.
async fn refuse(mut stream: TcpStream, answer: Arc<[u8]>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn serve_connection(
    http: hyper::server::conn::http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    mut closing: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let resp = tower_call(app, req.map(axum::body::Body::new)).await;
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result
                    && !e.is_incomplete_message()
                {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = closed(&mut closing), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once `closing` turns true (the guard `wait_for` returns is not `Send`, so it is
/// dropped here, inside).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

async fn tower_call(app: Router, req: axum::extract::Request) -> axum::response::Response {
    use tower::ServiceExt;
    match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            256                  524288               files     \n";
        assert_eq!(parse_soft_fd_limit(text), Some(256));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_soft_fd_limit(unlimited), Some(u64::MAX));
        assert_eq!(parse_soft_fd_limit("nothing here"), None);
        assert!(default_max_connections() >= 8);
    }

    #[test]
    fn config_values_override_and_are_never_zero() {
        let l = ConnLimits::from_config(Some(0), Some(0));
        assert_eq!(l.max_connections, 1);
        assert_eq!(l.header_timeout, Duration::from_secs(1));
        let l = ConnLimits::from_config(Some(50), None);
        assert_eq!(l.max_connections, 50);
        assert_eq!(l.header_timeout, DEFAULT_HEADER_TIMEOUT);
    }

    #[test]
    fn the_refusal_is_a_complete_http_answer_in_the_envelope() {
        let r = String::from_utf8(refusal(7)).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "RATE_LIMITED");
    }
}
