//! Full reconnection: a new peer connection (new sockets, ICE agent, DTLS and SCTP) replacing
//! a peer's broken one under the same peer id, on both sides.
//!
//! The side that made the first offer starts it (see `connection::recover`): it builds the new
//! connection, carries its tracks and data channels over, and offers it. The other side knows
//! the offer for a new connection by its session (the `o=` session id, or the DTLS
//! fingerprint, differs from the last remote description's) and replaces its connection too.
//!
//! - **Tracks**: a track of the same kind and settings is added to the new connection (new
//!   SSRC and track id); the application's `sendAudio`/`sendVideo` go to it. The remote side
//!   sees the old tracks end (`track-ended`) and the new ones start (`track`).
//! - **Data channels** keep their objects: each is rebound to a channel of the new connection
//!   created on both sides with the old SCTP stream id (`negotiated`, created before the new
//!   association exists, so nothing can arrive for a stream not yet there). Only when both
//!   sides said they can (`can_full_reconnect` in their offers and answers); otherwise (a
//!   browser that made a new RTCPeerConnection) the old channels close and the remote's new
//!   ones arrive as new channels.
//! - **Reliable messages**: while the path is down, channels hold what the application sends.
//!   Once the new association is up, each side tells the other, on a hidden channel, how many
//!   messages it received on each stream over the channel's life ([`ResumeMessage`]); each
//!   sends again, first, what the other missed of what it had handed to the old association
//!   (kept in the channel's `SentLog`), then what it held. So every reliable message arrives
//!   once and in order, including those in flight at the cut, unless more than the log keeps
//!   (SCTP's send buffer plus one message) was in flight: then the oldest are reported lost.

use super::connection::{
    build_pc, record_stream_ids, recover, start_rto_probe, Negotiation, PeerState, Shared,
};
use super::remote_tracks::SendingTracks;
use crate::channel::{ChannelState, DataChannel};
use crate::config::VideoCodec;
use crate::error::{Error, Result};
use crate::event::TransportEvent;
use crate::media::track::{LocalAudioTrack, LocalVideoTrack};
use crate::media::{AudioEncoderConfig, VideoEncoderConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use webrtc::data_channel::{DataChannel as RtcDataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::PeerConnection as RtcPeerConnection;

/// Stream id of the channel the two sides exchange their counts on after a full
/// reconnection (negotiated out of band, next to the RTT probe's 1023).
pub(crate) const RESUME_STREAM_ID: u16 = 1022;
/// Its label.
pub(crate) const RESUME_LABEL: &str = "remotemedia-resume";

fn resume_init() -> RTCDataChannelInit {
    RTCDataChannelInit {
        negotiated: Some(RESUME_STREAM_ID),
        ..Default::default()
    }
}

/// What identifies one side's peer connection in its session descriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpSession {
    /// The `o=` line's session id (constant for the life of a peer connection, JSEP 5.2.1).
    pub id: String,
    /// The first `a=fingerprint:` value (the connection's DTLS certificate).
    pub fingerprint: Option<String>,
}

impl SdpSession {
    pub fn parse(sdp: &str) -> Option<SdpSession> {
        let mut id = None;
        let mut fingerprint = None;
        for line in sdp.lines() {
            let line = line.trim_end();
            if let Some(o) = line.strip_prefix("o=") {
                if id.is_none() {
                    id = o.split_whitespace().nth(1).map(str::to_string);
                }
            } else if let Some(f) = line.strip_prefix("a=fingerprint:") {
                if fingerprint.is_none() {
                    fingerprint = Some(f.trim().to_ascii_lowercase());
                }
            }
        }
        Some(SdpSession {
            id: id?,
            fingerprint,
        })
    }
}

/// Whether a remote description of `next` belongs to another peer connection than the one of
/// `prev` (the last applied): a different DTLS fingerprint (every new connection, ours and
/// browsers', has a new certificate), or, only when a description has none, a different
/// session id. The session id alone does not decide: werift and libdatachannel draw a new
/// `o=` id for every description of one connection (against RFC 3264 §8), and taking that as
/// a new connection replaced a working one on every renegotiation of theirs. Nothing applied
/// yet, or an unreadable description, is not a new session.
pub fn is_new_session(prev: Option<&SdpSession>, next: Option<&SdpSession>) -> bool {
    match (prev, next) {
        (Some(p), Some(n)) => match (&p.fingerprint, &n.fingerprint) {
            (Some(a), Some(b)) => a != b,
            _ => p.id != n.id,
        },
        _ => false,
    }
}

/// The channel handle in a webrtc-rs data-channel statistics id (`RTCDataChannel_<handle>`).
pub fn stats_handle(stats_id: &str) -> Option<usize> {
    stats_id.strip_prefix("RTCDataChannel_")?.parse().ok()
}

/// What each side tells the other once a new connection is up: messages received so far on
/// each stream (over the channel's life), and whether it has the other's already. Sent again
/// until the other has it: a message on a negotiated stream can reach the other side before
/// its association has opened that stream, and is then dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeMessage {
    pub received: BTreeMap<u16, u64>,
    #[serde(default)]
    pub got: bool,
}

impl ResumeMessage {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    pub fn decode(data: &[u8]) -> Option<ResumeMessage> {
        serde_json::from_slice(data).ok()
    }
}

/// Tracks to add to a new connection: the settings of those the old one sent.
#[derive(Debug, Default)]
pub(super) struct CarriedTracks {
    audio: Option<AudioEncoderConfig>,
    video: Option<(VideoCodec, VideoEncoderConfig)>,
}

/// Adds the carried tracks to `pc`. `sending`: the remote offer just applied (answering side),
/// whose transceivers they take; returns whether one needs an offer of ours (the offer has no
/// m-section of its kind).
pub(super) async fn add_carried_tracks(
    s: &Shared,
    pc: &Arc<dyn RtcPeerConnection>,
    sending: Option<&SendingTracks>,
) -> Result<bool> {
    let carried = std::mem::take(&mut *s.carry.lock().unwrap());
    let lacks = |kind: &str| sending.is_some_and(|t| !t.kinds.contains(kind));
    let mut need_offer = false;
    if let Some(config) = carried.audio {
        let track = LocalAudioTrack::add_to(pc, config).await?;
        track.negotiation().drop_until_negotiated();
        *s.audio.lock().unwrap() = Some(Arc::new(track));
        need_offer |= lacks("audio");
    }
    if let Some((codec, config)) = carried.video {
        let track = LocalVideoTrack::add_to(pc, codec, config).await?;
        track.negotiation().drop_until_negotiated();
        *s.video.lock().unwrap() = Some(Arc::new(track));
        need_offer |= lacks("video");
    }
    Ok(need_offer)
}

/// Replaces the peer's connection with a new one (not yet negotiated: the offering side offers
/// it next, the answering side applies the offer that caused this). Returns the new one.
pub(super) async fn swap(s: &Arc<Shared>) -> Result<Arc<dyn RtcPeerConnection>> {
    if s.closed.load(Ordering::SeqCst) {
        return Err(Error::ShutDown(format!(
            "peer {} is closed",
            s.setup.remote_id
        )));
    }
    record_stream_ids(s).await;
    let carry_channels = s.remote_can_full.load(Ordering::SeqCst);
    let channels: Vec<DataChannel> = s.channels.lock().unwrap().clone();
    for ch in &channels {
        ch.hold(true);
    }
    let gen = s.gen.load(Ordering::SeqCst) + 1;
    let pc = build_pc(s, gen).await?;
    // From here on, events of the old connection are ignored.
    s.gen.store(gen, Ordering::SeqCst);

    let mut carried = 0;
    let mut dropped = Vec::new();
    for ch in channels {
        let id = ch.stream_id().filter(|_| carry_channels);
        let Some(id) = id.filter(|_| ch.state() != ChannelState::Closed) else {
            dropped.push(ch);
            continue;
        };
        let mut init = ch.init();
        init.negotiated = Some(id);
        match pc.create_data_channel(ch.label(), Some(init)).await {
            Ok(dc) => {
                ch.rebind(dc);
                carried += 1;
            }
            Err(e) => {
                tracing::warn!(label = ch.label(), "channel not carried over: {e}");
                dropped.push(ch);
            }
        }
    }
    if !dropped.is_empty() {
        s.channels
            .lock()
            .unwrap()
            .retain(|c| !dropped.iter().any(|d| d.key() == c.key()));
        for ch in dropped {
            ch.hold(false);
            ch.close().await;
        }
    }
    let resume = if carried > 0 {
        Some(
            pc.create_data_channel(RESUME_LABEL, Some(resume_init()))
                .await
                .map_err(|e| Error::webrtc("creating the resume channel", e))?,
        )
    } else {
        None
    };

    {
        let mut c = s.carry.lock().unwrap();
        c.audio = s
            .audio
            .lock()
            .unwrap()
            .as_ref()
            .map(|t| AudioEncoderConfig {
                bitrate: t.max_bitrate(),
                ..*t.config()
            });
        c.video = s.video.lock().unwrap().as_ref().map(|t| {
            let config = VideoEncoderConfig {
                bitrate: t.max_bitrate(),
                ..*t.config()
            };
            (t.codec(), config)
        });
    }
    if s.setup.outgoing {
        add_carried_tracks(s, &pc, None).await?;
    }

    let old = s.pc.lock().unwrap().replace(pc.clone());
    *s.neg.lock().unwrap() = Negotiation::default();
    *s.remote_session.lock().unwrap() = None;
    s.remote_video.lock().unwrap().clear();
    for t in s.remote_tracks.end_all() {
        s.setup
            .events
            .emit(TransportEvent::TrackEnded {
                peer_id: s.setup.remote_id.clone(),
                kind: t.kind,
                track_id: t.track_id,
            })
            .await;
    }
    s.swaps.fetch_add(1, Ordering::SeqCst);
    *s.setup_boost.lock().unwrap() = Some(s.runtime.boost());
    s.state.send_replace(PeerState::Connecting);
    s.setup
        .events
        .emit(TransportEvent::PeerState {
            peer_id: s.setup.remote_id.clone(),
            state: PeerState::Connecting.as_str().into(),
        })
        .await;
    if let Some(old) = old {
        if s.setup.outgoing {
            // Closed once the new connection carries data: closing it now could reach the
            // other side (if the old path still works) before our offer, and end its
            // channels there.
            s.retired.lock().unwrap().push(old);
        } else {
            let _ = old.close().await;
        }
    }
    tracing::debug!(
        peer = s.setup.remote_id,
        gen,
        carried,
        "connection replaced (full reconnection)"
    );
    tokio::spawn(resume_channels(Arc::downgrade(s), gen, resume));
    tokio::spawn(start_rto_probe(Arc::downgrade(s)));
    if !s.recovering.swap(true, Ordering::SeqCst) {
        // The remote side saw the outage first: report this one as ours too.
        tokio::spawn(recover(Arc::downgrade(s)));
    }
    Ok(pc)
}

/// The next event of `dc`, giving up (`None`) once the peer is gone, closed, or on a newer
/// connection than `gen`.
async fn next_event(
    weak: &std::sync::Weak<Shared>,
    gen: u64,
    dc: &Arc<dyn RtcDataChannel>,
) -> Option<DataChannelEvent> {
    loop {
        tokio::select! {
            ev = dc.poll() => return ev,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let live = weak.upgrade().is_some_and(|s| {
                    !s.closed.load(Ordering::SeqCst) && s.gen.load(Ordering::SeqCst) == gen
                });
                if !live {
                    return None;
                }
            }
        }
    }
}

/// After a full reconnection: once the new association is up, closes the old connection,
/// exchanges the received counts with the other side and lets the channels go on (sending
/// again first what the other side missed). See the module notes.
async fn resume_channels(
    weak: std::sync::Weak<Shared>,
    gen: u64,
    resume: Option<Arc<dyn RtcDataChannel>>,
) {
    let Some(resume) = resume else { return };
    loop {
        match next_event(&weak, gen, &resume).await {
            Some(DataChannelEvent::OnOpen) => break,
            Some(DataChannelEvent::OnClose) | None => return,
            Some(_) => {}
        }
    }
    let Some(s) = weak.upgrade() else { return };
    if s.closed.load(Ordering::SeqCst) || s.gen.load(Ordering::SeqCst) != gen {
        return;
    }
    // The old association ends here; each channel's reader finishes its messages and moves.
    s.close_retired().await;
    let channels: Vec<DataChannel> = s.channels.lock().unwrap().clone();
    let wait = Duration::from_millis(s.setup.config.connect_timeout_ms.max(5_000));
    let peer_id = s.setup.remote_id.clone();
    drop(s);
    let moved = tokio::time::Instant::now() + Duration::from_secs(1);
    while !channels.iter().all(|c| c.reader_moved()) && tokio::time::Instant::now() < moved {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut ours = ResumeMessage {
        received: channels
            .iter()
            .filter_map(|c| c.stream_id().map(|id| (id, c.received())))
            .collect(),
        got: false,
    };
    // Ours goes every 100 ms until theirs says it got it; theirs lets our channels go on.
    let deadline = tokio::time::Instant::now() + wait;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut theirs: Option<ResumeMessage> = None;
    let mut acked = false;
    let mut resumed = false;
    while !(resumed && acked) && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick() => {
                if !acked {
                    ours.got = theirs.is_some();
                    if let Err(e) = resume.send_text(&ours.encode()).await {
                        tracing::debug!(peer = peer_id, "resume message not sent: {e}");
                    }
                }
            }
            ev = next_event(&weak, gen, &resume) => match ev {
                Some(DataChannelEvent::OnMessage(m)) => {
                    if let Some(r) = ResumeMessage::decode(&m.data) {
                        acked |= r.got;
                        if theirs.is_none() {
                            theirs = Some(r);
                            // Tell them at once that we have theirs.
                            ours.got = true;
                            let _ = resume.send_text(&ours.encode()).await;
                        }
                    }
                }
                Some(DataChannelEvent::OnClose) | None => break,
                Some(_) => {}
            },
        }
        if theirs.is_some() && !resumed {
            resumed = true;
            resume_all(&peer_id, &channels, theirs.as_ref());
        }
    }
    if weak
        .upgrade()
        .is_none_or(|s| s.closed.load(Ordering::SeqCst) || s.gen.load(Ordering::SeqCst) != gen)
    {
        return;
    }
    if !resumed {
        tracing::warn!(
            peer = peer_id,
            "no resume message from the peer: held messages go, none is sent again"
        );
        resume_all(&peer_id, &channels, None);
    }
    // Drain the channel until it closes, so nothing queues behind it.
    while next_event(&weak, gen, &resume).await.is_some() {}
}

/// Lets every channel go on after a full reconnection, sending again first what the peer
/// missed (`theirs`: its counts; `None`: nothing is sent again).
fn resume_all(peer_id: &str, channels: &[DataChannel], theirs: Option<&ResumeMessage>) {
    for ch in channels {
        let received =
            theirs.and_then(|t| ch.stream_id().and_then(|id| t.received.get(&id).copied()));
        let (again, lost) = ch.resume(received);
        if again > 0 || lost > 0 {
            tracing::debug!(
                peer = peer_id,
                label = ch.label(),
                again,
                lost,
                "channel resumed on the new connection"
            );
        }
        if lost > 0 {
            tracing::warn!(
                peer = peer_id,
                label = ch.label(),
                lost,
                "messages lost in the full reconnection (more than the kept log was in flight)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER_A: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=fingerprint:sha-256 AA:BB\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";

    #[test]
    fn reads_the_session_id_and_fingerprint() {
        let s = SdpSession::parse(OFFER_A).unwrap();
        assert_eq!(s.id, "4611731400430051336");
        assert_eq!(s.fingerprint.as_deref(), Some("sha-256 aa:bb"));
        assert_eq!(SdpSession::parse("v=0\r\ns=-\r\n"), None);
    }

    #[test]
    fn a_new_session_is_a_new_certificate_not_only_a_new_session_id() {
        let a = SdpSession::parse(OFFER_A);
        // A renegotiation of the same connection: version bumps, id and fingerprint stay.
        let again = SdpSession::parse(&OFFER_A.replace(" 2 IN", " 3 IN"));
        assert!(!is_new_session(a.as_ref(), again.as_ref()));
        // werift and libdatachannel redraw the id on each renegotiation: same connection.
        let new_id = SdpSession::parse(&OFFER_A.replace("4611731400430051336", "17"));
        assert!(!is_new_session(a.as_ref(), new_id.as_ref()));
        // Without fingerprints, the id decides.
        let bare = SdpSession::parse(&OFFER_A.replace("a=fingerprint:", "a=x-fp:"));
        let bare_new = SdpSession::parse(
            &OFFER_A
                .replace("a=fingerprint:", "a=x-fp:")
                .replace("4611731400430051336", "17"),
        );
        assert!(is_new_session(bare.as_ref(), bare_new.as_ref()));
        let new_cert = SdpSession::parse(&OFFER_A.replace("AA:BB", "CC:DD"));
        assert!(is_new_session(a.as_ref(), new_cert.as_ref()));
        // The first description, or one that cannot be read, never is.
        assert!(!is_new_session(None, a.as_ref()));
        assert!(!is_new_session(a.as_ref(), None));
    }

    #[test]
    fn stats_ids_name_the_channel_handle() {
        assert_eq!(stats_handle("RTCDataChannel_12"), Some(12));
        assert_eq!(stats_handle("RTCDataChannel_"), None);
        assert_eq!(stats_handle("RTCTransport_0"), None);
    }

    #[test]
    fn resume_messages_round_trip() {
        let m = ResumeMessage {
            received: [(1u16, 5u64), (3, 0)].into_iter().collect(),
            got: true,
        };
        let text = m.encode();
        assert_eq!(text, r#"{"received":{"1":5,"3":0},"got":true}"#);
        assert_eq!(ResumeMessage::decode(text.as_bytes()), Some(m));
        assert_eq!(ResumeMessage::decode(b"x"), None);
    }
}
