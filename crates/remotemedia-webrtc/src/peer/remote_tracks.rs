//! The tracks a remote peer sends us, and noticing when it stops or starts sending one.
//!
//! webrtc-rs 0.21 never ends a remote track on its own: its track events stop only when the
//! connection closes. A peer that removes a track (`removeTrack` in a browser, or
//! [`Peer::remove_track`](super::Peer::remove_track) here) renegotiates. In the new description
//! that m-section no longer sends (`recvonly` or `inactive`, no `msid`), so each remote
//! description we apply is read for the m-sections (by `mid`) that still send. A track whose
//! section stopped sending has ended. If the section sends again later (a track added back on the
//! same transceiver), it has started again. webrtc-rs keeps delivering that section's packets on
//! the same remote track, so its reader keeps running throughout.
//!
//! Each description is also read for the RTP formats of its m-sections (`a=rtpmap`, `a=fmtp`
//! by payload type). A track's reader resolves the codec of every packet from its payload type
//! against them ([`TrackFormats`]), instead of asking webrtc-rs once: a renegotiation can leave
//! webrtc-rs's idea of the track's codec empty. Formats are only ever added (a later
//! description's win for the same payload type), so a packet that arrives while a new
//! description is being applied still resolves. A sending m-section that offers no format this
//! build decodes is listed in [`SendingTracks::undecodable`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// What a session description says its sender is sending.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SendingTracks {
    /// The `mid`s of sending m-sections, with their `a=msid` track id ("" without one).
    pub mids: HashMap<String, String>,
    /// `a=msid` track ids of sending m-sections.
    pub track_ids: HashSet<String>,
    /// `a=ssrc` values of sending m-sections.
    pub ssrcs: HashSet<u32>,
    /// Kinds ("audio", "video") with a sending m-section that names neither: tracks of those
    /// kinds cannot be told apart, so none of them is ended.
    pub unidentified_kinds: HashSet<String>,
    /// Kinds ("audio", "video") with at least one sending m-section that offers a format this
    /// build decodes.
    pub kinds: HashSet<String>,
    /// RTP formats by payload type of each audio/video m-section, by `mid`.
    pub formats: HashMap<String, HashMap<u8, RtpFormat>>,
    /// RTP formats by payload type of all m-sections of a kind (for a track without a `mid`).
    pub kind_formats: HashMap<String, HashMap<u8, RtpFormat>>,
    /// Sending audio/video m-sections (port not 0) none of whose formats this build decodes.
    pub undecodable: Vec<UndecodableSection>,
}

/// One RTP format of an m-section: its `a=rtpmap` encoding name and `a=fmtp` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtpFormat {
    pub name: String,
    pub fmtp: String,
}

impl RtpFormat {
    /// Carries no media of its own (RTX, RED, FEC).
    pub fn is_repair(&self) -> bool {
        crate::media::track::is_repair_format(&self.name)
    }

    /// The video codec it is, if this build decodes it.
    pub fn video_codec(&self) -> Option<crate::config::VideoCodec> {
        crate::media::track::decodable_video_codec(&self.name, &self.fmtp)
    }

    fn decodable(&self, kind: &str) -> bool {
        match kind {
            "audio" => crate::media::track::decodable_audio_codec(&self.name),
            _ => self.video_codec().is_some(),
        }
    }

    /// As named in reports: `VP9 (profile-id=2)`.
    pub fn describe(&self) -> String {
        if self.fmtp.is_empty() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.fmtp)
        }
    }
}

/// A sending m-section that offers nothing this build decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndecodableSection {
    pub mid: Option<String>,
    pub kind: String,
    /// Its media formats (repair formats left out), as [`RtpFormat::describe`] names them, in
    /// the order offered.
    pub offered: Vec<String>,
}

struct Section<'a> {
    kind: String,
    port: String,
    direction: &'a str,
    mid: Option<String>,
    ids: Vec<String>,
    ssrcs: Vec<u32>,
    /// Payload types in the order of the `m=` line.
    order: Vec<u8>,
    formats: HashMap<u8, RtpFormat>,
}

/// Reads the sending m-sections of `sdp`, as seen by whoever wrote it.
pub fn sending_tracks(sdp: &str) -> SendingTracks {
    let mut out = SendingTracks::default();
    // (kind, direction, track ids, ssrcs) of the m-section being read.
    let mut section: Option<Section> = None;
    let mut session_direction = "sendrecv";
    let flush = |section: Option<Section>, out: &mut SendingTracks| {
        let Some(Section {
            kind,
            port,
            direction: dir,
            mid,
            ids,
            ssrcs,
            order,
            formats,
        }) = section
        else {
            return;
        };
        if kind != "audio" && kind != "video" {
            return;
        }
        let kind_formats = out.kind_formats.entry(kind.clone()).or_default();
        for (pt, f) in &formats {
            kind_formats.insert(*pt, f.clone());
        }
        if let Some(mid) = &mid {
            out.formats.insert(mid.clone(), formats.clone());
        }
        if dir != "sendrecv" && dir != "sendonly" {
            return;
        }
        let media: Vec<RtpFormat> = order
            .iter()
            .map(|pt| {
                formats.get(pt).cloned().unwrap_or_else(|| RtpFormat {
                    name: format!("payload type {pt}"),
                    fmtp: String::new(),
                })
            })
            .filter(|f| !f.is_repair())
            .collect();
        if media.iter().any(|f| f.decodable(&kind)) {
            out.kinds.insert(kind.clone());
        } else if port != "0" {
            out.undecodable.push(UndecodableSection {
                mid: mid.clone(),
                kind: kind.clone(),
                offered: media.iter().map(|f| f.describe()).collect(),
            });
        }
        if let Some(mid) = mid {
            out.mids
                .insert(mid, ids.first().cloned().unwrap_or_default());
        }
        if ids.is_empty() && ssrcs.is_empty() {
            out.unidentified_kinds.insert(kind);
        }
        out.track_ids.extend(ids);
        out.ssrcs.extend(ssrcs);
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            flush(section.take(), &mut out);
            let mut fields = m.split(' ');
            let kind = fields.next().unwrap_or("").to_string();
            let port = fields.next().unwrap_or("").to_string();
            let order = fields.skip(1).filter_map(|pt| pt.parse().ok()).collect();
            section = Some(Section {
                kind,
                port,
                direction: session_direction,
                mid: None,
                ids: Vec::new(),
                ssrcs: Vec::new(),
                order,
                formats: HashMap::new(),
            });
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let direction = match attr {
            "sendrecv" | "sendonly" | "recvonly" | "inactive" => Some(attr),
            _ => None,
        };
        match section.as_mut() {
            None => {
                if let Some(d) = direction {
                    session_direction = d;
                }
            }
            Some(Section {
                direction: dir,
                mid,
                ids,
                ssrcs,
                formats,
                ..
            }) => {
                if let Some(map) = attr.strip_prefix("rtpmap:") {
                    // a=rtpmap:<pt> <name>/<clock rate>[/<channels>]
                    if let Some((pt, rest)) = map.split_once(' ') {
                        if let Ok(pt) = pt.parse::<u8>() {
                            let name = rest.split('/').next().unwrap_or("").trim();
                            formats.entry(pt).or_default().name = name.to_string();
                        }
                    }
                } else if let Some(fmtp) = attr.strip_prefix("fmtp:") {
                    if let Some((pt, params)) = fmtp.split_once(' ') {
                        if let Ok(pt) = pt.parse::<u8>() {
                            formats.entry(pt).or_default().fmtp = params.trim().to_string();
                        }
                    }
                } else if let Some(d) = direction {
                    *dir = d;
                } else if let Some(m) = attr.strip_prefix("mid:") {
                    *mid = Some(m.to_string());
                } else if let Some(msid) = attr.strip_prefix("msid:") {
                    if let Some(track) = msid.split_whitespace().nth(1) {
                        ids.push(track.to_string());
                    }
                } else if let Some(ssrc) = attr.strip_prefix("ssrc:") {
                    if let Some(Ok(n)) = ssrc.split_whitespace().next().map(str::parse) {
                        ssrcs.push(n);
                    }
                }
            }
        }
    }
    flush(section.take(), &mut out);
    out
}

/// The RTP formats a remote track may carry, by payload type, kept up to date with each remote
/// description; shared by [`RemoteTracks`] (writer) and the track's reader.
#[derive(Debug, Default)]
pub struct TrackFormats {
    /// From our own descriptions: what a packet's payload type means (RFC 3264: the payload
    /// types of a description are those its writer receives), so these win.
    local: Mutex<HashMap<u8, RtpFormat>>,
    /// From the remote's descriptions, for a payload type ours do not name.
    map: Mutex<HashMap<u8, RtpFormat>>,
    /// Bumped at every change, so readers know to drop what they cached.
    generation: AtomicU64,
}

impl TrackFormats {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u8, RtpFormat>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the formats of a remote description (a payload type already known takes the new
    /// format).
    pub fn merge(&self, formats: &HashMap<u8, RtpFormat>) {
        self.merge_into(&self.map, formats)
    }

    /// Adds the formats of one of our descriptions.
    pub fn merge_local(&self, formats: &HashMap<u8, RtpFormat>) {
        self.merge_into(&self.local, formats)
    }

    fn merge_into(&self, to: &Mutex<HashMap<u8, RtpFormat>>, formats: &HashMap<u8, RtpFormat>) {
        if formats.is_empty() {
            return;
        }
        let mut map = to.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for (pt, f) in formats {
            if map.get(pt) != Some(f) {
                map.insert(*pt, f.clone());
                changed = true;
            }
        }
        if changed {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn get(&self, pt: u8) -> Option<RtpFormat> {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local
            .get(&pt)
            .cloned()
            .or_else(|| self.lock().get(&pt).cloned())
    }

    pub fn is_empty(&self) -> bool {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
            && self.lock().is_empty()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// One remote track being read.
struct Entry {
    key: u64,
    /// The m-section carrying it, when webrtc-rs told us.
    mid: Option<String>,
    track_id: String,
    kind: String,
    ssrcs: Vec<u32>,
    /// Sending, as of the last remote description.
    active: bool,
    stop: CancellationToken,
    formats: Arc<TrackFormats>,
}

/// A remote track that ended or started again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackChange {
    pub key: u64,
    pub track_id: String,
    pub kind: String,
    /// `true`: it started (again); `false`: it ended.
    pub started: bool,
}

/// RTP formats by payload type, of each section by `mid` and of each kind (merged).
type FormatsBySection = (
    HashMap<String, HashMap<u8, RtpFormat>>,
    HashMap<String, HashMap<u8, RtpFormat>>,
);

/// The remote tracks of one peer.
#[derive(Default)]
pub struct RemoteTracks {
    entries: Mutex<Vec<Entry>>,
    next: std::sync::atomic::AtomicU64,
    /// The formats of every remote description learnt so far, by `mid` and by kind (merged):
    /// a track registered later starts from them.
    formats: Mutex<FormatsBySection>,
    /// The same, of our own descriptions.
    local_formats: Mutex<FormatsBySection>,
}

fn merge_into(
    to: &mut HashMap<String, HashMap<u8, RtpFormat>>,
    from: &HashMap<String, HashMap<u8, RtpFormat>>,
) {
    for (k, m) in from {
        let t = to.entry(k.clone()).or_default();
        for (pt, f) in m {
            t.insert(*pt, f.clone());
        }
    }
}

impl RemoteTracks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The formats a track of `kind` in section `mid` may carry, per the descriptions learnt.
    fn formats_of(
        known: &FormatsBySection,
        mid: Option<&String>,
        kind: &str,
    ) -> Option<HashMap<u8, RtpFormat>> {
        match mid {
            Some(mid) => known.0.get(mid).cloned(),
            None => known.1.get(kind).cloned(),
        }
    }

    /// Registers a track being read; the token stops its reader. Returns the entry's key and
    /// the formats it may carry (kept up to date by [`RemoteTracks::learn_formats`]).
    pub fn add(
        &self,
        mid: Option<String>,
        track_id: String,
        kind: String,
        ssrcs: Vec<u32>,
    ) -> (u64, CancellationToken, Arc<TrackFormats>) {
        let key = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let stop = CancellationToken::new();
        let formats = Arc::new(TrackFormats::default());
        {
            let known = self.formats.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = Self::formats_of(&known, mid.as_ref(), &kind) {
                formats.merge(&f);
            }
            drop(known);
            let known = self.local_formats.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = Self::formats_of(&known, mid.as_ref(), &kind) {
                formats.merge_local(&f);
            }
        }
        self.lock().push(Entry {
            key,
            mid,
            track_id,
            kind,
            ssrcs,
            active: true,
            stop: stop.clone(),
            formats: formats.clone(),
        });
        (key, stop, formats)
    }

    /// Adds the RTP formats of a remote description (before it is applied, so that packets in
    /// its formats resolve as soon as they can arrive) to what every track may carry.
    pub fn learn_formats(&self, sending: &SendingTracks) {
        self.learn(sending, false)
    }

    /// Adds the RTP formats of one of our descriptions (`sdp`): the payload types the remote
    /// sends us are those, whatever its own descriptions number them (webrtc-rs answers with
    /// its own payload types).
    pub fn learn_local_formats(&self, sdp: &str) {
        self.learn(&sending_tracks(sdp), true)
    }

    fn learn(&self, sending: &SendingTracks, local: bool) {
        let store = if local {
            &self.local_formats
        } else {
            &self.formats
        };
        let mut known = store.lock().unwrap_or_else(|e| e.into_inner());
        merge_into(&mut known.0, &sending.formats);
        merge_into(&mut known.1, &sending.kind_formats);
        for e in self.lock().iter() {
            if let Some(f) = Self::formats_of(&known, e.mid.as_ref(), &e.kind) {
                if local {
                    e.formats.merge_local(&f);
                } else {
                    e.formats.merge(&f);
                }
            }
        }
    }

    /// The reader of `key` finished by itself (connection closed).
    pub fn remove(&self, key: u64) {
        self.lock().retain(|e| e.key != key);
    }

    /// Brings every track up to date with a remote description: those whose section stopped
    /// sending have ended, those whose section sends again have started (with the new track
    /// id). Returns the changes, each reported once.
    pub fn update(&self, sending: &SendingTracks) -> Vec<TrackChange> {
        let mut changes = Vec::new();
        for e in self.lock().iter_mut() {
            let now_sending = match e.mid.as_ref().map(|m| sending.mids.get(m)) {
                Some(Some(track_id)) => {
                    if !e.active && !track_id.is_empty() {
                        e.track_id = track_id.clone();
                    }
                    true
                }
                Some(None) => false,
                None => {
                    sending.track_ids.contains(&e.track_id)
                        || e.ssrcs.iter().any(|s| sending.ssrcs.contains(s))
                }
            } || sending.unidentified_kinds.contains(&e.kind);
            if now_sending != e.active {
                e.active = now_sending;
                changes.push(TrackChange {
                    key: e.key,
                    track_id: e.track_id.clone(),
                    kind: e.kind.clone(),
                    started: now_sending,
                });
            }
        }
        changes
    }

    /// Stops every reader (a full reconnection replaced the connection); returns the tracks
    /// that were sending, now ended.
    pub fn end_all(&self) -> Vec<TrackChange> {
        std::mem::take(&mut *self.lock())
            .into_iter()
            .filter_map(|e| {
                e.stop.cancel();
                e.active.then_some(TrackChange {
                    key: e.key,
                    track_id: e.track_id,
                    kind: e.kind,
                    started: false,
                })
            })
            .collect()
    }

    /// Stops every reader (the peer closed).
    pub fn stop_all(&self) {
        for e in std::mem::take(&mut *self.lock()) {
            e.stop.cancel();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\na=msid:s1 mic\r\na=ssrc:11 cname:x\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=msid:s1 cam\r\na=ssrc:22 cname:x\r\na=ssrc:23 cname:x\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
    const CAM: &str = "a=sendonly\r\na=msid:s1 cam\r\na=ssrc:22 cname:x\r\na=ssrc:23 cname:x\r\n";

    #[test]
    fn sending_sections_are_read_with_their_mids_ids_and_ssrcs() {
        let s = sending_tracks(OFFER);
        assert_eq!(s.track_ids, HashSet::from(["mic".into(), "cam".into()]));
        assert_eq!(s.ssrcs, HashSet::from([11, 22, 23]));
        assert_eq!(
            s.mids,
            HashMap::from([("0".into(), "mic".into()), ("1".into(), "cam".into())])
        );
        assert!(s.unidentified_kinds.is_empty());
    }

    #[test]
    fn a_removed_track_ends_once_and_starts_again_when_its_section_sends_again() {
        let removed = OFFER.replace(CAM, "a=inactive\r\n");
        let again = OFFER.replace(CAM, "a=sendrecv\r\na=msid:s2 cam2\r\na=ssrc:99 cname:y\r\n");
        let tracks = RemoteTracks::default();
        tracks.add(Some("0".into()), "mic".into(), "audio".into(), vec![]);
        let (cam_key, cam, _) =
            tracks.add(Some("1".into()), "cam".into(), "video".into(), vec![22]);
        assert!(tracks.update(&sending_tracks(OFFER)).is_empty());
        let ended = tracks.update(&sending_tracks(&removed));
        assert_eq!(
            ended,
            [TrackChange {
                key: cam_key,
                track_id: "cam".into(),
                kind: "video".into(),
                started: false,
            }]
        );
        assert!(tracks.update(&sending_tracks(&removed)).is_empty());
        // The reader keeps running: the section may send again on the same remote track.
        assert!(!cam.is_cancelled());
        let started = tracks.update(&sending_tracks(&again));
        assert_eq!(started.len(), 1);
        assert!(started[0].started);
        assert_eq!(started[0].track_id, "cam2");
        tracks.stop_all();
        assert!(cam.is_cancelled());
        assert!(tracks.is_empty());
    }

    #[test]
    fn recvonly_and_session_level_directions_count() {
        let recvonly = OFFER.replace("a=sendrecv\r\n", "a=recvonly\r\n");
        assert!(!sending_tracks(&recvonly).track_ids.contains("mic"));
        assert!(!sending_tracks(&recvonly).mids.contains_key("0"));
        // A session-level direction applies to sections without their own.
        let sdp = "v=0\r\na=inactive\r\nm=audio 9 RTP/AVP 0\r\na=msid:s a\r\n";
        assert!(sending_tracks(sdp).track_ids.is_empty());
        let sdp = "v=0\r\nm=audio 9 RTP/AVP 0\r\na=msid:s a\r\n";
        assert!(sending_tracks(sdp).track_ids.contains("a"));
    }

    #[test]
    fn without_a_mid_a_track_is_matched_by_id_or_ssrc_and_unidentifiable_sections_keep_it() {
        let tracks = RemoteTracks::default();
        tracks.add(None, "generated-id".into(), "video".into(), vec![23]);
        assert!(tracks.update(&sending_tracks(OFFER)).is_empty());
        // Neither msid nor ssrc: cannot tell which track it is, so nothing of that kind ends.
        let bare = "v=0\r\nm=video 9 RTP/AVP 96\r\na=sendrecv\r\n";
        assert!(tracks.update(&sending_tracks(bare)).is_empty());
        let gone = tracks.update(&SendingTracks::default());
        assert_eq!(gone.len(), 1);
        assert!(!gone[0].started);
    }

    /// A browser's video section preferring AV1 (as with `setCodecPreferences`), one offering
    /// only formats not decoded here, and Opus audio.
    const BROWSER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=mid:0\r\na=sendrecv\r\na=msid:s mic\r\n\
        a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 45 46 98 99 96 97\r\na=mid:1\r\na=sendrecv\r\na=msid:s cam\r\n\
        a=rtpmap:45 AV1/90000\r\na=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45\r\n\
        a=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\na=rtpmap:99 rtx/90000\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 45 100 46\r\na=mid:2\r\na=sendonly\r\na=msid:s screen\r\n\
        a=rtpmap:45 AV1/90000\r\na=rtpmap:100 VP9/90000\r\na=fmtp:100 profile-id=2\r\n\
        a=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 45\r\na=mid:3\r\na=sendonly\r\na=rtpmap:45 AV1/90000\r\n";

    #[test]
    fn formats_are_read_by_mid_and_sections_with_nothing_decodable_are_listed() {
        let s = sending_tracks(BROWSER);
        let video = &s.formats["1"];
        assert_eq!(video[&96].name, "VP8");
        assert_eq!(video[&98].fmtp, "profile-id=0");
        assert!(video[&97].is_repair());
        assert_eq!(s.formats["0"][&111].name, "opus");
        assert_eq!(s.kind_formats["video"][&100].fmtp, "profile-id=2");
        // Section 2 offers only AV1 and VP9 profile 2 (its RTX is not counted); section 3 is
        // already rejected (port 0).
        assert_eq!(
            s.undecodable,
            [UndecodableSection {
                mid: Some("2".into()),
                kind: "video".into(),
                offered: vec!["AV1".into(), "VP9 (profile-id=2)".into()],
            }]
        );
        assert_eq!(s.kinds, HashSet::from(["audio".into(), "video".into()]));
        let only_av1 =
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 45\r\na=mid:0\r\na=rtpmap:45 AV1/90000\r\n";
        let s = sending_tracks(only_av1);
        assert!(s.kinds.is_empty(), "nothing to answer with a track");
        assert_eq!(s.undecodable.len(), 1);
    }

    #[test]
    fn a_track_knows_the_formats_of_descriptions_before_and_after_it_was_added() {
        let tracks = RemoteTracks::default();
        tracks.learn_formats(&sending_tracks(BROWSER));
        let (_, _, cam) = tracks.add(Some("1".into()), "cam".into(), "video".into(), vec![]);
        let (_, _, anon) = tracks.add(None, "x".into(), "video".into(), vec![]);
        assert_eq!(cam.get(96).unwrap().name, "VP8");
        assert!(cam.get(100).is_none(), "another section's format");
        assert_eq!(anon.get(100).unwrap().name, "VP9");
        let before = cam.generation();
        let later = BROWSER.replace(
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:96 VP8/90000\r\na=rtpmap:120 VP8/90000",
        );
        let later = later.replace(" 96 97\r\na=mid:1", " 96 97 120\r\na=mid:1");
        tracks.learn_formats(&sending_tracks(&later));
        assert_eq!(cam.get(120).unwrap().name, "VP8");
        assert!(cam.generation() > before);
        // Formats are only added: a description without them keeps what was learnt.
        tracks.learn_formats(&SendingTracks::default());
        assert_eq!(cam.get(96).unwrap().name, "VP8");
        // Our own description numbers what we receive: it wins over the remote's.
        let ours = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 45\r\na=mid:1\r\na=rtpmap:45 VP9/90000\r\n";
        tracks.learn_local_formats(ours);
        assert_eq!(cam.get(45).unwrap().name, "VP9");
        tracks.learn_formats(&sending_tracks(BROWSER));
        assert_eq!(cam.get(45).unwrap().name, "VP9");
        assert_eq!(cam.get(96).unwrap().name, "VP8");
    }
}
