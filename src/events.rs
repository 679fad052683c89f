//! One weak threadsafe function per native object, fed by a bounded queue in batches. The pump
//! awaits JS for each batch, so a slow JS consumer slows the producers instead of queueing
//! without bound; the weak function never keeps Node alive.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Events delivered to JS per call at most.
const BATCH: usize = 256;

/// One event as JS sees it; `kind` says which fields are set.
#[napi(object)]
#[derive(Default)]
pub struct NativeEvent {
    pub kind: String,
    pub peer_id: Option<String>,
    pub channel_key: Option<i64>,
    pub state: Option<String>,
    pub reason: Option<String>,
    pub outgoing: Option<bool>,
    pub message_kind: Option<String>,
    pub text: Option<String>,
    pub data: Option<Buffer>,
    pub capabilities: Option<Vec<String>>,
    pub user_data: Option<String>,
    pub attempt: Option<u32>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Audio frames: interleaved samples, moved out of Rust without a copy.
    pub samples: Option<Float32Array>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub rtp_timestamp: Option<u32>,
    pub wall_clock_us: Option<f64>,
    pub sync_confidence: Option<f64>,
    pub drift_ppm: Option<f64>,
    pub concealed: Option<bool>,
    pub buffer_delay_ms: Option<f64>,
    /// Reconnection events.
    pub is_full_reconnect: Option<bool>,
    pub previous_duration_ms: Option<f64>,
    /// A structured payload as JSON (quality metrics).
    pub json: Option<String>,
    /// Track events: "audio" or "video", and the sender's track id.
    pub track_kind: Option<String>,
    pub track_id: Option<String>,
    pub audio_sync_offset_ms: Option<f64>,
    /// Video frames (the picture goes in `data`, packed I420).
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub keyframe: Option<bool>,
    pub framerate: Option<f64>,
}

pub type EventFn =
    ThreadsafeFunction<Vec<NativeEvent>, (), Vec<NativeEvent>, Status, false, true, 16>;

pub fn make_tsfn(cb: Function<Vec<NativeEvent>, ()>) -> Result<EventFn> {
    cb.build_threadsafe_function::<Vec<NativeEvent>>()
        .callee_handled::<false>()
        .weak::<true>()
        .max_queue_size::<16>()
        .build_callback(|ctx| Ok(ctx.value))
}

/// Pumps `rx` into `tsfn` until the queue ends or `closed` is set.
pub fn spawn_pump(mut rx: mpsc::Receiver<NativeEvent>, tsfn: EventFn, closed: Arc<AtomicBool>) {
    napi::bindgen_prelude::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => break,
                }
            }
            if closed.load(Ordering::SeqCst) {
                break;
            }
            if tsfn.call_async_catch(batch).await.is_err() && closed.load(Ordering::SeqCst) {
                break;
            }
        }
    });
}
