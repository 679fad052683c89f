//! The `AudioMixer` node, for conferences: every listener hears everyone but itself.
//!
//! The mixer keeps each peer's latest audio frame. When peer `P` sends a frame, the node answers
//! with [`AudioMixer::mix_for`]`(P)`: the sum of every other peer's latest frame, tagged with
//! `peer_id = P` (the listener it is for), in `P`'s own format (rate, channels, length). Frames of
//! another rate or channel count are left out (put a `Resample` node before the mixer). If a mix
//! would exceed full scale, the whole block is scaled down to a peak of 1.0, so loud talkers are
//! turned down rather than clipped. An event frame named `peer-left` forgets that peer.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::nodes::{param_f64, AudioFrame, Frame, Node, NodeOutput};
use crate::error::{Error, Result};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct AudioMixer {
    gain: f32,
    sources: BTreeMap<String, AudioFrame>,
}

impl Default for AudioMixer {
    fn default() -> Self {
        AudioMixer::new(1.0)
    }
}

impl AudioMixer {
    /// `gain` applies to every source before summing.
    pub fn new(gain: f32) -> Self {
        AudioMixer {
            gain,
            sources: BTreeMap::new(),
        }
    }

    /// From validated params (`gain`, default 1).
    pub fn from_params(params: &Map<String, Value>) -> Self {
        AudioMixer::new(param_f64(params, "gain", 1.0) as f32)
    }

    /// Stores `frame` as its peer's latest audio. [`Error::InvalidData`] without a peer id.
    pub fn push(&mut self, frame: AudioFrame) -> Result<()> {
        let Some(peer) = frame.peer_id.clone() else {
            return Err(Error::InvalidData(
                "AudioMixer needs audio frames with a peer_id".into(),
            ));
        };
        if frame.channels == 0 {
            return Err(Error::InvalidData(format!(
                "audio frame from '{peer}' has 0 channels"
            )));
        }
        self.sources.insert(peer, frame);
        Ok(())
    }

    /// Forgets a peer (it left). Returns whether it was known.
    pub fn remove_peer(&mut self, peer: &str) -> bool {
        self.sources.remove(peer).is_some()
    }

    /// Peers with audio, in id order.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The mix `listener` should hear: every other peer's latest audio (never the listener's
    /// own), in the listener's format if it has sent audio, else the first other peer's. Empty
    /// if there is nothing to shape the mix by.
    pub fn mix_for(&self, listener: &str) -> Vec<f32> {
        let shape = self.sources.get(listener).or_else(|| {
            self.sources
                .iter()
                .find(|(p, _)| *p != listener)
                .map(|(_, f)| f)
        });
        let Some(shape) = shape else {
            return Vec::new();
        };
        let mut mix = vec![0.0f32; shape.samples.len()];
        for (peer, f) in &self.sources {
            if peer == listener
                || f.sample_rate != shape.sample_rate
                || f.channels != shape.channels
            {
                continue;
            }
            for (m, &s) in mix.iter_mut().zip(&f.samples) {
                *m += s * self.gain;
            }
        }
        let peak = mix.iter().fold(0.0f32, |p, &s| p.max(s.abs()));
        if peak > 1.0 {
            let k = 1.0 / peak;
            for m in &mut mix {
                *m *= k;
            }
        }
        mix
    }
}

impl Node for AudioMixer {
    fn process(&mut self, input: Frame) -> Result<Vec<NodeOutput>> {
        match input {
            Frame::Audio(a) => {
                let listener = a.peer_id.clone();
                let (sample_rate, channels, timestamp_us) =
                    (a.sample_rate, a.channels, a.timestamp_us);
                self.push(a)?;
                let listener = listener.expect("push checked the peer id");
                let samples = self.mix_for(&listener);
                Ok(vec![NodeOutput::Frame(Frame::Audio(AudioFrame {
                    samples,
                    sample_rate,
                    channels,
                    peer_id: Some(listener),
                    timestamp_us,
                }))])
            }
            Frame::Event(e) if e.name == "peer-left" => {
                if let Some(p) = &e.peer_id {
                    self.remove_peer(p);
                }
                Ok(vec![NodeOutput::Frame(Frame::Event(e))])
            }
            other => Ok(vec![NodeOutput::Frame(other)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::nodes::EventFrame;
    use std::f64::consts::PI;

    const RATE: u32 = 48_000;

    fn tone(freq: f64, amp: f64) -> Vec<f32> {
        crate::test_signal::tone(freq, RATE, 960, amp)
    }

    fn frame(peer: &str, samples: Vec<f32>) -> AudioFrame {
        AudioFrame {
            samples,
            sample_rate: RATE,
            channels: 1,
            peer_id: Some(peer.into()),
            timestamp_us: 0,
        }
    }

    /// Amplitude of `freq` in `x` (960 samples = 20 ms hold a whole number of cycles of
    /// multiples of 50 Hz).
    fn amplitude(x: &[f32], freq: f64) -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let ph = 2.0 * PI * freq * i as f64 / f64::from(RATE);
            s += f64::from(v) * ph.sin();
            c += f64::from(v) * ph.cos();
        }
        2.0 * (s * s + c * c).sqrt() / x.len() as f64
    }

    #[test]
    fn a_listener_never_hears_itself_and_hears_everyone_else() {
        let peers = [("a", 300.0, 0.1), ("b", 500.0, 0.2), ("c", 700.0, 0.3)];
        let mut mixer = AudioMixer::default();
        for (p, f, amp) in peers {
            mixer.push(frame(p, tone(f, amp))).unwrap();
        }
        for (listener, own_freq, _) in peers {
            let mix = mixer.mix_for(listener);
            assert_eq!(mix.len(), 960);
            assert!(amplitude(&mix, own_freq) < 1e-6, "{listener} hears itself");
            for (other, f, amp) in peers.iter().filter(|p| p.0 != listener) {
                let got = amplitude(&mix, *f);
                assert!(
                    (got - amp).abs() < 1e-3,
                    "{listener} hears {other} at {got}"
                );
            }
        }
        // A listener that has not sent anything hears all three.
        let mix = mixer.mix_for("d");
        assert!(peers
            .iter()
            .all(|(_, f, amp)| (amplitude(&mix, *f) - amp).abs() < 1e-3));
    }

    #[test]
    fn three_peers_mix_sample_by_sample_and_loud_mixes_are_scaled_not_clipped() {
        let mut mixer = AudioMixer::default();
        mixer.push(frame("a", vec![0.1, -0.2, 0.3])).unwrap();
        mixer.push(frame("b", vec![0.2, 0.2, -0.1])).unwrap();
        mixer.push(frame("c", vec![0.05, 0.0, 0.0])).unwrap();
        let mix = mixer.mix_for("c");
        for (m, want) in mix.iter().zip([0.3f32, 0.0, 0.2]) {
            assert!((m - want).abs() < 1e-6, "{mix:?}");
        }
        // Two loud peers in phase: 0.8 + 0.9 would clip; the block is scaled to peak 1.0.
        let mut loud = AudioMixer::default();
        loud.push(frame("a", tone(400.0, 0.8))).unwrap();
        loud.push(frame("b", tone(400.0, 0.9))).unwrap();
        loud.push(frame("c", tone(400.0, 0.5))).unwrap();
        let mix = loud.mix_for("c");
        let peak = mix.iter().fold(0.0f32, |p, &s| p.max(s.abs()));
        assert!((peak - 1.0).abs() < 1e-6, "peak {peak}");
        // Same waveform as the raw sum (no hard clipping): a constant ratio.
        let raw = tone(400.0, 1.7);
        for (m, r) in mix.iter().zip(&raw).filter(|(_, r)| r.abs() > 0.1) {
            assert!((m / r - 1.0 / 1.7).abs() < 1e-3);
        }
    }

    #[test]
    fn the_node_answers_each_peer_with_its_own_mix() {
        let mut node = AudioMixer::default();
        let mut last = BTreeMap::new();
        for (p, v) in [("a", 0.1f32), ("b", 0.2), ("c", 0.4)] {
            let out = node.process(Frame::Audio(frame(p, vec![v; 4]))).unwrap();
            match out.as_slice() {
                [NodeOutput::Frame(Frame::Audio(m))] => {
                    assert_eq!(m.peer_id.as_deref(), Some(p));
                    last.insert(p, m.samples[0]);
                }
                other => panic!("{other:?}"),
            }
        }
        // a spoke first (nobody else yet), b heard a, c heard a + b.
        assert_eq!(last["a"], 0.0);
        assert!((last["b"] - 0.1).abs() < 1e-6);
        assert!((last["c"] - 0.3).abs() < 1e-6);
        node.process(Frame::Event(EventFrame {
            name: "peer-left".into(),
            data: Value::Null,
            peer_id: Some("a".into()),
        }))
        .unwrap();
        assert_eq!(node.peers().collect::<Vec<_>>(), ["b", "c"]);
        assert!((node.mix_for("c")[0] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn audio_without_a_peer_or_in_another_format_is_handled() {
        let mut node = AudioMixer::default();
        let mut anon = frame("x", vec![0.1]);
        anon.peer_id = None;
        assert!(matches!(
            node.process(Frame::Audio(anon)),
            Err(Error::InvalidData(_))
        ));
        let mut other_rate = frame("b", vec![0.5; 4]);
        other_rate.sample_rate = 16_000;
        node.push(other_rate).unwrap();
        node.push(frame("a", vec![0.1; 4])).unwrap();
        node.push(frame("c", vec![0.2; 4])).unwrap();
        // b is at 16 kHz: left out of a's 48 kHz mix.
        assert!((node.mix_for("a")[0] - 0.2).abs() < 1e-6);
    }
}
