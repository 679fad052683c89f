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

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
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
    /// Kinds ("audio", "video") with at least one sending m-section.
    pub kinds: HashSet<String>,
}

struct Section<'a> {
    kind: String,
    direction: &'a str,
    mid: Option<String>,
    ids: Vec<String>,
    ssrcs: Vec<u32>,
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
            direction: dir,
            mid,
            ids,
            ssrcs,
        }) = section
        else {
            return;
        };
        if kind != "audio" && kind != "video" {
            return;
        }
        if dir != "sendrecv" && dir != "sendonly" {
            return;
        }
        out.kinds.insert(kind.clone());
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
            let kind = m.split(' ').next().unwrap_or("").to_string();
            section = Some(Section {
                kind,
                direction: session_direction,
                mid: None,
                ids: Vec::new(),
                ssrcs: Vec::new(),
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
                ..
            }) => {
                if let Some(d) = direction {
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

/// The remote tracks of one peer.
#[derive(Default)]
pub struct RemoteTracks {
    entries: Mutex<Vec<Entry>>,
    next: std::sync::atomic::AtomicU64,
}

impl RemoteTracks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a track being read; the token stops its reader. Returns the entry's key.
    pub fn add(
        &self,
        mid: Option<String>,
        track_id: String,
        kind: String,
        ssrcs: Vec<u32>,
    ) -> (u64, CancellationToken) {
        let key = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let stop = CancellationToken::new();
        self.lock().push(Entry {
            key,
            mid,
            track_id,
            kind,
            ssrcs,
            active: true,
            stop: stop.clone(),
        });
        (key, stop)
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
        let (cam_key, cam) = tracks.add(Some("1".into()), "cam".into(), "video".into(), vec![22]);
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
}
