//! Transport configuration: validation that names the bad field and its allowed range, the seed's
//! three presets, and builder-style `with_*` setters.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A TURN server with its long-term credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnServerConfig {
    pub url: String,
    pub username: String,
    pub credential: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodec {
    #[default]
    Opus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    #[default]
    Vp8,
    Vp9,
    H264,
}

/// Reliable = ordered with retransmissions (TCP-like); unreliable = unordered, no retransmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataChannelMode {
    #[default]
    Reliable,
    Unreliable,
}

/// How a dropped connection is retried (used by the signaling client now, by peers later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconnectionPolicy {
    pub max_retries: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_multiplier: f64,
    pub jitter: bool,
}

impl Default for ReconnectionPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            backoff_multiplier: 2.0,
            jitter: true,
        }
    }
}

impl ReconnectionPolicy {
    /// Delay before retry number `attempt` (1-based), without jitter: initial × multiplier^(n-1),
    /// capped at `backoff_max_ms`.
    pub fn base_delay_ms(&self, attempt: u32) -> u64 {
        let exp = attempt.saturating_sub(1).min(64) as i32;
        let d = self.backoff_initial_ms as f64 * self.backoff_multiplier.powi(exp);
        if d.is_finite() {
            (d as u64).min(self.backoff_max_ms)
        } else {
            self.backoff_max_ms
        }
    }

    /// Delay before retry `attempt`; with jitter it is drawn from [delay/2, delay] using `unit`,
    /// a number in [0, 1) supplied by the caller (so the schedule stays a pure function).
    pub fn delay_ms(&self, attempt: u32, unit: f64) -> u64 {
        let base = self.base_delay_ms(attempt);
        if self.jitter {
            let unit = unit.clamp(0.0, 1.0);
            base / 2 + ((base - base / 2) as f64 * unit) as u64
        } else {
            base
        }
    }

    pub fn validate(&self) -> Result<()> {
        range("reconnection.maxRetries", self.max_retries as u64, 0, 1000)?;
        range(
            "reconnection.backoffInitialMs",
            self.backoff_initial_ms,
            1,
            600_000,
        )?;
        range(
            "reconnection.backoffMaxMs",
            self.backoff_max_ms,
            self.backoff_initial_ms,
            3_600_000,
        )?;
        if !(1.0..=10.0).contains(&self.backoff_multiplier) {
            return Err(Error::InvalidConfig(format!(
                "reconnection.backoffMultiplier must be in 1..=10, got {}",
                self.backoff_multiplier
            )));
        }
        Ok(())
    }
}

pub const MIN_PEERS: usize = 1;
pub const MAX_PEERS: usize = 256;
pub const MIN_JITTER_MS: u32 = 50;
pub const MAX_JITTER_MS: u32 = 200;
/// Lowest accepted `jitter_buffer_min_ms`.
pub const MIN_JITTER_FLOOR_MS: u32 = crate::sync::JITTER_FLOOR_MIN_MS;

/// The largest `max_message_size` this stack honours: webrtc-rs 0.21 caps the SCTP message
/// size it advertises and accepts at 256 KiB (`SctpMaxMessageSize::MAX_MESSAGE_SIZE`), so a
/// larger setting was taken and then silently not honoured (a 1 MiB message to Firefox, which
/// accepts 1 GiB, was refused). A larger value is refused with `InvalidConfig`.
pub const MAX_MESSAGE_SIZE_LIMIT: usize =
    rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize::MAX_MESSAGE_SIZE
        as usize;

/// Everything a `WebRtcTransport` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebRtcTransportConfig {
    /// `ws://` URL of the JSON-RPC signaling server. `wss://` is refused by `validate` until TLS is
    /// built in (the WebSocket client has no TLS backend compiled in).
    pub signaling_url: String,
    /// This peer's id; generated when `None`.
    pub peer_id: Option<String>,
    pub stun_servers: Vec<String>,
    pub turn_servers: Vec<TurnServerConfig>,
    /// Remote peers at once, 1..=256.
    pub max_peers: usize,
    pub audio_codec: AudioCodec,
    pub video_codec: VideoCodec,
    pub enable_data_channel: bool,
    /// Mode of the default data channel opened with every peer.
    pub data_channel_mode: DataChannelMode,
    /// Jitter buffer target, 50..=200 ms: where the adaptive buffer starts, and its floor unless
    /// `jitter_buffer_min_ms` sets a lower one.
    pub jitter_buffer_ms: u32,
    /// Floor of the adaptive jitter buffer, 10..=`jitter_buffer_ms` ms. `None`: the buffer never
    /// goes below `jitter_buffer_ms`. With a lower floor the buffer starts at `jitter_buffer_ms`
    /// and settles at a multiple of the measured interarrival jitter, down to this floor.
    #[serde(default)]
    pub jitter_buffer_min_ms: Option<u32>,
    /// RTCP report interval, 100..=10 000 ms.
    pub rtcp_interval_ms: u32,
    /// How often each peer's quality is measured (and a `quality` event sent), 100..=60 000 ms.
    pub quality_interval_ms: u32,
    /// Encoder targets follow the loss the remote peer reports (between a tenth of the track's
    /// bitrate and the bitrate itself).
    pub adaptive_bitrate: bool,
    /// Answer media with media: when a remote offer sends audio (or video) and the peer has no
    /// track of that kind yet, the answer adds one (Opus at `audio_bitrate_bps`; the video codec
    /// at `video_width`x`video_height`, `video_framerate`, `video_bitrate_bps`), so a server can
    /// send media back (e.g. a session pipeline's output) without renegotiating.
    pub answer_media: bool,
    /// Audio target bitrate, 6 000..=510 000 bit/s (Opus range).
    pub audio_bitrate_bps: u32,
    /// Video target bitrate, 50 000..=50 000 000 bit/s.
    pub video_bitrate_bps: u32,
    pub video_width: u32,
    pub video_height: u32,
    pub video_framerate: u32,
    /// Dial every announced peer (full mesh).
    pub auto_connect: bool,
    /// Local address the peer connections' UDP sockets bind to (`0.0.0.0` = every non-loopback
    /// interface; `127.0.0.1` for loopback-only).
    pub bind_address: String,
    /// How long `connect_peer` waits for the connection (and its data channel) to open.
    pub connect_timeout_ms: u64,
    /// How long a signaling request waits for its response.
    pub signaling_timeout_ms: u64,
    /// Largest data-channel message accepted for sending (and advertised in the SDP's
    /// `a=max-message-size`), 1..=[`MAX_MESSAGE_SIZE_LIMIT`] (256 KiB).
    pub max_message_size: usize,
    /// Per-channel bytes handed to SCTP but not yet acknowledged before `send` waits.
    pub data_channel_buffer_limit: usize,
    pub reconnection: ReconnectionPolicy,
    /// Remote ICE candidates accepted per remote description (and queued before it), 1..=1000;
    /// the rest are dropped. Each one costs connectivity checks to an address the remote chose,
    /// so a peer that trickles thousands cannot make us spend CPU or probe the network for it.
    #[serde(default = "default_max_remote_candidates")]
    pub max_remote_candidates: usize,
    /// The credential presented on every announce, for a signaling server with authentication
    /// (`signaling::auth`; never logged). At most `signaling::auth::MAX_TOKEN_BYTES` bytes.
    #[serde(default, skip_serializing)]
    pub signaling_token: Option<String>,
}

fn default_max_remote_candidates() -> usize {
    64
}

impl Default for WebRtcTransportConfig {
    fn default() -> Self {
        Self {
            signaling_url: "ws://127.0.0.1:8080".into(),
            peer_id: None,
            stun_servers: vec![],
            turn_servers: vec![],
            max_peers: 10,
            audio_codec: AudioCodec::Opus,
            video_codec: VideoCodec::Vp8,
            enable_data_channel: true,
            data_channel_mode: DataChannelMode::Reliable,
            jitter_buffer_ms: 100,
            jitter_buffer_min_ms: None,
            rtcp_interval_ms: 5000,
            quality_interval_ms: 1000,
            adaptive_bitrate: true,
            answer_media: false,
            audio_bitrate_bps: 64_000,
            video_bitrate_bps: 2_000_000,
            video_width: 1280,
            video_height: 720,
            video_framerate: 30,
            auto_connect: false,
            bind_address: "0.0.0.0".into(),
            connect_timeout_ms: 15_000,
            signaling_timeout_ms: 10_000,
            max_message_size: 256 * 1024,
            data_channel_buffer_limit: 1024 * 1024,
            reconnection: ReconnectionPolicy::default(),
            max_remote_candidates: default_max_remote_candidates(),
            signaling_token: None,
        }
    }
}

fn range(field: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if value < min || value > max {
        return Err(Error::InvalidConfig(format!(
            "{field} must be in {min}..={max}, got {value}"
        )));
    }
    Ok(())
}

/// `^[A-Za-z0-9_-]{1,64}$`, the signaling protocol's peer id rule.
pub fn is_valid_peer_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `scheme:host[:port][?query]` with one of `schemes`; returns a description of what is wrong.
fn check_ice_url(url: &str, schemes: &[&str]) -> std::result::Result<(), String> {
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| format!("'{url}' has no scheme (expected {})", schemes.join("/")))?;
    if !schemes.contains(&scheme) {
        return Err(format!("'{url}' must start with {}", schemes.join(": or ")));
    }
    let hostport = rest.split('?').next().unwrap_or("");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (hostport, None), // bare IPv6
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        return Err(format!("'{url}' has no valid host"));
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("'{url}' has an invalid port '{p}' (1..=65535)")),
        }
    }
    Ok(())
}

impl WebRtcTransportConfig {
    pub fn new(signaling_url: impl Into<String>) -> Self {
        Self {
            signaling_url: signaling_url.into(),
            ..Default::default()
        }
    }

    /// Real-time audio/video: small jitter buffer (starting at 50 ms, down to 20 ms on a steady
    /// path), frequent RTCP, unreliable default channel.
    pub fn low_latency_preset(signaling_url: impl Into<String>) -> Self {
        Self {
            jitter_buffer_ms: 50,
            jitter_buffer_min_ms: Some(20),
            rtcp_interval_ms: 2000,
            data_channel_mode: DataChannelMode::Unreliable,
            video_bitrate_bps: 1_500_000,
            ..Self::new(signaling_url)
        }
    }

    /// Recording/broadcast: 1080p at 4 Mbit/s, 128 kbit/s audio.
    pub fn high_quality_preset(signaling_url: impl Into<String>) -> Self {
        Self {
            jitter_buffer_ms: 100,
            video_bitrate_bps: 4_000_000,
            audio_bitrate_bps: 128_000,
            video_width: 1920,
            video_height: 1080,
            ..Self::new(signaling_url)
        }
    }

    /// Lossy, changing networks: deeper jitter buffer, 800 kbit/s, patient reconnection.
    pub fn mobile_network_preset(signaling_url: impl Into<String>) -> Self {
        Self {
            jitter_buffer_ms: 150,
            video_bitrate_bps: 800_000,
            audio_bitrate_bps: 32_000,
            video_width: 640,
            video_height: 480,
            connect_timeout_ms: 30_000,
            reconnection: ReconnectionPolicy {
                max_retries: 10,
                backoff_initial_ms: 1000,
                ..Default::default()
            },
            ..Self::new(signaling_url)
        }
    }

    pub fn with_peer_id(mut self, id: impl Into<String>) -> Self {
        self.peer_id = Some(id.into());
        self
    }
    pub fn with_max_peers(mut self, n: usize) -> Self {
        self.max_peers = n;
        self
    }
    pub fn with_stun_servers(mut self, s: Vec<String>) -> Self {
        self.stun_servers = s;
        self
    }
    pub fn with_turn_servers(mut self, s: Vec<TurnServerConfig>) -> Self {
        self.turn_servers = s;
        self
    }
    pub fn with_jitter_buffer_ms(mut self, ms: u32) -> Self {
        self.jitter_buffer_ms = ms;
        self
    }
    pub fn with_jitter_buffer_min_ms(mut self, ms: u32) -> Self {
        self.jitter_buffer_min_ms = Some(ms);
        self
    }
    /// The floor of the adaptive jitter buffer in effect, ms.
    pub fn jitter_floor_ms(&self) -> u32 {
        self.jitter_buffer_min_ms.unwrap_or(self.jitter_buffer_ms)
    }
    pub fn with_auto_connect(mut self, on: bool) -> Self {
        self.auto_connect = on;
        self
    }
    pub fn with_answer_media(mut self, on: bool) -> Self {
        self.answer_media = on;
        self
    }
    pub fn with_bind_address(mut self, addr: impl Into<String>) -> Self {
        self.bind_address = addr.into();
        self
    }
    pub fn with_data_channel(mut self, on: bool) -> Self {
        self.enable_data_channel = on;
        self
    }
    pub fn with_video_codec(mut self, c: VideoCodec) -> Self {
        self.video_codec = c;
        self
    }
    pub fn with_signaling_token(mut self, token: impl Into<String>) -> Self {
        self.signaling_token = Some(token.into());
        self
    }

    pub fn with_reconnection(mut self, p: ReconnectionPolicy) -> Self {
        self.reconnection = p;
        self
    }

    /// Checks every field; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        let url = &self.signaling_url;
        if url.starts_with("wss://") {
            // Refused here rather than failing later at start(): tokio-tungstenite is built
            // without a TLS backend.
            return Err(Error::InvalidConfig(format!(
                "signalingUrl '{url}': wss:// (TLS) is not built in; use ws:// (e.g. behind a \
                 TLS-terminating proxy)"
            )));
        }
        let rest = url.strip_prefix("ws://").ok_or_else(|| {
            Error::InvalidConfig(format!("signalingUrl must start with ws://, got '{url}'"))
        })?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(Error::InvalidConfig(format!(
                "signalingUrl has no host: '{url}'"
            )));
        }
        if let Some(id) = &self.peer_id {
            if !is_valid_peer_id(id) {
                return Err(Error::InvalidConfig(format!(
                    "peerId must match ^[A-Za-z0-9_-]{{1,64}}$, got '{id}'"
                )));
            }
        }
        range(
            "maxPeers",
            self.max_peers as u64,
            MIN_PEERS as u64,
            MAX_PEERS as u64,
        )?;
        if let Some(t) = &self.signaling_token {
            if t.is_empty() || t.len() > crate::signaling::auth::MAX_TOKEN_BYTES {
                return Err(Error::InvalidConfig(format!(
                    "signalingToken must be 1..={} bytes",
                    crate::signaling::auth::MAX_TOKEN_BYTES
                )));
            }
        }
        range(
            "maxRemoteCandidates",
            self.max_remote_candidates as u64,
            1,
            1000,
        )?;
        range(
            "jitterBufferMs",
            self.jitter_buffer_ms as u64,
            MIN_JITTER_MS as u64,
            MAX_JITTER_MS as u64,
        )?;
        if let Some(min) = self.jitter_buffer_min_ms {
            range(
                "jitterBufferMinMs",
                min as u64,
                MIN_JITTER_FLOOR_MS as u64,
                self.jitter_buffer_ms as u64,
            )?;
        }
        range("rtcpIntervalMs", self.rtcp_interval_ms as u64, 100, 10_000)?;
        range(
            "qualityIntervalMs",
            self.quality_interval_ms as u64,
            100,
            60_000,
        )?;
        range(
            "audioBitrate",
            self.audio_bitrate_bps as u64,
            6_000,
            510_000,
        )?;
        range(
            "videoBitrate",
            self.video_bitrate_bps as u64,
            50_000,
            50_000_000,
        )?;
        range("videoWidth", self.video_width as u64, 16, 7680)?;
        range("videoHeight", self.video_height as u64, 16, 4320)?;
        range("videoFramerate", self.video_framerate as u64, 1, 120)?;
        if self.video_codec == VideoCodec::H264 && !cfg!(feature = "h264") {
            return Err(Error::InvalidConfig(
                "videoCodec 'h264' is not built in: build the addon with the cargo feature `h264` \
                 (npm run build -- --features h264)"
                    .into(),
            ));
        }
        range("connectTimeoutMs", self.connect_timeout_ms, 100, 300_000)?;
        range(
            "signalingTimeoutMs",
            self.signaling_timeout_ms,
            100,
            300_000,
        )?;
        range(
            "maxMessageSize",
            self.max_message_size as u64,
            1,
            MAX_MESSAGE_SIZE_LIMIT as u64,
        )?;
        range(
            "dataChannelBufferLimit",
            self.data_channel_buffer_limit as u64,
            16 * 1024,
            256 * 1024 * 1024,
        )?;
        for s in &self.stun_servers {
            check_ice_url(s, &["stun", "stuns"])
                .map_err(|e| Error::InvalidConfig(format!("stunServers: {e}")))?;
        }
        for t in &self.turn_servers {
            check_ice_url(&t.url, &["turn", "turns"])
                .map_err(|e| Error::InvalidConfig(format!("turnServers: {e}")))?;
            if t.username.is_empty() {
                return Err(Error::InvalidConfig(format!(
                    "turnServers: '{}' needs a username",
                    t.url
                )));
            }
        }
        if self.bind_address.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::InvalidConfig(format!(
                "bindAddress must be an IP address, got '{}'",
                self.bind_address
            )));
        }
        self.reconnection.validate()
    }
}

/// Parses the seed's `turn:host:port:username:credential` form (the `WEBRTC_TURN_SERVERS`
/// environment variable).
pub fn parse_turn_spec(spec: &str) -> Result<TurnServerConfig> {
    let parts: Vec<&str> = spec.splitn(5, ':').collect();
    if parts.len() != 5 || !(parts[0] == "turn" || parts[0] == "turns") {
        return Err(Error::InvalidConfig(format!(
            "turn server must be turn:host:port:username:credential, got '{spec}'"
        )));
    }
    Ok(TurnServerConfig {
        url: format!("{}:{}:{}", parts[0], parts[1], parts[2]),
        username: parts[3].into(),
        credential: parts[4].into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> WebRtcTransportConfig {
        WebRtcTransportConfig::new("ws://127.0.0.1:1").with_peer_id("alice")
    }

    #[test]
    fn wss_signaling_url_is_refused_until_tls_is_built_in() {
        let e = WebRtcTransportConfig::new("wss://127.0.0.1:1/ws")
            .validate()
            .unwrap_err();
        assert_eq!(e.code(), "ERR_INVALID_CONFIG");
        assert!(e.to_string().contains("TLS"), "{e}");
    }

    #[test]
    fn defaults_and_presets_are_valid() {
        base().validate().unwrap();
        for c in [
            WebRtcTransportConfig::low_latency_preset("ws://h:1"),
            WebRtcTransportConfig::high_quality_preset("ws://h"),
            WebRtcTransportConfig::mobile_network_preset("ws://h:1/ws"),
        ] {
            c.validate().unwrap();
        }
        assert_eq!(
            WebRtcTransportConfig::low_latency_preset("ws://h").jitter_buffer_ms,
            50
        );
        assert_eq!(
            WebRtcTransportConfig::low_latency_preset("ws://h").jitter_floor_ms(),
            20
        );
        assert_eq!(base().jitter_floor_ms(), base().jitter_buffer_ms);
        assert_eq!(
            WebRtcTransportConfig::high_quality_preset("ws://h").video_bitrate_bps,
            4_000_000
        );
        assert_eq!(
            WebRtcTransportConfig::mobile_network_preset("ws://h").jitter_buffer_ms,
            150
        );
    }

    #[test]
    fn h264_needs_the_feature() {
        let r = base().with_video_codec(VideoCodec::H264).validate();
        if cfg!(feature = "h264") {
            r.unwrap();
        } else {
            let Err(Error::InvalidConfig(m)) = r else {
                panic!("{r:?}")
            };
            assert!(m.contains("cargo feature `h264`"), "{m}");
        }
    }

    #[test]
    fn validation_table_names_the_field() {
        type Edit = fn(&mut WebRtcTransportConfig);
        let cases: Vec<(Edit, &str)> = vec![
            (|c| c.signaling_url = "http://x".into(), "signalingUrl"),
            (|c| c.signaling_url = "ws://".into(), "signalingUrl"),
            (|c| c.peer_id = Some("bad id!".into()), "peerId"),
            (|c| c.peer_id = Some("x".repeat(65)), "peerId"),
            (|c| c.peer_id = Some(String::new()), "peerId"),
            (|c| c.max_peers = 0, "maxPeers must be in 1..=256"),
            (|c| c.max_peers = 257, "maxPeers must be in 1..=256"),
            (
                |c| c.jitter_buffer_ms = 49,
                "jitterBufferMs must be in 50..=200",
            ),
            (
                |c| c.jitter_buffer_ms = 201,
                "jitterBufferMs must be in 50..=200",
            ),
            (
                |c| c.jitter_buffer_min_ms = Some(9),
                "jitterBufferMinMs must be in 10..=100",
            ),
            (
                |c| c.jitter_buffer_min_ms = Some(101),
                "jitterBufferMinMs must be in 10..=100",
            ),
            (|c| c.audio_bitrate_bps = 1000, "audioBitrate"),
            (|c| c.video_bitrate_bps = 100_000_000, "videoBitrate"),
            (
                |c| c.stun_servers = vec!["stun.example.org".into()],
                "stunServers",
            ),
            (
                |c| c.stun_servers = vec!["turn:h:3478".into()],
                "stunServers",
            ),
            (
                |c| c.stun_servers = vec!["stun:h:99999".into()],
                "stunServers",
            ),
            (|c| c.stun_servers = vec!["stun:".into()], "stunServers"),
            (
                |c| {
                    c.turn_servers = vec![TurnServerConfig {
                        url: "stun:h:1".into(),
                        username: "u".into(),
                        credential: "p".into(),
                    }]
                },
                "turnServers",
            ),
            (
                |c| {
                    c.turn_servers = vec![TurnServerConfig {
                        url: "turn:h:3478".into(),
                        username: "".into(),
                        credential: "p".into(),
                    }]
                },
                "turnServers",
            ),
            (|c| c.bind_address = "localhost".into(), "bindAddress"),
            (|c| c.max_message_size = 0, "maxMessageSize"),
            (
                |c| c.reconnection.backoff_multiplier = 0.5,
                "backoffMultiplier",
            ),
            (|c| c.reconnection.backoff_max_ms = 1, "backoffMaxMs"),
        ];
        for (edit, needle) in cases {
            let mut c = base();
            edit(&mut c);
            let err = c.validate().expect_err(needle);
            assert_eq!(err.code(), "ERR_INVALID_CONFIG");
            assert!(
                err.to_string().contains(needle),
                "{err} should name {needle}"
            );
        }
    }

    #[test]
    fn good_ice_urls_pass() {
        let mut c = base();
        c.stun_servers = vec![
            "stun:stun.example.org".into(),
            "stun:10.0.0.1:3478".into(),
            "stuns:h:5349?transport=tcp".into(),
        ];
        c.turn_servers = vec![TurnServerConfig {
            url: "turn:h:3478?transport=udp".into(),
            username: "u".into(),
            credential: "p".into(),
        }];
        c.validate().unwrap();
    }

    #[test]
    fn turn_spec_parses_seed_form() {
        let t = parse_turn_spec("turn:relay.local:3478:user:pa:ss").unwrap();
        assert_eq!(t.url, "turn:relay.local:3478");
        assert_eq!(t.username, "user");
        assert_eq!(t.credential, "pa:ss");
        assert!(parse_turn_spec("turn:h:1:u").is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = ReconnectionPolicy {
            max_retries: 10,
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            backoff_multiplier: 2.0,
            jitter: false,
        };
        let d: Vec<u64> = (1..=6).map(|a| p.base_delay_ms(a)).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        let pj = ReconnectionPolicy { jitter: true, ..p };
        for a in 1..=6 {
            let lo = pj.delay_ms(a, 0.0);
            let hi = pj.delay_ms(a, 0.999);
            assert!(
                lo >= pj.base_delay_ms(a) / 2 && hi <= pj.base_delay_ms(a),
                "{a}"
            );
            assert!(lo < hi);
        }
    }
}
