use crate::error::js;
use napi::bindgen_prelude::{Buffer, Float32Array};
use napi_derive::napi;
use remotemedia_webrtc::pipeline::{
    check_type_name, AudioFrame, Frame, Manifest, NodeEvent, NodeOutput, Pipeline, PipelineOutput,
    Registry, Run, Step, VideoFrame,
};
use remotemedia_webrtc::Error;
use std::sync::Mutex;

/// A validated manifest with its nodes built. Node types named in `jsTypes` are JS nodes: a
/// frame that reaches one stops the run and goes back to JS (`call`), which answers with
/// `resume`; the JS driver runs one frame at a time per instance.
#[napi]
pub struct NativePipeline {
    st: Mutex<State>,
}

/// One pipeline output: a frame out of an Output node, an event a node reported, or a node's
/// error (`kind`: "audio", "video", "event", "error").
#[napi(object)]
pub struct NativePipelineOutput {
    pub node_id: String,
    pub kind: String,
    pub samples: Option<Float32Array>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub data: Option<Buffer>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub peer_id: Option<String>,
    pub timestamp_us: Option<f64>,
    pub name: Option<String>,
    /// Event data as JSON.
    pub json: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

fn output(o: PipelineOutput) -> NativePipelineOutput {
    let mut n = NativePipelineOutput {
        node_id: String::new(),
        kind: String::new(),
        samples: None,
        sample_rate: None,
        channels: None,
        data: None,
        width: None,
        height: None,
        peer_id: None,
        timestamp_us: None,
        name: None,
        json: None,
        error_code: None,
        error_message: None,
    };
    match o {
        PipelineOutput::Frame { node_id, frame } => {
            n.node_id = node_id;
            match frame {
                Frame::Audio(a) => {
                    n.kind = "audio".into();
                    n.sample_rate = Some(a.sample_rate);
                    n.channels = Some(a.channels as u32);
                    n.peer_id = a.peer_id;
                    n.timestamp_us = Some(a.timestamp_us as f64);
                    n.samples = Some(Float32Array::new(a.samples));
                }
                Frame::Video(v) => {
                    n.kind = "video".into();
                    n.width = Some(v.width);
                    n.height = Some(v.height);
                    n.peer_id = v.peer_id;
                    n.timestamp_us = Some(v.timestamp_us as f64);
                    n.data = Some(v.data.into());
                }
                Frame::Event(e) => {
                    n.kind = "event".into();
                    n.name = Some(e.name);
                    n.peer_id = e.peer_id;
                    n.json = serde_json::to_string(&e.data).ok();
                }
            }
        }
        PipelineOutput::Event { node_id, event } => {
            n.node_id = node_id;
            n.kind = "event".into();
            n.name = Some(event.name);
            n.json = serde_json::to_string(&event.data).ok();
        }
        PipelineOutput::Error { node_id, error } => {
            n.node_id = node_id;
            n.kind = "error".into();
            n.error_code = Some(error.code().into());
            n.error_message = Some(error.to_string());
        }
    }
    n
}

/// Where a run stopped: the outputs since the last step, and the frame a JS node must process
/// next (`call`: node id plus the frame fields, `kind` "audio" or "video"), if any.
#[napi(object)]
pub struct NativeStep {
    pub outputs: Vec<NativePipelineOutput>,
    pub call: Option<NativePipelineOutput>,
}

/// One thing a JS node produced (`kind`: "audio", "video" or "event"; an event has `name` and
/// its data as JSON in `json`).
#[napi(object)]
pub struct NativeNodeOutput {
    pub kind: String,
    pub samples: Option<Float32Array>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub data: Option<Buffer>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub peer_id: Option<String>,
    pub timestamp_us: Option<f64>,
    pub name: Option<String>,
    pub json: Option<String>,
}

/// A node of a manifest (parsed, not validated).
#[napi(object)]
pub struct NativeManifestNode {
    pub id: String,
    pub node_type: String,
}

struct State {
    p: Pipeline,
    /// The frame under way while a JS node processes it.
    run: Option<Run>,
}

fn audio_frame(
    samples: &[f32],
    sample_rate: u32,
    channels: u32,
    peer_id: Option<String>,
    timestamp_us: Option<f64>,
) -> Result<Frame, Error> {
    let ts = timestamp_us.unwrap_or(0.0) as i64;
    AudioFrame::checked(samples, sample_rate, channels, peer_id, ts).map(Frame::Audio)
}

fn video_frame(
    data: &[u8],
    width: u32,
    height: u32,
    peer_id: Option<String>,
    timestamp_us: Option<f64>,
) -> Result<Frame, Error> {
    let ts = timestamp_us.unwrap_or(0.0) as i64;
    VideoFrame::checked(data, width, height, peer_id, ts).map(Frame::Video)
}

/// The core's rule for an audio frame given to a pipeline (`len` samples): ERR_INVALID_DATA
/// saying what is wrong, so that `write()` refuses it at once.
#[napi(catch_unwind)]
pub fn check_audio_frame(len: u32, sample_rate: u32, channels: u32) -> napi::Result<()> {
    AudioFrame::check(len as usize, sample_rate, channels).map_err(js)
}

/// The core's rule for a packed I420 frame given to a pipeline (`len` bytes).
#[napi(catch_unwind)]
pub fn check_video_frame(len: u32, width: u32, height: u32) -> napi::Result<()> {
    VideoFrame::check(len as usize, width, height).map_err(js)
}

fn node_output(o: NativeNodeOutput) -> Result<NodeOutput, Error> {
    match o.kind.as_str() {
        "audio" => {
            let samples = o
                .samples
                .ok_or_else(|| Error::InvalidData("audio frame without samples".into()))?;
            audio_frame(
                &samples,
                o.sample_rate.unwrap_or(48_000),
                o.channels.unwrap_or(1),
                o.peer_id,
                o.timestamp_us,
            )
            .map(NodeOutput::Frame)
        }
        "video" => {
            let data = o
                .data
                .ok_or_else(|| Error::InvalidData("video frame without data".into()))?;
            let (Some(w), Some(h)) = (o.width, o.height) else {
                return Err(Error::InvalidData(
                    "video frame without width/height".into(),
                ));
            };
            video_frame(&data, w, h, o.peer_id, o.timestamp_us).map(NodeOutput::Frame)
        }
        "event" => {
            let name = o
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| Error::InvalidData("event without a name".into()))?;
            let data = match o.json {
                Some(j) => serde_json::from_str(&j)
                    .map_err(|e| Error::InvalidData(format!("event data: {e}")))?,
                None => serde_json::Value::Null,
            };
            Ok(NodeOutput::Event(NodeEvent { name, data }))
        }
        other => Err(Error::InvalidData(format!("unknown output kind '{other}'"))),
    }
}

fn registry(js_types: Option<Vec<String>>) -> Result<Registry, Error> {
    let mut reg = Registry::new();
    for t in js_types.unwrap_or_default() {
        reg.register_external(t)?;
    }
    Ok(reg)
}

impl NativePipeline {
    fn new(p: Pipeline) -> Self {
        Self {
            st: Mutex::new(State { p, run: None }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, frame: Frame) -> napi::Result<NativeStep> {
        let mut st = self.state();
        if st.run.is_some() {
            return Err(js(Error::Internal(
                "a frame is already under way in this pipeline".into(),
            )));
        }
        let run = st.p.begin(frame);
        st.run = Some(run);
        Self::advance(&mut st)
    }

    /// Steps the run until a JS node has a frame or it is done.
    fn advance(st: &mut State) -> napi::Result<NativeStep> {
        let State { p, run } = st;
        let Some(r) = run.as_mut() else {
            return Err(js(Error::Internal("no frame is under way".into())));
        };
        let step = p.step(r).map_err(js)?;
        let outputs = r.take_outputs().into_iter().map(output).collect();
        let call = match step {
            Step::Call(c) => Some(output(PipelineOutput::Frame {
                node_id: c.node_id,
                frame: c.frame,
            })),
            Step::Done => {
                *run = None;
                None
            }
        };
        Ok(NativeStep { outputs, call })
    }
}

#[napi]
impl NativePipeline {
    /// From manifest text (YAML or JSON); `ERR_INVALID_MANIFEST` names the node or connection.
    /// `jsTypes`: node types the caller runs itself (JS nodes); `ERR_INVALID_CONFIG` for a bad
    /// name.
    #[napi(factory, catch_unwind)]
    pub fn from_text(text: String, js_types: Option<Vec<String>>) -> napi::Result<Self> {
        let reg = registry(js_types).map_err(js)?;
        let p = Pipeline::from_text(&text, &reg).map_err(js)?;
        Ok(Self::new(p))
    }

    /// From a manifest file (`.yaml`, `.yml` or `.json`).
    #[napi(factory, catch_unwind)]
    pub fn from_file(path: String, js_types: Option<Vec<String>>) -> napi::Result<Self> {
        let reg = registry(js_types).map_err(js)?;
        let m = Manifest::from_file(&path).map_err(js)?;
        let p = Pipeline::new(m, &reg).map_err(js)?;
        Ok(Self::new(p))
    }

    /// `ERR_INVALID_CONFIG` unless `name` can be registered as a custom node type.
    #[napi(catch_unwind)]
    pub fn check_node_type_name(name: String) -> napi::Result<()> {
        check_type_name(&name).map_err(js)
    }

    /// The nodes of manifest text, parsed only (`ERR_INVALID_MANIFEST` if it does not parse).
    #[napi(catch_unwind)]
    pub fn manifest_nodes(text: String) -> napi::Result<Vec<NativeManifestNode>> {
        let m = Manifest::parse(&text).map_err(js)?;
        Ok(m.nodes
            .into_iter()
            .map(|n| NativeManifestNode {
                id: n.id,
                node_type: n.node_type,
            })
            .collect())
    }

    /// The manifest as JSON (what a session builds its own instance from).
    #[napi(getter)]
    pub fn manifest_json(&self) -> napi::Result<String> {
        serde_json::to_string(self.state().p.manifest())
            .map_err(|e| js(Error::Internal(e.to_string())))
    }

    /// Node ids in the order they run.
    #[napi(getter)]
    pub fn execution_order(&self) -> Vec<String> {
        let st = self.state();
        st.p.execution_order()
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// Starts one audio frame (interleaved samples) through every Input node. Runs until a JS
    /// node has a frame to process (`call`; answer with `resume`) or the frame is through.
    #[napi(catch_unwind)]
    pub fn begin_audio(
        &self,
        samples: Float32Array,
        sample_rate: u32,
        channels: u32,
        peer_id: Option<String>,
        timestamp_us: Option<f64>,
    ) -> napi::Result<NativeStep> {
        let frame =
            audio_frame(&samples, sample_rate, channels, peer_id, timestamp_us).map_err(js)?;
        self.begin(frame)
    }

    /// Starts one packed I420 frame through every Input node (as `beginAudio`).
    #[napi(catch_unwind)]
    pub fn begin_video(
        &self,
        data: Buffer,
        width: u32,
        height: u32,
        peer_id: Option<String>,
        timestamp_us: Option<f64>,
    ) -> napi::Result<NativeStep> {
        let frame = video_frame(&data, width, height, peer_id, timestamp_us).map_err(js)?;
        self.begin(frame)
    }

    /// What the JS node of the last `call` produced (empty: it dropped the frame); carries on
    /// to the next call or the end. `ERR_INVALID_DATA` for a bad output: nothing is taken and
    /// the node still waits (answer again, e.g. with `[]`).
    #[napi(catch_unwind)]
    pub fn resume(&self, outputs: Vec<NativeNodeOutput>) -> napi::Result<NativeStep> {
        let outs = outputs
            .into_iter()
            .enumerate()
            .map(|(k, o)| {
                node_output(o).map_err(|e| match e {
                    Error::InvalidData(m) => Error::InvalidData(format!("output #{}: {m}", k + 1)),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, Error>>()
            .map_err(js)?;
        let mut st = self.state();
        let State { p, run } = &mut *st;
        let Some(r) = run.as_mut() else {
            return Err(js(Error::Internal("no JS node is waiting".into())));
        };
        p.resume(r, Ok(outs)).map_err(js)?;
        Self::advance(&mut st)
    }

    /// Drops the frame under way, if any (after a failure in the JS driver).
    #[napi]
    pub fn abort(&self) {
        self.state().run = None;
    }
}
