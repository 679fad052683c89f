//! Data channels: reliable (ordered, retransmitted) and unreliable (unordered, no retransmits);
//! JSON, binary and text messages; the seed's pipeline control messages; ordered sends through
//! one writer per channel with a bounded send queue (backpressure, not unbounded memory).
//!
//! Receiving: the read loop hands every message on to the event sink as it arrives; the
//! backlog of messages that arrive before a JS `'message'` listener lives in `js/channel.js`
//! and is bounded by bytes (4 MiB per channel, 16 MiB per remote peer across its channels).
//! Past that it *drops* the newest messages and counts them (`droppedMessages` /
//! `droppedBytes`); it does not stop reading from SCTP.

use crate::config::DataChannelMode;
use crate::error::{Error, Result};
use crate::event::{EventSink, TransportEvent};
use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use webrtc::data_channel::{DataChannel as RtcDataChannel, DataChannelEvent, RTCDataChannelInit};

/// Bytes a channel may hold queued in front of SCTP before `send` refuses (as browsers do).
pub const MAX_SEND_QUEUE_BYTES: usize = 16 * 1024 * 1024;

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);

/// Reader and writer tasks of data channels still running in this process (a leak check).
pub fn live_channel_tasks() -> usize {
    LIVE_TASKS.load(Ordering::SeqCst)
}

struct TaskCount;
impl TaskCount {
    fn new() -> Self {
        LIVE_TASKS.fetch_add(1, Ordering::SeqCst);
        TaskCount
    }
}
impl Drop for TaskCount {
    fn drop(&mut self) {
        LIVE_TASKS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a received message is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// A text frame holding a JSON object or array.
    Json,
    /// A binary frame.
    Binary,
    /// Any other text frame.
    Text,
}

/// A message as it crosses the channel: its kind and its bytes (UTF-8 for json/text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMessage {
    pub kind: MessageKind,
    pub data: Vec<u8>,
}

impl ChannelMessage {
    pub fn json(value: &Value) -> Self {
        Self {
            kind: MessageKind::Json,
            data: serde_json::to_vec(value).unwrap_or_default(),
        }
    }
    pub fn text(s: impl Into<String>) -> Self {
        Self {
            kind: MessageKind::Text,
            data: s.into().into_bytes(),
        }
    }
    pub fn binary(b: impl Into<Vec<u8>>) -> Self {
        Self {
            kind: MessageKind::Binary,
            data: b.into(),
        }
    }

    /// Classifies a frame as received: binary frames are binary; text frames that hold a JSON
    /// object or array are json; every other text frame is text.
    pub fn classify(is_string: bool, data: Vec<u8>) -> Self {
        let kind = if !is_string {
            MessageKind::Binary
        } else if looks_like_json(&data) {
            MessageKind::Json
        } else {
            MessageKind::Text
        };
        Self { kind, data }
    }

    pub fn as_json(&self) -> Option<Value> {
        match self.kind {
            MessageKind::Json => serde_json::from_slice(&self.data).ok(),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self.kind {
            MessageKind::Binary => None,
            _ => std::str::from_utf8(&self.data).ok(),
        }
    }

    /// The seed's pipeline control message, if this is one.
    pub fn as_control(&self) -> Option<ControlMessage> {
        self.as_json().and_then(|v| serde_json::from_value(v).ok())
    }
}

fn looks_like_json(data: &[u8]) -> bool {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    matches!(first, Some(b'{') | Some(b'['))
        && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok()
}

/// Pipeline control over a data channel (seed: start/stop/pause), sent as JSON
/// `{"type":"pipeline-start","sessionId":"s1",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ControlMessage {
    #[serde(rename_all = "camelCase")]
    PipelineStart {
        session_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manifest: Option<Value>,
    },
    #[serde(rename_all = "camelCase")]
    PipelineStop { session_id: String },
    #[serde(rename_all = "camelCase")]
    PipelinePause { session_id: String },
}

pub(crate) fn channel_init(mode: DataChannelMode) -> RTCDataChannelInit {
    match mode {
        DataChannelMode::Reliable => RTCDataChannelInit::default(),
        DataChannelMode::Unreliable => RTCDataChannelInit {
            ordered: false,
            max_retransmits: Some(0),
            ..Default::default()
        },
    }
}

/// Stream id of the probe channel (`keep_rto_fresh`): negotiated out of band, never announced,
/// below 1024 so that peers limited to 1024 SCTP streams have it too.
pub(crate) const PROBE_STREAM_ID: u16 = 1023;
/// Label of the probe channel.
pub(crate) const PROBE_LABEL: &str = "remotemedia-rto-probe";

/// The probe channel: negotiated (no DCEP, no `datachannel` event on either side), unordered,
/// never retransmitted.
pub(crate) fn probe_init() -> RTCDataChannelInit {
    RTCDataChannelInit {
        ordered: false,
        max_retransmits: Some(0),
        negotiated: Some(PROBE_STREAM_ID),
        ..Default::default()
    }
}

/// Brings SCTP's retransmission timeout back down after a link cut.
///
/// rtc-sctp 0.21.1 doubles its RTO at every T3-rtx expiry and, as RFC 9260 6.3.3 E2 says,
/// keeps it doubled until it measures a new RTT. It measures only on DATA chunks sent once
/// (Karn's rule). After a cut every chunk sent during the cut has been retransmitted, so if the
/// application sends nothing new once they are through, no RTT is ever measured again: the RTO
/// stays at 2, 4, 8 ... s, and each later cut waits out a longer timer (measured: recovery
/// 1, 2, 6, 14 s for four 2-second cuts 3 s apart with data sent only during the cuts).
///
/// So: when datagrams come back after a silence ([`LinkActivity::resumed`]) and data was sent
/// shortly before or during it (or is still unacknowledged), wait until every channel's data is
/// acknowledged and send one byte on the probe channel. Its SACK is a fresh RTT sample and the
/// RTO is recomputed (back to 1 s on a short path). The peer's copy of the probe channel drops
/// what it receives; a peer without one (a browser) drops data for a stream it does not know,
/// after SCTP has acknowledged it, which is all the probe needs.
///
/// `channels` lists the peer's channels, `None` once the peer is gone. Ends with the peer or
/// the probe channel.
pub(crate) async fn keep_rto_fresh<F>(
    probe: Arc<dyn RtcDataChannel>,
    link: Arc<crate::peer::udp::LinkActivity>,
    channels: F,
) where
    F: Fn() -> Option<Vec<DataChannel>> + Send,
{
    let _count = TaskCount::new();
    // Read (and drop) what the peer's probe channel sends us, so it never queues in the
    // driver; the end of the probe channel ends the probing too.
    let (closed_tx, mut closed) = oneshot::channel::<()>();
    let reader = probe.clone();
    tokio::spawn(async move {
        let _count = TaskCount::new();
        while let Some(ev) = reader.poll().await {
            if matches!(ev, DataChannelEvent::OnClose) {
                break;
            }
        }
        tracing::debug!("RTT probe channel closed");
        drop(closed_tx);
    });
    /// How long to wait for the data held up by a cut to be acknowledged: RTO.max.
    const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
    const POLL: std::time::Duration = std::time::Duration::from_millis(50);
    loop {
        let silence_from = tokio::select! {
            from = link.resumed() => from,
            _ = &mut closed => return,
        };
        let Some(list) = channels() else { return };
        // Data went out shortly before or during the silence: its timer ran out unless its
        // SACK came before the silence. (The datagram that ends a silence may be the very SACK
        // of the retransmission, so "nothing outstanding now" does not mean "nothing was".)
        let sent_late = list
            .iter()
            .filter_map(|c| c.last_sent())
            .any(|t| t + crate::peer::udp::LinkActivity::SILENCE >= silence_from);
        let waiting = outstanding(&list).await;
        if waiting == 0 && !sent_late {
            // Nothing was waiting for an acknowledgement: no timer can have backed off.
            continue;
        }
        let until = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = &mut closed => return,
            }
            let Some(list) = channels() else { return };
            if outstanding(&list).await == 0 || tokio::time::Instant::now() >= until {
                break;
            }
        }
        tracing::debug!("link back after a silence and its data acknowledged: RTT probe");
        let _ = probe.send(BytesMut::from(&[0u8][..])).await;
    }
}

/// Bytes the channels handed to SCTP that are not yet acknowledged (or abandoned).
async fn outstanding(list: &[DataChannel]) -> usize {
    let mut n = 0;
    for ch in list {
        if ch.state() == ChannelState::Open {
            n += ch.dc().outstanding_bytes().await.unwrap_or(0);
        }
    }
    n
}

struct Outgoing {
    msg: ChannelMessage,
    done: Option<oneshot::Sender<Result<()>>>,
}

/// The reliable messages a channel handed to SCTP, kept so that those the remote peer never
/// received can be sent again on a new connection (a full reconnection replaces the SCTP
/// association, and with it whatever the old one had not delivered).
///
/// Messages are numbered from 0 in the order they were handed to SCTP, over the channel's
/// whole life (across connections). The log keeps the newest messages up to `limit` bytes:
/// SCTP never holds more than the send-buffer limit unacknowledged (webrtc-rs's `send` waits
/// below it), so with `limit` = that buffer plus one message, every message SCTP may not have
/// delivered is still here. `clear` drops the rest once SCTP reports nothing outstanding;
/// the writer asks SCTP every [`SentLog::CHECK_ENTRIES`] messages or [`SentLog::CHECK_BYTES`]
/// bytes (`due_for_check`), so a channel whose messages are acknowledged keeps only a few.
/// (Only "nothing outstanding" is safe: SCTP releases gap-acknowledged bytes too, so what is
/// outstanding is not always the newest messages.) A check that finds something outstanding
/// is repeated after 1, 2, 4, … messages: SCTP acknowledges every second packet at once and
/// delays the others, so a fixed interval could always land on an unacknowledged one.
#[derive(Debug, Default)]
pub(crate) struct SentLog {
    /// Messages handed to SCTP so far (the next one's number).
    sent: u64,
    /// The newest of them, oldest first, with their numbers.
    kept: VecDeque<(u64, ChannelMessage)>,
    kept_bytes: usize,
    limit: usize,
    /// Messages and bytes pushed since SCTP was last asked.
    unchecked: usize,
    unchecked_bytes: usize,
    /// Checks in a row that found something outstanding.
    busy_checks: u32,
}

/// What to send again after a reconnection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resend {
    pub messages: Vec<ChannelMessage>,
    /// Messages the peer misses that are no longer kept (0 unless the log was too short).
    pub lost: u64,
}

impl SentLog {
    /// Ask SCTP whether everything was acknowledged after this many messages...
    pub(crate) const CHECK_ENTRIES: usize = 64;
    /// ...or this many bytes, whichever comes first.
    pub(crate) const CHECK_BYTES: usize = 16 * 1024;

    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Records a message just handed to SCTP.
    pub(crate) fn push(&mut self, msg: ChannelMessage) {
        let seq = self.sent;
        self.sent += 1;
        self.kept_bytes += msg.data.len();
        self.unchecked += 1;
        self.unchecked_bytes += msg.data.len();
        self.kept.push_back((seq, msg));
        while self.kept_bytes > self.limit && self.kept.len() > 1 {
            if let Some((_, m)) = self.kept.pop_front() {
                self.kept_bytes -= m.data.len();
            }
        }
    }

    /// SCTP has nothing outstanding: everything sent was received.
    pub(crate) fn clear(&mut self) {
        self.kept.clear();
        self.kept_bytes = 0;
        self.unchecked = 0;
        self.unchecked_bytes = 0;
        self.busy_checks = 0;
    }

    /// Whether enough was pushed since the last check to ask SCTP again.
    pub(crate) fn due_for_check(&self) -> bool {
        let every = match self.busy_checks {
            0 => Self::CHECK_ENTRIES,
            n => (1usize << (n - 1).min(6)).min(Self::CHECK_ENTRIES),
        };
        self.unchecked >= every || self.unchecked_bytes >= Self::CHECK_BYTES
    }

    /// SCTP was asked and still had something outstanding.
    pub(crate) fn checked(&mut self) {
        self.unchecked = 0;
        self.unchecked_bytes = 0;
        self.busy_checks = self.busy_checks.saturating_add(1);
    }

    pub(crate) fn kept_len(&self) -> usize {
        self.kept.len()
    }

    #[cfg(test)]
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    pub(crate) fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }

    /// The messages from number `received` on (the peer got the ones before).
    pub(crate) fn resend_from(&self, received: u64) -> Resend {
        if received >= self.sent {
            return Resend {
                messages: Vec::new(),
                lost: 0,
            };
        }
        let first_kept = self.kept.front().map(|(n, _)| *n).unwrap_or(self.sent);
        Resend {
            messages: self
                .kept
                .iter()
                .filter(|(n, _)| *n >= received)
                .map(|(_, m)| m.clone())
                .collect(),
            lost: first_kept.saturating_sub(received),
        }
    }
}

/// Unknown stream id.
const NO_STREAM: u32 = u32::MAX;

struct Inner {
    key: u64,
    peer_id: String,
    label: String,
    mode: DataChannelMode,
    /// The webrtc-rs channel carrying this one now; a full reconnection rebinds it to a
    /// channel of the new connection (same stream id).
    dc: Mutex<Arc<dyn RtcDataChannel>>,
    /// Bumped at each rebind.
    binding: watch::Sender<u64>,
    /// The binding the reader reads from (it finishes the old one before it moves on).
    read_binding: watch::Sender<u64>,
    /// The peer's path is down (or its new connection not yet resumed): the writer holds
    /// messages here instead of handing them to an SCTP association that may be dying.
    held: watch::Sender<bool>,
    /// SCTP stream id, once known ([`NO_STREAM`] before).
    stream_id: AtomicU32,
    /// Reliable messages handed to SCTP (see [`SentLog`]); `None` for unreliable channels.
    log: Option<Mutex<SentLog>>,
    /// Messages to send again first (after a reconnection), in order.
    resend: Mutex<VecDeque<ChannelMessage>>,
    /// Messages received over the channel's life (across connections).
    received: AtomicU64,
    tx: mpsc::UnboundedSender<Outgoing>,
    queued: AtomicUsize,
    max_message_size: usize,
    open: watch::Sender<ChannelState>,
    closed: AtomicBool,
    /// When a message was last handed to SCTP (ms from `epoch()`, plus one; 0: never).
    last_sent: AtomicU64,
}

/// The process-wide origin of `Inner::last_sent`.
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Connecting,
    Open,
    Closed,
}

/// A data channel of one peer. Cheap to clone.
#[derive(Clone)]
pub struct DataChannel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DataChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannel")
            .field("key", &self.inner.key)
            .field("peer", &self.inner.peer_id)
            .field("label", &self.inner.label)
            .finish()
    }
}

impl DataChannel {
    /// Wraps a webrtc-rs channel and starts its reader and writer. `remote` marks channels the
    /// other side opened: those are announced with a `DataChannel` event once open.
    /// `keep_bytes` sizes the [`SentLog`] of a reliable channel (0: keep none).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn(
        dc: Arc<dyn RtcDataChannel>,
        peer_id: String,
        label: String,
        mode: DataChannelMode,
        max_message_size: usize,
        keep_bytes: usize,
        events: Arc<EventSink>,
        remote: bool,
    ) -> DataChannel {
        let (tx, rx) = mpsc::unbounded_channel();
        let (open, _) = watch::channel(ChannelState::Connecting);
        let log = (mode == DataChannelMode::Reliable && keep_bytes > 0)
            .then(|| Mutex::new(SentLog::new(keep_bytes)));
        let ch = DataChannel {
            inner: Arc::new(Inner {
                key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
                peer_id,
                label,
                mode,
                dc: Mutex::new(dc),
                binding: watch::channel(0).0,
                read_binding: watch::channel(0).0,
                held: watch::channel(false).0,
                stream_id: AtomicU32::new(NO_STREAM),
                log,
                resend: Mutex::new(VecDeque::new()),
                received: AtomicU64::new(0),
                tx,
                queued: AtomicUsize::new(0),
                max_message_size,
                open,
                closed: AtomicBool::new(false),
                last_sent: AtomicU64::new(0),
            }),
        };
        tokio::spawn(ch.clone().write_loop(rx));
        tokio::spawn(ch.clone().read_loop(events, remote));
        ch
    }

    /// The webrtc-rs channel carrying this one now.
    fn dc(&self) -> Arc<dyn RtcDataChannel> {
        self.inner.dc.lock().unwrap().clone()
    }

    fn is_held(&self) -> bool {
        *self.inner.held.borrow()
    }

    /// Hands queued messages to SCTP in order; ends when the channel closes (failing whatever
    /// is still queued), so no task outlives its channel. While the channel is held (the path
    /// is down) messages wait here. A message SCTP refuses because its connection went away
    /// while held or rebound is kept and sent on the new connection, so it goes out once.
    async fn write_loop(self, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        let _count = TaskCount::new();
        let mut state = self.inner.open.subscribe();
        let mut held = self.inner.held.subscribe();
        let mut pending: Option<Outgoing> = None;
        loop {
            let closed = tokio::select! {
                r = held.wait_for(|h| !*h) => r.is_err(),
                _ = state.wait_for(|s| *s == ChannelState::Closed) => true,
            };
            if closed {
                break;
            }
            // What the peer missed of an old connection goes first.
            let again = self.inner.resend.lock().unwrap().pop_front();
            if let Some(msg) = again {
                let binding = *self.inner.binding.borrow();
                if let Err(e) = send_on(&self.dc(), &msg).await {
                    if self.is_held() || *self.inner.binding.borrow() != binding {
                        self.inner.resend.lock().unwrap().push_front(msg);
                    } else {
                        tracing::debug!(label = self.inner.label, "resend failed: {e}");
                    }
                }
                continue;
            }
            let next = match pending.take() {
                Some(o) => Some(o),
                None => tokio::select! {
                    m = rx.recv() => m,
                    _ = state.wait_for(|s| *s == ChannelState::Closed) => None,
                    _ = held.wait_for(|h| *h) => continue,
                },
            };
            let Some(Outgoing { msg, done }) = next else {
                break;
            };
            let len = msg.data.len();
            let binding = *self.inner.binding.borrow();
            let dc = self.dc();
            self.trim_sent(&dc).await;
            let r = send_on(&dc, &msg).await;
            if r.is_err()
                && !matches!(r, Err(webrtc::error::Error::ErrOutboundPacketTooLarge))
                && (self.is_held() || *self.inner.binding.borrow() != binding)
            {
                // The connection went away under this message: send it on the next one.
                pending = Some(Outgoing { msg, done });
                continue;
            }
            self.inner.queued.fetch_sub(len, Ordering::SeqCst);
            let ms = epoch().elapsed().as_millis() as u64 + 1;
            self.inner.last_sent.store(ms, Ordering::Relaxed);
            if r.is_ok() {
                if let Some(log) = &self.inner.log {
                    log.lock().unwrap().push(msg);
                }
            }
            let r = r.map_err(|e| match e {
                // Larger than the remote side accepts (its SDP max-message-size).
                webrtc::error::Error::ErrOutboundPacketTooLarge => Error::InvalidData(format!(
                    "message of {len} bytes is larger than the remote peer accepts"
                )),
                e => Error::ConnectionFailed(format!("data channel send: {e}")),
            });
            if let Some(done) = done {
                let _ = done.send(r);
            }
        }
        rx.close();
        let left = pending
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()));
        for o in left {
            self.inner
                .queued
                .fetch_sub(o.msg.data.len(), Ordering::SeqCst);
            if let Some(done) = o.done {
                let _ = done.send(Err(Error::ShutDown("data channel closed".into())));
            }
        }
    }

    /// Every few messages, before the next one is handed over, asks SCTP whether anything it
    /// was given is unacknowledged; when nothing is, the [`SentLog`] is emptied. (Asked after a
    /// send, the message just sent would always be outstanding.)
    async fn trim_sent(&self, dc: &Arc<dyn RtcDataChannel>) {
        let Some(log) = &self.inner.log else { return };
        let check = log.lock().unwrap().due_for_check();
        if check {
            let outstanding = dc.outstanding_bytes().await.unwrap_or(1);
            let mut log = log.lock().unwrap();
            if outstanding == 0 {
                log.clear();
            } else {
                log.checked();
            }
        }
    }

    async fn read_loop(self, events: Arc<EventSink>, remote: bool) {
        let _count = TaskCount::new();
        let peer_id = self.inner.peer_id.clone();
        let mut announced = false;
        loop {
            let binding = *self.inner.binding.borrow();
            let dc = self.dc();
            self.inner.read_binding.send_replace(binding);
            while let Some(ev) = dc.poll().await {
                match ev {
                    DataChannelEvent::OnOpen => {
                        self.inner.open.send_replace(ChannelState::Open);
                        if remote && !announced {
                            announced = true;
                            events
                                .emit(TransportEvent::DataChannel {
                                    peer_id: peer_id.clone(),
                                    channel: self.clone(),
                                })
                                .await;
                        }
                    }
                    DataChannelEvent::OnMessage(m) => {
                        self.inner.received.fetch_add(1, Ordering::SeqCst);
                        let msg = ChannelMessage::classify(m.is_string, m.data.to_vec());
                        events
                            .emit(TransportEvent::ChannelMessage {
                                peer_id: peer_id.clone(),
                                channel: self.inner.key,
                                message: msg,
                            })
                            .await;
                    }
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
            drop(dc);
            // This connection's channel ended: carry on with the next connection's if the
            // channel was (or, while held, is going to be) rebound to one.
            if !self.wait_rebound(binding).await {
                break;
            }
        }
        self.mark_closed(&events).await;
    }

    /// After the underlying channel of `binding` ended: whether the channel moved (or moves)
    /// to a new one. Waits while the channel is held (a reconnection may still rebind it).
    async fn wait_rebound(&self, binding: u64) -> bool {
        let mut bound = self.inner.binding.subscribe();
        let mut held = self.inner.held.subscribe();
        let mut open = self.inner.open.subscribe();
        loop {
            if *bound.borrow_and_update() != binding {
                return true;
            }
            if !*held.borrow_and_update() || *open.borrow_and_update() == ChannelState::Closed {
                return false;
            }
            let alive = tokio::select! {
                r = bound.changed() => r.is_ok(),
                r = held.changed() => r.is_ok(),
                r = open.changed() => r.is_ok(),
            };
            if !alive {
                return false;
            }
        }
    }

    async fn mark_closed(&self, events: &EventSink) {
        self.inner.open.send_replace(ChannelState::Closed);
        if !self.inner.closed.swap(true, Ordering::SeqCst) {
            events
                .emit(TransportEvent::ChannelClosed {
                    peer_id: self.inner.peer_id.clone(),
                    channel: self.inner.key,
                })
                .await;
        }
    }

    /// A process-unique key for this channel.
    pub fn key(&self) -> u64 {
        self.inner.key
    }
    pub fn label(&self) -> &str {
        &self.inner.label
    }
    pub fn peer_id(&self) -> &str {
        &self.inner.peer_id
    }
    pub fn mode(&self) -> DataChannelMode {
        self.inner.mode
    }
    pub fn state(&self) -> ChannelState {
        *self.inner.open.borrow()
    }
    /// The SCTP stream id, once known.
    pub(crate) fn stream_id(&self) -> Option<u16> {
        u16::try_from(self.inner.stream_id.load(Ordering::SeqCst)).ok()
    }
    pub(crate) fn set_stream_id(&self, id: u16) {
        self.inner.stream_id.store(id as u32, Ordering::SeqCst);
    }
    /// The handle of the webrtc-rs channel carrying this one now (to find its stream id).
    pub(crate) fn rtc_id(&self) -> usize {
        self.dc().id()
    }
    /// Holds (`true`) or lets go (`false`) of the messages sent from now on.
    pub(crate) fn hold(&self, held: bool) {
        self.inner.held.send_replace(held);
    }
    /// Moves the channel onto `dc`, a channel of a new connection with the same stream id.
    pub(crate) fn rebind(&self, dc: Arc<dyn RtcDataChannel>) {
        *self.inner.dc.lock().unwrap() = dc;
        self.inner.binding.send_modify(|b| *b += 1);
    }
    /// Whether the reader has finished with every earlier connection's channel.
    pub(crate) fn reader_moved(&self) -> bool {
        *self.inner.read_binding.borrow() == *self.inner.binding.borrow()
    }
    /// Messages received over the channel's life.
    pub(crate) fn received(&self) -> u64 {
        self.inner.received.load(Ordering::SeqCst)
    }
    /// After a reconnection: the peer received `received` of our messages; what it misses is
    /// sent again (before anything new), then held messages go. Returns how many are resent
    /// and how many are lost (no longer kept).
    pub(crate) fn resume(&self, received: Option<u64>) -> (usize, u64) {
        let r = match (&self.inner.log, received) {
            (Some(log), Some(n)) => log.lock().unwrap().resend_from(n),
            _ => Resend {
                messages: Vec::new(),
                lost: 0,
            },
        };
        let count = r.messages.len();
        *self.inner.resend.lock().unwrap() = r.messages.into();
        self.hold(false);
        (count, r.lost)
    }
    /// The options this channel was created with (mode only).
    pub(crate) fn init(&self) -> RTCDataChannelInit {
        channel_init(self.inner.mode)
    }

    /// When a message was last handed to SCTP.
    pub(crate) fn last_sent(&self) -> Option<std::time::Instant> {
        match self.inner.last_sent.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(epoch() + std::time::Duration::from_millis(ms - 1)),
        }
    }

    /// Bytes queued in front of SCTP, not yet handed to it.
    pub fn buffered_amount(&self) -> usize {
        self.inner.queued.load(Ordering::SeqCst)
    }

    /// Resolves once the channel is open; errors if it closes first or `timeout` passes.
    /// Reliable messages kept for a resend after a full reconnection, and their bytes: those
    /// SCTP may not have delivered yet (0 for unreliable channels). Diagnostics.
    pub fn kept_for_resend(&self) -> (usize, usize) {
        self.inner.log.as_ref().map_or((0, 0), |l| {
            let l = l.lock().unwrap();
            (l.kept_len(), l.kept_bytes())
        })
    }

    pub async fn wait_open(&self, timeout: std::time::Duration) -> Result<()> {
        let mut rx = self.inner.open.subscribe();
        let wait = rx.wait_for(|s| *s != ChannelState::Connecting);
        let r = tokio::time::timeout(timeout, wait)
            .await
            .map(|r| r.map(|s| *s));
        match r {
            Ok(Ok(ChannelState::Open)) => Ok(()),
            Ok(_) => Err(Error::ConnectionFailed(format!(
                "data channel '{}' closed before opening",
                self.inner.label
            ))),
            Err(_) => Err(Error::Timeout(format!(
                "data channel '{}' did not open",
                self.inner.label
            ))),
        }
    }

    /// Queues a message, in call order. The returned receiver resolves once SCTP has taken it
    /// (which waits while the channel's SCTP buffer is full). Refused when the channel is not
    /// open, the message is larger than the limit, or the queue holds 16 MiB already.
    pub fn enqueue(&self, msg: ChannelMessage) -> Result<oneshot::Receiver<Result<()>>> {
        match self.state() {
            ChannelState::Open => {}
            ChannelState::Connecting => {
                return Err(Error::PeerNotConnected(format!(
                    "data channel '{}' is not open yet",
                    self.inner.label
                )))
            }
            ChannelState::Closed => {
                return Err(Error::ShutDown(format!(
                    "data channel '{}' is closed",
                    self.inner.label
                )))
            }
        }
        let len = msg.data.len();
        if len > self.inner.max_message_size {
            return Err(Error::InvalidData(format!(
                "message of {len} bytes exceeds maxMessageSize ({} bytes)",
                self.inner.max_message_size
            )));
        }
        if len == 0 && msg.kind == MessageKind::Binary {
            return Err(Error::InvalidData("empty binary message".into()));
        }
        if self.inner.queued.load(Ordering::SeqCst) + len > MAX_SEND_QUEUE_BYTES {
            return Err(Error::InvalidData(format!(
                "send queue full ({MAX_SEND_QUEUE_BYTES} bytes queued): await earlier sends"
            )));
        }
        self.inner.queued.fetch_add(len, Ordering::SeqCst);
        let (done, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Outgoing {
                msg,
                done: Some(done),
            })
            .map_err(|_| {
                self.inner.queued.fetch_sub(len, Ordering::SeqCst);
                Error::ShutDown("data channel is closed".into())
            })?;
        Ok(rx)
    }

    /// Queues a message and waits until SCTP has taken it.
    pub async fn send(&self, msg: ChannelMessage) -> Result<()> {
        let rx = self.enqueue(msg)?;
        rx.await
            .unwrap_or_else(|_| Err(Error::ShutDown("data channel is closed".into())))
    }

    pub async fn send_control(&self, control: &ControlMessage) -> Result<()> {
        let v = serde_json::to_value(control).map_err(|e| Error::InvalidData(e.to_string()))?;
        self.send(ChannelMessage::json(&v)).await
    }

    /// Closes the channel. Idempotent.
    pub async fn close(&self) {
        if self.state() != ChannelState::Closed {
            let _ = self.dc().close().await;
        }
        self.inner.open.send_replace(ChannelState::Closed);
    }
}

/// Hands one message to a webrtc-rs channel (text or binary frame by its kind).
async fn send_on(
    dc: &Arc<dyn RtcDataChannel>,
    msg: &ChannelMessage,
) -> std::result::Result<(), webrtc::error::Error> {
    match msg.kind {
        MessageKind::Binary => dc.send(BytesMut::from(&msg.data[..])).await,
        _ => {
            dc.send_text(std::str::from_utf8(&msg.data).unwrap_or_default())
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_log_resends_what_the_peer_missed_in_order() {
        let mut log = SentLog::new(1000);
        for i in 0..5 {
            log.push(ChannelMessage::text(format!("m{i}")));
        }
        assert_eq!(log.sent(), 5);
        let r = log.resend_from(3);
        assert_eq!(
            r.messages,
            vec![ChannelMessage::text("m3"), ChannelMessage::text("m4")]
        );
        assert_eq!(r.lost, 0);
        // The peer has everything: nothing again; a peer ahead of us (cannot happen) neither.
        assert!(log.resend_from(5).messages.is_empty());
        assert!(log.resend_from(9).messages.is_empty());
        // After SCTP reported nothing outstanding the old ones are gone: a peer that still
        // misses them gets what is kept, and the gap is counted as lost.
        log.clear();
        log.push(ChannelMessage::text("m5"));
        let r = log.resend_from(2);
        assert_eq!(r.messages, vec![ChannelMessage::text("m5")]);
        assert_eq!(r.lost, 3);
    }

    #[test]
    fn sent_log_asks_sctp_every_few_messages_so_small_messages_do_not_pile_up() {
        // Small messages (the mesh's 30-byte ones) must not wait for a byte threshold: 64 of
        // them make a check due, and a clear (nothing outstanding) leaves the log empty.
        let mut log = SentLog::new(1 << 20);
        for i in 0..SentLog::CHECK_ENTRIES - 1 {
            log.push(ChannelMessage::text(format!("{i:030}")));
            assert!(!log.due_for_check());
        }
        log.push(ChannelMessage::text("last"));
        assert!(log.due_for_check());
        log.clear();
        assert_eq!((log.kept_len(), log.kept_bytes()), (0, 0));
        assert!(!log.due_for_check());
        // A check that found something outstanding is repeated after 1, 2, 4, … 64 messages.
        log.push(ChannelMessage::binary(vec![0; SentLog::CHECK_BYTES]));
        assert!(log.due_for_check());
        log.checked();
        assert!(!log.due_for_check());
        assert_eq!(log.kept_len(), 1, "kept until SCTP reports it delivered");
        let mut gaps = Vec::new();
        for _ in 0..9 {
            let mut n = 0;
            loop {
                log.push(ChannelMessage::text("x"));
                n += 1;
                if log.due_for_check() {
                    break;
                }
            }
            gaps.push(n);
            log.checked();
        }
        assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        log.clear();
        // Over a long run with checks the log stays at most one check interval long.
        let mut log = SentLog::new(1 << 20);
        for i in 0..100_000 {
            log.push(ChannelMessage::text(format!("{i:030}")));
            if log.due_for_check() {
                log.clear();
            }
            assert!(log.kept_len() <= SentLog::CHECK_ENTRIES);
        }
        assert_eq!(log.sent(), 100_000);
    }

    #[test]
    fn sent_log_keeps_the_newest_bytes_up_to_its_limit() {
        let mut log = SentLog::new(10);
        for i in 0..6 {
            log.push(ChannelMessage::binary(vec![i as u8; 4]));
        }
        // 4-byte messages, 10 bytes kept: the newest two (8 bytes) stay.
        assert_eq!(log.kept_bytes(), 8);
        let r = log.resend_from(0);
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[0].data, vec![4u8; 4]);
        assert_eq!(r.lost, 4);
        // A message larger than the limit is still kept (alone).
        log.push(ChannelMessage::binary(vec![9u8; 30]));
        assert_eq!(log.kept_bytes(), 30);
        assert_eq!(log.resend_from(6).messages.len(), 1);
    }

    #[test]
    fn classification_table() {
        let c = |s: bool, d: &str| ChannelMessage::classify(s, d.as_bytes().to_vec()).kind;
        assert_eq!(c(true, "{\"a\":1}"), MessageKind::Json);
        assert_eq!(c(true, "  [1,2]"), MessageKind::Json);
        assert_eq!(c(true, "hello"), MessageKind::Text);
        assert_eq!(c(true, "42"), MessageKind::Text);
        assert_eq!(c(true, "{not json"), MessageKind::Text);
        assert_eq!(c(false, "{\"a\":1}"), MessageKind::Binary);
    }

    #[test]
    fn control_messages_round_trip_as_json() {
        let m = ControlMessage::PipelineStart {
            session_id: "s1".into(),
            manifest: None,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "pipeline-start", "sessionId": "s1"})
        );
        let msg = ChannelMessage::json(&v);
        assert_eq!(msg.as_control(), Some(m));
        let stop =
            ChannelMessage::json(&serde_json::json!({"type":"pipeline-stop","sessionId":"x"}));
        assert_eq!(
            stop.as_control(),
            Some(ControlMessage::PipelineStop {
                session_id: "x".into()
            })
        );
        assert_eq!(
            ChannelMessage::json(&serde_json::json!({"type":"ping"})).as_control(),
            None
        );
    }

    #[test]
    fn unreliable_mode_means_unordered_without_retransmits() {
        let i = channel_init(DataChannelMode::Unreliable);
        assert!(!i.ordered);
        assert_eq!(i.max_retransmits, Some(0));
        assert!(channel_init(DataChannelMode::Reliable).ordered);
    }
}
