//! What flows through a pipeline ([`Frame`]), what a node is ([`Node`]), the param table of every
//! built-in node type ([`BUILTIN_TYPES`]) and the simple built-ins (`Input`, `Output`,
//! `Passthrough`, `Gain`). The DSP built-ins live in their own files: [`super::resample`],
//! [`super::vad`], [`super::mixer`], [`super::video_scale`].

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Interleaved f32 PCM (nominally in [-1, 1]).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// Interleaved samples, `channels` per sample instant.
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    pub channels: u16,
    /// The peer the audio came from (or, out of an `AudioMixer`, the listener it is mixed for).
    pub peer_id: Option<String>,
    pub timestamp_us: i64,
}

/// The most channels a pipeline audio frame may carry.
pub const MAX_AUDIO_CHANNELS: u32 = 8;

impl AudioFrame {
    /// An audio frame from outside (JS, a node's output), checked: 1 to
    /// [`MAX_AUDIO_CHANNELS`] channels, whole sample instants, a non-zero rate.
    pub fn checked(
        samples: &[f32],
        sample_rate: u32,
        channels: u32,
        peer_id: Option<String>,
        timestamp_us: i64,
    ) -> Result<Self> {
        Self::check(samples.len(), sample_rate, channels)?;
        Ok(Self {
            samples: samples.to_vec(),
            sample_rate,
            channels: channels as u16,
            peer_id,
            timestamp_us,
        })
    }

    /// The rule of [`AudioFrame::checked`], on a frame of `len` samples.
    pub fn check(len: usize, sample_rate: u32, channels: u32) -> Result<()> {
        if channels == 0 || channels > MAX_AUDIO_CHANNELS || !len.is_multiple_of(channels as usize)
        {
            return Err(Error::InvalidData(format!(
                "audio frame: {len} samples do not make whole frames of {channels} channels (1..={MAX_AUDIO_CHANNELS})"
            )));
        }
        if sample_rate == 0 {
            return Err(Error::InvalidData("audio frame: sample rate is 0".into()));
        }
        Ok(())
    }

    /// Sample instants in the frame (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }
}

/// A packed I420 picture: Y plane (`width * height`), then U and V (`width/2 * height/2` each).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub peer_id: Option<String>,
    pub timestamp_us: i64,
}

impl VideoFrame {
    /// A packed I420 picture from outside (JS, a node's output), checked by the rule of every
    /// packed I420 frame ([`crate::media::video::check_packed`]).
    pub fn checked(
        data: &[u8],
        width: u32,
        height: u32,
        peer_id: Option<String>,
        timestamp_us: i64,
    ) -> Result<Self> {
        Self::check(data.len(), width, height)?;
        Ok(Self {
            data: data.to_vec(),
            width,
            height,
            peer_id,
            timestamp_us,
        })
    }

    /// The rule of [`VideoFrame::checked`], on `len` bytes of data.
    pub fn check(len: usize, width: u32, height: u32) -> Result<()> {
        crate::media::video::check_packed(width, height, len).map(|_| ())
    }
}

/// A structured message travelling along the edges like media (e.g. a control message such as
/// `peer-left`, or what a JS node produced). Built-in media nodes forward it untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFrame {
    pub name: String,
    pub data: Value,
    pub peer_id: Option<String>,
}

/// One unit of pipeline input or output.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Audio(AudioFrame),
    Video(VideoFrame),
    Event(EventFrame),
}

impl Frame {
    pub fn peer_id(&self) -> Option<&str> {
        match self {
            Frame::Audio(f) => f.peer_id.as_deref(),
            Frame::Video(f) => f.peer_id.as_deref(),
            Frame::Event(f) => f.peer_id.as_deref(),
        }
    }
}

/// An event a node reports to whoever runs the pipeline (it does not travel along edges), e.g.
/// `speech-start`. The runner tags it with the node's id.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEvent {
    pub name: String,
    pub data: Value,
}

/// What one `process` call produced.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOutput {
    /// Sent to every node this one connects to (and, from an `Output` node, out of the pipeline).
    Frame(Frame),
    /// Reported to the caller, tagged with the node id.
    Event(NodeEvent),
}

/// A pipeline node. It owns its state; the runner calls it once per input frame, in topological
/// order. An `Err` becomes an error output tagged with the node id and the pipeline carries on.
pub trait Node: Send {
    fn process(&mut self, input: Frame) -> Result<Vec<NodeOutput>>;
}

/// The kind of value a param takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Any JSON number.
    Number,
    /// A JSON integer (no fraction).
    Integer,
    Bool,
    String,
    /// A JSON array of strings.
    StringList,
}

impl ParamKind {
    fn name(self) -> &'static str {
        match self {
            ParamKind::Number => "a number",
            ParamKind::Integer => "an integer",
            ParamKind::Bool => "a boolean",
            ParamKind::String => "a string",
            ParamKind::StringList => "a list of strings",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            ParamKind::Number => v.is_number(),
            ParamKind::Integer => v.is_i64() || v.is_u64(),
            ParamKind::Bool => v.is_boolean(),
            ParamKind::String => v.is_string(),
            ParamKind::StringList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        }
    }
}

/// One param of a built-in node type.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub required: bool,
    pub kind: ParamKind,
    /// Inclusive bounds for numbers.
    pub range: Option<(f64, f64)>,
}

/// A rule spanning several params; `Err` holds the message (without the node id).
pub type ParamCheck = fn(&Map<String, Value>) -> std::result::Result<(), String>;

/// A built-in node type: its params and any rule that spans params (checked after each param).
#[derive(Debug, Clone, Copy)]
pub struct NodeTypeSpec {
    pub name: &'static str,
    pub params: &'static [ParamSpec],
    pub check: Option<ParamCheck>,
}

const fn param(
    name: &'static str,
    required: bool,
    kind: ParamKind,
    range: Option<(f64, f64)>,
) -> ParamSpec {
    ParamSpec {
        name,
        required,
        kind,
        range,
    }
}

/// Gain limits, in dB and as a linear factor.
pub const GAIN_DB_RANGE: (f64, f64) = (-96.0, 48.0);
pub const GAIN_LINEAR_RANGE: (f64, f64) = (0.0, 256.0);
/// Sample rates a `Resample` node may target.
pub const SAMPLE_RATE_RANGE: (f64, f64) = (8_000.0, 192_000.0);

/// Every built-in node type with its params.
pub const BUILTIN_TYPES: &[NodeTypeSpec] = &[
    NodeTypeSpec {
        name: "Input",
        params: &[],
        check: None,
    },
    NodeTypeSpec {
        name: "Output",
        // Where a session sends this node's frames (pipeline::route).
        params: &[
            param("route", false, ParamKind::String, None),
            param("peers", false, ParamKind::StringList, None),
        ],
        check: Some(super::route::check_output_params),
    },
    NodeTypeSpec {
        name: "Passthrough",
        params: &[],
        check: None,
    },
    NodeTypeSpec {
        name: "Gain",
        params: &[
            param("gain_db", false, ParamKind::Number, Some(GAIN_DB_RANGE)),
            param("gain", false, ParamKind::Number, Some(GAIN_LINEAR_RANGE)),
        ],
        check: Some(check_gain),
    },
    NodeTypeSpec {
        name: "Resample",
        params: &[param(
            "target_rate",
            true,
            ParamKind::Integer,
            Some(SAMPLE_RATE_RANGE),
        )],
        check: None,
    },
    NodeTypeSpec {
        name: "VoiceActivityDetection",
        params: &[
            param(
                "threshold_db",
                false,
                ParamKind::Number,
                Some((-120.0, 0.0)),
            ),
            param(
                "min_speech_ms",
                false,
                ParamKind::Integer,
                Some((0.0, 10_000.0)),
            ),
            param(
                "hangover_ms",
                false,
                ParamKind::Integer,
                Some((0.0, 10_000.0)),
            ),
        ],
        check: None,
    },
    NodeTypeSpec {
        name: "AudioMixer",
        params: &[param("gain", false, ParamKind::Number, Some((0.0, 16.0)))],
        check: None,
    },
    NodeTypeSpec {
        name: "VideoScale",
        params: &[
            param("width", true, ParamKind::Integer, Some((2.0, 7680.0))),
            param("height", true, ParamKind::Integer, Some((2.0, 7680.0))),
        ],
        check: Some(check_even_size),
    },
];

fn check_gain(params: &Map<String, Value>) -> std::result::Result<(), String> {
    match (params.contains_key("gain_db"), params.contains_key("gain")) {
        (true, true) => Err("give either param 'gain_db' or 'gain', not both".into()),
        (false, false) => Err("missing required param 'gain_db' (or 'gain')".into()),
        _ => Ok(()),
    }
}

fn check_even_size(params: &Map<String, Value>) -> std::result::Result<(), String> {
    for name in ["width", "height"] {
        if let Some(v) = params.get(name).and_then(Value::as_u64) {
            if v % 2 != 0 {
                return Err(format!("param '{name}' = {v} must be even (I420)"));
            }
        }
    }
    Ok(())
}

/// The spec of a built-in type, by name.
pub fn builtin_type(name: &str) -> Option<&'static NodeTypeSpec> {
    BUILTIN_TYPES.iter().find(|t| t.name == name)
}

impl NodeTypeSpec {
    /// Checks `params` against this type's table: unknown names, missing required ones, kind and
    /// range, then the cross-param rule. The message names the offending param.
    pub fn check_params(&self, params: &Map<String, Value>) -> std::result::Result<(), String> {
        for name in params.keys() {
            if !self.params.iter().any(|p| p.name == name) {
                let known: Vec<_> = self.params.iter().map(|p| p.name).collect();
                return Err(if known.is_empty() {
                    format!("unknown param '{name}' ({} takes no params)", self.name)
                } else {
                    format!(
                        "unknown param '{name}' for {} (known: {})",
                        self.name,
                        known.join(", ")
                    )
                });
            }
        }
        for p in self.params {
            let Some(v) = params.get(p.name) else {
                if p.required {
                    return Err(format!("missing required param '{}'", p.name));
                }
                continue;
            };
            if !p.kind.accepts(v) {
                return Err(format!(
                    "param '{}' must be {}, got {}",
                    p.name,
                    p.kind.name(),
                    json_kind(v)
                ));
            }
            if let (Some((lo, hi)), Some(x)) = (p.range, v.as_f64()) {
                if !(lo..=hi).contains(&x) {
                    return Err(format!(
                        "param '{}' = {v} is out of range [{lo}, {hi}]",
                        p.name
                    ));
                }
            }
        }
        match self.check {
            Some(check) => check(params),
            None => Ok(()),
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A number param, or `default` when absent (params are validated before nodes are built).
pub(crate) fn param_f64(params: &Map<String, Value>, name: &str, default: f64) -> f64 {
    params.get(name).and_then(Value::as_f64).unwrap_or(default)
}

/// `Input`, `Output` and `Passthrough`: forward every frame unchanged.
#[derive(Debug, Default)]
pub struct Passthrough;

impl Node for Passthrough {
    fn process(&mut self, input: Frame) -> Result<Vec<NodeOutput>> {
        Ok(vec![NodeOutput::Frame(input)])
    }
}

/// Multiplies audio by a fixed factor; video and event frames pass unchanged. No clipping: a
/// later node (or the encoder) decides what to do with samples beyond ±1.
#[derive(Debug, Clone)]
pub struct Gain {
    factor: f32,
}

impl Gain {
    /// From decibels; [`Error::InvalidData`] outside [`GAIN_DB_RANGE`].
    pub fn from_db(db: f64) -> Result<Self> {
        if !(GAIN_DB_RANGE.0..=GAIN_DB_RANGE.1).contains(&db) {
            return Err(Error::InvalidData(format!(
                "gain {db} dB is out of range [{}, {}]",
                GAIN_DB_RANGE.0, GAIN_DB_RANGE.1
            )));
        }
        Ok(Gain {
            factor: 10f64.powf(db / 20.0) as f32,
        })
    }

    /// From a linear factor; [`Error::InvalidData`] outside [`GAIN_LINEAR_RANGE`].
    pub fn linear(factor: f64) -> Result<Self> {
        if !(GAIN_LINEAR_RANGE.0..=GAIN_LINEAR_RANGE.1).contains(&factor) {
            return Err(Error::InvalidData(format!(
                "gain factor {factor} is out of range [{}, {}]",
                GAIN_LINEAR_RANGE.0, GAIN_LINEAR_RANGE.1
            )));
        }
        Ok(Gain {
            factor: factor as f32,
        })
    }

    /// From validated params (`gain_db` or `gain`).
    pub fn from_params(params: &Map<String, Value>) -> Result<Self> {
        match params.get("gain").and_then(Value::as_f64) {
            Some(g) => Gain::linear(g),
            None => Gain::from_db(param_f64(params, "gain_db", 0.0)),
        }
    }

    pub fn factor(&self) -> f32 {
        self.factor
    }
}

impl Node for Gain {
    fn process(&mut self, input: Frame) -> Result<Vec<NodeOutput>> {
        let out = match input {
            Frame::Audio(mut a) => {
                for s in &mut a.samples {
                    *s *= self.factor;
                }
                Frame::Audio(a)
            }
            other => other,
        };
        Ok(vec![NodeOutput::Frame(out)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signal::{rms_db, tone};
    use serde_json::json;

    fn audio(samples: Vec<f32>) -> Frame {
        Frame::Audio(AudioFrame {
            samples,
            sample_rate: 48_000,
            channels: 1,
            peer_id: Some("p".into()),
            timestamp_us: 7,
        })
    }

    fn only_audio(out: Vec<NodeOutput>) -> AudioFrame {
        match out.as_slice() {
            [NodeOutput::Frame(Frame::Audio(a))] => a.clone(),
            other => panic!("expected one audio frame, got {other:?}"),
        }
    }

    #[test]
    fn gain_in_db_changes_the_level_by_that_many_db() {
        let input = tone(440.0, 48_000, 24_000, 0.25);
        let before = rms_db(&input);
        for db in [-12.0, -6.0, 0.0, 3.5, 9.0] {
            let mut g = Gain::from_params(json!({ "gain_db": db }).as_object().unwrap()).unwrap();
            let out = only_audio(g.process(audio(input.clone())).unwrap());
            assert_eq!(out.samples.len(), input.len());
            assert_eq!((out.timestamp_us, out.peer_id.as_deref()), (7, Some("p")));
            let change = rms_db(&out.samples) - before;
            assert!((change - db).abs() < 0.01, "{db} dB gave {change} dB");
        }
    }

    #[test]
    fn linear_gain_scales_each_sample() {
        let mut g = Gain::from_params(json!({ "gain": 0.5 }).as_object().unwrap()).unwrap();
        let out = only_audio(g.process(audio(vec![0.8, -0.4, 0.0])).unwrap());
        assert_eq!(out.samples, vec![0.4, -0.2, 0.0]);
    }

    #[test]
    fn gain_rejects_out_of_range_values() {
        assert!(matches!(Gain::from_db(60.0), Err(Error::InvalidData(_))));
        assert!(matches!(Gain::linear(-1.0), Err(Error::InvalidData(_))));
        assert!(Gain::from_db(-96.0).is_ok());
    }

    #[test]
    fn gain_forwards_video_and_events_unchanged() {
        let ev = Frame::Event(EventFrame {
            name: "x".into(),
            data: json!(1),
            peer_id: None,
        });
        let mut g = Gain::from_db(6.0).unwrap();
        assert_eq!(g.process(ev.clone()).unwrap(), vec![NodeOutput::Frame(ev)]);
    }

    #[test]
    fn param_table_checks_kind_range_and_unknown_names() {
        let rs = builtin_type("Resample").unwrap();
        let ok = json!({ "target_rate": 16000 });
        assert_eq!(rs.check_params(ok.as_object().unwrap()), Ok(()));
        let cases = [
            (json!({}), "missing required param 'target_rate'"),
            (
                json!({ "target_rate": "16k" }),
                "must be an integer, got a string",
            ),
            (json!({ "target_rate": 16000.5 }), "must be an integer"),
            (json!({ "target_rate": 1000 }), "out of range"),
            (
                json!({ "target_rate": 16000, "rate": 1 }),
                "unknown param 'rate'",
            ),
        ];
        for (params, want) in cases {
            let err = rs.check_params(params.as_object().unwrap()).unwrap_err();
            assert!(err.contains(want), "{params}: {err}");
        }
        let vs = builtin_type("VideoScale").unwrap();
        let odd = json!({ "width": 641, "height": 360 });
        assert!(vs
            .check_params(odd.as_object().unwrap())
            .unwrap_err()
            .contains("even"));
        let gain = builtin_type("Gain").unwrap();
        let both = json!({ "gain": 1, "gain_db": 0 });
        assert!(gain
            .check_params(both.as_object().unwrap())
            .unwrap_err()
            .contains("not both"));
        assert!(builtin_type("Gainz").is_none());
    }
}
