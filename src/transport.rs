use crate::error::{invalid_config, invalid_data, js};
use crate::events::{make_tsfn, spawn_pump, NativeEvent};
use crate::peer::NativePeer;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use remotemedia_webrtc::config::{
    parse_turn_spec, DataChannelMode, ReconnectionPolicy, TurnServerConfig, VideoCodec,
    WebRtcTransportConfig,
};
use remotemedia_webrtc::event::TransportEvent;
use remotemedia_webrtc::media::Pcm;
use remotemedia_webrtc::transport::VideoInput;
use remotemedia_webrtc::WebRtcTransport;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsTurn {
    #[serde(alias = "urls")]
    url: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    credential: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsTurnEntry {
    Spec(String),
    Full(JsTurn),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsReconnection {
    max_retries: Option<u32>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    backoff_multiplier: Option<f64>,
    jitter: Option<bool>,
}

/// The options object of `new WebRtcTransport(options)`, as JSON from the JS layer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsConfig {
    signaling_url: String,
    peer_id: Option<String>,
    preset: Option<String>,
    stun_servers: Option<Vec<String>>,
    turn_servers: Option<Vec<JsTurnEntry>>,
    max_peers: Option<usize>,
    audio_codec: Option<String>,
    video_codec: Option<String>,
    enable_data_channel: Option<bool>,
    data_channel_mode: Option<String>,
    jitter_buffer_ms: Option<u32>,
    jitter_buffer_min_ms: Option<u32>,
    rtcp_interval_ms: Option<u32>,
    quality_interval_ms: Option<u32>,
    adaptive_bitrate: Option<bool>,
    answer_media: Option<bool>,
    audio_bitrate: Option<u32>,
    video_bitrate: Option<u32>,
    video_width: Option<u32>,
    video_height: Option<u32>,
    video_framerate: Option<u32>,
    auto_connect: Option<bool>,
    bind_address: Option<String>,
    connect_timeout_ms: Option<u64>,
    signaling_timeout_ms: Option<u64>,
    max_message_size: Option<usize>,
    data_channel_buffer_limit: Option<usize>,
    max_remote_candidates: Option<usize>,
    signaling_token: Option<String>,
    reconnection: Option<JsReconnection>,
}

fn mode(s: &str) -> napi::Result<DataChannelMode> {
    match s {
        "reliable" => Ok(DataChannelMode::Reliable),
        "unreliable" => Ok(DataChannelMode::Unreliable),
        _ => Err(invalid_config(format!(
            "dataChannelMode must be 'reliable' or 'unreliable', got '{s}'"
        ))),
    }
}

pub fn parse_mode(s: &str) -> napi::Result<DataChannelMode> {
    mode(s).map_err(|_| {
        crate::error::invalid_data(format!(
            "mode must be 'reliable' or 'unreliable', got '{s}'"
        ))
    })
}

fn to_core(c: JsConfig) -> napi::Result<WebRtcTransportConfig> {
    let mut cfg = match c.preset.as_deref() {
        None => WebRtcTransportConfig::new(c.signaling_url),
        Some("lowLatency") => WebRtcTransportConfig::low_latency_preset(c.signaling_url),
        Some("highQuality") => WebRtcTransportConfig::high_quality_preset(c.signaling_url),
        Some("mobileNetwork") => WebRtcTransportConfig::mobile_network_preset(c.signaling_url),
        Some(p) => {
            return Err(invalid_config(format!(
                "preset must be lowLatency, highQuality or mobileNetwork, got '{p}'"
            )))
        }
    };
    cfg.peer_id = c.peer_id;
    if let Some(v) = c.stun_servers {
        cfg.stun_servers = v;
    }
    if let Some(v) = c.turn_servers {
        cfg.turn_servers = v
            .into_iter()
            .map(|t| match t {
                JsTurnEntry::Spec(s) => parse_turn_spec(&s).map_err(js),
                JsTurnEntry::Full(t) => Ok(TurnServerConfig {
                    url: t.url,
                    username: t.username,
                    credential: t.credential,
                }),
            })
            .collect::<napi::Result<_>>()?;
    }
    macro_rules! set {
        ($($js:ident => $core:ident),*) => { $( if let Some(v) = c.$js { cfg.$core = v; } )* };
    }
    set!(max_peers => max_peers, enable_data_channel => enable_data_channel,
        jitter_buffer_ms => jitter_buffer_ms, rtcp_interval_ms => rtcp_interval_ms,
        quality_interval_ms => quality_interval_ms, adaptive_bitrate => adaptive_bitrate,
        answer_media => answer_media,
        audio_bitrate => audio_bitrate_bps, video_bitrate => video_bitrate_bps,
        video_width => video_width, video_height => video_height,
        video_framerate => video_framerate, auto_connect => auto_connect,
        bind_address => bind_address, connect_timeout_ms => connect_timeout_ms,
        signaling_timeout_ms => signaling_timeout_ms, max_message_size => max_message_size,
        data_channel_buffer_limit => data_channel_buffer_limit,
        max_remote_candidates => max_remote_candidates);
    if c.signaling_token.is_some() {
        cfg.signaling_token = c.signaling_token;
    }
    if c.jitter_buffer_min_ms.is_some() {
        cfg.jitter_buffer_min_ms = c.jitter_buffer_min_ms;
    }
    if let Some(a) = c.audio_codec {
        if a != "opus" {
            return Err(invalid_config(format!(
                "audioCodec must be 'opus', got '{a}'"
            )));
        }
    }
    if let Some(v) = c.video_codec {
        cfg.video_codec = match v.as_str() {
            "vp8" => VideoCodec::Vp8,
            "vp9" => VideoCodec::Vp9,
            "h264" => VideoCodec::H264,
            _ => {
                return Err(invalid_config(format!(
                    "videoCodec must be 'vp8', 'vp9' or 'h264', got '{v}'"
                )))
            }
        };
    }
    if let Some(m) = c.data_channel_mode {
        cfg.data_channel_mode = mode(&m)?;
    }
    if let Some(r) = c.reconnection {
        let d = ReconnectionPolicy::default();
        cfg.reconnection = ReconnectionPolicy {
            max_retries: r.max_retries.unwrap_or(d.max_retries),
            backoff_initial_ms: r.backoff_initial_ms.unwrap_or(d.backoff_initial_ms),
            backoff_max_ms: r.backoff_max_ms.unwrap_or(d.backoff_max_ms),
            backoff_multiplier: r.backoff_multiplier.unwrap_or(d.backoff_multiplier),
            jitter: r.jitter.unwrap_or(d.jitter),
        };
    }
    Ok(cfg)
}

/// The effective configuration, for JS to read back (`transport.config`).
#[napi(object)]
pub struct NativeConfig {
    pub signaling_url: String,
    pub peer_id: String,
    pub max_peers: u32,
    pub jitter_buffer_ms: u32,
    /// Floor of the adaptive jitter buffer in effect (`jitterBufferMs` unless set lower).
    pub jitter_buffer_min_ms: u32,
    pub enable_data_channel: bool,
    pub data_channel_mode: String,
    pub auto_connect: bool,
    pub bind_address: String,
    pub video_bitrate: u32,
    pub audio_bitrate: u32,
}

#[napi(object)]
pub struct PeerStateEntry {
    pub peer_id: String,
    pub state: String,
}

fn convert(ev: TransportEvent) -> NativeEvent {
    let mut n = NativeEvent::default();
    match ev {
        TransportEvent::PeerAnnounced {
            peer_id,
            capabilities,
            user_data,
        } => {
            n.kind = "peer-announced".into();
            n.peer_id = Some(peer_id);
            n.capabilities = Some(capabilities);
            n.user_data = user_data.map(|v| v.to_string());
        }
        TransportEvent::PeerConnected { peer_id, outgoing } => {
            n.kind = "peer-connected".into();
            n.peer_id = Some(peer_id);
            n.outgoing = Some(outgoing);
        }
        TransportEvent::PeerDisconnected { peer_id, reason } => {
            n.kind = "peer-disconnected".into();
            n.peer_id = Some(peer_id);
            n.reason = Some(reason);
        }
        TransportEvent::PeerState { peer_id, state } => {
            n.kind = "peer-state".into();
            n.peer_id = Some(peer_id);
            n.state = Some(state);
        }
        TransportEvent::DataChannel { peer_id, channel } => {
            n.kind = "data-channel".into();
            n.peer_id = Some(peer_id);
            n.channel_key = Some(channel.key() as i64);
        }
        TransportEvent::ChannelMessage {
            peer_id,
            channel,
            message,
        } => {
            use remotemedia_webrtc::channel::MessageKind;
            n.kind = "message".into();
            n.peer_id = Some(peer_id);
            n.channel_key = Some(channel as i64);
            match message.kind {
                MessageKind::Binary => {
                    n.message_kind = Some("binary".into());
                    n.data = Some(message.data.into());
                }
                k => {
                    n.message_kind = Some(
                        if k == MessageKind::Json {
                            "json"
                        } else {
                            "text"
                        }
                        .into(),
                    );
                    n.text = Some(String::from_utf8(message.data).unwrap_or_default());
                }
            }
        }
        TransportEvent::ChannelClosed { peer_id, channel } => {
            n.kind = "channel-close".into();
            n.peer_id = Some(peer_id);
            n.channel_key = Some(channel as i64);
        }
        TransportEvent::SignalingReconnecting { attempt } => {
            n.kind = "signaling-reconnecting".into();
            n.attempt = Some(attempt);
        }
        TransportEvent::SignalingReconnected => n.kind = "signaling-reconnected".into(),
        TransportEvent::Reconnecting { peer_id, attempt } => {
            n.kind = "reconnecting".into();
            n.peer_id = Some(peer_id);
            n.attempt = Some(attempt);
        }
        TransportEvent::Reconnected {
            peer_id,
            attempt,
            is_full_reconnect,
            previous_duration_ms,
        } => {
            n.kind = "reconnected".into();
            n.peer_id = Some(peer_id);
            n.attempt = Some(attempt);
            n.is_full_reconnect = Some(is_full_reconnect);
            n.previous_duration_ms = Some(previous_duration_ms);
        }
        TransportEvent::ReconnectFailed { peer_id, attempt } => {
            n.kind = "reconnect-failed".into();
            n.peer_id = Some(peer_id);
            n.attempt = Some(attempt);
        }
        TransportEvent::SessionOutput {
            session_id,
            node_id,
            peer_id,
            name,
            data,
            error,
        } => {
            n.kind = "session-output".into();
            n.peer_id = peer_id.clone();
            n.json = Some(
                serde_json::json!({
                    "sessionId": session_id,
                    "nodeId": node_id,
                    "peerId": peer_id,
                    "event": name.map(|name| serde_json::json!({ "name": name, "data": data })),
                    "error": error.map(|e| serde_json::json!({ "code": e.code(), "message": e.to_string() })),
                })
                .to_string(),
            );
        }
        TransportEvent::Quality { peer_id, metrics } => {
            n.kind = "quality".into();
            n.peer_id = Some(peer_id);
            n.json = serde_json::to_string(&metrics).ok();
        }
        TransportEvent::TrackStarted {
            peer_id,
            kind,
            track_id,
        } => {
            n.kind = "track".into();
            n.peer_id = Some(peer_id);
            n.track_kind = Some(kind);
            n.track_id = Some(track_id);
        }
        TransportEvent::TrackEnded {
            peer_id,
            kind,
            track_id,
        } => {
            n.kind = "track-ended".into();
            n.peer_id = Some(peer_id);
            n.track_kind = Some(kind);
            n.track_id = Some(track_id);
        }
        TransportEvent::AudioFrame { peer_id, frame } => {
            n.kind = "audio-frame".into();
            n.peer_id = Some(peer_id);
            n.sample_rate = Some(frame.sample_rate);
            n.channels = Some(frame.channels as u32);
            n.rtp_timestamp = Some(frame.rtp_timestamp);
            n.wall_clock_us = Some(frame.wall_clock_us as f64);
            n.sync_confidence = Some(frame.sync_confidence);
            n.drift_ppm = Some(frame.drift_ppm);
            n.concealed = Some(frame.concealed);
            n.buffer_delay_ms = Some(frame.buffer_delay_ms);
            n.samples = Some(Float32Array::new(frame.samples));
        }
        TransportEvent::VideoFrame { peer_id, frame } => {
            n.kind = "video-frame".into();
            n.peer_id = Some(peer_id);
            n.width = Some(frame.width);
            n.height = Some(frame.height);
            n.rtp_timestamp = Some(frame.rtp_timestamp);
            n.wall_clock_us = Some(frame.wall_clock_us as f64);
            n.sync_confidence = Some(frame.sync_confidence);
            n.drift_ppm = Some(frame.drift_ppm);
            n.keyframe = Some(frame.keyframe);
            n.framerate = frame.framerate;
            n.buffer_delay_ms = Some(frame.buffer_delay_ms);
            n.audio_sync_offset_ms = frame.audio_sync_offset_ms;
            n.data = Some(frame.data.into());
        }
        TransportEvent::Error { peer_id, error } => {
            n.kind = "error".into();
            n.peer_id = peer_id;
            n.error_code = Some(error.code().into());
            n.error_message = Some(error.to_string());
        }
    }
    n
}

#[napi]
pub struct NativeTransport {
    t: WebRtcTransport,
    closed: Arc<AtomicBool>,
    events: Mutex<Option<mpsc::Receiver<TransportEvent>>>,
}

#[napi]
impl NativeTransport {
    /// `options_json`: the options object serialized by the JS layer.
    #[napi(constructor, catch_unwind)]
    pub fn new(options_json: String) -> napi::Result<Self> {
        let c: JsConfig = serde_json::from_str(&options_json)
            .map_err(|e| invalid_config(format!("options: {e}")))?;
        let t = WebRtcTransport::new(to_core(c)?).map_err(js)?;
        let events = t.take_events();
        Ok(Self {
            t,
            closed: Arc::new(AtomicBool::new(false)),
            events: Mutex::new(events),
        })
    }

    #[napi(getter)]
    pub fn peer_id(&self) -> String {
        self.t.local_peer_id().to_string()
    }

    #[napi(getter)]
    pub fn config(&self) -> NativeConfig {
        let c = self.t.config();
        NativeConfig {
            signaling_url: c.signaling_url.clone(),
            peer_id: self.t.local_peer_id().to_string(),
            max_peers: c.max_peers as u32,
            jitter_buffer_ms: c.jitter_buffer_ms,
            jitter_buffer_min_ms: c.jitter_floor_ms(),
            enable_data_channel: c.enable_data_channel,
            data_channel_mode: match c.data_channel_mode {
                DataChannelMode::Reliable => "reliable".into(),
                DataChannelMode::Unreliable => "unreliable".into(),
            },
            auto_connect: c.auto_connect,
            bind_address: c.bind_address.clone(),
            video_bitrate: c.video_bitrate_bps,
            audio_bitrate: c.audio_bitrate_bps,
        }
    }

    /// Starts delivering events to `cb` (once).
    #[napi(catch_unwind)]
    pub fn set_event_handler(&self, cb: Function<Vec<NativeEvent>, ()>) -> napi::Result<()> {
        let Some(mut rx) = self.events.lock().unwrap().take() else {
            return Err(crate::error::invalid_data("event handler already set"));
        };
        let tsfn = make_tsfn(cb)?;
        let (tx, out) = mpsc::channel(64);
        napi::bindgen_prelude::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tx.send(convert(ev)).await.is_err() {
                    break;
                }
            }
        });
        spawn_pump(out, tsfn, self.closed.clone());
        Ok(())
    }

    #[napi]
    pub async fn start(&self) -> napi::Result<()> {
        self.t.start().await.map_err(js)
    }

    #[napi]
    pub async fn connect_peer(&self, peer_id: String) -> napi::Result<NativePeer> {
        let p = self.t.connect_peer(&peer_id).await.map_err(js)?;
        Ok(NativePeer::new(p))
    }

    #[napi]
    pub async fn disconnect_peer(&self, peer_id: String) -> napi::Result<()> {
        self.t.disconnect_peer(&peer_id).await.map_err(js)
    }

    #[napi(catch_unwind)]
    pub fn get_peer(&self, peer_id: String) -> napi::Result<NativePeer> {
        self.t.get_peer(&peer_id).map(NativePeer::new).map_err(js)
    }

    /// Creates a session; `options_json`: { maxPeers?, manifest? }. Returns its info as JSON.
    #[napi(catch_unwind)]
    pub fn session_create(&self, id: String, options_json: Option<String>) -> napi::Result<String> {
        let opts: remotemedia_webrtc::session::SessionOptions = match options_json {
            Some(j) => serde_json::from_str(&j)
                .map_err(|e| invalid_data(format!("session options: {e}")))?,
            None => Default::default(),
        };
        let info = self.t.create_session(&id, opts).map_err(js)?;
        serde_json::to_string(&info).map_err(|e| invalid_data(e.to_string()))
    }

    /// A session's info as JSON (`ERR_SESSION_NOT_FOUND`).
    #[napi(catch_unwind)]
    pub fn session_get(&self, id: String) -> napi::Result<String> {
        let info = self.t.sessions().get(&id).map_err(js)?;
        serde_json::to_string(&info).map_err(|e| invalid_data(e.to_string()))
    }

    /// Gives the session the pipeline of `manifest` (text); returns its info as JSON.
    #[napi(catch_unwind)]
    pub fn session_attach(&self, id: String, manifest: String) -> napi::Result<String> {
        let info = self
            .t
            .sessions()
            .attach_manifest(&id, &manifest)
            .map_err(js)?;
        serde_json::to_string(&info).map_err(|e| invalid_data(e.to_string()))
    }

    #[napi(catch_unwind)]
    pub fn session_list(&self) -> Vec<String> {
        self.t.sessions().list()
    }

    #[napi(catch_unwind)]
    pub fn session_remove(&self, id: String) -> napi::Result<()> {
        self.t.sessions().remove(&id).map_err(js)
    }

    #[napi(catch_unwind)]
    pub fn session_add_peer(&self, id: String, peer_id: String) -> napi::Result<String> {
        let info = self.t.add_peer_to_session(&id, &peer_id).map_err(js)?;
        serde_json::to_string(&info).map_err(|e| invalid_data(e.to_string()))
    }

    #[napi(catch_unwind)]
    pub fn session_remove_peer(&self, id: String, peer_id: String) -> napi::Result<bool> {
        self.t.remove_peer_from_session(&id, &peer_id).map_err(js)
    }

    /// The session's snapshot as JSON.
    #[napi(catch_unwind)]
    pub fn session_snapshot(&self, id: String) -> napi::Result<String> {
        let snap = self.t.session_snapshot(&id).map_err(js)?;
        serde_json::to_string(&snap).map_err(|e| invalid_data(e.to_string()))
    }

    /// Restores a snapshot (JSON); resolves to { session, failed } as JSON.
    #[napi]
    pub async fn session_restore(&self, snapshot_json: String) -> napi::Result<String> {
        let v: serde_json::Value = serde_json::from_str(&snapshot_json)
            .map_err(|e| invalid_data(format!("session snapshot: {e}")))?;
        let (info, failed) = self.t.restore_session(&v).await.map_err(js)?;
        Ok(serde_json::json!({ "session": info, "failed": failed }).to_string())
    }

    #[napi(catch_unwind)]
    pub fn list_peers(&self) -> Vec<String> {
        self.t.list_peers()
    }

    #[napi(catch_unwind)]
    pub fn list_all_peers(&self) -> Vec<PeerStateEntry> {
        self.t
            .list_all_peers()
            .into_iter()
            .map(|(peer_id, s)| PeerStateEntry {
                peer_id,
                state: s.as_str().into(),
            })
            .collect()
    }

    /// Encodes (synchronously, borrowing the samples) and sends one frame to `peer_id`.
    #[napi(catch_unwind)]
    pub fn send_audio<'env>(
        &self,
        env: &'env Env,
        peer_id: String,
        samples: Float32Array,
    ) -> napi::Result<Either<bool, PromiseRaw<'env, ()>>> {
        self.send_pcm(env, &peer_id, Pcm::F32(&samples))
    }

    #[napi(catch_unwind)]
    pub fn send_audio_i16<'env>(
        &self,
        env: &'env Env,
        peer_id: String,
        samples: Int16Array,
    ) -> napi::Result<Either<bool, PromiseRaw<'env, ()>>> {
        self.send_pcm(env, &peer_id, Pcm::I16(&samples))
    }

    /// Encodes once and sends to every connected peer with an audio track.
    #[napi(catch_unwind)]
    pub fn broadcast_audio<'env>(
        &self,
        env: &'env Env,
        samples: Float32Array,
    ) -> napi::Result<PromiseRaw<'env, BroadcastOutcome>> {
        self.broadcast_pcm(env, Pcm::F32(&samples))
    }

    #[napi(catch_unwind)]
    pub fn broadcast_audio_i16<'env>(
        &self,
        env: &'env Env,
        samples: Int16Array,
    ) -> napi::Result<PromiseRaw<'env, BroadcastOutcome>> {
        self.broadcast_pcm(env, Pcm::I16(&samples))
    }

    /// Copies the packed I420 frame (within the call: no pointer into JS memory outlives it, as
    /// its ArrayBuffer may be transferred or collected meanwhile), then encodes the copy off the
    /// JS thread and sends it to `peer_id`.
    // A napi method's arguments are its JS signature.
    #[allow(clippy::too_many_arguments)]
    #[napi(catch_unwind)]
    pub fn send_video<'env>(
        &self,
        env: &'env Env,
        peer_id: String,
        data: &[u8],
        width: u32,
        height: u32,
        timestamp_us: f64,
        keyframe: bool,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let frame = copied_frame(data, width, height, timestamp_us, keyframe);
        let t = self.t.clone();
        env.spawn_future(async move { t.send_video(&peer_id, frame).await.map_err(js) })
    }

    /// Copies one packed I420 frame (as `sendVideo`), encodes it once and sends it to every
    /// connected peer with a video track.
    #[napi(catch_unwind)]
    pub fn broadcast_video<'env>(
        &self,
        env: &'env Env,
        data: &[u8],
        width: u32,
        height: u32,
        timestamp_us: f64,
        keyframe: bool,
    ) -> napi::Result<PromiseRaw<'env, BroadcastOutcome>> {
        let frame = copied_frame(data, width, height, timestamp_us, keyframe);
        let t = self.t.clone();
        env.spawn_future(async move { Ok(outcome(t.broadcast_video(frame).await.map_err(js)?)) })
    }

    #[napi(getter)]
    pub fn is_started(&self) -> bool {
        self.t.is_started()
    }

    #[napi(getter)]
    pub fn is_shut_down(&self) -> bool {
        self.t.is_shut_down()
    }

    /// Closes everything; no event is delivered after this resolves. Idempotent.
    #[napi]
    pub async fn shutdown(&self) -> napi::Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        self.t.shutdown().await.map_err(js)
    }
}

#[napi(object)]
pub struct BroadcastFailure {
    pub peer_id: String,
    pub code: String,
    pub message: String,
}

#[napi(object)]
pub struct BroadcastOutcome {
    pub sent: u32,
    pub failed: Vec<BroadcastFailure>,
}

impl NativeTransport {
    /// `true` when the packet was handed to the connection within the call (the usual case: no
    /// task and no promise needed), else a promise of its handover.
    fn send_pcm<'env>(
        &self,
        env: &'env Env,
        peer_id: &str,
        pcm: Pcm<'_>,
    ) -> napi::Result<Either<bool, PromiseRaw<'env, ()>>> {
        let track = self.t.audio_track(peer_id).map_err(js)?;
        // Inside the runtime: a send that has to wait is woken by the connection's task.
        match within_runtime_if_available(|| track.send_now(pcm)).map_err(js)? {
            None => Ok(Either::A(true)),
            Some(rest) => env
                .spawn_future(async move { rest.await.map_err(js) })
                .map(Either::B),
        }
    }

    fn broadcast_pcm<'env>(
        &self,
        env: &'env Env,
        pcm: Pcm<'_>,
    ) -> napi::Result<PromiseRaw<'env, BroadcastOutcome>> {
        let broadcast = self.t.encode_broadcast(pcm).map_err(js)?;
        env.spawn_future(async move { Ok(outcome(WebRtcTransport::send_to_all(broadcast).await)) })
    }
}

fn outcome(r: remotemedia_webrtc::transport::BroadcastResult) -> BroadcastOutcome {
    BroadcastOutcome {
        sent: r.sent as u32,
        failed: r
            .failed
            .into_iter()
            .map(|(peer_id, e)| BroadcastFailure {
                peer_id,
                code: e.code().into(),
                message: e.to_string(),
            })
            .collect(),
    }
}

/// A frame to encode, its pixels copied out of the caller's buffer within the call: the encode
/// runs after the call returned, when the ArrayBuffer may have been transferred and collected.
fn copied_frame(
    data: &[u8],
    width: u32,
    height: u32,
    timestamp_us: f64,
    keyframe: bool,
) -> VideoInput<Vec<u8>> {
    VideoInput {
        data: data.to_vec(),
        width,
        height,
        timestamp_us: timestamp_us as i64,
        keyframe,
    }
}
