//! One remote peer: its webrtc-rs peer connection, trickle ICE in both directions through the
//! signaling client, its data channels, and its state.

use super::fast_start::{Boost, FastStartRuntime};
use super::metrics::{self as quality_sample, BitrateControl};
use super::quality::{QualityMetrics, QualityTracker};
use super::reconnect::{
    Admission, CircuitBreaker, CircuitBreakerConfig, JitterRng, ReconnectSchedule, ReconnectStep,
};
use super::remote_tracks::{sending_tracks, RemoteTracks, SendingTracks};
use crate::channel::{channel_init, DataChannel};
use crate::config::{DataChannelMode, WebRtcTransportConfig};
use crate::error::{Error, Result};
use crate::event::{EventSink, TransportEvent};
use crate::media::keyframe::SharedReceptionLog;
use crate::media::playout::{self, Playout};
use crate::media::track::{read_remote_track, LocalAudioTrack, LocalVideoTrack};
use crate::media::{AudioEncoderConfig, VideoEncoderConfig};
use crate::signaling::client::SignalingClient;
use crate::signaling::protocol::{
    self, DisconnectParams, DisconnectReason, IceCandidateParams, SdpParams,
};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use rtc::peer_connection::transport::RTCDtlsRole;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::DataChannel as RtcDataChannel;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection as RtcPeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};

/// Label of the channel opened with every outgoing connection when data channels are enabled.
pub const DEFAULT_CHANNEL: &str = "default";

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// W3C `RTCPeerConnectionState`, as this library reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

impl PeerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            PeerState::New => "new",
            PeerState::Connecting => "connecting",
            PeerState::Connected => "connected",
            PeerState::Disconnected => "disconnected",
            PeerState::Failed => "failed",
            PeerState::Closed => "closed",
        }
    }

    fn from_rtc(s: RTCPeerConnectionState) -> Self {
        match s {
            RTCPeerConnectionState::Connecting => PeerState::Connecting,
            RTCPeerConnectionState::Connected => PeerState::Connected,
            RTCPeerConnectionState::Disconnected => PeerState::Disconnected,
            RTCPeerConnectionState::Failed => PeerState::Failed,
            RTCPeerConnectionState::Closed => PeerState::Closed,
            _ => PeerState::New,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, PeerState::Failed | PeerState::Closed)
    }
}

/// Signaling messages for one peer, handled strictly in arrival order.
#[derive(Debug)]
pub(crate) enum Signal {
    Offer {
        sdp: String,
        request_id: String,
        /// The offerer can carry the connection over (see `SdpParams::can_full_reconnect`).
        can_full_reconnect: bool,
    },
    Answer {
        sdp: String,
        request_id: String,
        can_full_reconnect: bool,
    },
    Candidate(IceCandidateParams),
    /// A local change (a track added or removed) to offer; replies once the offer is out, or
    /// queued behind the one awaiting its answer.
    Negotiate(tokio::sync::oneshot::Sender<Result<()>>),
    /// Replace the connection with a new one and offer it (a full reconnection, offering
    /// side); replies once the offer is out.
    FullReconnect(tokio::sync::oneshot::Sender<Result<()>>),
}

/// Told to the transport when a peer connection ends by itself.
#[derive(Debug)]
pub(crate) enum PeerNotice {
    Ended { peer_id: String, state: PeerState },
    Changed,
}

#[derive(Default)]
pub(super) struct Negotiation {
    request_id: Option<String>,
    /// A local change came while our offer awaited its answer (or was given up in glare): offer
    /// again once the connection is stable.
    offer_again: bool,
    remote_set: bool,
    remote_queue: Vec<RTCIceCandidateInit>,
    /// Remote candidates taken since the last remote description (queued ones included).
    remote_candidates: usize,
    /// Whether the drop of candidates over the limit was logged for this description.
    candidates_capped: bool,
    gate_open: bool,
    local_queue: Vec<IceCandidateParams>,
}

impl Negotiation {
    /// Counts one more remote candidate; false once `limit` were taken for this description.
    fn admit_remote_candidate(&mut self, limit: usize) -> bool {
        if self.remote_candidates >= limit {
            return false;
        }
        self.remote_candidates += 1;
        true
    }

    /// A remote description was applied: candidates queued before it were counted already, and
    /// the ones it announces (an ICE restart's new generation) start a new count.
    fn new_remote_description(&mut self) {
        self.remote_candidates = self.remote_queue.len();
        self.candidates_capped = false;
    }
}

pub(crate) struct PeerSetup {
    pub local_id: String,
    pub remote_id: String,
    pub outgoing: bool,
    pub config: Arc<WebRtcTransportConfig>,
    pub signaling: SignalingClient,
    pub events: Arc<EventSink>,
    pub notices: mpsc::UnboundedSender<PeerNotice>,
    /// Sees the audio frames this peer sends us (the transport's session router).
    pub tap: Option<Arc<dyn crate::media::playout::FrameTap>>,
}

pub(super) struct Shared {
    pub(super) setup: PeerSetup,
    pub(super) state: watch::Sender<PeerState>,
    pub(super) channels: Mutex<Vec<DataChannel>>,
    pub(super) default_channel: Mutex<Option<DataChannel>>,
    pub(super) neg: Mutex<Negotiation>,
    pub(super) closed: AtomicBool,
    pub(super) connected_once: AtomicBool,
    pub(super) setup_boost: Mutex<Option<Boost>>,
    pub(super) created_at: Instant,
    pub(super) audio: Mutex<Option<Arc<LocalAudioTrack>>>,
    pub(super) video: Mutex<Option<Arc<LocalVideoTrack>>>,
    pub(super) remote_video: Mutex<Vec<Arc<dyn webrtc::media_stream::track_remote::TrackRemote>>>,
    /// The tracks this peer sends us, to notice when it stops sending one.
    pub(super) remote_tracks: RemoteTracks,
    /// The latest quality measurement.
    pub(super) metrics: Mutex<QualityMetrics>,
    /// What the remote reports about our streams (filled by the interceptor tap).
    pub(super) reception: SharedReceptionLog,
    pub(super) quality_started: AtomicBool,
    /// A recovery task is running for the current outage.
    pub(super) recovering: AtomicBool,
    /// Recovery gave up: the next terminal state ends the peer.
    pub(super) gave_up: AtomicBool,
    /// Stops hammering a peer whose connection keeps failing.
    pub(super) breaker: Mutex<CircuitBreaker>,
    /// The connection now; a full reconnection replaces it. `None` once closed.
    pub(super) pc: Mutex<Option<Arc<dyn RtcPeerConnection>>>,
    /// Generation of `pc` (0 for the first): events of replaced connections are ignored.
    pub(super) gen: AtomicU64,
    /// Our DTLS role on connection `gen`, once its first exchange fixed it
    /// (`super::dtls_role`): later answers state the same.
    pub(super) dtls_role: Mutex<Option<(u64, super::dtls_role::SetupRole)>>,
    /// Connections a full reconnection replaced, closed once the new one carries data (or
    /// the attempt ends).
    pub(super) retired: Mutex<Vec<Arc<dyn RtcPeerConnection>>>,
    /// Full reconnections so far.
    pub(super) swaps: AtomicU64,
    /// The remote peer said it can carry a connection over (`can_full_reconnect`).
    pub(super) remote_can_full: AtomicBool,
    /// Session id and DTLS fingerprint of the last remote description applied.
    pub(super) remote_session: Mutex<Option<super::full_reconnect::SdpSession>>,
    /// Tracks to add to a new connection (answering side: once the offer is applied).
    pub(super) carry: Mutex<super::full_reconnect::CarriedTracks>,
    pub(super) runtime: Arc<FastStartRuntime>,
    pub(super) signals: mpsc::UnboundedSender<Signal>,
    /// Jitter buffers, clock mapping and lip sync of what this peer sends us.
    pub(super) playout: Arc<Playout>,
    /// Datagrams received by this connection's sockets (drives the SCTP RTT probe).
    pub(super) link: Arc<super::udp::LinkActivity>,
    /// The RTT probe towards this peer: 0 not decided yet, 1 none (the peer did not announce
    /// it knows it), 2 its channel (stream 1023) is open.
    pub(super) rtt_probe: std::sync::atomic::AtomicU8,
}

impl Shared {
    fn flush_local_candidates(&self) {
        let queued = {
            let mut n = self.neg.lock().unwrap();
            n.gate_open = true;
            std::mem::take(&mut n.local_queue)
        };
        for c in queued {
            let _ = self.setup.signaling.notify(protocol::ICE_CANDIDATE, &c);
        }
    }

    fn release_boost(&self) {
        self.setup_boost.lock().unwrap().take();
    }

    fn register_channel(&self, ch: DataChannel) {
        self.channels.lock().unwrap().push(ch);
    }

    /// The connection now, unless closed.
    pub(super) fn pc(&self) -> Option<Arc<dyn RtcPeerConnection>> {
        self.pc.lock().unwrap().clone()
    }

    /// Bytes of sent reliable messages a channel keeps for a full reconnection.
    pub(super) fn keep_bytes(&self) -> usize {
        let c = &self.setup.config;
        c.data_channel_buffer_limit + c.max_message_size
    }

    /// `sdp` is the local description of a completed offer/answer exchange: the local tracks it
    /// declares are negotiated and may send from now on.
    fn note_negotiated(&self, sdp: &str) {
        if let Some(t) = self.audio.lock().unwrap().clone() {
            t.negotiation().note_local_description(sdp);
        }
        if let Some(t) = self.video.lock().unwrap().clone() {
            t.negotiation().note_local_description(sdp);
        }
    }

    /// The remote answered our offer: on a connection whose role is not fixed yet, ours is the
    /// other one.
    fn note_remote_answer_role(&self, answer_sdp: &str) {
        let gen = self.gen.load(Ordering::SeqCst);
        let mut role = self.dtls_role.lock().unwrap();
        if role.is_none_or(|(g, _)| g != gen) {
            *role = super::dtls_role::role_from_remote_answer(answer_sdp).map(|r| (gen, r));
        }
    }

    /// Our answer as published: on a connection whose role the first exchange fixed, stating
    /// that role; otherwise as made (and its role is the connection's from now on).
    fn answer_in_our_role(&self, sdp: String) -> String {
        use super::dtls_role::{keep_role, role_of_our_answer};
        let gen = self.gen.load(Ordering::SeqCst);
        let mut role = self.dtls_role.lock().unwrap();
        match *role {
            Some((g, r)) if g == gen => {
                if role_of_our_answer(&sdp) == Some(r) {
                    sdp
                } else {
                    keep_role(&sdp, r)
                }
            }
            _ => {
                *role = role_of_our_answer(&sdp).map(|r| (gen, r));
                sdp
            }
        }
    }

    /// Closes the connections a full reconnection replaced.
    pub(super) async fn close_retired(&self) {
        let old = std::mem::take(&mut *self.retired.lock().unwrap());
        for pc in old {
            let _ = pc.close().await;
        }
    }
}

/// Learns the SCTP stream ids of the peer's open channels (from the connection's statistics),
/// which a full reconnection needs to carry them over.
pub(super) async fn record_stream_ids(s: &Shared) {
    let Some(pc) = s.pc() else { return };
    let list = s.channels.lock().unwrap().clone();
    if list
        .iter()
        .all(|c| c.stream_id().is_some() || c.state() != crate::channel::ChannelState::Open)
    {
        return;
    }
    let report = pc
        .get_stats(Instant::now(), webrtc::peer_connection::StatsSelector::None)
        .await;
    let ids: std::collections::HashMap<usize, u16> = report
        .data_channels()
        .filter_map(|d| {
            super::full_reconnect::stats_handle(&d.stats.id).map(|h| (h, d.data_channel_identifier))
        })
        .collect();
    for ch in list {
        if ch.stream_id().is_none() && ch.state() == crate::channel::ChannelState::Open {
            if let Some(id) = ids.get(&ch.rtc_id()) {
                ch.set_stream_id(*id);
            }
        }
    }
}

pub(super) struct Handler {
    pub(super) shared: std::sync::Weak<Shared>,
    /// The generation of the connection this handler belongs to.
    pub(super) gen: u64,
}

impl Handler {
    /// The peer, while this handler's connection is its current one.
    fn live(&self) -> Option<Arc<Shared>> {
        self.shared
            .upgrade()
            .filter(|s| s.gen.load(Ordering::SeqCst) == self.gen)
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Some(s) = self.live() else { return };
        let Ok(init) = event.candidate.to_json() else {
            return;
        };
        let mut n = s.neg.lock().unwrap();
        let params = IceCandidateParams {
            from: s.setup.local_id.clone(),
            to: s.setup.remote_id.clone(),
            candidate: init.candidate,
            sdp_m_line_index: init.sdp_mline_index,
            // webrtc-rs fills in "" for the mid; an empty mid names no section, so send none
            // and let the index speak.
            sdp_mid: init.sdp_mid.filter(|m| !m.is_empty()),
            user_fragment: init.username_fragment,
            password: None,
            request_id: n.request_id.clone(),
        };
        if n.gate_open {
            drop(n);
            let _ = s.setup.signaling.notify(protocol::ICE_CANDIDATE, &params);
        } else {
            n.local_queue.push(params);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let Some(s) = self.live() else { return };
        if s.closed.load(Ordering::SeqCst) {
            return;
        }
        let st = PeerState::from_rtc(state);
        s.state.send_replace(st);
        s.setup
            .events
            .emit(TransportEvent::PeerState {
                peer_id: s.setup.remote_id.clone(),
                state: st.as_str().into(),
            })
            .await;
        if st == PeerState::Connected
            && !s.setup.outgoing
            && !s.connected_once.swap(true, Ordering::SeqCst)
        {
            s.setup
                .events
                .emit(TransportEvent::PeerConnected {
                    peer_id: s.setup.remote_id.clone(),
                    outgoing: false,
                })
                .await;
        }
        if st == PeerState::Connected && !s.quality_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(measure_quality(Arc::downgrade(&s)));
            tokio::spawn(start_rto_probe(Arc::downgrade(&s)));
        }
        if st == PeerState::Connected {
            // SCTP and the first channel follow within milliseconds; never boost much longer
            // (the remote may open no channel at all).
            let weak = Arc::downgrade(&s);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Some(s) = weak.upgrade() {
                    s.release_boost();
                }
            });
        }
        // A connected peer whose path breaks is recovered (ICE restarts per the reconnection
        // policy) instead of ended; only when recovery gives up does it end.
        let recoverable = s.connected_once.load(Ordering::SeqCst)
            && s.setup.config.reconnection.max_retries > 0
            && !s.gave_up.load(Ordering::SeqCst);
        if recoverable
            && matches!(st, PeerState::Disconnected | PeerState::Failed)
            && !s.recovering.swap(true, Ordering::SeqCst)
        {
            for ch in s.channels.lock().unwrap().iter() {
                ch.hold(true);
            }
            tokio::spawn(recover(Arc::downgrade(&s)));
        }
        if recoverable && st == PeerState::Failed {
            let _ = s.setup.notices.send(PeerNotice::Changed);
            return;
        }
        let _ = s.setup.notices.send(if st.is_terminal() {
            PeerNotice::Ended {
                peer_id: s.setup.remote_id.clone(),
                state: st,
            }
        } else {
            PeerNotice::Changed
        });
    }

    async fn on_track(&self, track: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>) {
        let Some(s) = self.live() else { return };
        let video = track.kind().await == rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video;
        let kind = if video { "video" } else { "audio" };
        if video {
            s.remote_video.lock().unwrap().push(track.clone());
        }
        let track_id = track.track_id().await;
        let mut mid = None;
        let pc = s.pc();
        let transceivers = match pc {
            Some(pc) => pc.get_transceivers().await,
            None => Vec::new(),
        };
        for t in transceivers {
            if let Ok(Some(r)) = t.receiver().await {
                if Arc::ptr_eq(r.track(), &track) {
                    mid = t.mid().await.ok().flatten();
                    break;
                }
            }
        }
        let (key, stop, formats) =
            s.remote_tracks
                .add(mid, track_id.clone(), kind.into(), track.ssrcs().await);
        s.setup
            .events
            .emit(TransportEvent::TrackStarted {
                peer_id: s.setup.remote_id.clone(),
                kind: kind.into(),
                track_id,
            })
            .await;
        let playout = s.playout.clone();
        let report: crate::media::track::TrackReport = {
            let (events, peer_id) = (s.setup.events.clone(), s.setup.remote_id.clone());
            Arc::new(move |error| {
                let (events, peer_id) = (events.clone(), peer_id.clone());
                tokio::spawn(async move {
                    events
                        .emit(TransportEvent::Error {
                            peer_id: Some(peer_id),
                            error,
                        })
                        .await;
                });
            })
        };
        let weak = Arc::downgrade(&s);
        drop(s);
        tokio::spawn(async move {
            tokio::select! {
                _ = read_remote_track(track.clone(), playout, formats, report) => {}
                _ = stop.cancelled() => {}
            }
            if let Some(s) = weak.upgrade() {
                s.remote_tracks.remove(key);
                s.remote_video
                    .lock()
                    .unwrap()
                    .retain(|t| !Arc::ptr_eq(t, &track));
            }
        });
    }

    async fn on_data_channel(&self, dc: Arc<dyn RtcDataChannel>) {
        let Some(s) = self.live() else { return };
        let label = dc.label().await.unwrap_or_default();
        let ordered = dc.ordered().await.unwrap_or(true);
        let mode = if ordered {
            DataChannelMode::Reliable
        } else {
            DataChannelMode::Unreliable
        };
        let ch = DataChannel::spawn(
            dc,
            s.setup.remote_id.clone(),
            label,
            mode,
            s.setup.config.max_message_size,
            s.keep_bytes(),
            s.setup.events.clone(),
            true,
        );
        s.register_channel(ch.clone());
        let timeout = Duration::from_millis(s.setup.config.connect_timeout_ms);
        tokio::spawn(async move {
            let _ = ch.wait_open(timeout).await;
            s.release_boost();
            record_stream_ids(&s).await;
        });
    }
}

/// The SCTP transport's state; `None` before it exists.
///
/// As the SCTP server (our DTLS role is `passive`, see `super::dtls_role`), rtc 0.21 reports
/// `Closed` between the INIT it answered and the remote's COOKIE ECHO: the association is kept
/// stateless until then (RFC 4960 §5.1). Waits for the association to come up therefore take
/// `Closed` as final only once the connection itself has ended.
async fn sctp_state(
    pc: &Arc<dyn RtcPeerConnection>,
) -> Option<rtc::peer_connection::transport::RTCSctpTransportState> {
    pc.sctp().await?.state().await.ok()
}

/// Once SCTP is up, opens the probe channel and keeps SCTP's retransmission timeout from
/// staying backed off after link cuts (see [`crate::channel::keep_rto_fresh`]).
///
/// Only towards a peer that announced `can_full_reconnect` (only this library does): the probe
/// is a channel negotiated out of band, and other stacks (libdatachannel) treat data on a
/// stream they do not know as an error and refuse further channels. With any other peer
/// (browsers included) nothing is sent outside what was negotiated, and the consequence is the
/// one `keep_rto_fresh` describes: after a link cut, SCTP's timeout stays backed off until the
/// application sends a new message, so data sent only during later cuts recovers more slowly.
pub(super) async fn start_rto_probe(weak: std::sync::Weak<Shared>) {
    use rtc::peer_connection::transport::RTCSctpTransportState;
    // SCTP follows DTLS within milliseconds, or much later (a first data channel added by a
    // renegotiation), or never (media only): poll, less and less often.
    let mut wait = Duration::from_millis(5);
    let pc = loop {
        let Some(pc) = weak
            .upgrade()
            .filter(|s| !s.closed.load(Ordering::SeqCst))
            .and_then(|s| s.pc())
        else {
            return;
        };
        match sctp_state(&pc).await {
            Some(RTCSctpTransportState::Connected) => {
                let Some(s) = weak.upgrade() else { return };
                if !s.remote_can_full.load(Ordering::SeqCst) {
                    s.rtt_probe.store(1, Ordering::SeqCst);
                    tracing::debug!(
                        peer = s.setup.remote_id,
                        "no RTT probe: the peer did not announce it knows it"
                    );
                    return;
                }
                break pc;
            }
            // Closed before it was ever up: a handshake in progress on the server side (see
            // `sctp_state`), unless the connection itself is over.
            Some(RTCSctpTransportState::Closed) => {
                let over = weak.upgrade().is_none_or(|s| {
                    s.closed.load(Ordering::SeqCst) || s.state.borrow().is_terminal()
                });
                if over {
                    return;
                }
            }
            _ => {}
        }
        drop(pc);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    };
    let probe = match pc
        .create_data_channel(
            crate::channel::PROBE_LABEL,
            Some(crate::channel::probe_init()),
        )
        .await
    {
        Ok(dc) => {
            tracing::debug!("RTT probe channel created");
            if let Some(s) = weak.upgrade() {
                s.rtt_probe.store(2, Ordering::SeqCst);
            }
            dc
        }
        Err(e) => {
            tracing::debug!("no RTT probe channel: {e}");
            if let Some(s) = weak.upgrade() {
                s.rtt_probe.store(1, Ordering::SeqCst);
            }
            return;
        }
    };
    drop(pc);
    let Some(link) = weak.upgrade().map(|s| s.link.clone()) else {
        return;
    };
    crate::channel::keep_rto_fresh(probe, link, move || {
        weak.upgrade()
            .filter(|s| !s.closed.load(Ordering::SeqCst))
            .map(|s| s.channels.lock().unwrap().clone())
    })
    .await;
}

/// Builds a peer connection for `s` (the first, or a full reconnection's: generation `gen`),
/// with its own sockets, ICE agent, DTLS and SCTP, on the peer's runtime.
pub(super) async fn build_pc(s: &Arc<Shared>, gen: u64) -> Result<Arc<dyn RtcPeerConnection>> {
    let config = &s.setup.config;
    let mut ice_servers = Vec::new();
    if !config.stun_servers.is_empty() {
        ice_servers.push(RTCIceServer {
            urls: config.stun_servers.clone(),
            ..Default::default()
        });
    }
    for t in &config.turn_servers {
        ice_servers.push(RTCIceServer {
            urls: vec![t.url.clone()],
            username: t.username.clone(),
            credential: t.credential.clone(),
        });
    }
    let rtc_config = RTCConfigurationBuilder::new()
        .with_ice_servers(ice_servers)
        .build();
    let mut media = MediaEngine::default();
    crate::media::track::register_codecs(&mut media, config.video_codec)?;
    // The default chain (NACK, RTCP reports, TWCC) plus our tap for keyframe requests,
    // sender reports and the remote's reception reports.
    let registry =
        webrtc::peer_connection::register_default_interceptors(Registry::new(), &mut media)
            .map_err(|e| Error::webrtc("interceptors", e))?
            .with(
                rtc::interceptor::Slot::from(crate::media::keyframe::TAP_SLOT),
                crate::media::keyframe::KeyframeRequestTap::with_log(s.reception.clone()),
            );
    // No multicast DNS: remote `.local` candidates are skipped anyway (the browser's checks
    // still reach us), and its multicast socket cannot even be opened in a network without
    // a multicast route (a loopback-only namespace), which would fail every connection.
    // The SCTP window follows the socket buffer the kernel grants (see `peer::udp`), and the
    // SDP advertises the message size this transport accepts.
    //
    // We answer a first offer `passive` (DTLS and SCTP server: webrtc-rs's SCTP client drops
    // the remote's INIT); later answers keep whatever role the first exchange fixed
    // (`super::dtls_role`).
    //
    // A peer-reflexive pair (the remote's check came before its signaled candidate) is
    // nominated as soon as it works, as browsers do: webrtc-rs waits 1 s from the agent's start
    // for one, which stalled about a quarter of connects with stacks that check early (issue
    // 13, item 7). Such a pair is a direct path that answered a check; nothing better is
    // waited for on loopback or a LAN. (Server-reflexive and relay waits stay webrtc-rs's.)
    let settings = SettingEngineBuilder::new()
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        .with_answering_dtls_role(RTCDtlsRole::Server)
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(config.max_message_size as u32))
        .with_sctp_max_receive_buffer_size(super::udp::sctp_window(
            super::udp::granted_recv_buffer(),
            config.max_message_size,
        ))
        .build();
    let bind = format!("{}:0", config.bind_address);
    let pc = PeerConnectionBuilder::new()
        .with_configuration(rtc_config)
        .with_setting_engine(settings)
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_runtime(s.runtime.clone())
        .with_handler(Arc::new(Handler {
            shared: Arc::downgrade(s),
            gen,
        }))
        .with_udp_addrs(vec![bind])
        .with_data_channel_send_buffer_limit(config.data_channel_buffer_limit)
        .build()
        .await
        .map_err(|e| Error::webrtc("creating peer connection", e))?;
    Ok(Arc::new(pc))
}

/// One remote peer.
pub struct Peer {
    shared: Arc<Shared>,
    /// Keeps the process's periodic memory trim going while this peer exists.
    _live: super::trim::LivePeer,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("peer_id", &self.shared.setup.remote_id)
            .field("state", &self.state())
            .finish()
    }
}

impl Peer {
    pub(crate) async fn new(setup: PeerSetup) -> Result<Arc<Peer>> {
        let runtime = FastStartRuntime::new()
            .ok_or_else(|| Error::Internal("no tokio runtime for webrtc".into()))?;
        let config = setup.config.clone();
        let (state, _) = watch::channel(PeerState::New);
        let playout = Playout::with_tap(
            setup.remote_id.clone(),
            playout::sync_config_with_floor(
                setup.config.jitter_buffer_ms,
                setup.config.jitter_floor_ms(),
            ),
            setup.events.clone(),
            setup.tap.clone(),
        )?;
        let (signals, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            setup,
            state,
            channels: Mutex::new(Vec::new()),
            default_channel: Mutex::new(None),
            neg: Mutex::new(Negotiation::default()),
            closed: AtomicBool::new(false),
            connected_once: AtomicBool::new(false),
            setup_boost: Mutex::new(Some(runtime.boost())),
            created_at: Instant::now(),
            audio: Mutex::new(None),
            video: Mutex::new(None),
            remote_video: Mutex::new(Vec::new()),
            remote_tracks: RemoteTracks::default(),
            pc: Mutex::new(None),
            gen: AtomicU64::new(0),
            dtls_role: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
            swaps: AtomicU64::new(0),
            remote_can_full: AtomicBool::new(false),
            rtt_probe: std::sync::atomic::AtomicU8::new(0),
            remote_session: Mutex::new(None),
            carry: Mutex::new(Default::default()),
            metrics: Mutex::new(QualityMetrics::default()),
            reception: SharedReceptionLog::default(),
            quality_started: AtomicBool::new(false),
            recovering: AtomicBool::new(false),
            gave_up: AtomicBool::new(false),
            breaker: Mutex::new(CircuitBreaker::new(CircuitBreakerConfig::default())),
            playout,
            link: runtime.link(),
            runtime,
            signals,
        });
        let pc = build_pc(&shared, 0).await?;
        *shared.pc.lock().unwrap() = Some(pc);

        let peer = Arc::new(Peer {
            shared,
            _live: super::trim::LivePeer::new(),
        });
        tokio::spawn(Self::signal_loop(Arc::downgrade(&peer), rx));
        // Never boost longer than a connection attempt may take.
        let weak = Arc::downgrade(&peer.shared);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(config.connect_timeout_ms)).await;
            if let Some(s) = weak.upgrade() {
                s.release_boost();
            }
        });
        Ok(peer)
    }

    /// The connection now; `ShutDown` once the peer is closed.
    fn pc(&self) -> Result<Arc<dyn RtcPeerConnection>> {
        self.shared
            .pc()
            .ok_or_else(|| Error::ShutDown(format!("peer {} is closed", self.peer_id())))
    }

    pub fn peer_id(&self) -> &str {
        &self.shared.setup.remote_id
    }
    pub fn is_outgoing(&self) -> bool {
        self.shared.setup.outgoing
    }
    pub fn state(&self) -> PeerState {
        *self.shared.state.borrow()
    }
    /// Whether this peer's connection has the RTT probe channel (SCTP stream 1023), which only
    /// a peer that announced `can_full_reconnect` gets (see `start_rto_probe`); `None` until
    /// decided (SCTP up).
    pub fn has_rtt_probe(&self) -> Option<bool> {
        match self.shared.rtt_probe.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n == 2),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }
    /// How long ago the connection was created.
    pub fn age(&self) -> Duration {
        self.shared.created_at.elapsed()
    }
    /// Every data channel of this peer, local and remote, open or not yet closed.
    pub fn channels(&self) -> Vec<DataChannel> {
        self.shared.channels.lock().unwrap().clone()
    }
    /// The channel opened with the connection (outgoing side), if any.
    pub fn default_channel(&self) -> Option<DataChannel> {
        self.shared.default_channel.lock().unwrap().clone()
    }

    /// Connected, and the default channel (if this side opened one) open.
    pub fn is_ready(&self) -> bool {
        self.state() == PeerState::Connected
            && self
                .default_channel()
                .is_none_or(|c| c.state() == crate::channel::ChannelState::Open)
    }

    pub(crate) fn signal(&self, s: Signal) {
        let _ = self.shared.signals.send(s);
    }

    fn note_remote_can_full(&self, can: bool) {
        if can {
            self.shared.remote_can_full.store(true, Ordering::SeqCst);
        }
    }

    async fn signal_loop(peer: std::sync::Weak<Peer>, mut rx: mpsc::UnboundedReceiver<Signal>) {
        while let Some(sig) = rx.recv().await {
            let Some(peer) = peer.upgrade() else { break };
            if peer.is_closed() {
                break;
            }
            let is_offer = matches!(sig, Signal::Offer { .. });
            let r = match sig {
                Signal::Offer {
                    sdp,
                    request_id,
                    can_full_reconnect,
                } => {
                    peer.note_remote_can_full(can_full_reconnect);
                    peer.on_remote_offer(sdp, request_id).await
                }
                Signal::Answer {
                    sdp,
                    request_id,
                    can_full_reconnect,
                } => {
                    peer.note_remote_can_full(can_full_reconnect);
                    let r = peer.accept_answer(sdp, request_id).await;
                    match r {
                        Ok(()) => peer.offer_again_if_asked().await,
                        e => e,
                    }
                }
                Signal::Candidate(c) => peer.add_remote_candidate(c).await,
                Signal::Negotiate(reply) => {
                    let r = if peer.has_local_offer().await {
                        peer.shared.neg.lock().unwrap().offer_again = true;
                        Ok(())
                    } else {
                        peer.send_offer().await
                    };
                    let _ = reply.send(r);
                    continue;
                }
                Signal::FullReconnect(reply) => {
                    let r = match super::full_reconnect::swap(&peer.shared).await {
                        Ok(pc) => send_offer_on(&peer.shared, &pc).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(r);
                    continue;
                }
            };
            if let Err(e) = r {
                tracing::warn!(peer = peer.peer_id(), "signaling step failed: {e}");
                peer.shared
                    .setup
                    .events
                    .emit(TransportEvent::Error {
                        peer_id: Some(peer.peer_id().to_string()),
                        error: e,
                    })
                    .await;
                if is_offer && peer.state() != PeerState::Connected {
                    // We cannot answer: tell the offerer and let the transport drop us.
                    peer.close(Some(DisconnectReason::Error)).await;
                    let _ = peer.shared.setup.notices.send(PeerNotice::Ended {
                        peer_id: peer.peer_id().to_string(),
                        state: PeerState::Failed,
                    });
                }
            }
        }
    }

    /// Outgoing side: opens the default channel, makes the offer and sends it. The answer and
    /// the remote candidates arrive later through [`Peer::signal`].
    pub(crate) async fn start_offer(&self) -> Result<()> {
        let s = &self.shared;
        if s.setup.config.enable_data_channel {
            let dc = self
                .pc()?
                .create_data_channel(
                    DEFAULT_CHANNEL,
                    Some(channel_init(s.setup.config.data_channel_mode)),
                )
                .await
                .map_err(|e| Error::webrtc("creating data channel", e))?;
            let ch = DataChannel::spawn(
                dc,
                s.setup.remote_id.clone(),
                DEFAULT_CHANNEL.into(),
                s.setup.config.data_channel_mode,
                s.setup.config.max_message_size,
                s.keep_bytes(),
                s.setup.events.clone(),
                false,
            );
            s.register_channel(ch.clone());
            *s.default_channel.lock().unwrap() = Some(ch);
        }
        self.send_offer().await
    }

    /// Makes an offer for the current state of the connection and sends it; the answer comes
    /// back through [`Peer::signal`]. Used for the first offer and for renegotiation.
    async fn send_offer(&self) -> Result<()> {
        send_offer_on(&self.shared, &self.pc()?).await
    }

    /// Our offer is out and its answer has not come.
    async fn has_local_offer(&self) -> bool {
        let Ok(pc) = self.pc() else { return false };
        pc.pending_local_description()
            .await
            .is_some_and(|d| d.sdp_type == RTCSdpType::Offer)
    }

    /// Offers now if a local change was left for later.
    async fn offer_again_if_asked(&self) -> Result<()> {
        let again = std::mem::take(&mut self.shared.neg.lock().unwrap().offer_again);
        if again {
            self.send_offer().await
        } else {
            Ok(())
        }
    }

    /// An offer from the remote. If ours is out too (both sides changed something at once),
    /// the side that answered the first offer (polite) gives its offer up, answers, and offers
    /// again; the other side ignores the crossing offer and waits for its answer.
    async fn on_remote_offer(&self, sdp: String, request_id: String) -> Result<()> {
        // An offer of a new session (a new connection of the remote side: new session id or
        // DTLS fingerprint) for a connection we have: the remote made a full reconnection (or,
        // a browser, a new RTCPeerConnection). Replace ours too.
        let next = super::full_reconnect::SdpSession::parse(&sdp);
        let prev = self.shared.remote_session.lock().unwrap().clone();
        if super::full_reconnect::is_new_session(prev.as_ref(), next.as_ref()) {
            // This library offers a new session only to recover a broken path, so while ours
            // works such an offer is stale: e.g. the offer of a dial the remote side dropped
            // when both dialled at once, arriving after our own offer was answered. Replacing
            // the connection for it would break a working one. (A browser's new
            // RTCPeerConnection, without `can_full_reconnect`, is always taken.)
            let s = &self.shared;
            if s.remote_can_full.load(Ordering::SeqCst)
                && !s.recovering.load(Ordering::SeqCst)
                && !association_dead(s).await
            {
                tracing::debug!(
                    peer = self.peer_id(),
                    "offer of a new session while our connection works: stale, ignored"
                );
                return Ok(());
            }
            tracing::debug!(
                peer = self.peer_id(),
                "offer of a new session: full reconnection"
            );
            super::full_reconnect::swap(&self.shared).await?;
        }
        if self.has_local_offer().await {
            if self.shared.setup.outgoing {
                tracing::debug!(peer = self.peer_id(), "offers crossed: ours stands");
                return Ok(());
            }
            tracing::debug!(peer = self.peer_id(), "offers crossed: ours rolled back");
            let rollback =
                RTCSessionDescription::rollback(None).map_err(|e| Error::webrtc("rollback", e))?;
            self.pc()?
                .set_local_description(rollback)
                .await
                .map_err(|e| Error::webrtc("rollback of our offer", e))?;
            self.shared.neg.lock().unwrap().offer_again = true;
        }
        self.accept_offer(sdp, request_id).await?;
        self.offer_again_if_asked().await
    }

    /// Offers a local change, in turn with the other signaling steps.
    async fn renegotiate(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.signal(Signal::Negotiate(tx));
        rx.await.map_err(|_| {
            Error::PeerNotConnected(format!("connection to {} is closed", self.peer_id()))
        })?
    }

    async fn accept_offer(&self, sdp: String, request_id: String) -> Result<()> {
        let s = &self.shared;
        let sending = sending_tracks(&sdp);
        let offer =
            RTCSessionDescription::offer(super::sdp_fixups::with_default_msids(&sdp).into_owned())
                .map_err(|e| Error::InvalidData(format!("offer: {e}")))?;
        {
            let mut n = s.neg.lock().unwrap();
            n.request_id = Some(request_id.clone());
        }
        let pc = self.pc()?;
        let session = super::full_reconnect::SdpSession::parse(offer.sdp.as_str());
        s.remote_tracks.learn_formats(&sending);
        self.report_undecodable(&sending).await;
        pc.set_remote_description(offer)
            .await
            .map_err(|e| Error::webrtc("set remote offer", e))?;
        *s.remote_session.lock().unwrap() = session;
        self.update_remote_tracks(&sending).await;
        reject_undecodable(&pc, &sending).await;
        // A full reconnection's tracks take the offer's transceivers (or need an offer of
        // ours when the offer has none of their kind).
        if super::full_reconnect::add_carried_tracks(s, &pc, Some(&sending)).await? {
            s.neg.lock().unwrap().offer_again = true;
        }
        if s.setup.config.answer_media {
            self.add_answer_tracks(&sending).await?;
        }
        self.drain_remote_candidates().await;
        let answer = pc
            .create_answer(None)
            .await
            .map_err(|e| Error::webrtc("create answer", e))?;
        let sdp = answer.sdp.clone();
        s.remote_tracks.learn_local_formats(&sdp);
        pc.set_local_description(answer)
            .await
            .map_err(|e| Error::webrtc("set local answer", e))?;
        s.note_negotiated(&sdp);
        let sdp = s.answer_in_our_role(sdp);
        publish_sdp(s, protocol::ANSWER, sdp, request_id).await
    }

    /// Reports (`ERR_UNSUPPORTED_CODEC`) each m-section of a remote offer that sends only formats
    /// this build does not decode. The answer refuses it (`reject_undecodable`: its transceiver
    /// stopped, answered `inactive`); `answer_media` adds no track for it.
    async fn report_undecodable(&self, sending: &SendingTracks) {
        for u in &sending.undecodable {
            let error = Error::UnsupportedCodec(format!(
                "the remote offers {} ({}) only in formats not decoded here: {}; the section is \
                 answered inactive",
                u.kind,
                u.mid
                    .as_deref()
                    .map_or_else(|| "no mid".to_string(), |m| format!("mid {m}")),
                if u.offered.is_empty() {
                    "none".to_string()
                } else {
                    u.offered.join(", ")
                }
            ));
            tracing::warn!(peer = self.peer_id(), "{error}");
            self.shared
                .setup
                .events
                .emit(TransportEvent::Error {
                    peer_id: Some(self.peer_id().to_string()),
                    error,
                })
                .await;
        }
    }

    /// `answer_media`: a track of each kind the offer sends and this peer does not send yet. It
    /// takes the offer's transceiver of that kind, so the answer itself carries it (no
    /// renegotiation).
    async fn add_answer_tracks(&self, sending: &SendingTracks) -> Result<()> {
        let cfg = &self.shared.setup.config;
        if sending.kinds.contains("audio") && self.audio_track().is_none() {
            let config = AudioEncoderConfig {
                bitrate: cfg.audio_bitrate_bps,
                ..AudioEncoderConfig::default()
            };
            let track = Arc::new(LocalAudioTrack::add_to(&self.pc()?, config).await?);
            *self.shared.audio.lock().unwrap() = Some(track);
        }
        if sending.kinds.contains("video") && self.video_track().is_none() {
            let config = VideoEncoderConfig {
                width: cfg.video_width,
                height: cfg.video_height,
                framerate: cfg.video_framerate,
                bitrate: cfg.video_bitrate_bps,
                ..VideoEncoderConfig::default()
            };
            let track =
                Arc::new(LocalVideoTrack::add_to(&self.pc()?, cfg.video_codec, config).await?);
            *self.shared.video.lock().unwrap() = Some(track);
        }
        Ok(())
    }

    async fn accept_answer(&self, sdp: String, request_id: String) -> Result<()> {
        let expected = self.shared.neg.lock().unwrap().request_id.clone();
        if expected.as_deref() != Some(request_id.as_str()) {
            return Err(Error::Signaling(format!(
                "answer for unknown request {request_id} ignored"
            )));
        }
        let sending = sending_tracks(&sdp);
        let sending_sdp = sdp.clone();
        let answer =
            RTCSessionDescription::answer(super::sdp_fixups::with_default_msids(&sdp).into_owned())
                .map_err(|e| Error::InvalidData(format!("answer: {e}")))?;
        let session = super::full_reconnect::SdpSession::parse(answer.sdp.as_str());
        self.shared.remote_tracks.learn_formats(&sending);
        let pc = self.pc()?;
        pc.set_remote_description(answer)
            .await
            .map_err(|e| Error::webrtc("set remote answer", e))?;
        self.shared.note_remote_answer_role(&sending_sdp);
        // Our offer, now answered: the tracks it declares may send.
        if let Some(offer) = pc.current_local_description().await {
            self.shared.note_negotiated(&offer.sdp);
        }
        *self.shared.remote_session.lock().unwrap() = session;
        self.update_remote_tracks(&sending).await;
        self.drain_remote_candidates().await;
        Ok(())
    }

    /// Reports the remote tracks a newly applied remote description stopped (or resumed)
    /// sending.
    async fn update_remote_tracks(&self, sending: &SendingTracks) {
        let s = &self.shared;
        for t in s.remote_tracks.update(sending) {
            let peer_id = s.setup.remote_id.clone();
            let (kind, track_id) = (t.kind, t.track_id);
            let ev = if t.started {
                TransportEvent::TrackStarted {
                    peer_id,
                    kind,
                    track_id,
                }
            } else {
                TransportEvent::TrackEnded {
                    peer_id,
                    kind,
                    track_id,
                }
            };
            s.setup.events.emit(ev).await;
        }
    }

    async fn drain_remote_candidates(&self) {
        let queued = {
            let mut n = self.shared.neg.lock().unwrap();
            n.remote_set = true;
            n.new_remote_description();
            std::mem::take(&mut n.remote_queue)
        };
        for c in queued {
            self.add_candidate_now(c).await;
        }
    }

    async fn add_remote_candidate(&self, c: IceCandidateParams) -> Result<()> {
        if c.candidate.trim().is_empty() {
            return Ok(()); // end of candidates
        }
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_m_line_index,
            username_fragment: c.user_fragment,
            url: None,
        };
        {
            let mut n = self.shared.neg.lock().unwrap();
            if !n.admit_remote_candidate(self.shared.setup.config.max_remote_candidates) {
                if !std::mem::replace(&mut n.candidates_capped, true) {
                    tracing::warn!(
                        peer = self.peer_id(),
                        "remote sent more than {} ICE candidates; dropping the rest",
                        self.shared.setup.config.max_remote_candidates
                    );
                }
                return Ok(());
            }
            if !n.remote_set {
                n.remote_queue.push(init);
                return Ok(());
            }
        }
        self.add_candidate_now(init).await;
        Ok(())
    }

    async fn add_candidate_now(&self, init: RTCIceCandidateInit) {
        // Browsers without media permission hide their addresses behind mDNS `.local` names a
        // non-browser peer cannot resolve; their connectivity checks still reach us and are
        // learnt as peer-reflexive candidates, so such a candidate is skipped, not an error.
        if init.candidate.contains(".local ") {
            tracing::debug!("skipping mDNS candidate {}", init.candidate);
            return;
        }
        let Ok(pc) = self.pc() else { return };
        if let Err(e) = pc.add_ice_candidate(init).await {
            tracing::debug!(peer = self.peer_id(), "remote candidate refused: {e}");
        }
    }

    /// Waits until connected and, for the offering side, the default channel is open.
    pub(crate) async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.shared.state.subscribe();
        let connected = tokio::time::timeout_at(
            deadline,
            rx.wait_for(|s| *s == PeerState::Connected || s.is_terminal()),
        )
        .await
        .map(|r| r.map(|s| *s));
        match connected {
            Err(_) => return Err(Error::Timeout(format!("connecting to {}", self.peer_id()))),
            Ok(Err(_)) => return Err(Error::ConnectionFailed("peer dropped".into())),
            Ok(Ok(s)) if s != PeerState::Connected => {
                return Err(Error::ConnectionFailed(format!(
                    "connection to {} {}",
                    self.peer_id(),
                    s.as_str()
                )))
            }
            Ok(Ok(_)) => {}
        }
        if let Some(ch) = self.default_channel() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            ch.wait_open(left).await?;
            record_stream_ids(&self.shared).await;
        }
        self.shared.release_boost();
        if self.shared.setup.outgoing && !self.shared.connected_once.swap(true, Ordering::SeqCst) {
            self.shared
                .setup
                .events
                .emit(TransportEvent::PeerConnected {
                    peer_id: self.peer_id().to_string(),
                    outgoing: true,
                })
                .await;
        }
        Ok(())
    }

    /// Opens a data channel on this (connected) peer and resolves once it is open.
    /// Waits until the SCTP association is established. The answering side can be connected
    /// (DTLS done) while its SCTP handshake is still under way, and rtc 0.21 dials a channel
    /// created then at once: its DCEP open is refused ("sending payload data in non-Established
    /// state") and the channel never opens.
    async fn wait_sctp_connected(&self, timeout: Duration) -> Result<()> {
        use rtc::peer_connection::transport::RTCSctpTransportState;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match sctp_state(&self.pc()?).await {
                Some(RTCSctpTransportState::Connected) => return Ok(()),
                Some(RTCSctpTransportState::Closed)
                    if self.is_closed() || self.state().is_terminal() =>
                {
                    return Err(Error::ConnectionFailed(format!(
                        "the data transport to {} is closed",
                        self.peer_id()
                    )))
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "the data transport to {} did not come up",
                    self.peer_id()
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub async fn create_data_channel(
        &self,
        label: &str,
        mode: DataChannelMode,
    ) -> Result<DataChannel> {
        self.check_connected()?;
        if label.len() > 65535 {
            return Err(Error::InvalidData(
                "channel label longer than 65535 bytes".into(),
            ));
        }
        let _boost = self.shared.runtime.boost();
        let timeout = Duration::from_millis(self.shared.setup.config.connect_timeout_ms);
        self.wait_sctp_connected(timeout).await?;
        let dc = self
            .pc()?
            .create_data_channel(label, Some(channel_init(mode)))
            .await
            .map_err(|e| Error::webrtc("creating data channel", e))?;
        let s = &self.shared;
        let ch = DataChannel::spawn(
            dc,
            s.setup.remote_id.clone(),
            label.to_string(),
            mode,
            s.setup.config.max_message_size,
            s.keep_bytes(),
            s.setup.events.clone(),
            false,
        );
        s.register_channel(ch.clone());
        ch.wait_open(Duration::from_millis(s.setup.config.connect_timeout_ms))
            .await?;
        record_stream_ids(s).await;
        Ok(ch)
    }

    /// Open and connected, or the error that says which it is not.
    fn check_connected(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::ShutDown(format!(
                "peer {} is closed",
                self.peer_id()
            )));
        }
        if self.state() != PeerState::Connected {
            return Err(Error::PeerNotConnected(self.peer_id().to_string()));
        }
        Ok(())
    }

    /// A track can be added: connected, and no track of this kind yet.
    fn check_can_add(&self, existing: bool, kind: &str) -> Result<()> {
        self.check_connected()?;
        if existing {
            return Err(Error::InvalidData(format!(
                "peer {} already has {kind} track",
                self.peer_id()
            )));
        }
        Ok(())
    }

    /// Adds an Opus track sending to this peer and renegotiates the connection; resolves once
    /// the answer is applied and the track negotiated (nothing is sent on it before).
    pub async fn add_audio_track(
        &self,
        config: AudioEncoderConfig,
    ) -> Result<Arc<LocalAudioTrack>> {
        self.check_can_add(self.audio_track().is_some(), "an audio")?;
        let track = Arc::new(LocalAudioTrack::add_to(&self.pc()?, config).await?);
        *self.shared.audio.lock().unwrap() = Some(track.clone());
        self.renegotiate().await?;
        track.negotiation().wait(self.negotiation_timeout()).await?;
        Ok(track)
    }

    /// Adds a video track (the transport's `video_codec`) sending to this peer and renegotiates;
    /// resolves once the track is negotiated, as [`Self::add_audio_track`].
    pub async fn add_video_track(
        &self,
        config: VideoEncoderConfig,
    ) -> Result<Arc<LocalVideoTrack>> {
        self.check_can_add(self.video_track().is_some(), "a video")?;
        let codec = self.shared.setup.config.video_codec;
        let track = Arc::new(LocalVideoTrack::add_to(&self.pc()?, codec, config).await?);
        *self.shared.video.lock().unwrap() = Some(track.clone());
        self.renegotiate().await?;
        track.negotiation().wait(self.negotiation_timeout()).await?;
        Ok(track)
    }

    /// How long `add_*_track` waits for the answer that negotiates the track: the connection
    /// timeout.
    fn negotiation_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.setup.config.connect_timeout_ms)
    }

    /// Stops sending the audio or video track (`kind`: "audio" or "video") and renegotiates; the
    /// remote side sees the track end. A track of that kind can be added again afterwards.
    pub async fn remove_track(&self, kind: &str) -> Result<()> {
        self.check_connected()?;
        let s = &self.shared;
        let sender = match kind {
            "audio" => s.audio.lock().unwrap().take().map(|t| t.sender().clone()),
            "video" => s.video.lock().unwrap().take().map(|t| t.sender().clone()),
            other => {
                return Err(Error::InvalidData(format!(
                    "track kind must be 'audio' or 'video', got {other:?}"
                )))
            }
        };
        let Some(sender) = sender else {
            return Err(Error::InvalidData(format!(
                "{} has no {kind} track to remove",
                self.peer_id()
            )));
        };
        self.pc()?
            .remove_track(&sender)
            .await
            .map_err(|e| Error::webrtc("remove track", e))?;
        self.renegotiate().await
    }

    /// Changes the target bitrate (bit/s) of the "audio" or "video" track sending to this peer,
    /// from its next frame on. Out-of-range values are `InvalidConfig` (audio 6 000..=510 000,
    /// video as `VideoEncoderConfig::bitrate`).
    pub fn set_bitrate(&self, kind: &str, bitrate: u32) -> Result<()> {
        match kind {
            "audio" => self
                .audio_track()
                .ok_or_else(|| {
                    Error::InvalidData(format!("{} has no audio track", self.peer_id()))
                })?
                .set_bitrate(bitrate),
            "video" => self
                .video_track()
                .ok_or_else(|| {
                    Error::InvalidData(format!("{} has no video track", self.peer_id()))
                })?
                .set_bitrate(bitrate),
            other => Err(Error::InvalidData(format!(
                "track kind must be 'audio' or 'video', got {other:?}"
            ))),
        }
    }

    /// The video track sending to this peer, if one was added.
    pub fn video_track(&self) -> Option<Arc<LocalVideoTrack>> {
        self.shared.video.lock().unwrap().clone()
    }

    /// The latest quality measurement (all zero until the first, one `quality_interval_ms`
    /// after connecting).
    pub fn metrics(&self) -> QualityMetrics {
        let mut m = self.shared.metrics.lock().unwrap().clone();
        m.video = self.video_track().map(|t| t.sending_format());
        m
    }

    /// Clock mapping, drift and lip-sync state of the media this peer sends us.
    pub fn sync_state(&self) -> crate::sync::SyncState {
        self.shared.playout.sync_state()
    }

    /// Jitter-buffer statistics of the media this peer sends us.
    pub fn buffer_statistics(&self) -> crate::sync::BufferStatistics {
        self.shared.playout.buffer_statistics()
    }

    /// What the sync stage learned of this peer (jitter targets, drift correction).
    pub fn sync_seed(&self) -> crate::sync::SyncSeed {
        self.shared.playout.sync_seed()
    }

    /// Starts the sync stage from what an earlier connection learned.
    pub fn apply_sync_seed(&self, seed: crate::sync::SyncSeed) -> Result<()> {
        self.shared.playout.apply_sync_seed(seed)
    }

    /// Asks this peer for a keyframe on every video track it sends us (RTCP PLI).
    pub async fn request_keyframe(&self) -> Result<()> {
        let tracks = self.shared.remote_video.lock().unwrap().clone();
        if tracks.is_empty() {
            return Err(Error::PeerNotConnected(format!(
                "{} sends no video",
                self.peer_id()
            )));
        }
        for t in &tracks {
            crate::media::track::request_keyframe(t).await?;
        }
        Ok(())
    }

    /// The audio track sending to this peer, if one was added.
    pub fn audio_track(&self) -> Option<Arc<LocalAudioTrack>> {
        self.shared.audio.lock().unwrap().clone()
    }

    /// Closes the connection and its channels. With `notify`, tells the remote side through
    /// signaling first. Idempotent; returns whether this call did the closing.
    pub async fn close(&self, notify: Option<DisconnectReason>) -> bool {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        if let Some(reason) = notify {
            let request_id = s.neg.lock().unwrap().request_id.clone();
            let _ = s.setup.signaling.notify(
                protocol::DISCONNECT,
                &DisconnectParams {
                    from: s.setup.local_id.clone(),
                    to: s.setup.remote_id.clone(),
                    reason,
                    details: None,
                    request_id,
                },
            );
        }
        let channels = std::mem::take(&mut *s.channels.lock().unwrap());
        for ch in &channels {
            ch.close().await;
        }
        s.default_channel.lock().unwrap().take();
        s.audio.lock().unwrap().take();
        s.video.lock().unwrap().take();
        s.remote_video.lock().unwrap().clear();
        s.remote_tracks.stop_all();
        s.playout.close();
        s.release_boost();
        let pc = s.pc.lock().unwrap().take();
        if let Some(pc) = pc {
            let _ = pc.close().await;
        }
        s.close_retired().await;
        s.state.send_replace(PeerState::Closed);
        super::trim::after_close();
        true
    }
}

/// Measures a peer's quality once per `quality_interval_ms` until it closes: statistics into a
/// [`QualityTracker`], the metrics kept for [`Peer::metrics`] and sent as a `Quality` event, and,
/// with `adaptive_bitrate`, the loss the remote reports for what we send steering our encoders.
async fn measure_quality(weak: std::sync::Weak<Shared>) {
    let interval = match weak.upgrade() {
        Some(s) => Duration::from_millis(s.setup.config.quality_interval_ms as u64),
        None => return,
    };
    let origin = Instant::now();
    let mut tracker = QualityTracker::default();
    let mut measured_gen = 0;
    // Controllers, rebuilt when the track or its configured bitrate changes.
    let mut audio_ctl: Option<(usize, u32, BitrateControl)> = None;
    let mut video_ctl: Option<(usize, u32, BitrateControl)> = None;
    loop {
        tokio::time::sleep(interval).await;
        let Some(s) = weak.upgrade() else { return };
        if s.closed.load(Ordering::SeqCst) {
            return;
        }
        let Some(pc) = s.pc() else {
            return;
        };
        // A new connection (full reconnection) counts its statistics from zero.
        let gen = s.gen.load(Ordering::SeqCst);
        if gen != measured_gen {
            measured_gen = gen;
            tracker.reset();
        }
        let report = pc
            .get_stats(Instant::now(), webrtc::peer_connection::StatsSelector::None)
            .await;
        drop(pc);
        let sample = quality_sample::sample(
            &report,
            &s.reception.lock().unwrap(),
            origin.elapsed().as_micros() as u64,
        );
        tracing::trace!(peer = s.setup.remote_id, ?sample, "stats");
        tracker.push(sample);
        let m = tracker.metrics();
        if let (true, Some(loss)) = (s.setup.config.adaptive_bitrate, m.outbound_loss_rate) {
            if let Some(t) = s.audio.lock().unwrap().clone() {
                let key = Arc::as_ptr(&t) as usize;
                let max = t.max_bitrate();
                if audio_ctl
                    .as_ref()
                    .is_none_or(|(k, m, _)| *k != key || *m != max)
                {
                    audio_ctl = BitrateControl::new(max, 16_000).map(|c| (key, max, c));
                }
                if let Some(target) = audio_ctl.as_mut().and_then(|(_, _, c)| c.update(loss)) {
                    let _ = t.apply_target_bitrate(target, loss);
                }
            }
            if let Some(t) = s.video.lock().unwrap().clone() {
                let key = Arc::as_ptr(&t) as usize;
                let max = t.max_bitrate();
                if video_ctl
                    .as_ref()
                    .is_none_or(|(k, m, _)| *k != key || *m != max)
                {
                    video_ctl = BitrateControl::new(max, 100_000).map(|c| (key, max, c));
                }
                if let Some(target) = video_ctl.as_mut().and_then(|(_, _, c)| c.update(loss)) {
                    let _ = t.apply_target_bitrate(target);
                }
            }
        }
        let mut m = m;
        m.video = s.video.lock().unwrap().as_ref().map(|t| t.sending_format());
        *s.metrics.lock().unwrap() = m.clone();
        if s.closed.load(Ordering::SeqCst) {
            return;
        }
        s.setup
            .events
            .emit(TransportEvent::Quality {
                peer_id: s.setup.remote_id.clone(),
                metrics: m,
            })
            .await;
    }
}

/// Waits until the peer is connected again, up to `limit`; whether it is.
async fn connected_within(s: &Shared, limit: Duration) -> bool {
    let mut rx = s.state.subscribe();
    let wait = async {
        rx.wait_for(|st| *st == PeerState::Connected || *st == PeerState::Closed)
            .await
            .map(|st| *st == PeerState::Connected)
            .unwrap_or(false)
    };
    tokio::time::timeout(limit, wait).await.unwrap_or(false)
}

/// Recovers a connected peer whose path broke, following the transport's reconnection policy:
/// each attempt waits its backoff delay, then (on the side that made the first offer, so the
/// two never offer at once) restarts ICE with a new offer over signaling, and gives the path
/// a few seconds to come back. ICE may also recover by itself (consent checks resume when the
/// path does) at any point. A per-peer circuit breaker skips attempts on a peer that keeps
/// failing. When the retries are spent the peer is closed with `ReconnectFailed`.
pub(super) async fn recover(weak: std::sync::Weak<Shared>) {
    let Some(s) = weak.upgrade() else { return };
    let started = Instant::now();
    let policy = s.setup.config.reconnection.clone();
    let seed = crate::media::playout::unix_us_now() ^ (Arc::as_ptr(&s) as u64);
    let mut schedule = ReconnectSchedule::new(policy, JitterRng::new(seed | 1));
    let peer_id = s.setup.remote_id.clone();
    let events = s.setup.events.clone();
    let swaps_before = s.swaps.load(Ordering::SeqCst);
    drop(s);
    let mut attempt = 0;
    let outcome = loop {
        let Some(next) = schedule.next() else {
            break false;
        };
        attempt = next.attempt;
        let Some(s) = weak.upgrade() else { return };
        if s.closed.load(Ordering::SeqCst) {
            return;
        }
        events
            .emit(TransportEvent::Reconnecting {
                peer_id: peer_id.clone(),
                attempt,
            })
            .await;
        if connected_within(&s, next.delay).await {
            break true;
        }
        let admitted = s.breaker.lock().unwrap().admit(Instant::now());
        if matches!(admitted, Admission::Rejected { .. }) {
            tracing::debug!(peer = peer_id, attempt, "circuit open: attempt skipped");
            continue;
        }
        if next.step == ReconnectStep::GiveUp {
            break false;
        }
        // A full reconnection when the schedule says so, or when the old association is dead
        // (an ICE restart cannot bring it back), and the remote side can take one (else the
        // step is one more ICE restart).
        let full = s.setup.outgoing
            && s.remote_can_full.load(Ordering::SeqCst)
            && (next.step == ReconnectStep::FullRenegotiation || association_dead(&s).await);
        if full {
            tracing::debug!(peer = peer_id, attempt, "full reconnection");
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = s.signals.send(Signal::FullReconnect(tx));
            let r = rx
                .await
                .unwrap_or_else(|_| Err(Error::ShutDown(format!("peer {peer_id} is closed"))));
            if let Err(e) = r {
                tracing::debug!(peer = peer_id, attempt, "full reconnection failed: {e}");
            }
        } else if s.setup.outgoing {
            if let Some(pc) = s.pc() {
                tracing::debug!(peer = peer_id, attempt, "restarting ICE");
                let restarted = match pc.restart_ice().await {
                    Ok(()) => send_offer_on(&s, &pc).await,
                    Err(e) => Err(Error::webrtc("restart ice", e)),
                };
                if let Err(e) = restarted {
                    tracing::debug!(peer = peer_id, attempt, "ICE restart failed: {e}");
                }
            }
        }
        let wait = Duration::from_millis(s.setup.config.connect_timeout_ms.min(5_000));
        if connected_within(&s, wait).await {
            break true;
        }
        s.breaker.lock().unwrap().record_failure(Instant::now());
    };
    let Some(s) = weak.upgrade() else { return };
    s.recovering.store(false, Ordering::SeqCst);
    if s.closed.load(Ordering::SeqCst) {
        return;
    }
    // Whatever a full reconnection replaced is of no further use.
    s.close_retired().await;
    let full = s.swaps.load(Ordering::SeqCst) != swaps_before;
    if outcome {
        s.breaker.lock().unwrap().record_success();
        if !full {
            // The same association carries on: what the channels held goes now. (After a
            // full reconnection the resume exchange lets them go.)
            for ch in s.channels.lock().unwrap().iter() {
                ch.hold(false);
            }
        }
        events
            .emit(TransportEvent::Reconnected {
                peer_id,
                attempt,
                is_full_reconnect: full,
                previous_duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            })
            .await;
    } else {
        s.gave_up.store(true, Ordering::SeqCst);
        events
            .emit(TransportEvent::ReconnectFailed {
                peer_id: peer_id.clone(),
                attempt,
            })
            .await;
        s.state.send_replace(PeerState::Failed);
        let _ = s.setup.notices.send(PeerNotice::Ended {
            peer_id,
            state: PeerState::Failed,
        });
    }
}

/// The SCTP association of the current connection is closed while the peer has channels: an
/// ICE restart cannot bring them back.
async fn association_dead(s: &Shared) -> bool {
    use rtc::peer_connection::transport::RTCSctpTransportState;
    if s.channels.lock().unwrap().is_empty() {
        return false;
    }
    match s.pc() {
        Some(pc) => sctp_state(&pc).await == Some(RTCSctpTransportState::Closed),
        None => false,
    }
}

/// Makes an offer for the current state of `pc` and sends it; the answer comes back through
/// [`Peer::signal`].
async fn send_offer_on(s: &Shared, pc: &Arc<dyn RtcPeerConnection>) -> Result<()> {
    let request_id = format!(
        "{}-{}-{}",
        s.setup.local_id,
        s.setup.remote_id,
        NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)
    );
    s.neg.lock().unwrap().request_id = Some(request_id.clone());
    let offer = pc
        .create_offer(None)
        .await
        .map_err(|e| Error::webrtc("create offer", e))?;
    let sdp = offer.sdp.clone();
    s.remote_tracks.learn_local_formats(&sdp);
    pc.set_local_description(offer)
        .await
        .map_err(|e| Error::webrtc("set local offer", e))?;
    publish_sdp(s, protocol::OFFER, sdp, request_id).await
}

/// Stops the transceivers of the offer's m-sections that offer nothing decoded here, so that
/// the answer rejects them (webrtc-rs would otherwise answer them with a codec of another
/// section, or a VP9 profile it matched only partially).
async fn reject_undecodable(pc: &Arc<dyn RtcPeerConnection>, sending: &SendingTracks) {
    if sending.undecodable.is_empty() {
        return;
    }
    for t in pc.get_transceivers().await {
        let Ok(Some(mid)) = t.mid().await else {
            continue;
        };
        if sending
            .undecodable
            .iter()
            .any(|u| u.mid.as_deref() == Some(mid.as_str()))
        {
            if let Err(e) = t.stop().await {
                tracing::debug!("rejecting m-section {mid}: {e}");
            }
        }
    }
}

/// Sends a local offer or answer over signaling, then the candidates gathered meanwhile.
async fn publish_sdp(s: &Shared, method: &str, sdp: String, request_id: String) -> Result<()> {
    let params = SdpParams {
        from: s.setup.local_id.clone(),
        to: s.setup.remote_id.clone(),
        sdp,
        can_trickle_ice_candidates: true,
        request_id,
        can_full_reconnect: true,
    };
    s.setup
        .signaling
        .request(method, &params)
        .await
        .map_err(Error::from)?;
    s.flush_local_candidates();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Negotiation;

    #[test]
    fn remote_candidates_are_capped_per_remote_description() {
        let mut n = Negotiation::default();
        // Trickled before the description: counted while queued.
        assert!((0..3).all(|_| n.admit_remote_candidate(5)));
        n.remote_queue = vec![Default::default(); 3];
        n.new_remote_description();
        assert!(n.admit_remote_candidate(5));
        assert!(n.admit_remote_candidate(5));
        // 5 taken: a flood of 5 000 more is refused.
        assert!((0..5000).all(|_| !n.admit_remote_candidate(5)));
        // The next description (an ICE restart) starts a new count.
        n.remote_queue.clear();
        n.new_remote_description();
        assert!((0..5).all(|_| n.admit_remote_candidate(5)));
        assert!(!n.admit_remote_candidate(5));
    }
}
