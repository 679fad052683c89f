use crate::channel::NativeDataChannel;
use crate::error::{invalid_data, js};
use crate::transport::parse_mode;
use napi_derive::napi;
use remotemedia_webrtc::media::{AudioEncoderConfig, VideoEncoderConfig};
use remotemedia_webrtc::peer::Peer;
use std::sync::Arc;

#[napi]
pub struct NativePeer {
    p: Arc<Peer>,
}

impl NativePeer {
    pub fn new(p: Arc<Peer>) -> Self {
        Self { p }
    }
}

#[napi]
impl NativePeer {
    #[napi(getter)]
    pub fn peer_id(&self) -> String {
        self.p.peer_id().to_string()
    }

    #[napi(getter)]
    pub fn state(&self) -> String {
        self.p.state().as_str().to_string()
    }

    #[napi(getter)]
    pub fn outgoing(&self) -> bool {
        self.p.is_outgoing()
    }

    #[napi]
    pub async fn create_data_channel(
        &self,
        label: String,
        mode: String,
    ) -> napi::Result<NativeDataChannel> {
        let mode = parse_mode(&mode)?;
        let ch = self.p.create_data_channel(&label, mode).await.map_err(js)?;
        Ok(NativeDataChannel::new(ch))
    }

    /// Adds an Opus track sending to this peer (`config_json`: AudioEncoderConfig in camelCase,
    /// defaults for what is missing) and renegotiates.
    #[napi]
    pub async fn add_audio_track(&self, config_json: Option<String>) -> napi::Result<()> {
        let config: AudioEncoderConfig = match config_json {
            Some(j) => serde_json::from_str(&j)
                .map_err(|e| invalid_data(format!("audio track config: {e}")))?,
            None => AudioEncoderConfig::default(),
        };
        self.p.add_audio_track(config).await.map_err(js)?;
        Ok(())
    }

    /// Adds a video track (the transport's videoCodec) sending to this peer and renegotiates.
    #[napi]
    pub async fn add_video_track(&self, config_json: Option<String>) -> napi::Result<()> {
        let config: VideoEncoderConfig = match config_json {
            Some(j) => serde_json::from_str(&j)
                .map_err(|e| invalid_data(format!("video track config: {e}")))?,
            None => VideoEncoderConfig::default(),
        };
        self.p.add_video_track(config).await.map_err(js)?;
        Ok(())
    }

    /// Changes the target bitrate (bit/s) of the "audio" or "video" track.
    #[napi(catch_unwind)]
    pub fn set_bitrate(&self, kind: String, bitrate: u32) -> napi::Result<()> {
        self.p.set_bitrate(&kind, bitrate).map_err(js)
    }

    /// Stops sending the "audio" or "video" track and renegotiates.
    #[napi]
    pub async fn remove_track(&self, kind: String) -> napi::Result<()> {
        self.p.remove_track(&kind).await.map_err(js)
    }

    /// Asks this peer for a keyframe on the video it sends us (RTCP PLI).
    #[napi]
    pub async fn request_keyframe(&self) -> napi::Result<()> {
        self.p.request_keyframe().await.map_err(js)
    }

    /// The latest quality measurement, as JSON.
    #[napi(catch_unwind)]
    pub fn metrics_json(&self) -> napi::Result<String> {
        serde_json::to_string(&self.p.metrics()).map_err(|e| invalid_data(e.to_string()))
    }

    /// Clock mapping, drift and lip-sync state of the media this peer sends us, as JSON.
    #[napi(catch_unwind)]
    pub fn sync_state_json(&self) -> napi::Result<String> {
        serde_json::to_string(&self.p.sync_state()).map_err(|e| invalid_data(e.to_string()))
    }

    /// Jitter-buffer statistics (audio and video) of the media this peer sends us, as JSON.
    #[napi(catch_unwind)]
    pub fn buffer_statistics_json(&self) -> napi::Result<String> {
        serde_json::to_string(&self.p.buffer_statistics()).map_err(|e| invalid_data(e.to_string()))
    }

    #[napi(getter)]
    pub fn has_video_track(&self) -> bool {
        self.p.video_track().is_some()
    }

    #[napi(getter)]
    pub fn has_audio_track(&self) -> bool {
        self.p.audio_track().is_some()
    }

    /// The channel with this key, if it belongs to this peer.
    #[napi(catch_unwind)]
    pub fn channel(&self, key: i64) -> Option<NativeDataChannel> {
        self.p
            .channels()
            .into_iter()
            .find(|c| c.key() as i64 == key)
            .map(NativeDataChannel::new)
    }

    #[napi(catch_unwind)]
    pub fn channels(&self) -> Vec<NativeDataChannel> {
        self.p
            .channels()
            .into_iter()
            .map(NativeDataChannel::new)
            .collect()
    }

    #[napi(catch_unwind)]
    pub fn default_channel(&self) -> Option<NativeDataChannel> {
        self.p.default_channel().map(NativeDataChannel::new)
    }
}
