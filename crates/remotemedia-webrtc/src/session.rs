//! Sessions: named groups of a transport's peers, each with an optional pipeline manifest, and
//! snapshots that recreate them.
//!
//! The registry is plain state. The transport adds the checks that need the network: a peer
//! must be connected to be added, and restoring a session reconnects its peers. A peer that
//! disconnects leaves every session it was in.

use crate::config::is_valid_peer_id;
use crate::error::{Error, Result};
use crate::pipeline::{
    AudioFrame, EventFrame, Frame, Manifest, Pipeline, PipelineOutput, Registry, VideoFrame,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use tokio::sync::watch;

/// Peers a session takes unless told otherwise, and the most it may be given.
pub const DEFAULT_SESSION_PEERS: usize = 16;
pub const MAX_SESSION_PEERS: usize = 256;
/// `kind` and `version` of a snapshot this crate writes and reads.
pub const SNAPSHOT_KIND: &str = "remotemedia-session";
pub const SNAPSHOT_VERSION: u32 = 1;

/// Options of a new session.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionOptions {
    /// 1..=256, default 16.
    pub max_peers: Option<usize>,
    /// Pipeline manifest text (YAML or JSON), validated when the session is made.
    pub manifest: Option<String>,
}

/// A session as the application sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    pub max_peers: usize,
    pub peers: Vec<String>,
    pub manifest: Option<String>,
}

/// A JSON-serializable snapshot: everything needed to recreate the session. Routing state is
/// the members and the manifest (whose Output nodes name their recipients); sync state is what
/// each member's sync stage learned (jitter targets, drift correction), applied to the member
/// when it is reconnected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionSnapshot {
    pub kind: String,
    pub version: u32,
    pub id: String,
    pub max_peers: usize,
    pub peers: Vec<String>,
    pub manifest: Option<String>,
    /// Per member (a subset of `peers`).
    #[serde(default)]
    pub sync: std::collections::BTreeMap<String, crate::sync::SyncSeed>,
}

#[derive(Clone)]
struct Session {
    max_peers: usize,
    peers: BTreeSet<String>,
    manifest: Option<String>,
    /// The manifest's pipeline: each member's audio runs through it.
    pipeline: Option<Arc<Mutex<Pipeline>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("max_peers", &self.max_peers)
            .field("peers", &self.peers)
            .finish()
    }
}

/// A session a frame goes to: its id, its members, its pipeline.
type Target = (String, Vec<String>, Arc<Mutex<Pipeline>>);

/// Runs `frame` through each target's pipeline: a copy for all but the last, which gets the
/// frame itself.
/// `still_in(session_id)` is asked with the pipeline locked: a member may have left meanwhile,
/// and its frame must not follow its `peer-left` (it would bring it back, e.g. into a mix).
fn run_each(targets: Vec<Target>, frame: Frame, still_in: impl Fn(&str) -> bool) -> Vec<Routed> {
    let mut frame = Some(frame);
    let n = targets.len();
    targets
        .into_iter()
        .enumerate()
        .filter_map(|(i, (session_id, members, p))| {
            let f = if i + 1 == n {
                frame.take()?
            } else {
                frame.clone()?
            };
            let mut pipeline = p.lock().unwrap_or_else(|e| e.into_inner());
            if !still_in(&session_id) {
                return None;
            }
            let outputs = pipeline.execute(f);
            let routes = pipeline.output_routes();
            Some(Routed {
                session_id,
                members,
                outputs,
                routes,
            })
        })
        .collect()
}

/// Runs a `peer-left` event through each target: what the nodes say about it (e.g. a VAD's
/// speech-end), without the control frame itself where it passes through to an output.
fn run_left(targets: Vec<Target>, peer_id: &str) -> Vec<Routed> {
    let mut routed = run_each(targets, peer_left(peer_id), |_| true);
    for r in &mut routed {
        r.outputs.retain(|o| {
            !matches!(o, PipelineOutput::Frame { frame: Frame::Event(e), .. } if e.name == "peer-left")
        });
    }
    routed
}

/// What a session's pipeline made of one member's frame: its outputs, and the members then.
pub struct Routed {
    pub session_id: String,
    pub members: Vec<String>,
    pub outputs: Vec<PipelineOutput>,
    /// Where each `Output` node's frames go (by node id; `sender` when absent).
    pub routes: Arc<BTreeMap<String, crate::pipeline::OutputRoute>>,
}

impl Routed {
    /// The members an output frame of `node_id`, tagged with `source`, goes to.
    pub fn recipients(&self, node_id: &str, source: Option<&str>) -> Vec<String> {
        self.routes
            .get(node_id)
            .cloned()
            .unwrap_or_default()
            .recipients(source, &self.members)
    }
}

impl Session {
    fn info(&self, id: &str) -> SessionInfo {
        SessionInfo {
            id: id.to_string(),
            max_peers: self.max_peers,
            peers: self.peers.iter().cloned().collect(),
            manifest: self.manifest.clone(),
        }
    }
}

fn check_id(id: &str) -> Result<()> {
    if is_valid_peer_id(id) {
        Ok(())
    } else {
        Err(Error::InvalidData(format!(
            "session id must be 1-64 characters of A-Z a-z 0-9 _ -, got {id:?}"
        )))
    }
}

fn check_manifest(manifest: &Option<String>) -> Result<()> {
    if let Some(text) = manifest {
        Manifest::parse(text)?.validate(&BTreeSet::new())?;
    }
    Ok(())
}

/// Tells a session's pipeline that a member left: a `peer-left` event frame, so an `AudioMixer`
/// stops mixing the member's last frame into everyone else's audio and a VAD forgets it. What
/// the pipeline makes of it is dropped.
fn check_max_peers(n: usize) -> Result<()> {
    if (1..=MAX_SESSION_PEERS).contains(&n) {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "session maxPeers must be 1..={MAX_SESSION_PEERS}, got {n}"
        )))
    }
}

/// The sessions of one transport.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<BTreeMap<String, Session>>,
    /// Counts changes (sessions removed, peers leaving, pipelines replaced): routing tasks
    /// watch it to end as soon as their member no longer routes anywhere.
    changed: watch::Sender<u64>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            map: Mutex::default(),
            changed: watch::Sender::new(0),
        }
    }
}

/// The frame a departing member leaves in each of its sessions' pipelines, so nodes that keep
/// state per peer (mixer, VAD) drop it at once.
fn peer_left(peer_id: &str) -> Frame {
    Frame::Event(EventFrame {
        name: "peer-left".into(),
        data: serde_json::json!({ "peer_id": peer_id }),
        peer_id: Some(peer_id.to_string()),
    })
}

impl Sessions {
    /// Wakes whenever a session is removed, replaces its pipeline or loses a peer.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// A weak handle on a session's pipeline (to check that it is gone once the session is).
    #[doc(hidden)]
    pub fn pipeline_handle(&self, id: &str) -> Option<std::sync::Weak<Mutex<Pipeline>>> {
        self.lock()
            .get(id)
            .and_then(|s| s.pipeline.as_ref().map(Arc::downgrade))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new, empty session. `SessionExists` if the id is taken.
    pub fn create(&self, id: &str, options: SessionOptions) -> Result<SessionInfo> {
        check_id(id)?;
        let max_peers = options.max_peers.unwrap_or(DEFAULT_SESSION_PEERS);
        check_max_peers(max_peers)?;
        check_manifest(&options.manifest)?;
        let mut map = self.lock();
        if map.contains_key(id) {
            return Err(Error::SessionExists(id.to_string()));
        }
        let pipeline = match &options.manifest {
            Some(text) => Some(Arc::new(Mutex::new(Pipeline::from_text(
                text,
                &Registry::new(),
            )?))),
            None => None,
        };
        let s = Session {
            max_peers,
            peers: BTreeSet::new(),
            manifest: options.manifest,
            pipeline,
        };
        let info = s.info(id);
        map.insert(id.to_string(), s);
        Ok(info)
    }

    pub fn get(&self, id: &str) -> Result<SessionInfo> {
        self.lock()
            .get(id)
            .map(|s| s.info(id))
            .ok_or_else(|| Error::SessionNotFound(id.to_string()))
    }

    pub fn has(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    pub fn list(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Gives a session a pipeline (replacing any it had): its members' audio runs through it
    /// from now on. The manifest is checked first; on error the session keeps its old one.
    pub fn attach_manifest(&self, id: &str, manifest: &str) -> Result<SessionInfo> {
        let pipeline = Pipeline::from_text(manifest, &Registry::new())?;
        let mut map = self.lock();
        let s = map
            .get_mut(id)
            .ok_or_else(|| Error::SessionNotFound(id.to_string()))?;
        s.manifest = Some(manifest.to_string());
        s.pipeline = Some(Arc::new(Mutex::new(pipeline)));
        let info = s.info(id);
        drop(map);
        self.bump();
        Ok(info)
    }

    /// Removes a session (its peers stay connected). `SessionNotFound` if there is none. Its
    /// pipeline is dropped here, or when a frame it is running finishes; its members' routing
    /// tasks end if they route nowhere else.
    pub fn remove(&self, id: &str) -> Result<()> {
        let removed = self.lock().remove(id);
        let session = removed.ok_or_else(|| Error::SessionNotFound(id.to_string()))?;
        drop(session);
        self.bump();
        Ok(())
    }

    /// Adds a peer; idempotent. `MaxPeers` when the session is full.
    pub fn add_peer(&self, id: &str, peer_id: &str) -> Result<SessionInfo> {
        let mut map = self.lock();
        let s = map
            .get_mut(id)
            .ok_or_else(|| Error::SessionNotFound(id.to_string()))?;
        if !s.peers.contains(peer_id) && s.peers.len() >= s.max_peers {
            return Err(Error::MaxPeers(s.max_peers));
        }
        s.peers.insert(peer_id.to_string());
        Ok(s.info(id))
    }

    /// Removes a peer from one session; whether it was in it. The session's pipeline gets a
    /// `peer-left` event for it; what that produces is returned (to be delivered).
    pub fn remove_peer(&self, id: &str, peer_id: &str) -> Result<(bool, Vec<Routed>)> {
        let mut map = self.lock();
        let s = map
            .get_mut(id)
            .ok_or_else(|| Error::SessionNotFound(id.to_string()))?;
        if !s.peers.remove(peer_id) {
            return Ok((false, Vec::new()));
        }
        let target = s
            .pipeline
            .clone()
            .map(|p| (id.to_string(), s.peers.iter().cloned().collect(), p));
        drop(map);
        self.bump();
        Ok((true, run_left(target.into_iter().collect(), peer_id)))
    }

    /// Whether the peer is in a session that has a pipeline.
    pub fn routes(&self, peer_id: &str) -> bool {
        self.lock()
            .values()
            .any(|s| s.pipeline.is_some() && s.peers.contains(peer_id))
    }

    /// The pipelines of the sessions `peer_id` is in, with each session's members.
    fn is_member(&self, id: &str, peer_id: &str) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|s| s.peers.contains(peer_id))
    }

    fn targets(&self, peer_id: &str) -> Vec<Target> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.peers.contains(peer_id))
            .filter_map(|(id, s)| {
                s.pipeline
                    .clone()
                    .map(|p| (id.clone(), s.peers.iter().cloned().collect(), p))
            })
            .collect()
    }

    /// Runs a member's audio frame through the pipeline of every session it is in.
    pub fn route_audio(&self, peer_id: &str, frame: AudioFrame) -> Vec<Routed> {
        run_each(self.targets(peer_id), Frame::Audio(frame), |id| {
            self.is_member(id, peer_id)
        })
    }

    /// Runs a member's decoded video frame (packed I420) through the pipeline of every session
    /// it is in. The frame moves into the last pipeline; only the others get a copy.
    pub fn route_video(&self, peer_id: &str, frame: VideoFrame) -> Vec<Routed> {
        run_each(self.targets(peer_id), Frame::Video(frame), |id| {
            self.is_member(id, peer_id)
        })
    }

    /// A peer left the transport: it leaves every session, and each of their pipelines gets a
    /// `peer-left` event for it; what that produces is returned (to be delivered).
    pub fn forget_peer(&self, peer_id: &str) -> Vec<Routed> {
        let mut left = Vec::new();
        for (id, s) in self.lock().iter_mut() {
            if s.peers.remove(peer_id) {
                if let Some(p) = &s.pipeline {
                    left.push((id.clone(), s.peers.iter().cloned().collect(), p.clone()));
                }
            }
        }
        self.bump();
        run_left(left, peer_id)
    }

    pub fn snapshot(&self, id: &str) -> Result<SessionSnapshot> {
        let info = self.get(id)?;
        Ok(SessionSnapshot {
            kind: SNAPSHOT_KIND.into(),
            version: SNAPSHOT_VERSION,
            id: info.id,
            max_peers: info.max_peers,
            peers: info.peers,
            manifest: info.manifest,
            sync: Default::default(),
        })
    }

    /// Checks a snapshot completely, before anything is created: `InvalidData` for a corrupt or
    /// foreign one (wrong kind or version, bad ids, too many peers, an invalid manifest).
    pub fn parse_snapshot(value: &serde_json::Value) -> Result<SessionSnapshot> {
        let snap: SessionSnapshot = serde_json::from_value(value.clone())
            .map_err(|e| Error::InvalidData(format!("session snapshot: {e}")))?;
        let bad = |why: String| Error::InvalidData(format!("session snapshot: {why}"));
        if snap.kind != SNAPSHOT_KIND || snap.version != SNAPSHOT_VERSION {
            return Err(bad(format!(
                "kind {:?} version {} is not {SNAPSHOT_KIND:?} version {SNAPSHOT_VERSION}",
                snap.kind, snap.version
            )));
        }
        check_id(&snap.id).map_err(|e| bad(e.to_string()))?;
        check_max_peers(snap.max_peers).map_err(|e| bad(e.to_string()))?;
        if snap.peers.len() > snap.max_peers {
            return Err(bad(format!(
                "{} peers for maxPeers {}",
                snap.peers.len(),
                snap.max_peers
            )));
        }
        if let Some(p) = snap.peers.iter().find(|p| !is_valid_peer_id(p)) {
            return Err(bad(format!("invalid peer id {p:?}")));
        }
        check_manifest(&snap.manifest).map_err(|e| bad(e.to_string()))?;
        for (peer, seed) in &snap.sync {
            if !snap.peers.contains(peer) {
                return Err(bad(format!("sync state for {peer:?}, who is not a member")));
            }
            seed.validate().map_err(|e| bad(format!("{peer}: {e}")))?;
        }
        Ok(snap)
    }

    /// Recreates a checked snapshot's session with no peers (the transport reconnects them and
    /// adds them back). `SessionExists` if the id is taken.
    pub fn restore_empty(&self, snap: &SessionSnapshot) -> Result<SessionInfo> {
        self.create(
            &snap.id,
            SessionOptions {
                max_peers: Some(snap.max_peers),
                manifest: snap.manifest.clone(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "nodes:\n  - { id: in, node_type: Input }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: out }\n";

    #[test]
    fn create_get_list_remove_with_codes() {
        let s = Sessions::default();
        let info = s.create("s1", SessionOptions::default()).unwrap();
        assert_eq!(info.max_peers, DEFAULT_SESSION_PEERS);
        assert!(matches!(
            s.create("s1", SessionOptions::default()),
            Err(Error::SessionExists(_))
        ));
        assert!(matches!(
            s.create("bad id!", SessionOptions::default()),
            Err(Error::InvalidData(_))
        ));
        let zero = SessionOptions {
            max_peers: Some(0),
            ..Default::default()
        };
        assert!(matches!(s.create("s2", zero), Err(Error::InvalidConfig(_))));
        let broken = SessionOptions {
            manifest: Some("nodes: []\nconnections: []\n".into()),
            ..Default::default()
        };
        assert!(matches!(
            s.create("s2", broken),
            Err(Error::InvalidManifest(_))
        ));
        assert!(!s.has("s2"), "a refused session is not half made");
        assert!(s.has("s1"));
        assert_eq!(s.list(), ["s1"]);
        // A pipeline attached later; a bad manifest leaves the session as it was.
        assert!(matches!(
            s.attach_manifest("s1", "nodes: ["),
            Err(Error::InvalidManifest(_))
        ));
        assert_eq!(s.get("s1").unwrap().manifest, None);
        assert!(!s.routes("p1"));
        s.attach_manifest("s1", MANIFEST).unwrap();
        s.add_peer("s1", "p1").unwrap();
        assert!(s.routes("p1"));
        assert!(matches!(
            s.attach_manifest("nope", MANIFEST),
            Err(Error::SessionNotFound(_))
        ));
        s.remove("s1").unwrap();
        assert!(matches!(s.remove("s1"), Err(Error::SessionNotFound(_))));
        assert!(matches!(s.get("s1"), Err(Error::SessionNotFound(_))));
    }

    #[test]
    fn peers_join_up_to_the_limit_and_leave_every_session_when_they_go() {
        let s = Sessions::default();
        let two = SessionOptions {
            max_peers: Some(2),
            ..Default::default()
        };
        s.create("a", two).unwrap();
        s.create("b", SessionOptions::default()).unwrap();
        s.add_peer("a", "p1").unwrap();
        s.add_peer("a", "p1").unwrap(); // idempotent
        s.add_peer("a", "p2").unwrap();
        assert!(matches!(s.add_peer("a", "p3"), Err(Error::MaxPeers(2))));
        s.add_peer("b", "p1").unwrap();
        assert!(matches!(
            s.add_peer("zz", "p1"),
            Err(Error::SessionNotFound(_))
        ));
        s.forget_peer("p1");
        assert_eq!(s.get("a").unwrap().peers, ["p2"]);
        assert!(s.get("b").unwrap().peers.is_empty());
        assert!(s.remove_peer("a", "p2").unwrap().0);
        assert!(!s.remove_peer("a", "p2").unwrap().0);
    }

    const SCALE: &str = "nodes:\n  - { id: in, node_type: Input }\n  - { id: scale, node_type: VideoScale, params: { width: 320, height: 240 } }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: scale }\n  - { from: scale, to: out }\n";

    fn with_pipeline(s: &Sessions, id: &str, manifest: &str) {
        let opts = SessionOptions {
            manifest: Some(manifest.into()),
            ..Default::default()
        };
        s.create(id, opts).unwrap();
    }

    #[test]
    fn video_runs_through_the_pipeline_of_each_session_the_member_is_in() {
        let s = Sessions::default();
        with_pipeline(&s, "scaled", SCALE);
        with_pipeline(&s, "loop", MANIFEST);
        s.create("plain", SessionOptions::default()).unwrap();
        for id in ["scaled", "loop", "plain"] {
            s.add_peer(id, "p1").unwrap();
        }
        s.add_peer("scaled", "p2").unwrap();
        let frame = VideoFrame {
            data: (0..640 * 480 * 3 / 2).map(|i| (i % 251) as u8).collect(),
            width: 640,
            height: 480,
            peer_id: Some("p1".into()),
            timestamp_us: 7,
        };
        let routed = s.route_video("p1", frame.clone());
        let by_session: BTreeMap<_, _> =
            routed.iter().map(|r| (r.session_id.as_str(), r)).collect();
        assert_eq!(
            by_session.keys().copied().collect::<Vec<_>>(),
            ["loop", "scaled"]
        );
        let [PipelineOutput::Frame {
            frame: Frame::Video(small),
            ..
        }] = by_session["scaled"].outputs.as_slice()
        else {
            panic!("{:?}", by_session["scaled"].outputs.len());
        };
        assert_eq!(
            (small.width, small.height, small.data.len()),
            (320, 240, 320 * 240 * 3 / 2)
        );
        assert_eq!(
            (small.peer_id.as_deref(), small.timestamp_us),
            (Some("p1"), 7)
        );
        assert_eq!(by_session["scaled"].members, ["p1", "p2"]);
        assert!(matches!(
            by_session["loop"].outputs.as_slice(),
            [PipelineOutput::Frame { frame: Frame::Video(f), .. }] if *f == frame
        ));
        assert!(s.route_video("p3", frame).is_empty(), "not a member");
    }

    #[test]
    fn a_removed_session_drops_its_pipeline_and_tells_its_watchers() {
        let s = Sessions::default();
        with_pipeline(&s, "a", MANIFEST);
        s.add_peer("a", "p1").unwrap();
        let mut changed = s.subscribe();
        let weak = s.pipeline_handle("a").unwrap();
        assert!(weak.upgrade().is_some());
        s.attach_manifest("a", MANIFEST).unwrap();
        assert!(weak.upgrade().is_none(), "a replaced pipeline is dropped");
        assert!(changed.has_changed().unwrap());
        changed.mark_unchanged();
        let weak = s.pipeline_handle("a").unwrap();
        s.remove("a").unwrap();
        assert!(
            weak.upgrade().is_none(),
            "the session's pipeline outlived it"
        );
        assert!(changed.has_changed().unwrap());
        assert!(!s.routes("p1"));
        assert!(s
            .route_audio(
                "p1",
                AudioFrame {
                    samples: vec![0.0; 960],
                    sample_rate: 48_000,
                    channels: 1,
                    peer_id: Some("p1".into()),
                    timestamp_us: 0,
                }
            )
            .is_empty());
    }

    #[test]
    fn a_leaving_member_is_forgotten_by_the_pipeline() {
        const VAD: &str = "nodes:\n  - { id: in, node_type: Input }\n  - { id: vad, node_type: VoiceActivityDetection, params: { threshold_db: -30, min_speech_ms: 0 } }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: vad }\n  - { from: vad, to: out }\n";
        let tone: Vec<f32> = (0..960)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48_000.0).sin())
            .collect();
        let speak = |s: &Sessions, p: &str| {
            (0..10)
                .flat_map(|_| {
                    s.route_audio(
                        p,
                        AudioFrame {
                            samples: tone.clone(),
                            sample_rate: 48_000,
                            channels: 1,
                            peer_id: Some(p.into()),
                            timestamp_us: 0,
                        },
                    )
                })
                .flat_map(|r| r.outputs)
                .filter_map(|o| match o {
                    PipelineOutput::Event { event, .. } => Some(event.name),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let ended = |routed: Vec<Routed>| {
            routed
                .into_iter()
                .flat_map(|r| r.outputs)
                .any(|o| matches!(o, PipelineOutput::Event { event, .. } if event.name == crate::pipeline::SPEECH_END))
        };
        let s = Sessions::default();
        with_pipeline(&s, "v", VAD);
        s.add_peer("v", "p1").unwrap();
        s.add_peer("v", "p2").unwrap();
        assert_eq!(speak(&s, "p1"), [crate::pipeline::SPEECH_START]);
        assert_eq!(speak(&s, "p2"), [crate::pipeline::SPEECH_START]);
        // Removed from the session: the VAD ends its speech (its state for it is gone).
        let (was_in, routed) = s.remove_peer("v", "p1").unwrap();
        assert!(was_in && ended(routed));
        // Disconnected: the same.
        let changed = s.subscribe();
        assert!(ended(s.forget_peer("p2")));
        assert!(changed.has_changed().unwrap());
        assert!(s.get("v").unwrap().peers.is_empty());
        assert!(!ended(s.forget_peer("p2")), "only once");
    }

    #[test]
    fn a_member_who_leaves_or_disconnects_is_no_longer_in_the_others_mix() {
        const MIXER: &str = "nodes:\n  - { id: in, node_type: Input }\n  - { id: mix, node_type: AudioMixer }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: mix }\n  - { from: mix, to: out }\n";
        let s = Sessions::default();
        let opts = SessionOptions {
            manifest: Some(MIXER.into()),
            ..Default::default()
        };
        s.create("room", opts).unwrap();
        let frame = |peer: &str, v: f32| AudioFrame {
            samples: vec![v; 4],
            sample_rate: 48_000,
            channels: 1,
            peer_id: Some(peer.into()),
            timestamp_us: 0,
        };
        // What `peer` hears back when it sends a frame.
        let mix_for = |peer: &str| -> f32 {
            let routed = s.route_audio(peer, frame(peer, 0.0));
            match routed[0].outputs.as_slice() {
                [PipelineOutput::Frame {
                    frame: Frame::Audio(a),
                    ..
                }] => a.samples[0],
                other => panic!("{other:?}"),
            }
        };
        for (p, v) in [("a", 0.0), ("b", 0.1), ("c", 0.2), ("d", 0.4)] {
            s.add_peer("room", p).unwrap();
            s.route_audio(p, frame(p, v));
        }
        assert!((mix_for("a") - 0.7).abs() < 1e-6);
        assert!(s.remove_peer("room", "b").unwrap().0);
        s.forget_peer("c");
        assert!((mix_for("a") - 0.4).abs() < 1e-6, "b and c are gone");
        // A frame from a peer that is no longer a member goes nowhere (it would bring it back).
        assert!(s.route_audio("b", frame("b", 0.1)).is_empty());
        assert!((mix_for("a") - 0.4).abs() < 1e-6);
    }

    #[test]
    fn a_snapshot_round_trips_and_corrupt_or_foreign_ones_are_refused() {
        let s = Sessions::default();
        let opts = SessionOptions {
            max_peers: Some(4),
            manifest: Some(MANIFEST.into()),
        };
        s.create("room", opts).unwrap();
        s.add_peer("room", "p1").unwrap();
        let snap = serde_json::to_value(s.snapshot("room").unwrap()).unwrap();
        let parsed = Sessions::parse_snapshot(&snap).unwrap();
        assert_eq!(parsed.peers, ["p1"]);
        // Sync state of a member is kept; a snapshot without it (older writers) still reads.
        let mut with_sync = snap.clone();
        with_sync["sync"] =
            serde_json::json!({ "p1": { "audioTargetMs": 32.5, "correctionFactor": 1.0001 } });
        let p = Sessions::parse_snapshot(&with_sync).unwrap();
        assert_eq!(p.sync["p1"].audio_target_ms, Some(32.5));
        assert_eq!(p.sync["p1"].correction_factor, Some(1.0001));
        let mut without = snap.clone();
        without.as_object_mut().unwrap().remove("sync");
        assert!(Sessions::parse_snapshot(&without).unwrap().sync.is_empty());
        let other = Sessions::default();
        let info = other.restore_empty(&parsed).unwrap();
        assert_eq!(
            (info.max_peers, info.manifest.as_deref()),
            (4, Some(MANIFEST))
        );

        let mut corrupt = Vec::new();
        for (field, value) in [
            ("kind", serde_json::json!("something-else")),
            ("version", serde_json::json!(99)),
            ("id", serde_json::json!("no spaces allowed")),
            ("maxPeers", serde_json::json!(0)),
            ("peers", serde_json::json!(["ok", "not ok"])),
            ("peers", serde_json::json!(["a", "b", "c", "d", "e"])),
            ("manifest", serde_json::json!("nodes: [")),
            ("extra", serde_json::json!(1)),
            ("sync", serde_json::json!({ "stranger": {} })),
            ("sync", serde_json::json!({ "p1": { "audioTargetMs": -5 } })),
            (
                "sync",
                serde_json::json!({ "p1": { "correctionFactor": 2.0 } }),
            ),
            ("sync", serde_json::json!({ "p1": { "loudness": 1 } })),
            ("sync", serde_json::json!([1, 2])),
        ] {
            let mut v = snap.clone();
            v[field] = value;
            corrupt.push(v);
        }
        corrupt.push(serde_json::json!("not an object"));
        for v in corrupt {
            assert!(
                matches!(Sessions::parse_snapshot(&v), Err(Error::InvalidData(_))),
                "{v}"
            );
        }
    }
}
