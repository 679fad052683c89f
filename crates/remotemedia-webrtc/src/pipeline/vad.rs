//! The `VoiceActivityDetection` node: an energy detector with a minimum speech duration and a
//! hangover, one state per peer.
//!
//! Audio is measured in 10 ms blocks (RMS over all channels, in dBFS). Speech starts once blocks at
//! or above `threshold_db` have lasted `min_speech_ms`; it ends once blocks below the threshold
//! have lasted `hangover_ms`. The node forwards every frame unchanged and reports
//! `speech-start` / `speech-end` events whose `timestamp_us` is when the speech (or the silence
//! after it) began, not when the decision was made. An event frame named `peer-left` drops that
//! peer's state (ending its speech if it was speaking).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::nodes::{param_f64, Frame, Node, NodeEvent, NodeOutput};
use crate::error::{Error, Result};

pub const SPEECH_START: &str = "speech-start";
pub const SPEECH_END: &str = "speech-end";

/// VAD settings (defaults: −40 dBFS, 100 ms, 300 ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    pub threshold_db: f64,
    pub min_speech_ms: u32,
    pub hangover_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold_db: -40.0,
            min_speech_ms: 100,
            hangover_ms: 300,
        }
    }
}

impl VadConfig {
    /// From validated params; absent ones take the defaults.
    pub fn from_params(params: &Map<String, Value>) -> Self {
        let d = VadConfig::default();
        VadConfig {
            threshold_db: param_f64(params, "threshold_db", d.threshold_db),
            min_speech_ms: param_f64(params, "min_speech_ms", f64::from(d.min_speech_ms)) as u32,
            hangover_ms: param_f64(params, "hangover_ms", f64::from(d.hangover_ms)) as u32,
        }
    }
}

#[derive(Debug, Default)]
struct PeerState {
    sample_rate: u32,
    channels: u16,
    speaking: bool,
    /// Loud time while silent, or quiet time while speaking (µs).
    run_us: i64,
    /// When the current run began.
    run_start_us: i64,
    /// When the current speech began.
    speech_start_us: i64,
    block_sum: f64,
    block_len: usize,
    block_start_us: i64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct VoiceActivityDetection {
    config: VadConfig,
    peers: HashMap<Option<String>, PeerState>,
}

impl VoiceActivityDetection {
    pub fn new(config: VadConfig) -> Self {
        VoiceActivityDetection {
            config,
            peers: HashMap::new(),
        }
    }

    pub fn config(&self) -> VadConfig {
        self.config
    }

    /// Whether `peer` is currently in speech.
    pub fn is_speaking(&self, peer: Option<&str>) -> bool {
        self.peers
            .get(&peer.map(str::to_owned))
            .is_some_and(|s| s.speaking)
    }

    fn event(name: &str, peer: &Option<String>, data: Value) -> NodeOutput {
        let mut data = data;
        data["peer_id"] = json!(peer);
        NodeOutput::Event(NodeEvent {
            name: name.to_owned(),
            data,
        })
    }

    /// Decides on one finished 10 ms block.
    fn block(
        config: &VadConfig,
        st: &mut PeerState,
        peer: &Option<String>,
        level_db: f64,
        block_us: i64,
        out: &mut Vec<NodeOutput>,
    ) {
        let loud = level_db >= config.threshold_db;
        if loud == st.speaking {
            st.run_us = 0;
            return;
        }
        if st.run_us == 0 {
            st.run_start_us = st.block_start_us;
        }
        st.run_us += block_us;
        if !st.speaking && st.run_us >= i64::from(config.min_speech_ms) * 1000 {
            st.speaking = true;
            st.run_us = 0;
            st.speech_start_us = st.run_start_us;
            out.push(Self::event(
                SPEECH_START,
                peer,
                json!({ "timestamp_us": st.run_start_us, "level_db": level_db }),
            ));
        } else if st.speaking && st.run_us >= i64::from(config.hangover_ms).max(1) * 1000 {
            st.speaking = false;
            st.run_us = 0;
            out.push(Self::event(
                SPEECH_END,
                peer,
                json!({
                    "timestamp_us": st.run_start_us,
                    "duration_ms": (st.run_start_us - st.speech_start_us) / 1000,
                }),
            ));
        }
    }
}

impl Node for VoiceActivityDetection {
    fn process(&mut self, input: Frame) -> Result<Vec<NodeOutput>> {
        let mut out = Vec::new();
        let a = match &input {
            Frame::Audio(a) => a,
            Frame::Event(e) if e.name == "peer-left" => {
                let peer = e.peer_id.clone();
                if let Some(st) = self.peers.remove(&peer) {
                    if st.speaking {
                        out.push(Self::event(
                            SPEECH_END,
                            &peer,
                            json!({ "timestamp_us": Value::Null, "reason": "peer-left" }),
                        ));
                    }
                }
                out.push(NodeOutput::Frame(input));
                return Ok(out);
            }
            _ => return Ok(vec![NodeOutput::Frame(input)]),
        };
        if a.channels == 0 || a.sample_rate == 0 {
            return Err(Error::InvalidData(format!(
                "audio frame with {} channels at {} Hz",
                a.channels, a.sample_rate
            )));
        }
        let st = self.peers.entry(a.peer_id.clone()).or_default();
        if st.sample_rate != a.sample_rate || st.channels != a.channels {
            *st = PeerState {
                sample_rate: a.sample_rate,
                channels: a.channels,
                ..PeerState::default()
            };
        }
        let ch = usize::from(a.channels);
        let block_frames = (a.sample_rate as usize / 100).max(1);
        let block_us = (block_frames as i64 * 1_000_000) / i64::from(a.sample_rate);
        for (i, frame) in a.samples.chunks(ch).enumerate() {
            if st.block_len == 0 {
                st.block_start_us =
                    a.timestamp_us + (i as i64 * 1_000_000) / i64::from(a.sample_rate);
            }
            st.block_sum += frame
                .iter()
                .map(|&s| f64::from(s) * f64::from(s))
                .sum::<f64>();
            st.block_len += 1;
            if st.block_len == block_frames {
                let ms = st.block_sum / (block_frames * ch) as f64;
                let level_db = 10.0 * ms.max(1e-20).log10();
                st.block_sum = 0.0;
                st.block_len = 0;
                Self::block(&self.config, st, &a.peer_id, level_db, block_us, &mut out);
            }
        }
        out.insert(0, NodeOutput::Frame(input));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::nodes::{AudioFrame, EventFrame};
    use std::f64::consts::PI;

    const RATE: u32 = 48_000;

    /// A speech-like signal: harmonics of 140 Hz under a 4 Hz syllable envelope, about −20 dBFS,
    /// over a −70 dBFS noise floor; `segments` in seconds, `secs` long.
    fn synthetic_speech(segments: &[(f64, f64)], secs: f64) -> Vec<f32> {
        let mut seed = 0x2545_f491u32;
        (0..(secs * f64::from(RATE)) as usize)
            .map(|i| {
                let t = i as f64 / f64::from(RATE);
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (f64::from(seed >> 8) / f64::from(1u32 << 24) - 0.5) * 0.001;
                let voiced = segments.iter().any(|&(a, b)| t >= a && t < b);
                let speech = if voiced {
                    let env = 0.4 + 0.6 * (2.0 * PI * 4.0 * t).sin().abs();
                    let h: f64 = (1..=5)
                        .map(|k| (2.0 * PI * 140.0 * f64::from(k) * t).sin() / f64::from(k))
                        .sum();
                    0.1 * env * h
                } else {
                    0.0
                };
                (speech + noise) as f32
            })
            .collect()
    }

    /// Feeds `x` as 20 ms frames from `peer`; returns (frame index, event name, event data).
    fn run(vad: &mut VoiceActivityDetection, x: &[f32], peer: &str) -> Vec<(usize, String, Value)> {
        let mut events = Vec::new();
        for (k, c) in x.chunks(RATE as usize / 50).enumerate() {
            let frame = Frame::Audio(AudioFrame {
                samples: c.to_vec(),
                sample_rate: RATE,
                channels: 1,
                peer_id: Some(peer.into()),
                timestamp_us: k as i64 * 20_000,
            });
            let out = vad.process(frame.clone()).unwrap();
            assert_eq!(out[0], NodeOutput::Frame(frame), "audio is forwarded first");
            for o in &out[1..] {
                match o {
                    NodeOutput::Event(e) => events.push((k, e.name.clone(), e.data.clone())),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        events
    }

    fn ts(v: &Value) -> i64 {
        v["timestamp_us"].as_i64().unwrap()
    }

    #[test]
    fn silence_tone_silence_gives_one_start_and_one_end() {
        let mut x = vec![0.0f32; RATE as usize];
        x.extend(
            (0..RATE as usize)
                .map(|i| (0.1 * (2.0 * PI * 440.0 * i as f64 / f64::from(RATE)).sin()) as f32),
        );
        x.extend(vec![0.0f32; RATE as usize]);
        let mut vad = VoiceActivityDetection::new(VadConfig {
            threshold_db: -40.0,
            min_speech_ms: 100,
            hangover_ms: 300,
        });
        let ev = run(&mut vad, &x, "alice");
        let names: Vec<_> = ev.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(names, [SPEECH_START, SPEECH_END]);
        // Timestamps: when the tone began and ended.
        assert!((ts(&ev[0].2) - 1_000_000).abs() <= 10_000, "{:?}", ev[0]);
        assert!((ts(&ev[1].2) - 2_000_000).abs() <= 10_000, "{:?}", ev[1]);
        // Decisions: after min_speech_ms of tone and hangover_ms of silence.
        assert_eq!(ev[0].0, (1_000 + 100) / 20 - 1);
        assert_eq!(ev[1].0, (2_000 + 300) / 20 - 1);
        assert_eq!(ev[0].2["peer_id"], "alice");
        assert!(!vad.is_speaking(Some("alice")));
    }

    #[test]
    fn finds_the_segments_of_synthetic_speech() {
        let truth = [(0.5, 1.3), (2.0, 2.7), (3.4, 3.9)];
        let x = synthetic_speech(&truth, 4.5);
        let mut vad = VoiceActivityDetection::new(VadConfig::default());
        let ev = run(&mut vad, &x, "bob");
        let found: Vec<(f64, f64)> = ev
            .chunks(2)
            .map(|p| {
                assert_eq!(
                    (p[0].1.as_str(), p[1].1.as_str()),
                    (SPEECH_START, SPEECH_END)
                );
                (ts(&p[0].2) as f64 / 1e6, ts(&p[1].2) as f64 / 1e6)
            })
            .collect();
        assert_eq!(found.len(), truth.len(), "{found:?}");
        for (f, t) in found.iter().zip(&truth) {
            assert!(
                (f.0 - t.0).abs() < 0.03 && (f.1 - t.1).abs() < 0.03,
                "{f:?} vs {t:?}"
            );
        }
    }

    #[test]
    fn a_blip_shorter_than_min_speech_is_ignored() {
        let x = synthetic_speech(&[(0.5, 0.55)], 1.0);
        let mut vad = VoiceActivityDetection::new(VadConfig {
            min_speech_ms: 100,
            ..VadConfig::default()
        });
        assert!(run(&mut vad, &x, "a").is_empty());
        // With no minimum, the same blip is speech.
        let mut eager = VoiceActivityDetection::new(VadConfig {
            min_speech_ms: 0,
            ..VadConfig::default()
        });
        assert_eq!(run(&mut eager, &x, "a").len(), 2);
    }

    #[test]
    fn peers_have_separate_state_and_leaving_ends_speech() {
        let mut vad = VoiceActivityDetection::new(VadConfig::default());
        let speech = synthetic_speech(&[(0.0, 1.0)], 1.0);
        let quiet = synthetic_speech(&[], 1.0);
        assert_eq!(run(&mut vad, &speech, "a").len(), 1);
        assert!(run(&mut vad, &quiet[..RATE as usize / 10], "b").is_empty());
        assert!(vad.is_speaking(Some("a")) && !vad.is_speaking(Some("b")));
        let out = vad
            .process(Frame::Event(EventFrame {
                name: "peer-left".into(),
                data: Value::Null,
                peer_id: Some("a".into()),
            }))
            .unwrap();
        assert!(matches!(&out[0], NodeOutput::Event(e) if e.name == SPEECH_END));
        assert!(!vad.is_speaking(Some("a")));
    }

    #[test]
    fn params_map_to_config() {
        let p = json!({ "threshold_db": -30, "min_speech_ms": 50 });
        let c = VadConfig::from_params(p.as_object().unwrap());
        assert_eq!(
            c,
            VadConfig {
                threshold_db: -30.0,
                min_speech_ms: 50,
                hangover_ms: 300
            }
        );
    }
}
