//! `WebRtcTransport`: one local peer in a mesh of up to `max_peers` remote peers, tied together
//! by the signaling client. It dials (`connect_peer`), answers every offer it receives, relays
//! trickle ICE, and reports everything through one ordered event stream.
//!
//! Who dials whom: `connect_peer` dials; with `auto_connect` a newcomer dials every peer
//! already present (from its announce result), and those peers only answer, so no pair is
//! dialled from both ends. When both ends still dial each other at once (glare), the peer with
//! the greater id yields: it drops its own pending offer and answers the other's.

use crate::config::VideoCodec;
use crate::config::{is_valid_peer_id, WebRtcTransportConfig};
use crate::error::{Error, Result};
use crate::event::{EventSink, TransportEvent};
use crate::media::track::{LocalAudioTrack, LocalVideoTrack, VideoSendState};
use crate::media::{AudioEncoderConfig, OpusEncoder, Pcm, VideoEncoderConfig};
use crate::peer::connection::{PeerNotice, PeerSetup, Signal};
use crate::peer::{Peer, PeerManager, PeerState};
use crate::signaling::client::{SignalingClient, SignalingEvent};
use crate::signaling::protocol::{
    self, AnnouncedParams, Capability, DisconnectParams, DisconnectReason, DisconnectedParams,
    IceCandidateParams, PeerInfo, SdpParams,
};
use bytes::Bytes;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

enum Life {
    Created,
    Starting,
    Started(SignalingClient),
    ShutDown,
}

struct Inner {
    config: Arc<WebRtcTransportConfig>,
    peer_id: String,
    life: Mutex<Life>,
    peers: PeerManager,
    events: Arc<EventSink>,
    events_rx: Mutex<Option<mpsc::Receiver<TransportEvent>>>,
    changed: watch::Sender<u64>,
    notices: mpsc::UnboundedSender<PeerNotice>,
    notices_rx: Mutex<Option<mpsc::UnboundedReceiver<PeerNotice>>>,
    stop: CancellationToken,
    /// Encodes once for `broadcast_audio` (one continuous stream for every receiver).
    broadcast_encoder: Mutex<Option<(AudioEncoderConfig, OpusEncoder)>>,
    /// Encodes once for `broadcast_video`.
    broadcast_video: Mutex<Option<(VideoCodec, VideoEncoderConfig, VideoSendState)>>,
    /// Named groups of this transport's peers.
    sessions: crate::session::Sessions,
    /// The runtime `start` ran on: work started from a caller outside any runtime (a
    /// synchronous binding call) is spawned there.
    runtime: std::sync::OnceLock<tokio::runtime::Handle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The transport. Cheap to clone; clones share one local peer.
#[derive(Clone)]
pub struct WebRtcTransport {
    inner: Arc<Inner>,
}

static NEXT_AUTO_ID: AtomicU64 = AtomicU64::new(1);

fn reason_str(r: &DisconnectReason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

impl WebRtcTransport {
    /// Validates the config; nothing is connected until [`start`](Self::start).
    pub fn new(config: WebRtcTransportConfig) -> Result<Self> {
        config.validate()?;
        let peer_id = config.peer_id.clone().unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0);
            format!(
                "peer-{:x}-{}",
                t ^ (std::process::id() as u128) << 40,
                NEXT_AUTO_ID.fetch_add(1, Ordering::Relaxed)
            )
        });
        let (events, events_rx) = EventSink::new();
        let (notices, notices_rx) = mpsc::unbounded_channel();
        Ok(Self {
            inner: Arc::new(Inner {
                peers: PeerManager::new(config.max_peers),
                config: Arc::new(config),
                peer_id,
                life: Mutex::new(Life::Created),
                events: Arc::new(events),
                events_rx: Mutex::new(Some(events_rx)),
                changed: watch::channel(0).0,
                notices,
                notices_rx: Mutex::new(Some(notices_rx)),
                stop: CancellationToken::new(),
                broadcast_encoder: Mutex::new(None),
                broadcast_video: Mutex::new(None),
                sessions: crate::session::Sessions::default(),
                runtime: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn config(&self) -> &WebRtcTransportConfig {
        &self.inner.config
    }

    pub fn local_peer_id(&self) -> &str {
        &self.inner.peer_id
    }

    /// The event stream; can be taken once, before [`start`](Self::start). A transport whose
    /// events were not taken by then discards them (so nothing waits on an unread queue).
    pub fn take_events(&self) -> Option<mpsc::Receiver<TransportEvent>> {
        self.inner.events_rx.lock().unwrap().take()
    }

    pub fn is_started(&self) -> bool {
        matches!(*self.inner.life.lock().unwrap(), Life::Started(_))
    }

    pub fn is_shut_down(&self) -> bool {
        matches!(*self.inner.life.lock().unwrap(), Life::ShutDown)
    }

    fn signaling(&self) -> Result<SignalingClient> {
        match &*self.inner.life.lock().unwrap() {
            Life::Started(c) => Ok(c.clone()),
            Life::ShutDown => Err(Error::ShutDown("transport is shut down".into())),
            _ => Err(Error::NotStarted("call start() first".into())),
        }
    }

    fn bump(&self) {
        Self::bump_inner(&self.inner);
    }

    fn bump_inner(inner: &Inner) {
        inner.changed.send_modify(|v| *v += 1);
    }

    /// Connects to the signaling server and announces this peer; with `auto_connect`, dials
    /// every peer already present.
    pub async fn start(&self) -> Result<()> {
        {
            let mut life = self.inner.life.lock().unwrap();
            match *life {
                Life::Created => *life = Life::Starting,
                Life::ShutDown => return Err(Error::ShutDown("transport is shut down".into())),
                _ => return Err(Error::AlreadyStarted),
            }
        }
        let _ = self.inner.runtime.set(tokio::runtime::Handle::current());
        // Nobody took the events: drop the receiver so emitting never waits on it.
        drop(self.inner.events_rx.lock().unwrap().take());
        let cfg = &self.inner.config;
        let mut caps = vec![Capability::Audio, Capability::Video];
        if cfg.enable_data_channel {
            caps.push(Capability::Data);
        }
        let connected = SignalingClient::connect(
            &cfg.signaling_url,
            &self.inner.peer_id,
            caps,
            None,
            cfg.signaling_token.clone(),
            Duration::from_millis(cfg.signaling_timeout_ms),
            cfg.reconnection.clone(),
        )
        .await;
        let (client, announced, sig_events) = match connected {
            Ok(c) => c,
            Err(e) => {
                *self.inner.life.lock().unwrap() = Life::Created;
                return Err(e);
            }
        };
        let shut = {
            let mut life = self.inner.life.lock().unwrap();
            if matches!(*life, Life::ShutDown) {
                true
            } else {
                *life = Life::Started(client.clone());
                false
            }
        };
        if shut {
            client.close().await;
            return Err(Error::ShutDown(
                "transport was shut down while starting".into(),
            ));
        }
        let notices = self.inner.notices_rx.lock().unwrap().take();
        if let Some(notices) = notices {
            tokio::spawn(Self::run(Arc::downgrade(&self.inner), sig_events, notices));
        }
        for p in &announced.peers {
            self.emit_announced(p).await;
        }
        if cfg.auto_connect {
            self.dial_all(announced.peers);
        }
        Ok(())
    }

    async fn emit_announced(&self, p: &PeerInfo) {
        self.inner
            .events
            .emit(TransportEvent::PeerAnnounced {
                peer_id: p.peer_id.clone(),
                capabilities: caps_to_strings(&p.capabilities),
                user_data: p.user_data.clone(),
            })
            .await;
    }

    fn dial_all(&self, peers: Vec<PeerInfo>) {
        for p in peers {
            if p.peer_id == self.inner.peer_id || self.inner.peers.get(&p.peer_id).is_some() {
                continue;
            }
            let t = self.clone();
            tokio::spawn(async move {
                if let Err(e) = t.connect_peer(&p.peer_id).await {
                    t.inner
                        .events
                        .emit(TransportEvent::Error {
                            peer_id: Some(p.peer_id.clone()),
                            error: e,
                        })
                        .await;
                }
            });
        }
    }

    async fn run(
        weak: Weak<Inner>,
        mut sig: mpsc::UnboundedReceiver<SignalingEvent>,
        mut notices: mpsc::UnboundedReceiver<PeerNotice>,
    ) {
        let stop = match weak.upgrade() {
            Some(i) => i.stop.clone(),
            None => return,
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                ev = sig.recv() => {
                    let Some(ev) = ev else { break };
                    let Some(inner) = weak.upgrade() else { break };
                    WebRtcTransport { inner }.on_signaling(ev).await;
                }
                n = notices.recv() => {
                    let Some(n) = n else { break };
                    let Some(inner) = weak.upgrade() else { break };
                    WebRtcTransport { inner }.on_notice(n).await;
                }
            }
        }
    }

    async fn on_signaling(&self, ev: SignalingEvent) {
        match ev {
            SignalingEvent::Notification { method, params } => {
                let from = params
                    .get("from")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if let Err(e) = self.on_notification(&method, params).await {
                    tracing::warn!("signaling notification {method}: {e}");
                    self.inner
                        .events
                        .emit(TransportEvent::Error {
                            peer_id: from,
                            error: e,
                        })
                        .await;
                }
            }
            SignalingEvent::Reconnecting { attempt } => {
                self.inner
                    .events
                    .emit(TransportEvent::SignalingReconnecting { attempt })
                    .await
            }
            SignalingEvent::Reconnected { peers } => {
                self.inner
                    .events
                    .emit(TransportEvent::SignalingReconnected)
                    .await;
                if self.inner.config.auto_connect {
                    self.dial_all(peers);
                }
            }
            SignalingEvent::Closed => {
                if !self.is_shut_down() {
                    self.inner
                        .events
                        .emit(TransportEvent::Error {
                            peer_id: None,
                            error: Error::Signaling("signaling client closed".into()),
                        })
                        .await;
                }
            }
        }
    }

    async fn on_notification(&self, method: &str, params: Value) -> Result<()> {
        let bad = |e: serde_json::Error| Error::Signaling(format!("bad {method} params: {e}"));
        match method {
            protocol::ANNOUNCED => {
                let p: AnnouncedParams = serde_json::from_value(params).map_err(bad)?;
                self.inner
                    .events
                    .emit(TransportEvent::PeerAnnounced {
                        peer_id: p.peer_id,
                        capabilities: caps_to_strings(&p.capabilities),
                        user_data: p.user_data,
                    })
                    .await;
            }
            protocol::OFFER => {
                let p: SdpParams = serde_json::from_value(params).map_err(bad)?;
                self.on_offer(p).await?;
            }
            protocol::ANSWER => {
                let p: SdpParams = serde_json::from_value(params).map_err(bad)?;
                if let Some(peer) = self.inner.peers.get(&p.from) {
                    peer.signal(Signal::Answer {
                        sdp: p.sdp,
                        request_id: p.request_id,
                        can_full_reconnect: p.can_full_reconnect,
                    });
                }
            }
            protocol::ICE_CANDIDATE => {
                let p: IceCandidateParams = serde_json::from_value(params).map_err(bad)?;
                if let Some(peer) = self.inner.peers.get(&p.from) {
                    peer.signal(Signal::Candidate(p));
                }
            }
            protocol::DISCONNECTED => {
                let p: DisconnectedParams = serde_json::from_value(params).map_err(bad)?;
                // `network_error` says that the other side's *signaling* socket dropped, not that
                // the media path failed: a connection that ICE still reports alive is kept, and
                // consent freshness (with the reconnection policy) decides its fate.
                if p.reason == DisconnectReason::NetworkError
                    && self
                        .inner
                        .peers
                        .get(&p.from)
                        .is_some_and(|peer| peer.state() == PeerState::Connected)
                {
                    tracing::info!(
                        "{}'s signaling socket dropped; its connection is alive and kept",
                        p.from
                    );
                    return Ok(());
                }
                if let Some(peer) = self.inner.peers.remove(&p.from) {
                    peer.close(None).await;
                    self.bump();
                    self.leave_sessions(&p.from);
                    self.inner
                        .events
                        .emit(TransportEvent::PeerDisconnected {
                            peer_id: p.from,
                            reason: reason_str(&p.reason),
                        })
                        .await;
                }
            }
            _ => tracing::debug!("ignoring notification {method}"),
        }
        Ok(())
    }

    fn setup(&self, remote: &str, outgoing: bool, signaling: SignalingClient) -> PeerSetup {
        PeerSetup {
            local_id: self.inner.peer_id.clone(),
            remote_id: remote.to_string(),
            outgoing,
            config: self.inner.config.clone(),
            signaling,
            events: self.inner.events.clone(),
            notices: self.inner.notices.clone(),
            tap: Some(Arc::new(SessionRouter::new(
                Arc::downgrade(&self.inner),
                remote.to_string(),
            ))),
        }
    }

    async fn on_offer(&self, p: SdpParams) -> Result<()> {
        if p.to != self.inner.peer_id {
            return Ok(());
        }
        let signaling = self.signaling()?;
        let offer = Signal::Offer {
            sdp: p.sdp,
            request_id: p.request_id.clone(),
            can_full_reconnect: p.can_full_reconnect,
        };
        if let Some(existing) = self.inner.peers.get(&p.from) {
            let negotiating = existing.is_outgoing() && existing.state() != PeerState::Connected;
            if !negotiating {
                // A renegotiation (or restart) of a connection we already have.
                existing.signal(offer);
                return Ok(());
            }
            if !we_yield(&self.inner.peer_id, &p.from) {
                tracing::debug!("glare with {}: keeping our offer", p.from);
                return Ok(());
            }
            tracing::debug!("glare with {}: answering theirs", p.from);
            let peer = Peer::new(self.setup(&p.from, false, signaling)).await?;
            self.inner.peers.replace(peer.clone());
            existing.close(None).await;
            peer.signal(offer);
            self.bump();
            return Ok(());
        }
        if let Err(e) = self.inner.peers.check_capacity(&p.from) {
            self.refuse_offer(&signaling, &p.from, &p.request_id, &e);
            self.inner
                .events
                .emit(TransportEvent::Error {
                    peer_id: Some(p.from),
                    error: e,
                })
                .await;
            return Ok(());
        }
        let peer = match Peer::new(self.setup(&p.from, false, signaling.clone())).await {
            Ok(peer) => peer,
            Err(e) => {
                self.refuse_offer(&signaling, &p.from, &p.request_id, &e);
                return Err(e);
            }
        };
        match self.inner.peers.insert(peer.clone()) {
            Ok(()) => {
                peer.signal(offer);
                self.bump();
            }
            Err(Some(other)) => {
                // Our own dial to the same peer was registered meanwhile: the glare rule
                // above applies (handing their offer to our dialling peer would make it keep
                // its own offer while the other side keeps theirs, and neither completes).
                let negotiating = other.is_outgoing() && other.state() != PeerState::Connected;
                if !negotiating {
                    peer.close(None).await;
                    other.signal(offer);
                } else if !we_yield(&self.inner.peer_id, &p.from) {
                    tracing::debug!("glare with {}: keeping our offer", p.from);
                    peer.close(None).await;
                } else {
                    tracing::debug!("glare with {}: answering theirs", p.from);
                    self.inner.peers.replace(peer.clone());
                    other.close(None).await;
                    peer.signal(offer);
                    self.bump();
                }
            }
            Err(None) => {
                peer.close(None).await;
            }
        }
        Ok(())
    }

    /// Tells an offerer at once that its offer will not be answered, rather than leave it
    /// waiting for its timeout.
    fn refuse_offer(&self, signaling: &SignalingClient, to: &str, request_id: &str, why: &Error) {
        let _ = signaling.notify(
            protocol::DISCONNECT,
            &DisconnectParams {
                from: self.inner.peer_id.clone(),
                to: to.to_string(),
                reason: DisconnectReason::Error,
                details: Some(why.to_string()),
                request_id: Some(request_id.to_string()),
            },
        );
    }

    async fn on_notice(&self, n: PeerNotice) {
        match n {
            PeerNotice::Changed => self.bump(),
            PeerNotice::Ended { peer_id, state } => {
                let Some(peer) = self.inner.peers.get(&peer_id) else {
                    return;
                };
                if !peer.state().is_terminal() || !self.inner.peers.remove_if(&peer_id, &peer) {
                    return;
                }
                peer.close(None).await;
                self.bump();
                self.leave_sessions(&peer_id);
                self.inner
                    .events
                    .emit(TransportEvent::PeerDisconnected {
                        peer_id,
                        reason: if state == PeerState::Failed {
                            "network_error".into()
                        } else {
                            "unknown".into()
                        },
                    })
                    .await;
            }
        }
    }

    /// Dials `peer_id` and resolves once the connection is up and its default data channel
    /// open. Resolves at once with the existing peer when already connected.
    pub async fn connect_peer(&self, peer_id: &str) -> Result<Arc<Peer>> {
        let signaling = self.signaling()?;
        if !is_valid_peer_id(peer_id) {
            return Err(Error::InvalidData(format!(
                "peerId must match ^[A-Za-z0-9_-]{{1,64}}$, got '{peer_id}'"
            )));
        }
        if peer_id == self.inner.peer_id {
            return Err(Error::InvalidData("a peer cannot connect to itself".into()));
        }
        let timeout = Duration::from_millis(self.inner.config.connect_timeout_ms);
        if self.inner.peers.get(peer_id).is_none() {
            self.inner.peers.check_capacity(peer_id)?;
            let peer = Peer::new(self.setup(peer_id, true, signaling)).await?;
            match self.inner.peers.insert(peer.clone()) {
                Ok(()) => {
                    self.bump();
                    if let Err(e) = peer.start_offer().await {
                        let replaced = self
                            .inner
                            .peers
                            .get(peer_id)
                            .is_some_and(|now| !Arc::ptr_eq(&now, &peer));
                        if !replaced {
                            if self.inner.peers.remove_if(peer_id, &peer) {
                                self.bump();
                            }
                            peer.close(None).await;
                            return Err(e);
                        }
                        // Glare: we yielded to their offer while sending ours; follow theirs.
                    }
                }
                Err(Some(_)) => {
                    peer.close(None).await;
                }
                Err(None) => {
                    peer.close(None).await;
                    return Err(Error::MaxPeers(self.inner.peers.max_peers()));
                }
            }
        }
        self.wait_connected(peer_id, timeout).await
    }

    /// Waits until the entry for `peer_id` is ready, following a glare replacement.
    async fn wait_connected(&self, peer_id: &str, timeout: Duration) -> Result<Arc<Peer>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(peer) = self.inner.peers.get(peer_id) else {
                return Err(Error::ConnectionFailed(format!(
                    "{peer_id} disconnected while connecting"
                )));
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match peer.wait_ready(left).await {
                Ok(()) => return Ok(peer),
                Err(e) => {
                    match self.inner.peers.get(peer_id) {
                        Some(now) if !Arc::ptr_eq(&now, &peer) => continue, // replaced (glare)
                        _ => {}
                    }
                    if self.inner.peers.remove_if(peer_id, &peer) {
                        self.bump();
                    }
                    peer.close(Some(DisconnectReason::Timeout)).await;
                    return Err(e);
                }
            }
        }
    }

    /// Closes the connection to `peer_id` and tells it through signaling.
    pub async fn disconnect_peer(&self, peer_id: &str) -> Result<()> {
        if self.is_shut_down() {
            return Err(Error::ShutDown("transport is shut down".into()));
        }
        let peer = self
            .inner
            .peers
            .remove(peer_id)
            .ok_or_else(|| Error::PeerNotFound(peer_id.to_string()))?;
        peer.close(Some(DisconnectReason::UserRequested)).await;
        self.bump();
        self.leave_sessions(peer_id);
        self.inner
            .events
            .emit(TransportEvent::PeerDisconnected {
                peer_id: peer_id.to_string(),
                reason: "user_requested".into(),
            })
            .await;
        Ok(())
    }

    /// A peer is gone: it leaves every session (their pipelines forget it; what they say about
    /// it is delivered) and its routing tasks end.
    fn leave_sessions(&self, peer_id: &str) {
        let routed = self.inner.sessions.forget_peer(peer_id);
        self.deliver_later(routed);
    }

    /// Delivers routed outputs on a task of their own (callable outside a runtime).
    fn deliver_later(&self, routed: Vec<crate::session::Routed>) {
        if routed.iter().all(|r| r.outputs.is_empty()) {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.inner.runtime.get().cloned());
        match runtime {
            Some(rt) => drop(rt.spawn(deliver_routed(self.clone(), routed))),
            None => tracing::trace!("session outputs dropped: transport never started"),
        }
    }

    /// Removes a peer from a session (it stays connected); whether it was in it. The session's
    /// pipeline forgets it (a `peer-left` event); what that produces is delivered.
    pub fn remove_peer_from_session(&self, session_id: &str, peer_id: &str) -> Result<bool> {
        let (was_in, routed) = self.inner.sessions.remove_peer(session_id, peer_id)?;
        self.deliver_later(routed);
        Ok(was_in)
    }

    /// Creates a session (`SessionExists` if the id is taken).
    pub fn create_session(
        &self,
        id: &str,
        options: crate::session::SessionOptions,
    ) -> Result<crate::session::SessionInfo> {
        self.inner.sessions.create(id, options)
    }

    /// The session registry (get, has, list, remove, snapshot).
    pub fn sessions(&self) -> &crate::session::Sessions {
        &self.inner.sessions
    }

    /// Adds a connected peer to a session (`PeerNotFound` if there is no such peer).
    pub fn add_peer_to_session(
        &self,
        session_id: &str,
        peer_id: &str,
    ) -> Result<crate::session::SessionInfo> {
        self.inner.sessions.get(session_id)?;
        self.get_peer(peer_id)?;
        self.inner.sessions.add_peer(session_id, peer_id)
    }

    /// A session's snapshot, with what the sync stage learned of each connected member.
    pub fn session_snapshot(&self, id: &str) -> Result<crate::session::SessionSnapshot> {
        let mut snap = self.inner.sessions.snapshot(id)?;
        for p in &snap.peers {
            if let Ok(peer) = self.get_peer(p) {
                snap.sync.insert(p.clone(), peer.sync_seed());
            }
        }
        Ok(snap)
    }

    /// Recreates a session from a snapshot and reconnects its peers. The snapshot is checked
    /// completely first (`InvalidData`, nothing created). Peers that cannot be reached are left
    /// out and returned in the second list.
    pub async fn restore_session(
        &self,
        snapshot: &serde_json::Value,
    ) -> Result<(crate::session::SessionInfo, Vec<String>)> {
        let snap = crate::session::Sessions::parse_snapshot(snapshot)?;
        self.inner.sessions.restore_empty(&snap)?;
        let mut failed = Vec::new();
        for p in &snap.peers {
            let joined = match self.connect_peer(p).await {
                Ok(peer) => snap
                    .sync
                    .get(p)
                    .map_or(Ok(()), |seed| peer.apply_sync_seed(*seed))
                    .and_then(|_| self.inner.sessions.add_peer(&snap.id, p).map(|_| ())),
                Err(e) => Err(e),
            };
            if let Err(e) = joined {
                tracing::debug!(session = snap.id, peer = p, "not restored: {e}");
                failed.push(p.clone());
            }
        }
        Ok((self.inner.sessions.get(&snap.id)?, failed))
    }

    pub fn get_peer(&self, peer_id: &str) -> Result<Arc<Peer>> {
        self.inner
            .peers
            .get(peer_id)
            .ok_or_else(|| Error::PeerNotFound(peer_id.to_string()))
    }

    /// Ids of connected peers, sorted.
    pub fn list_peers(&self) -> Vec<String> {
        self.inner.peers.connected()
    }

    /// Every known peer with its state, sorted by id.
    pub fn list_all_peers(&self) -> Vec<(String, PeerState)> {
        self.inner.peers.all()
    }

    /// The audio track sending to `peer_id`.
    pub fn audio_track(&self, peer_id: &str) -> Result<Arc<LocalAudioTrack>> {
        self.get_peer(peer_id)?.audio_track().ok_or_else(|| {
            Error::PeerNotConnected(format!("{peer_id} has no audio track: add one first"))
        })
    }

    /// The video track sending to `peer_id`.
    pub fn video_track(&self, peer_id: &str) -> Result<Arc<LocalVideoTrack>> {
        self.get_peer(peer_id)?.video_track().ok_or_else(|| {
            Error::PeerNotConnected(format!("{peer_id} has no video track: add one first"))
        })
    }

    /// Encodes one packed I420 frame (on a blocking thread) and sends it to `peer_id`. `data`
    /// is anything that derefs to bytes (a `Vec`, or a JS Buffer held without copying).
    pub async fn send_video<D: AsRef<[u8]> + Send + 'static>(
        &self,
        peer_id: &str,
        frame: VideoInput<D>,
    ) -> Result<()> {
        let track = self.video_track(peer_id)?;
        if !track.negotiation().may_send()? {
            return Ok(());
        }
        let t = track.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            t.encode(
                frame.data.as_ref(),
                frame.width,
                frame.height,
                frame.timestamp_us,
                frame.keyframe,
            )
        })
        .await
        .map_err(|e| Error::Internal(format!("video encoder task: {e}")))??;
        track.send_encoded(encoded).await
    }

    /// Encodes one packed I420 frame once (on a blocking thread) and sends it to every connected
    /// peer with a negotiated video track. A keyframe request from any of them makes it a
    /// keyframe.
    pub async fn broadcast_video<D: AsRef<[u8]> + Send + 'static>(
        &self,
        frame: VideoInput<D>,
    ) -> Result<BroadcastResult> {
        let targets: Vec<(String, Arc<LocalVideoTrack>)> = self
            .list_peers()
            .into_iter()
            .filter_map(|id| {
                let t = self.inner.peers.get(&id)?.video_track()?;
                t.negotiation().is_negotiated().then_some((id, t))
            })
            .collect();
        let Some((_, first)) = targets.first() else {
            return Ok(BroadcastResult::default());
        };
        let (codec, config) = (first.codec(), *first.config());
        // Every request is taken (not short-circuited), so none is left pending.
        let requested = targets
            .iter()
            .fold(false, |any, (_, t)| t.take_keyframe_request() | any);
        let inner = self.inner.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            let mut enc = inner.broadcast_video.lock().unwrap();
            if enc
                .as_ref()
                .is_none_or(|(c, cfg, _)| *c != codec || *cfg != config)
            {
                *enc = Some((codec, config, VideoSendState::new(codec, &config)?));
            }
            let (_, _, state) = enc.as_mut().expect("set above");
            state.encode(
                frame.data.as_ref(),
                frame.width,
                frame.height,
                frame.timestamp_us,
                frame.keyframe || requested,
            )
        })
        .await
        .map_err(|e| Error::Internal(format!("video encoder task: {e}")))??;
        let mut result = BroadcastResult::default();
        for (id, track) in targets {
            match track.send_encoded(encoded.clone()).await {
                Ok(()) => result.sent += 1,
                Err(e) => result.failed.push((id, e)),
            }
        }
        Ok(result)
    }

    /// Encodes one frame of PCM (10/20/40/60 ms at 48 kHz) and sends it to `peer_id`.
    pub async fn send_audio(&self, peer_id: &str, pcm: Pcm<'_>) -> Result<()> {
        self.audio_track(peer_id)?.send(pcm).await
    }

    /// Encodes one frame once for every connected peer with a negotiated audio track;
    /// [`send_to_all`](Self::send_to_all) sends it.
    pub fn encode_broadcast(&self, pcm: Pcm<'_>) -> Result<AudioBroadcast> {
        let targets: Vec<(String, Arc<LocalAudioTrack>)> = self
            .list_peers()
            .into_iter()
            .filter_map(|id| {
                let t = self.inner.peers.get(&id)?.audio_track()?;
                t.negotiation().is_negotiated().then_some((id, t))
            })
            .collect();
        let Some((_, first)) = targets.first() else {
            return Ok(AudioBroadcast {
                targets,
                packet: Bytes::new(),
                duration: std::time::Duration::ZERO,
            });
        };
        let mut enc = self.inner.broadcast_encoder.lock().unwrap();
        if enc.as_ref().is_none_or(|(c, _)| c != first.config()) {
            *enc = Some((*first.config(), OpusEncoder::new(first.config())?));
        }
        let (config, encoder) = enc.as_mut().expect("set above");
        let len = match pcm {
            Pcm::F32(s) => s.len(),
            Pcm::I16(s) => s.len(),
        };
        let duration = config.frame_duration(len)?;
        let packet = encoder.encode(pcm)?;
        Ok(AudioBroadcast {
            targets,
            packet: Bytes::from(packet),
            duration: std::time::Duration::from_millis(duration.millis() as u64),
        })
    }

    /// Sends one encoded packet to every target; returns who got it and who did not.
    pub async fn send_to_all(b: AudioBroadcast) -> BroadcastResult {
        let AudioBroadcast {
            targets,
            packet,
            duration,
        } = b;
        let mut result = BroadcastResult::default();
        for (id, track) in targets {
            match track.send_packet(packet.clone(), duration).await {
                Ok(()) => result.sent += 1,
                Err(e) => result.failed.push((id, e)),
            }
        }
        result
    }

    /// Encodes once and sends to every connected peer with a negotiated audio track.
    pub async fn broadcast_audio(&self, pcm: Pcm<'_>) -> Result<BroadcastResult> {
        Ok(Self::send_to_all(self.encode_broadcast(pcm)?).await)
    }

    /// Closes every peer and channel and the signaling socket; ends the event stream.
    /// Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        let prev = std::mem::replace(&mut *self.inner.life.lock().unwrap(), Life::ShutDown);
        if matches!(prev, Life::ShutDown) {
            return Ok(());
        }
        self.inner.events.close();
        self.inner.stop.cancel();
        for peer in self.inner.peers.drain() {
            peer.close(Some(DisconnectReason::UserRequested)).await;
        }
        if let Life::Started(client) = prev {
            client.close().await;
        }
        self.bump();
        Ok(())
    }
}

/// The glare rule: when both ends dial each other at once, the peer with the greater id yields
/// (drops its own pending offer and answers the other's); the smaller id keeps its offer.
fn we_yield(local_id: &str, remote_id: &str) -> bool {
    local_id >= remote_id
}

fn caps_to_strings(caps: &[Capability]) -> Vec<String> {
    caps.iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// One raw video frame to send: packed I420.
pub struct VideoInput<D> {
    pub data: D,
    pub width: u32,
    pub height: u32,
    pub timestamp_us: i64,
    /// Force a keyframe.
    pub keyframe: bool,
}

/// One encoded audio frame and the peers it goes to.
pub struct AudioBroadcast {
    pub targets: Vec<(String, Arc<LocalAudioTrack>)>,
    pub packet: Bytes,
    pub duration: std::time::Duration,
}

/// What a broadcast reached.
#[derive(Debug, Default)]
pub struct BroadcastResult {
    pub sent: usize,
    pub failed: Vec<(String, Error)>,
}

static LIVE_SESSION_TASKS: AtomicUsize = AtomicUsize::new(0);

/// Session routing tasks still running in this process (a leak check): one per member and kind
/// (audio, video) while the member is in a session with a pipeline.
pub fn live_session_tasks() -> usize {
    LIVE_SESSION_TASKS.load(Ordering::SeqCst)
}

struct SessionTaskCount;
impl SessionTaskCount {
    fn new() -> Self {
        LIVE_SESSION_TASKS.fetch_add(1, Ordering::SeqCst);
        SessionTaskCount
    }
}
impl Drop for SessionTaskCount {
    fn drop(&mut self) {
        LIVE_SESSION_TASKS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Decoded video frames a member's video task may hold while it is busy; newer ones are dropped
/// (video catches up on the next frame; a growing queue would only add delay).
const VIDEO_QUEUE: usize = 2;

/// What a member's routing task is handed.
enum RouteJob {
    /// Audio already run through the pipelines (in the playout task: cheap).
    Routed(Vec<crate::session::Routed>),
    /// A video frame still to run (on a blocking thread: scaling takes milliseconds).
    Video(crate::pipeline::VideoFrame),
}

/// Feeds one remote peer's media, while it is a member of a session with a pipeline, through the
/// pipelines of its sessions: node events become `SessionOutput` events; audio and video frames
/// out of a pipeline go to the member they are tagged with (a loopback returns each member's own
/// media, a mixer each member's mix) when this transport sends that member audio / video.
///
/// Audio and video each have one task per member that delivers in order; it starts with the
/// member's first routed frame and ends as soon as the member routes nowhere (session removed,
/// member removed or disconnected), when the transport shuts down, or when the peer is dropped.
struct SessionRouter {
    inner: std::sync::Weak<Inner>,
    peer_id: String,
    audio: Mutex<Option<mpsc::UnboundedSender<RouteJob>>>,
    video: Mutex<Option<mpsc::Sender<RouteJob>>>,
}

impl SessionRouter {
    fn new(inner: std::sync::Weak<Inner>, peer_id: String) -> Self {
        Self {
            inner,
            peer_id,
            audio: Mutex::new(None),
            video: Mutex::new(None),
        }
    }

    /// One routing task; `rx` yields its jobs.
    fn spawn(&self, inner: &Inner, mut rx: impl JobSource) {
        let weak = self.inner.clone();
        let peer_id = self.peer_id.clone();
        let stop = inner.stop.clone();
        let mut changed = inner.sessions.subscribe();
        tokio::spawn(async move {
            let _count = SessionTaskCount::new();
            // Subscribed first: a change after this check wakes the loop below.
            if !weak.upgrade().is_some_and(|i| i.sessions.routes(&peer_id)) {
                return;
            }
            loop {
                let job = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = changed.changed() => {
                        let Some(inner) = weak.upgrade() else { return };
                        if r.is_err() || !inner.sessions.routes(&peer_id) {
                            return;
                        }
                        continue;
                    }
                    job = rx.next() => match job {
                        Some(job) => job,
                        None => return,
                    },
                };
                let Some(inner) = weak.upgrade() else { return };
                let t = WebRtcTransport { inner };
                let routed = match job {
                    RouteJob::Routed(r) => r,
                    RouteJob::Video(frame) => {
                        let t = t.clone();
                        let from = peer_id.clone();
                        match tokio::task::spawn_blocking(move || {
                            t.inner.sessions.route_video(&from, frame)
                        })
                        .await
                        {
                            Ok(r) => r,
                            Err(e) => {
                                tracing::debug!(peer = peer_id, "session video route failed: {e}");
                                continue;
                            }
                        }
                    }
                };
                deliver_routed(t, routed).await;
            }
        });
    }

    fn send_audio(&self, inner: &Inner, routed: Vec<crate::session::Routed>) {
        let mut q = self.audio.lock().unwrap_or_else(|e| e.into_inner());
        let mut job = RouteJob::Routed(routed);
        if let Some(tx) = q.as_ref() {
            match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(j)) => job = j,
            }
        }
        // No task, or it ended (the member stopped routing for a while): a new one.
        let (tx, rx) = mpsc::unbounded_channel();
        self.spawn(inner, rx);
        let _ = tx.send(job);
        *q = Some(tx);
    }

    fn send_video(&self, inner: &Inner, frame: crate::pipeline::VideoFrame) {
        let mut q = self.video.lock().unwrap_or_else(|e| e.into_inner());
        let mut job = RouteJob::Video(frame);
        if let Some(tx) = q.as_ref() {
            match tx.try_send(job) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::trace!(peer = self.peer_id, "session video busy: frame dropped");
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(j)) => job = j,
            }
        }
        let (tx, rx) = mpsc::channel(VIDEO_QUEUE);
        self.spawn(inner, rx);
        let _ = tx.try_send(job);
        *q = Some(tx);
    }
}

/// The receiving end of a routing task's queue (unbounded for audio, bounded for video).
trait JobSource: Send + 'static {
    fn next(&mut self) -> impl std::future::Future<Output = Option<RouteJob>> + Send;
}

impl JobSource for mpsc::UnboundedReceiver<RouteJob> {
    async fn next(&mut self) -> Option<RouteJob> {
        self.recv().await
    }
}

impl JobSource for mpsc::Receiver<RouteJob> {
    async fn next(&mut self) -> Option<RouteJob> {
        self.recv().await
    }
}

impl crate::media::playout::FrameTap for SessionRouter {
    /// Members' audio and video go into session pipelines as they arrive: what comes out goes back over
    /// the network into the receiver's own jitter buffer, so a second buffer here would only
    /// add its delay.
    fn at_arrival(&self, peer_id: &str) -> bool {
        self.inner
            .upgrade()
            .is_some_and(|inner| inner.sessions.routes(peer_id))
    }

    fn audio(&self, peer_id: &str, frame: &crate::media::track::AudioFrame) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if !inner.sessions.routes(peer_id) {
            return;
        }
        let routed = inner.sessions.route_audio(
            peer_id,
            crate::pipeline::AudioFrame {
                samples: frame.samples.clone(),
                sample_rate: frame.sample_rate,
                channels: frame.channels,
                peer_id: Some(peer_id.to_string()),
                timestamp_us: frame.wall_clock_us as i64,
            },
        );
        self.send_audio(&inner, routed);
    }

    /// The application's `VideoFrame` event keeps the decoder's buffer; the pipelines get one
    /// copy (and only while the member is in a session with a pipeline).
    fn video(&self, peer_id: &str, frame: &crate::media::track::VideoFrame) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if !inner.sessions.routes(peer_id) {
            return;
        }
        self.send_video(
            &inner,
            crate::pipeline::VideoFrame {
                data: frame.data.clone(),
                width: frame.width,
                height: frame.height,
                peer_id: Some(peer_id.to_string()),
                timestamp_us: frame.wall_clock_us as i64,
            },
        );
    }
}

/// Sends a member's routed outputs: audio and video to the member they are tagged with, events
/// as `SessionOutput`. Video goes out only to a member this transport has a video track to, and
/// only at that track's size (e.g. a `VideoScale` to 320x240 needs a 320x240 track); otherwise
/// the frame is dropped with a trace log.
async fn deliver_routed(t: WebRtcTransport, routed: Vec<crate::session::Routed>) {
    for mut r in routed {
        for o in std::mem::take(&mut r.outputs) {
            let ev = match o {
                crate::pipeline::PipelineOutput::Frame { node_id, frame } => match frame {
                    crate::pipeline::Frame::Audio(a) => {
                        for to in r.recipients(&node_id, a.peer_id.as_deref()) {
                            if let Err(e) = t.send_audio(&to, Pcm::F32(&a.samples)).await {
                                tracing::trace!(to, "session audio not sent: {e}");
                            }
                        }
                        continue;
                    }
                    crate::pipeline::Frame::Video(v) => {
                        let to: Vec<String> = r
                            .recipients(&node_id, v.peer_id.as_deref())
                            .into_iter()
                            .filter(|to| {
                                let has_track = t
                                    .inner
                                    .peers
                                    .get(to)
                                    .is_some_and(|p| p.video_track().is_some());
                                if !has_track {
                                    tracing::trace!(to, "session video dropped: no video track");
                                }
                                has_track
                            })
                            .collect();
                        // The frame moves to the last recipient; the others get a copy.
                        let n = to.len();
                        let mut data = Some(v.data);
                        for (i, to) in to.into_iter().enumerate() {
                            let frame = if i + 1 == n {
                                data.take().unwrap_or_default()
                            } else {
                                data.clone().unwrap_or_default()
                            };
                            let input = VideoInput {
                                data: frame,
                                width: v.width,
                                height: v.height,
                                timestamp_us: v.timestamp_us,
                                keyframe: false,
                            };
                            if let Err(e) = t.send_video(&to, input).await {
                                tracing::trace!(to, "session video not sent: {e}");
                            }
                        }
                        continue;
                    }
                    crate::pipeline::Frame::Event(e) => TransportEvent::SessionOutput {
                        session_id: r.session_id.clone(),
                        node_id,
                        peer_id: e.peer_id,
                        name: Some(e.name),
                        data: Some(e.data),
                        error: None,
                    },
                },
                crate::pipeline::PipelineOutput::Event { node_id, event } => {
                    TransportEvent::SessionOutput {
                        session_id: r.session_id.clone(),
                        node_id,
                        peer_id: event
                            .data
                            .get("peer_id")
                            .and_then(|v| v.as_str())
                            .map(str::to_string),
                        name: Some(event.name),
                        data: Some(event.data),
                        error: None,
                    }
                }
                crate::pipeline::PipelineOutput::Error { node_id, error } => {
                    TransportEvent::SessionOutput {
                        session_id: r.session_id.clone(),
                        node_id,
                        peer_id: None,
                        name: None,
                        data: None,
                        error: Some(error),
                    }
                }
            };
            t.inner.events.emit(ev).await;
        }
    }
}

#[cfg(test)]
mod glare_tests {
    use super::we_yield;

    #[test]
    fn the_greater_id_yields() {
        assert!(we_yield("bob", "alice"));
        assert!(!we_yield("alice", "bob"));
    }

    #[test]
    fn exactly_one_side_yields() {
        for (a, b) in [("a", "b"), ("peer-10", "peer-9"), ("x", "xy")] {
            assert_ne!(we_yield(a, b), we_yield(b, a), "{a} / {b}");
        }
    }
}
