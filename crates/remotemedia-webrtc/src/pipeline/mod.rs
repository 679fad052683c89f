//! Media pipelines: a manifest describes a graph of nodes; frames go in at `Input` nodes and
//! come out of `Output` nodes, with events from any node on the side.
//!
//! - [`manifest`]: [`Manifest`] (YAML or JSON), its validation and execution order.
//! - [`nodes`]: [`Frame`], the [`Node`] trait, the param table of the built-in types and the
//!   simple built-ins (`Input`, `Output`, `Passthrough`, `Gain`).
//! - [`resample`], [`vad`], [`mixer`], [`video_scale`]: the `Resample`,
//!   `VoiceActivityDetection`, `AudioMixer` and `VideoScale` nodes.
//! - [`route`]: where a session sends what an `Output` node emits (its `route` param).
//! - [`runner`]: the node [`Registry`] (custom types, e.g. JS nodes) and the [`Pipeline`].
//!
//! All of it is plain synchronous Rust; sessions and transports feed it frames.

pub mod manifest;
pub mod mixer;
pub mod nodes;
pub mod resample;
pub mod route;
pub mod runner;
pub mod vad;
pub mod video_scale;

pub use manifest::{Edge, Manifest, ManifestLimits, NodeSpec};
pub use mixer::AudioMixer;
pub use nodes::{
    builtin_type, AudioFrame, EventFrame, Frame, Gain, Node, NodeEvent, NodeOutput, NodeTypeSpec,
    ParamCheck, ParamKind, ParamSpec, Passthrough, VideoFrame, BUILTIN_TYPES,
};
pub use resample::{Resample, Resampler};
pub use route::OutputRoute;
pub use runner::{
    build_builtin, check_type_name, ExternalCall, NodeFactory, Pipeline, PipelineOutput, Registry,
    Run, Step,
};
pub use vad::{VadConfig, VoiceActivityDetection, SPEECH_END, SPEECH_START};
pub use video_scale::{scale_i420, VideoScale};

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn example(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name)
    }

    fn tone_frame(peer: &str, freq: f64) -> Frame {
        Frame::Audio(AudioFrame {
            samples: (0..960)
                .map(|i| {
                    (0.2 * (2.0 * std::f64::consts::PI * freq * i as f64 / 48_000.0).sin()) as f32
                })
                .collect(),
            sample_rate: 48_000,
            channels: 1,
            peer_id: Some(peer.into()),
            timestamp_us: 0,
        })
    }

    #[test]
    fn example_manifests_parse_validate_and_have_the_documented_nodes() {
        let reg = Registry::new();
        for (file, middle) in [
            ("loopback.yaml", "Passthrough"),
            ("vad.yaml", "VoiceActivityDetection"),
            ("conference.yaml", "AudioMixer"),
        ] {
            let m = Manifest::from_file(example(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            m.validate(&reg.custom_types())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let types: Vec<_> = m
                .execution_order()
                .unwrap()
                .into_iter()
                .map(|i| m.nodes[i].node_type.as_str())
                .collect();
            assert_eq!(types, ["Input", middle, "Output"], "{file}");
        }
    }

    #[test]
    fn loopback_example_returns_the_frame_and_conference_excludes_the_listener() {
        let reg = Registry::new();
        let mut loopback =
            Pipeline::new(Manifest::from_file(example("loopback.yaml")).unwrap(), &reg).unwrap();
        let f = tone_frame("a", 440.0);
        let out = loopback.execute(f.clone());
        assert!(matches!(out.as_slice(), [PipelineOutput::Frame { frame, .. }] if *frame == f));

        let mut conf = Pipeline::new(
            Manifest::from_file(example("conference.yaml")).unwrap(),
            &reg,
        )
        .unwrap();
        let peers = [("a", 300.0), ("b", 500.0), ("c", 700.0)];
        for (p, freq) in peers {
            conf.execute(tone_frame(p, freq));
        }
        // Another round: each peer's answer is the others' tones, not its own.
        for (p, freq) in peers {
            let out = conf.execute(tone_frame(p, freq));
            let [PipelineOutput::Frame {
                frame: Frame::Audio(mix),
                ..
            }] = out.as_slice()
            else {
                panic!("{out:?}");
            };
            assert_eq!(mix.peer_id.as_deref(), Some(p));
            let Frame::Audio(own) = tone_frame(p, freq) else {
                unreachable!()
            };
            let dot: f32 = mix
                .samples
                .iter()
                .zip(&own.samples)
                .map(|(x, y)| x * y)
                .sum();
            let energy: f32 = own.samples.iter().map(|y| y * y).sum();
            assert!(dot.abs() < energy * 1e-3, "{p} hears itself");
            for (q, qf) in peers.iter().filter(|q| q.0 != p) {
                let Frame::Audio(other) = tone_frame(q, *qf) else {
                    unreachable!()
                };
                let dot: f32 = mix
                    .samples
                    .iter()
                    .zip(&other.samples)
                    .map(|(x, y)| x * y)
                    .sum();
                assert!((dot / energy - 1.0).abs() < 1e-3, "{p} does not hear {q}");
            }
        }
    }
}
