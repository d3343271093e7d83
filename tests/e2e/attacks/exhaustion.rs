//! Resource exhaustion without a key: idle and slow connections, under a real descriptor limit.
//!
//! Anyone on the machine can open connections to the loopback port. The owner caps how many it
//! serves at once (answering one past the cap with `429 RATE_LIMITED` at once) and closes a
//! connection that has not sent a complete request head within `header_timeout` of being
//! accepted or of its previous answer; neither cuts a request that is being answered (one waiting
//! for the user's approval, a proxied answer that streams for longer).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::{host, raw_json, raw_status};
use akhrot_e2e::*;
use serde_json::json;

fn write_config(d: &Dirs, toml: &str) {
    std::fs::create_dir_all(d.config()).unwrap();
    std::fs::write(d.config().join("config.toml"), toml).unwrap();
}

/// Reads whatever the server sends within `wait`; `None` if the connection is still open and
/// silent when the time is up.
fn read_until_closed(c: &mut TcpStream, wait: Duration) -> Option<String> {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    match c.read_to_end(&mut out) {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => {
            Some(String::from_utf8_lossy(&out).into_owned())
        }
        Err(_) => None,
    }
}

#[test]
fn idle_connections_cannot_starve_the_owner_under_a_small_descriptor_limit() {
    let d = Dirs::new();
    write_config(&d, "header_timeout = 2\n");
    // The issue's setting: 256 descriptors, 300 idle connections.
    let s = Server::start_with(
        &d,
        Opts::default().prefix(&["prlimit", "--nofile=256:256", "--"]),
    )
    .unwrap();
    let key = s.create_key("agent", &["*"]);

    let started = Instant::now();
    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).unwrap())
        .collect();
    // The owner still answers at once: either a clear refusal past its cap, never a hang.
    let probe = {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.write_all(
            format!(
                "GET /ai/context/summary HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n",
                host(&s)
            )
            .as_bytes(),
        )
        .unwrap();
        read_until_closed(&mut c, Duration::from_secs(5)).expect("the owner did not answer")
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the probe was answered only after {:?}",
        started.elapsed()
    );
    assert_eq!(raw_status(&probe), 429, "{probe}");
    let body = raw_json(&probe);
    assert_eq!(code(&body), "RATE_LIMITED", "{probe}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connections"),
        "{probe}"
    );
    assert!(
        probe.to_ascii_lowercase().contains("retry-after: 1"),
        "{probe}"
    );

    // Of the idle ones, those past the cap were told so and closed at once; the rest are held
    // open only until the header timeout, then closed without an answer.
    let mut refused = 0;
    let mut cut = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    for c in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(50);
        let got = read_until_closed(c, left)
            .expect("an idle connection was held past the header timeout");
        if got.is_empty() {
            cut += 1;
        } else {
            assert_eq!(raw_status(&got), 429, "{got}");
            refused += 1;
        }
    }
    assert!(refused > 0 && cut > 0, "refused {refused}, cut {cut}");
    assert!(
        cut <= 256,
        "{cut} connections were held at once under a 256-descriptor limit"
    );
    drop(idle);

    // With the idle connections gone, everyone is served again, the user's CLI included.
    let (status, _) = s.get("/ai/context/summary", Some(&key));
    assert_eq!(status, 200);
    let out = s.cli(&["status"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!s.log().text().contains("panicked"), "{}", s.log().text());
}

#[test]
fn a_slow_request_head_and_an_idle_keep_alive_are_closed_after_the_header_timeout() {
    let d = Dirs::new();
    write_config(&d, "header_timeout = 1\n");
    let s = Server::start(&d);
    let key = s.create_key("agent", &["*"]);

    // Slow-loris: one header line a little less often than the timeout, never finishing.
    let mut slow = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    slow.write_all(b"GET /ai/context/summary HTTP/1.1\r\n")
        .unwrap();
    let t0 = Instant::now();
    let mut closed_after = None;
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(600));
        if slow
            .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .is_err()
        {
            closed_after = Some(t0.elapsed());
            break;
        }
        let mut b = [0u8; 1];
        slow.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        if matches!(slow.read(&mut b), Ok(0)) {
            closed_after = Some(t0.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("a head trickled for 3.6 s was never cut");
    assert!(closed_after < Duration::from_secs(3), "{closed_after:?}");

    // Keep-alive: answered once, then idle; closed after the timeout.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(
        format!(
            "GET /ai/context/summary HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\r\n",
            host(&s)
        )
        .as_bytes(),
    )
    .unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let t1 = Instant::now();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    let idle_for = t1.elapsed();
    assert!(
        idle_for >= Duration::from_millis(500) && idle_for < Duration::from_secs(4),
        "an idle keep-alive connection was closed after {idle_for:?}"
    );
}

/// An upstream that sends its headers at once, then its body in pieces over `total`.
fn trickling_upstream(total: Duration) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
        }
        let pieces = 6;
        let _ = write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            pieces * 5
        );
        for i in 0..pieces {
            std::thread::sleep(total / pieces as u32);
            let _ = write!(c, "part{i}");
            let _ = c.flush();
        }
    });
    (port, h)
}

#[test]
fn a_request_waiting_for_approval_and_a_slow_streaming_answer_are_not_cut() {
    let (up_port, up) = trickling_upstream(Duration::from_secs(3));
    let d = Dirs::new();
    write_config(&d, "header_timeout = 1\n");
    write_provider_file(
        &d,
        "standin",
        &api_key_provider(
            "hdr",
            INJECT_X_API_KEY,
            &[("api", format!("http://127.0.0.1:{up_port}/v1"))],
        ),
    );
    let s = Server::start(&d);
    s.add("hdr", None, json!({"apiKey": "secret-exhaustion-2222"}));
    let asker = s.create_key("asker", &[]);
    let streamer = s.create_key("streamer", &["*"]);

    // A token request that waits 3 s for the user (three header timeouts) still gets its answer.
    let base = s.base.clone();
    let waiting = std::thread::spawn(move || {
        http_agent(Some(Duration::from_secs(30)))
            .post(format!("{base}/tokens/fetch"))
            .header("Authorization", &format!("Bearer {asker}"))
            .header("Content-Type", "application/json")
            .send(r#"{"provider":"hdr","reason":"slow user"}"#)
            .map(|mut r| (r.status().as_u16(), r.body_mut().read_to_string().unwrap()))
    });
    let id = {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let list = s.admin_get("/admin/approvals");
            if let Some(id) = list
                .as_array()
                .and_then(|a| a.first())
                .map(|p| p["id"].clone())
            {
                break id.as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < until, "no prompt appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::thread::sleep(Duration::from_secs(3));
    s.admin_post(
        &format!("/admin/approvals/{id}"),
        &json!({"answer": "once"}),
    );
    let (status, body) = waiting.join().unwrap().unwrap();
    assert_eq!(status, 200, "{body}");

    // A proxied answer that streams for 3 s reaches the agent whole.
    let t = Instant::now();
    let (status, text) = {
        let mut r = http_agent(Some(Duration::from_secs(30)))
            .get(format!("{}/proxy/hdr/slow", s.base))
            .header("Authorization", &format!("Bearer {streamer}"))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "part0part1part2part3part4part5");
    assert!(
        t.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    up.join().unwrap();
}
