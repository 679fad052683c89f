use crate::error::js;
use napi::bindgen_prelude::{Buffer, Float32Array};
use napi_derive::napi;
use remotemedia_webrtc::pipeline::{
    AudioFrame, Frame, Manifest, Pipeline, PipelineOutput, Registry, VideoFrame,
};
use remotemedia_webrtc::Error;
use std::sync::Mutex;

/// A validated manifest with its nodes built (built-in node types).
#[napi]
pub struct NativePipeline {
    p: Mutex<Pipeline>,
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

impl NativePipeline {
    fn run(&self, frame: Frame) -> Vec<NativePipelineOutput> {
        let mut p = self.p.lock().unwrap_or_else(|e| e.into_inner());
        p.execute(frame).into_iter().map(output).collect()
    }
}

#[napi]
impl NativePipeline {
    /// From manifest text (YAML or JSON); `ERR_INVALID_MANIFEST` names the node or connection.
    #[napi(factory, catch_unwind)]
    pub fn from_text(text: String) -> napi::Result<Self> {
        let p = Pipeline::from_text(&text, &Registry::new()).map_err(js)?;
        Ok(Self { p: Mutex::new(p) })
    }

    /// From a manifest file (`.yaml`, `.yml` or `.json`).
    #[napi(factory, catch_unwind)]
    pub fn from_file(path: String) -> napi::Result<Self> {
        let m = Manifest::from_file(&path).map_err(js)?;
        let p = Pipeline::new(m, &Registry::new()).map_err(js)?;
        Ok(Self { p: Mutex::new(p) })
    }

    /// The manifest as JSON (what a session builds its own instance from).
    #[napi(getter)]
    pub fn manifest_json(&self) -> napi::Result<String> {
        let p = self.p.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_string(p.manifest()).map_err(|e| js(Error::Internal(e.to_string())))
    }

    /// Node ids in the order they run.
    #[napi(getter)]
    pub fn execution_order(&self) -> Vec<String> {
        let p = self.p.lock().unwrap_or_else(|e| e.into_inner());
        p.execution_order().into_iter().map(String::from).collect()
    }

    /// Runs one audio frame (interleaved samples) through every Input node.
    #[napi(catch_unwind)]
    pub fn execute_audio(
        &self,
        samples: Float32Array,
        sample_rate: u32,
        channels: u32,
        peer_id: Option<String>,
        timestamp_us: Option<f64>,
    ) -> napi::Result<Vec<NativePipelineOutput>> {
        if channels == 0 || channels > 8 || !samples.len().is_multiple_of(channels as usize) {
            return Err(js(Error::InvalidData(format!(
                "audio frame: {} samples do not make whole frames of {channels} channels",
                samples.len()
            ))));
        }
        Ok(self.run(Frame::Audio(AudioFrame {
            samples: samples.to_vec(),
            sample_rate,
            channels: channels as u16,
            peer_id,
            timestamp_us: timestamp_us.unwrap_or(0.0) as i64,
        })))
    }

    /// Runs one packed I420 frame through every Input node.
    #[napi(catch_unwind)]
    pub fn execute_video(
        &self,
        data: Buffer,
        width: u32,
        height: u32,
        peer_id: Option<String>,
        timestamp_us: Option<f64>,
    ) -> napi::Result<Vec<NativePipelineOutput>> {
        let need = remotemedia_webrtc::media::i420_len(width, height).map_err(js)?;
        if data.len() != need {
            return Err(js(Error::InvalidData(format!(
                "video frame: {width}x{height} I420 is {need} bytes, got {}",
                data.len()
            ))));
        }
        Ok(self.run(Frame::Video(VideoFrame {
            data: data.to_vec(),
            width,
            height,
            peer_id,
            timestamp_us: timestamp_us.unwrap_or(0.0) as i64,
        })))
    }
}
