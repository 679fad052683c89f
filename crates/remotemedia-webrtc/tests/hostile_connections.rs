//! Connection-level attacks on the signaling server (issue 12: items 6, 7, 14): ping floods,
//! sockets that never announce, connection exhaustion, foreign web origins, trickled request
//! heads, huge frames. Each runs with a canary pair relaying a message every 20 ms through the
//! same server (none may be missed) and ends with a fresh client announcing.
//!
//! The tests measure this process (RSS, CPU time), so they run one at a time (`SERIAL`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use remotemedia_webrtc::signaling::protocol;
use remotemedia_webrtc::signaling::server::{ServerConfig, SignalingServer};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(3);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> SignalingServer {
    let mut config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..Default::default()
    };
    f(&mut config);
    SignalingServer::bind(config).await.expect("bind")
}

async fn connect(url: &str) -> Ws {
    timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect")
        .0
}

/// The next text frame as JSON (pings and pongs skipped).
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match timeout(WAIT, ws.next()).await.expect("no frame in time") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("json"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn announce(ws: &mut Ws, peer_id: &str) {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": protocol::ANNOUNCE,
        "params": {"peer_id": peer_id, "capabilities": ["data"]}});
    ws.send(Message::text(req.to_string())).await.expect("send");
    let r = next_json(ws).await;
    assert_eq!(r["id"], 1, "announce response: {r}");
    assert!(r.get("result").is_some(), "announce refused: {r}");
}

/// A fresh client can still connect and announce (retrying while slots are being freed).
async fn assert_fresh_client_announces(url: &str) {
    let deadline = Instant::now() + WAIT;
    let mut ws = loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => break ws,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("a fresh client cannot connect: {e}"),
        }
    };
    announce(&mut ws, &unique("fresh")).await;
}

/// An offer from `a` and `b`'s answer, through the server: candidates are relayed only within
/// such an exchange.
async fn pair(a: &mut Ws, b: &mut Ws, from: &str, to: &str) {
    let offer = json!({"jsonrpc": "2.0", "id": 2, "method": protocol::OFFER, "params": {
        "from": from, "to": to, "request_id": "canary",
        "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=canary\r\n"}});
    a.send(Message::text(offer.to_string()))
        .await
        .expect("send");
    let got = loop {
        let f = next_json(b).await;
        if f["method"] == protocol::OFFER {
            break f;
        }
    };
    assert_eq!(got["params"]["request_id"], "canary");
    let answer = json!({"jsonrpc": "2.0", "id": 3, "method": protocol::ANSWER, "params": {
        "from": to, "to": from, "request_id": "canary",
        "sdp": "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=canary\r\n"}});
    b.send(Message::text(answer.to_string()))
        .await
        .expect("send");
    // a: the offer's response and the answer; b: the answer's response.
    let mut seen_answer = false;
    while !seen_answer {
        let f = next_json(a).await;
        seen_answer = f["method"] == protocol::ANSWER;
    }
    loop {
        let f = next_json(b).await;
        if f["id"] == 3 {
            assert!(f.get("result").is_some(), "answer refused: {f}");
            break;
        }
    }
}

/// Two announced clients with a pair relaying an ICE candidate every 20 ms until stopped.
struct Canary {
    stop: watch::Sender<bool>,
    sent: Arc<AtomicU64>,
    task: JoinHandle<(u64, u64)>,
}

impl Canary {
    async fn start(url: &str) -> Canary {
        let (from, to) = (unique("canary-a"), unique("canary-b"));
        let mut a = connect(url).await;
        let mut b = connect(url).await;
        announce(&mut a, &from).await;
        announce(&mut b, &to).await;
        pair(&mut a, &mut b, &from, &to).await;
        let (stop, mut stopped) = watch::channel(false);
        let sent_count = Arc::new(AtomicU64::new(0));
        let counter = sent_count.clone();
        let task = tokio::spawn(async move {
            let (mut sent, mut got) = (0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !*stopped.borrow() {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let cand = format!("candidate:{sent} 1 udp 2122260223 10.0.0.2 5000 typ host");
                let note = json!({"jsonrpc": "2.0", "method": protocol::ICE_CANDIDATE,
                    "params": {"from": from, "to": to, "candidate": cand}});
                sent += 1;
                counter.store(sent, Ordering::Relaxed);
                if a.send(Message::text(note.to_string())).await.is_err() {
                    break;
                }
                // Other traffic (peer.announced of the attack's clients) is skipped.
                let frame = loop {
                    let frame = next_json(&mut b).await;
                    if frame["method"] != protocol::ANNOUNCED {
                        break frame;
                    }
                };
                assert_eq!(frame["method"], protocol::ICE_CANDIDATE, "{frame}");
                assert_eq!(frame["params"]["candidate"], cand.as_str());
                got += 1;
            }
            (sent, got)
        });
        Canary {
            stop,
            sent: sent_count,
            task,
        }
    }

    /// Lets the canary relay a few more messages (the attack's end is in them), stops it and
    /// asserts it never missed one.
    async fn finish(self) {
        let until = self.sent.load(Ordering::Relaxed) + 10;
        let _ = timeout(WAIT, async {
            while self.sent.load(Ordering::Relaxed) < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        self.stop.send_replace(true);
        let (sent, got) = self.task.await.expect("canary panicked");
        assert!(sent >= 10, "the canary hardly ran ({sent} messages)");
        assert_eq!(got, sent, "the canary missed messages");
    }
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// CPU time (user + system) used by this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Pings as fast as possible (never reading) for up to `how_long`, sampling this process's
/// RSS. Returns (peak RSS growth, whether the server closed the socket).
async fn ping_without_reading(url: &str, how_long: Duration) -> (u64, bool) {
    let MaybeTlsStream::Plain(tcp) = connect(url).await.into_inner() else {
        panic!("not a plain TCP stream");
    };
    // Masked pings with a 125-byte payload (the most a control frame carries), many per write.
    let mut frame = vec![0x89u8, 0x80 | 125, 1, 2, 3, 4];
    frame.extend((0..125u8).map(|i| i ^ [1, 2, 3, 4][usize::from(i % 4)]));
    let batch = frame.repeat(512);
    let base = rss();
    let mut peak = base;
    let deadline = Instant::now() + how_long;
    let mut last_sample = Instant::now();
    let mut closed = false;
    let mut off = 0;
    while Instant::now() < deadline {
        // Never cancel a write half-way (that would cut a frame): wait for room, then write
        // what fits, going on from where the last write stopped.
        if let Ok(ready) = timeout(Duration::from_millis(100), tcp.writable()).await {
            if ready.is_err() {
                closed = true;
                break;
            }
            match tcp.try_write(&batch[off..]) {
                Ok(n) => off = (off + n) % batch.len(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if last_sample.elapsed() >= Duration::from_millis(50) {
            peak = peak.max(rss());
            last_sample = Instant::now();
        }
    }
    peak = peak.max(rss());
    (peak.saturating_sub(base), closed)
}

/// One socket's write buffer is capped near 1.1 MiB (default max_peers); far below this.
const RSS_CEILING: u64 = 16 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_without_reading_is_closed_and_memory_stays_bounded() {
    let _serial = SERIAL.lock().await;
    let server = start_with(|_| {}).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let (grown, closed) = ping_without_reading(&url, Duration::from_secs(8)).await;
    assert!(grown < RSS_CEILING, "RSS grew by {} MiB", grown >> 20);
    assert!(closed, "the flooding client was not closed");
    canary.finish().await;
    assert_fresh_client_announces(&url).await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_owed_to_a_client_that_never_reads_are_bounded() {
    let _serial = SERIAL.lock().await;
    // No control-frame limit: only the write-buffer cap stands between the flood and memory.
    let server = start_with(|c| c.max_control_frames_per_sec = u32::MAX).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let (grown, _) = ping_without_reading(&url, Duration::from_secs(10)).await;
    assert!(grown < RSS_CEILING, "RSS grew by {} MiB", grown >> 20);
    canary.finish().await;
    assert_fresh_client_announces(&url).await;
    server.close().await;
}

/// Reads until the server's close frame (pings skipped); `None` if the socket just ended.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(Message::Text(t))) => panic!("expected a close, got {t}"),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the socket was not closed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_announces_is_closed_with_1008() {
    let _serial = SERIAL.lock().await;
    let server = start_with(|c| c.announce_timeout = Duration::from_millis(300)).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let mut idle = connect(&url).await;
    let mut late = connect(&url).await;
    let mut prompt = connect(&url).await;
    let prompt_id = unique("prompt");
    announce(&mut prompt, &prompt_id).await;
    assert_eq!(close_code(&mut idle).await, Some(CloseCode::Policy));
    // Announcing after the deadline is too late.
    assert_eq!(close_code(&mut late).await, Some(CloseCode::Policy));
    // The one that announced in time stays open well past the deadline.
    tokio::time::sleep(Duration::from_millis(600)).await;
    announce(&mut prompt, &prompt_id).await;
    canary.finish().await;
    assert_fresh_client_announces(&url).await;
    server.close().await;
}

/// Whether a WebSocket connect was refused, checking the status when a response arrived.
fn assert_refused(result: Result<(Ws, impl std::fmt::Debug), WsError>, status: u16) {
    match result {
        Ok(_) => panic!("the connection was accepted"),
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), status),
        // Refused before the response could be read (reset): also a refusal.
        Err(WsError::Io(_) | WsError::Protocol(_) | WsError::ConnectionClosed) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_ip_cap_are_refused() {
    let _serial = SERIAL.lock().await;
    // Defaults: 64 connections per IP; the canary holds two.
    let server = start_with(|_| {}).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let mut held = Vec::new();
    for _ in 0..62 {
        let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    let refused = timeout(WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .expect("no answer");
    assert_refused(refused, 503);
    drop(held);
    canary.finish().await;
    assert_fresh_client_announces(&url).await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_total_cap_are_refused() {
    let _serial = SERIAL.lock().await;
    let server = start_with(|c| c.max_connections = 10).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect(&url).await);
    }
    let refused = timeout(WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .expect("no answer");
    assert_refused(refused, 503);
    drop(held);
    canary.finish().await;
    assert_fresh_client_announces(&url).await;
    server.close().await;
}

async fn connect_with_origin(
    url: &str,
    origin: &str,
) -> Result<(Ws, impl std::fmt::Debug), WsError> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", HeaderValue::from_str(origin).unwrap());
    timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("no answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_web_origins_are_refused_with_403() {
    let _serial = SERIAL.lock().await;
    let server = start_with(|_| {}).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    assert_refused(connect_with_origin(&url, "https://evil.example").await, 403);
    assert_refused(connect_with_origin(&url, "null").await, 403);
    // Same origin (Origin host == Host) and no Origin at all are fine.
    let own = format!("http://{}", server.local_addr());
    let (mut ws, _) = connect_with_origin(&url, &own).await.expect("same origin");
    announce(&mut ws, &unique("same-origin")).await;
    canary.finish().await;
    assert_fresh_client_announces(&url).await;
    server.close().await;

    let server = start_with(|c| c.allowed_origins = vec!["https://app.example".into()]).await;
    let url = server.url();
    let (mut ws, _) = connect_with_origin(&url, "https://app.example")
        .await
        .expect("listed origin");
    announce(&mut ws, &unique("listed")).await;
    assert_refused(connect_with_origin(&url, "https://evil.example").await, 403);
    server.close().await;

    let server = start_with(|c| c.allowed_origins = vec!["*".into()]).await;
    let url = server.url();
    let (mut ws, _) = connect_with_origin(&url, "https://evil.example")
        .await
        .expect("any origin");
    announce(&mut ws, &unique("any")).await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_request_heads_cost_no_polling() {
    let _serial = SERIAL.lock().await;
    let server = start_with(|c| c.max_connections_per_ip = 1000).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let mut slow = Vec::new();
    for _ in 0..400 {
        let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
        s.write_all(b"G").await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (wall, cpu) = (Instant::now(), cpu_time());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_time().saturating_sub(cpu);
    let share = used.as_secs_f64() / wall.elapsed().as_secs_f64();
    assert!(
        share < 0.15,
        "400 idle heads used {:.0} % of a core",
        share * 100.0
    );
    drop(slow);
    canary.finish().await;
    assert_fresh_client_announces(&url).await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_1_mib_closes_with_1009() {
    let _serial = SERIAL.lock().await;
    let server = start_with(|_| {}).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    for _ in 0..3 {
        let mut big = connect(&url).await;
        announce(&mut big, &unique("big")).await;
        let _ = big
            .send(Message::text(
                "z".repeat(3 * protocol::MAX_WS_MESSAGE_BYTES),
            ))
            .await;
        assert_eq!(close_code(&mut big).await, Some(CloseCode::Size));
    }
    canary.finish().await;
    assert_fresh_client_announces(&url).await;
    server.close().await;
}
