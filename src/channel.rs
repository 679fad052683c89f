use crate::error::{invalid_data, js};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use remotemedia_webrtc::channel::{ChannelMessage, ChannelState, DataChannel, MessageKind};
use remotemedia_webrtc::config::DataChannelMode;

#[napi]
pub struct NativeDataChannel {
    ch: DataChannel,
}

impl NativeDataChannel {
    pub fn new(ch: DataChannel) -> Self {
        Self { ch }
    }

    fn queue<'env>(
        &self,
        env: &'env Env,
        msg: ChannelMessage,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        // Enqueued synchronously, so messages keep the order of the calls.
        let rx = self.ch.enqueue(msg).map_err(js)?;
        env.spawn_future(async move {
            rx.await
                .unwrap_or_else(|_| {
                    Err(remotemedia_webrtc::Error::ShutDown("channel closed".into()))
                })
                .map_err(js)
        })
    }
}

#[napi]
impl NativeDataChannel {
    #[napi(getter)]
    pub fn key(&self) -> i64 {
        self.ch.key() as i64
    }

    #[napi(getter)]
    pub fn label(&self) -> String {
        self.ch.label().to_string()
    }

    #[napi(getter)]
    pub fn peer_id(&self) -> String {
        self.ch.peer_id().to_string()
    }

    #[napi(getter)]
    pub fn mode(&self) -> String {
        match self.ch.mode() {
            DataChannelMode::Reliable => "reliable".into(),
            DataChannelMode::Unreliable => "unreliable".into(),
        }
    }

    #[napi(getter)]
    pub fn state(&self) -> String {
        match self.ch.state() {
            ChannelState::Connecting => "connecting",
            ChannelState::Open => "open",
            ChannelState::Closed => "closed",
        }
        .into()
    }

    #[napi(getter)]
    pub fn buffered_amount(&self) -> f64 {
        self.ch.buffered_amount() as f64
    }

    /// `kind`: 'json' or 'text'.
    #[napi(catch_unwind)]
    pub fn send_text<'env>(
        &self,
        env: &'env Env,
        kind: String,
        text: String,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let kind = match kind.as_str() {
            "json" => MessageKind::Json,
            "text" => MessageKind::Text,
            _ => {
                return Err(invalid_data(format!(
                    "kind must be 'json' or 'text', got '{kind}'"
                )))
            }
        };
        self.queue(
            env,
            ChannelMessage {
                kind,
                data: text.into_bytes(),
            },
        )
    }

    #[napi(catch_unwind)]
    pub fn send_binary<'env>(
        &self,
        env: &'env Env,
        data: &[u8],
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.queue(env, ChannelMessage::binary(data.to_vec()))
    }

    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.ch.close().await;
        Ok(())
    }
}
