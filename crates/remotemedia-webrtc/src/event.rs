//! What a transport reports, in order, through one bounded queue. A slow consumer slows the
//! producers (data-channel readers stop reading, SCTP's window closes) instead of growing memory.

use crate::channel::{ChannelMessage, DataChannel};
use crate::error::Error;
use serde_json::Value;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Events queued before the consumer must catch up.
pub const EVENT_QUEUE: usize = 1024;

#[derive(Debug, Clone)]
pub enum TransportEvent {
    /// Another peer announced itself on the signaling server.
    PeerAnnounced {
        peer_id: String,
        capabilities: Vec<String>,
        user_data: Option<Value>,
    },
    /// A peer connection (ours or theirs) is connected and, for ours, its default channel open.
    PeerConnected {
        peer_id: String,
        outgoing: bool,
    },
    /// A peer is gone; `reason` as in the signaling protocol.
    PeerDisconnected {
        peer_id: String,
        reason: String,
    },
    /// The peer connection's state changed (`new`, `connecting`, `connected`, ...).
    PeerState {
        peer_id: String,
        state: String,
    },
    /// A data channel that the remote side opened is open.
    DataChannel {
        peer_id: String,
        channel: DataChannel,
    },
    ChannelMessage {
        peer_id: String,
        channel: u64,
        message: ChannelMessage,
    },
    ChannelClosed {
        peer_id: String,
        channel: u64,
    },
    /// A peer started sending a track (`kind`: "audio" or "video").
    TrackStarted {
        peer_id: String,
        kind: String,
        track_id: String,
    },
    /// A peer stopped sending a track (removed it and renegotiated).
    TrackEnded {
        peer_id: String,
        kind: String,
        track_id: String,
    },
    /// A connected peer's path broke (ICE disconnected or failed); recovering, attempt `attempt`.
    Reconnecting {
        peer_id: String,
        attempt: u32,
    },
    /// The path is back after `previous_duration_ms` of outage.
    Reconnected {
        peer_id: String,
        attempt: u32,
        is_full_reconnect: bool,
        previous_duration_ms: f64,
    },
    /// Recovery gave up after `attempt` attempts; the peer is closed.
    ReconnectFailed {
        peer_id: String,
        attempt: u32,
    },
    /// What a session's pipeline reported: a node event (`name`, `data`), an event frame out of
    /// an Output node, or a node's error.
    SessionOutput {
        session_id: String,
        node_id: String,
        peer_id: Option<String>,
        name: Option<String>,
        data: Option<serde_json::Value>,
        error: Option<Error>,
    },
    /// A peer's connection quality, measured once per `quality_interval_ms`.
    Quality {
        peer_id: String,
        metrics: crate::peer::quality::QualityMetrics,
    },
    /// A decoded audio frame from a peer's remote track.
    AudioFrame {
        peer_id: String,
        frame: crate::media::track::AudioFrame,
    },
    /// A decoded video frame from a peer's remote track.
    VideoFrame {
        peer_id: String,
        frame: crate::media::track::VideoFrame,
    },
    /// The signaling socket dropped; retrying.
    SignalingReconnecting {
        attempt: u32,
    },
    /// The signaling socket is back and this peer announced again.
    SignalingReconnected,
    Error {
        peer_id: Option<String>,
        error: Error,
    },
}

/// The sending half, shared by every producer of one transport. Closing it ends the stream:
/// nothing is emitted after close.
pub struct EventSink {
    tx: Mutex<Option<mpsc::Sender<TransportEvent>>>,
}

impl EventSink {
    pub fn new() -> (Self, mpsc::Receiver<TransportEvent>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        (
            Self {
                tx: Mutex::new(Some(tx)),
            },
            rx,
        )
    }

    pub async fn emit(&self, ev: TransportEvent) {
        let tx = self.tx.lock().unwrap().clone();
        if let Some(tx) = tx {
            let _ = tx.send(ev).await;
        }
    }

    pub fn close(&self) {
        self.tx.lock().unwrap().take();
    }

    pub fn is_closed(&self) -> bool {
        self.tx.lock().unwrap().is_none()
    }
}
