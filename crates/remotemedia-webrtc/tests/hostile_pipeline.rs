//! Hostile manifests and frames: work bombs are refused before they cost memory or CPU.

use remotemedia_webrtc::pipeline::manifest::{MAX_MANIFEST_BYTES, MAX_NODES};
use remotemedia_webrtc::pipeline::resample::MAX_OUTPUT_SAMPLES;
use remotemedia_webrtc::pipeline::{
    AudioFrame, Frame, Manifest, Node, Pipeline, Registry, Resample,
};
use remotemedia_webrtc::session::{SessionOptions, Sessions};
use std::collections::BTreeSet;

/// `layers` layers of two `Passthrough` nodes, each fully wired to the next layer: 2^layers
/// paths from the Input to the Output.
fn bomb(layers: usize) -> String {
    let mut nodes = vec!["{\"id\":\"in\",\"node_type\":\"Input\"}".to_string()];
    let mut conns = Vec::new();
    let mut prev = vec!["in".to_string()];
    for l in 0..layers {
        let cur: Vec<String> = (0..2).map(|k| format!("p{l}_{k}")).collect();
        for c in &cur {
            nodes.push(format!("{{\"id\":\"{c}\",\"node_type\":\"Passthrough\"}}"));
            for p in &prev {
                conns.push(format!("{{\"from\":\"{p}\",\"to\":\"{c}\"}}"));
            }
        }
        prev = cur;
    }
    nodes.push("{\"id\":\"out\",\"node_type\":\"Output\"}".into());
    for p in &prev {
        conns.push(format!("{{\"from\":\"{p}\",\"to\":\"out\"}}"));
    }
    format!(
        "{{\"nodes\":[{}],\"connections\":[{}]}}",
        nodes.join(","),
        conns.join(",")
    )
}

fn invalid_manifest_message(r: remotemedia_webrtc::Result<()>) -> String {
    match r {
        Err(remotemedia_webrtc::Error::InvalidManifest(m)) => m,
        other => panic!("expected InvalidManifest, got {other:?}"),
    }
}

#[test]
fn cross_wired_passthrough_bomb_is_refused_at_validation_and_by_sessions() {
    let text = bomb(24);
    assert!(text.len() < 8 * 1024, "a small manifest: {}", text.len());
    let m = Manifest::parse(&text).unwrap();
    let e = invalid_manifest_message(m.validate(&BTreeSet::new()));
    assert!(e.contains("limit of 1024"), "{e}");
    let e = Pipeline::from_text(&text, &Registry::new()).unwrap_err();
    assert_eq!(e.code(), "ERR_INVALID_MANIFEST");
    let sessions = Sessions::default();
    let e = sessions
        .create(
            "bomb",
            SessionOptions {
                manifest: Some(text),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), "ERR_INVALID_MANIFEST", "{e}");
    // The count saturates instead of overflowing for deeper bombs.
    let deep = Manifest::parse(&bomb(70)).unwrap();
    let order = deep.execution_order().unwrap();
    assert_eq!(deep.path_count(&order), u64::MAX);
}

#[test]
fn a_fan_out_within_the_path_limit_still_runs_every_copy() {
    // 2^4 = 16 paths to the Output: well within the limit, every copy arrives.
    let text = bomb(4);
    let mut p = Pipeline::from_text(&text, &Registry::new()).unwrap();
    let out = p.execute(Frame::Audio(AudioFrame {
        samples: vec![0.0; 480],
        sample_rate: 48_000,
        channels: 1,
        peer_id: Some("a".into()),
        timestamp_us: 0,
    }));
    assert_eq!(out.len(), 16);
}

#[test]
fn too_many_nodes_are_refused() {
    let mut nodes = vec!["{\"id\":\"in\",\"node_type\":\"Input\"}".to_string()];
    for i in 0..MAX_NODES {
        nodes.push(format!("{{\"id\":\"n{i}\",\"node_type\":\"Passthrough\"}}"));
    }
    nodes.push("{\"id\":\"out\",\"node_type\":\"Output\"}".into());
    let text = format!("{{\"nodes\":[{}]}}", nodes.join(","));
    let e = invalid_manifest_message(Manifest::parse(&text).unwrap().validate(&BTreeSet::new()));
    assert!(e.contains("nodes, more than the limit"), "{e}");
}

#[test]
fn resample_from_1khz_to_192khz_is_refused_without_allocating() {
    // A 1 kHz input is outside the sane range: an error output, no allocation.
    let mut r = Resample::new(192_000).unwrap();
    let e = r
        .process(Frame::Audio(AudioFrame {
            samples: vec![0.0; 1_000],
            sample_rate: 1_000,
            channels: 1,
            peer_id: None,
            timestamp_us: 0,
        }))
        .unwrap_err();
    assert_eq!(e.code(), "ERR_INVALID_DATA", "{e}");
    // A legal ratio with a frame whose output would exceed the per-frame bound is refused too.
    let big = MAX_OUTPUT_SAMPLES / 24 + 1_000;
    let e = r
        .process(Frame::Audio(AudioFrame {
            samples: vec![0.0; big],
            sample_rate: 8_000,
            channels: 1,
            peer_id: None,
            timestamp_us: 0,
        }))
        .unwrap_err();
    assert!(e.to_string().contains("per frame"), "{e}");
    // And a normal frame still resamples.
    let out = r
        .process(Frame::Audio(AudioFrame {
            samples: vec![0.0; 960],
            sample_rate: 48_000,
            channels: 1,
            peer_id: None,
            timestamp_us: 0,
        }))
        .unwrap();
    assert!(out.len() <= 1);
}

#[cfg(unix)]
#[test]
fn manifest_files_must_be_small_regular_files() {
    // /dev/zero reads without end: refused at once.
    let e = Manifest::from_file("/dev/zero").unwrap_err();
    assert_eq!(e.code(), "ERR_INVALID_MANIFEST");
    assert!(e.to_string().contains("not a regular file"), "{e}");

    let dir = std::env::temp_dir().join(format!("rm-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A FIFO with no writer: opening it blocking would hang; refused without blocking.
    let fifo = dir.join("pipe.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let f = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(Manifest::from_file(&f).map(|_| ()));
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("reading a FIFO manifest must not block");
    let e = r.unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");

    // Bigger than the cap: refused.
    let big = dir.join("big.yaml");
    std::fs::write(&big, vec![b'#'; MAX_MANIFEST_BYTES as usize + 1]).unwrap();
    let e = Manifest::from_file(&big).unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A node that turns each frame into 5000 copies.
struct Spray;
impl Node for Spray {
    fn process(
        &mut self,
        input: Frame,
    ) -> remotemedia_webrtc::Result<Vec<remotemedia_webrtc::pipeline::NodeOutput>> {
        Ok((0..5_000)
            .map(|_| remotemedia_webrtc::pipeline::NodeOutput::Frame(input.clone()))
            .collect())
    }
}

#[test]
fn a_node_that_multiplies_frames_is_cut_off_at_the_per_frame_budget() {
    use remotemedia_webrtc::pipeline::runner::MAX_FRAMES_PER_RUN;
    use remotemedia_webrtc::pipeline::PipelineOutput;
    let mut reg = Registry::new();
    reg.register("Spray", |_| Ok(Box::new(Spray) as Box<dyn Node>))
        .unwrap();
    let text = "nodes: [{id: in, node_type: Input}, {id: s, node_type: Spray}, {id: out, node_type: Output}]\nconnections: [{from: in, to: s}, {from: s, to: out}]";
    let mut p = Pipeline::from_text(text, &reg).unwrap();
    let out = p.execute(Frame::Audio(AudioFrame {
        samples: vec![0.0; 4],
        sample_rate: 48_000,
        channels: 1,
        peer_id: None,
        timestamp_us: 0,
    }));
    let frames = out
        .iter()
        .filter(|o| matches!(o, PipelineOutput::Frame { .. }))
        .count();
    let errors: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            PipelineOutput::Error { node_id, error } => Some((node_id.as_str(), error.code())),
            _ => None,
        })
        .collect();
    assert!(frames < MAX_FRAMES_PER_RUN, "{frames}");
    assert_eq!(errors, [("s", "ERR_INVALID_DATA")]);
}
