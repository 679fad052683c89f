// Typings of remotemedia-webrtc's public surface (shared/spec/api.md). Hand-written; the
// generated napi glue (native.d.ts) is internal.
import { EventEmitter } from 'node:events'

export type ErrorCode =
  | 'ERR_INVALID_CONFIG' | 'ERR_SIGNALING' | 'ERR_CONNECTION_FAILED' | 'ERR_PEER_NOT_FOUND'
  | 'ERR_PEER_NOT_CONNECTED' | 'ERR_MAX_PEERS' | 'ERR_NAT_TRAVERSAL' | 'ERR_INVALID_DATA'
  | 'ERR_ENCODING' | 'ERR_DECODING' | 'ERR_SESSION_NOT_FOUND' | 'ERR_SESSION_EXISTS'
  | 'ERR_INVALID_MANIFEST' | 'ERR_NOT_STARTED' | 'ERR_ALREADY_STARTED' | 'ERR_SHUT_DOWN'
  | 'ERR_TIMEOUT' | 'ERR_INTERNAL' | 'ERR_UNSUPPORTED_CODEC'

export class WebRtcError extends Error {
  readonly code: ErrorCode
  /** Set on transport 'error' events that concern one peer. */
  peerId?: string | null
}

export interface TurnServer { url: string; username: string; credential: string }

export interface ReconnectionPolicy {
  maxRetries?: number
  backoffInitialMs?: number
  backoffMaxMs?: number
  backoffMultiplier?: number
  jitter?: boolean
}

export type DataChannelMode = 'reliable' | 'unreliable'

/** Every number must be finite (NaN and ±Infinity are ERR_INVALID_CONFIG naming the key, not
 *  the default); an unknown key is ERR_INVALID_CONFIG. */
export interface TransportOptions {
  /** ws://host:port/path. wss:// is ERR_INVALID_CONFIG at construction: TLS is not built in. */
  signalingUrl: string
  /** ^[A-Za-z0-9_-]{1,64}$; generated when omitted. */
  peerId?: string
  preset?: 'lowLatency' | 'highQuality' | 'mobileNetwork'
  stunServers?: string[]
  /** Objects, or the seed's 'turn:host:port:username:credential' strings. */
  turnServers?: Array<TurnServer | string>
  /** 1..=256, default 10. */
  maxPeers?: number
  audioCodec?: 'opus'
  /** Default 'vp8'. 'h264' needs the addon built with the cargo feature `h264` (else ERR_INVALID_CONFIG). */
  videoCodec?: 'vp8' | 'vp9' | 'h264'
  /** Open a 'default' channel with every outgoing connection (default true). */
  enableDataChannel?: boolean
  dataChannelMode?: DataChannelMode
  /** Where each received stream's adaptive jitter buffer starts, 50..=200 ms, default 100; also
   *  its floor unless jitterBufferMinMs is set. */
  jitterBufferMs?: number
  /** Floor of the adaptive jitter buffer, 10..=jitterBufferMs ms (default: jitterBufferMs; the
   *  lowLatency preset: 20). The buffer settles at a multiple of the measured interarrival jitter,
   *  never below this floor: lower means less delay on a steady path, more concealment on a bursty one. */
  jitterBufferMinMs?: number
  rtcpIntervalMs?: number
  /** How often each peer's quality is measured and a 'quality' event sent, 100..=60000, default 1000. */
  qualityIntervalMs?: number
  /** Encoder targets follow the loss the remote peer reports, between a tenth of the track's
   *  bitrate and the bitrate itself (default true). */
  adaptiveBitrate?: boolean
  /** When a remote offer sends audio or video and the peer has no track of that kind yet, the
   *  answer adds one (audioBitrate; videoCodec at videoWidth x videoHeight), so a server peer can
   *  send media back, e.g. a session pipeline's output, without renegotiating (default false). */
  answerMedia?: boolean
  audioBitrate?: number
  videoBitrate?: number
  videoWidth?: number
  videoHeight?: number
  videoFramerate?: number
  /** Dial every peer present when this one announces (full mesh). */
  autoConnect?: boolean
  /** IP the peer connections bind to; '0.0.0.0' (default) = every non-loopback interface. */
  bindAddress?: string
  connectTimeoutMs?: number
  signalingTimeoutMs?: number
  /** Largest message a channel sends (advertised as a=max-message-size), 1 to 256 KiB (the most
   *  the underlying SCTP stack honours; larger is ERR_INVALID_CONFIG), default 256 KiB. */
  maxMessageSize?: number
  /** Per-channel bytes in flight before sends wait (backpressure), default 1 MiB. */
  dataChannelBufferLimit?: number
  reconnection?: ReconnectionPolicy
  /** Remote ICE candidates accepted per remote description (1..1000, default 64); the rest
   * are dropped. */
  maxRemoteCandidates?: number
  /** Credential presented on every announce to a signaling server with authentication
   * (e.g. from `issueSignalingToken`). */
  signalingToken?: string
}

export interface PeerAnnouncedEvent { peerId: string; capabilities: string[]; userData: unknown }
export interface PeerDisconnectedEvent { peerId: string; reason: string }
export type PeerStateName = 'new' | 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed'
export interface PeerStateEvent { peerId: string; state: PeerStateName }

export type ChannelMessage =
  | { kind: 'json'; data: any }
  | { kind: 'binary'; data: Buffer }
  | { kind: 'text'; data: string }

export interface ControlMessage {
  type: 'pipeline-start' | 'pipeline-stop' | 'pipeline-pause'
  sessionId: string
  [key: string]: unknown
}

export interface DataChannelEvents {
  message: [ChannelMessage]
  control: [ControlMessage]
  close: []
}

export class DataChannel extends EventEmitter<DataChannelEvents> {
  readonly label: string
  readonly peerId: string
  readonly mode: DataChannelMode
  readonly readyState: 'connecting' | 'open' | 'closed'
  /** Bytes queued in front of SCTP. */
  readonly bufferedAmount: number
  /** Bytes of received messages held because no 'message' listener is attached yet (at most
   *  4 MiB per channel and 16 MiB per remote peer; past that messages are dropped). */
  readonly backlogBytes: number
  /** Messages / bytes dropped because the backlog was full. */
  readonly droppedMessages: number
  readonly droppedBytes: number
  /** Objects go as JSON, strings as text, Buffers/TypedArrays as binary. Resolves once SCTP took it.
   *  Rejects only with WebRtcError: ERR_INVALID_DATA for an object JSON cannot carry (a cycle, a
   *  BigInt, a throwing toJSON). */
  send(message: object | string | Buffer | ArrayBufferView | ArrayBuffer): Promise<void>
  sendControl(control: ControlMessage): Promise<void>
  close(): Promise<void>
}

export interface AudioTrackOptions {
  /** Only 48 000 (Opus); other rates are refused with ERR_INVALID_DATA. */
  sampleRate?: 48000
  channels?: 1 | 2
  /** 6 000..=510 000 bit/s, default 64 000. */
  bitrate?: number
  /** 0..=10, default 10. */
  complexity?: number
  /** In-band FEC (default off: it quadruples encode cost). */
  fec?: boolean
  dtx?: boolean
}

export interface AudioFrame {
  /** Interleaved samples. */
  samples: Float32Array
  sampleRate: number
  channels: number
  rtpTimestamp: number
  /** Capture time on the sender's clock (µs since the Unix epoch) once an RTCP sender report
   *  arrived; the local arrival clock before. */
  wallClockUs: number
  /** Time the packet waited in the peer's jitter buffer (at least the transport's jitterBufferMinMs). */
  bufferDelayMs: number
  /** 0.5 on the local arrival clock, 1.0 with a recent RTCP sender report. */
  syncConfidence: number
  /** The sender's clock drift against ours, ppm (0 until estimated). */
  driftPpm: number
  /** Synthesized for a lost packet (Opus FEC or PLC). */
  concealed: boolean
}

export interface VideoTrackOptions {
  width?: number
  height?: number
  framerate?: number
  /** bit/s, default 2 000 000. */
  bitrate?: number
  /** Frames between keyframes (0 = only on request), default 60. */
  keyframeInterval?: number
}

export interface VideoFrameInput {
  /** Packed I420: Y (w×h), U and V (w/2×h/2 each). Copied within the call: the buffer may be
   *  reused, modified or transferred as soon as sendVideo/broadcastVideo returns. */
  data: Buffer | Uint8Array
  width: number
  height: number
  format?: 'i420'
  timestampUs?: number
  /** Force a keyframe. */
  keyframe?: boolean
}

export interface VideoFrame {
  /** Packed I420. */
  data: Buffer
  width: number
  height: number
  format: 'i420'
  rtpTimestamp: number
  /** Capture time on the sender's clock once an RTCP sender report arrived; arrival before. */
  wallClockUs: number
  /** 1.0 with a recent sender report, 0.5 on the local arrival clock. */
  syncConfidence: number
  driftPpm: number
  /** Time the frame waited in the jitter buffer (lip sync may hold it longer or release it sooner). */
  bufferDelayMs: number
  keyframe: boolean
  /** Estimated from RTP timestamps. */
  framerate: number | null
  /** Video wall clock − audio playout position, ms (negative: video behind audio); null while the
   *  peer sends no audio. With sender reports for both, video is held or released to keep it
   *  within ±40 ms. */
  audioSyncOffsetMs: number | null
}

export interface StreamSyncState {
  clockRate: number
  hasSenderReport: boolean
  syncConfidence: number
  senderReports: number
  staleSenderReports: number
  lastSenderReportAgeMs: number | null
  lastWallClockUs: number | null
}

export interface SyncState {
  audio: StreamSyncState
  video: StreamSyncState
  /** Latest estimate of the sender's clock drift, ppm (positive: sender fast). */
  driftPpm: number | null
  driftExceedsThreshold: boolean
  correctionFactor: number
  lipSyncActive: boolean
  audioSyncOffsetMs: number | null
  inSync: boolean | null
  audioPlayoutDelayMs: number
  videoFramesSynced: number
  videoFramesInTolerance: number
  nowUs: number
}

export interface JitterStatistics {
  buffered: number
  bufferedMs: number
  received: number
  released: number
  late: number
  lost: number
  reordered: number
  discarded: number
  duplicates: number
  currentDelayMs: number
  targetDelayMs: number
  jitterMs: number
}

export interface BufferStatistics {
  audio: JitterStatistics
  video: JitterStatistics
}

export interface QualityMetrics {
  /** Mean round-trip time over the last 3 s (ICE consent checks), ms. */
  rttMs: number
  /** Loss over the last 3 s, 0..1: the worse of what we receive and what the peer reports of ours. */
  packetLossRate: number
  /** Largest interarrival jitter of the streams we receive, ms. */
  jitterMs: number
  /** Transport bitrate over the last 3 s (media, data and control), kbit/s. */
  bitrateKbps: { in: number; out: number }
  /** 0..100: an E-model R factor from loss, RTT and jitter (100 = perfect, ~80 at 5 % loss). */
  qualityScore: number
  /** The congestion controller's estimate, when one runs. */
  availableBandwidthKbps?: number
  /** With a local video track: what it sends now. Below what the configured size and framerate
   *  need, the target steps the picture down (smaller, then fewer frames) and back up. */
  video?: VideoSendingFormat
}

export interface VideoSendingFormat {
  width: number
  height: number
  framerate: number
  /** The encoder's target now (setBitrate, or adaptive bitrate below it), bit/s. */
  targetBitrateBps: number
}

export interface ReconnectEvent {
  peerId: string
  /** 1-based attempt of the reconnection policy. */
  attempt: number
  /**
   * 'reconnected' only: false when the connection was kept (ICE restart or self-healing), true
   * when it was replaced by a new one (full reconnection: same channel objects, tracks re-added).
   */
  isFullReconnect?: boolean
  /** 'reconnected' only: how long the outage lasted, ms. */
  previousDurationMs?: number
}

export interface TrackInfo {
  kind: 'audio' | 'video'
  /** The sender's track id (from the SDP's msid). */
  trackId: string
}

export interface PeerEvents {
  /** The peer's connection quality, every qualityIntervalMs. */
  quality: [QualityMetrics]
  reconnecting: [ReconnectEvent]
  reconnected: [ReconnectEvent]
  'reconnect-failed': [ReconnectEvent]
  /** The peer started sending a track. */
  track: [TrackInfo]
  /** The peer stopped sending a track (removed it and renegotiated). */
  'track-ended': [TrackInfo]
  'audio-frame': [AudioFrame]
  'video-frame': [VideoFrame]
  'data-channel': [DataChannel]
  state: [PeerStateName]
  close: []
}

export class Peer extends EventEmitter<PeerEvents> {
  readonly peerId: string
  readonly state: PeerStateName
  readonly outgoing: boolean
  /** The 'default' channel opened with an outgoing connection. */
  readonly defaultChannel: DataChannel | null
  readonly channels: DataChannel[]
  createDataChannel(label: string, options?: { mode?: DataChannelMode }): Promise<DataChannel>
  /** Adds an Opus track sending to this peer and renegotiates the connection. Resolves once the
   *  answer is applied and the track negotiated, so `sendAudio` works at once; nothing is sent
   *  on the track before (a send then fails with ERR_PEER_NOT_CONNECTED, and broadcasts skip the
   *  peer). ERR_TIMEOUT if no answer negotiates it within connectTimeoutMs. */
  addAudioTrack(options?: AudioTrackOptions): Promise<void>
  readonly hasAudioTrack: boolean
  /** Adds a video track (the transport's videoCodec) and renegotiates the connection; resolves
   *  once the track is negotiated, as addAudioTrack. */
  addVideoTrack(options?: VideoTrackOptions): Promise<void>
  readonly hasVideoTrack: boolean
  /** Changes the target bitrate (bit/s) of the audio or video track sending to this peer, from its
   *  next frame on (ERR_INVALID_CONFIG out of range). */
  setBitrate(kind: 'audio' | 'video', bitrate: number): void
  /** Stops sending the audio or video track and renegotiates; the remote side gets 'track-ended'. */
  removeTrack(kind: 'audio' | 'video'): Promise<void>
  /** Asks the peer for a keyframe on the video it sends us (RTCP PLI). */
  requestKeyframe(): Promise<void>
  /** The latest quality measurement (zeros until the first, qualityIntervalMs after connecting). */
  getMetrics(): QualityMetrics
  /** A/V sync state of the media this peer sends us. */
  getSyncState(): SyncState
  /** Jitter-buffer statistics of the media this peer sends us. */
  getBufferStatistics(): BufferStatistics
  close(): Promise<void>
}

export interface TransportEvents {
  'peer-announced': [PeerAnnouncedEvent]
  'peer-connected': [Peer]
  'peer-disconnected': [PeerDisconnectedEvent]
  'peer-state': [PeerStateEvent]
  'data-channel': [DataChannel, Peer]
  quality: [QualityMetrics, Peer | null]
  'session-output': [SessionOutput]
  reconnecting: [ReconnectEvent, Peer | null]
  reconnected: [ReconnectEvent, Peer | null]
  'reconnect-failed': [ReconnectEvent, Peer | null]
  track: [TrackInfo, Peer | null]
  'track-ended': [TrackInfo, Peer | null]
  'audio-frame': [AudioFrame, Peer | null]
  'video-frame': [VideoFrame, Peer | null]
  'signaling-reconnecting': [{ attempt: number }]
  'signaling-reconnected': [{}]
  error: [WebRtcError]
}

export class WebRtcTransport extends EventEmitter<TransportEvents> {
  /** Throws WebRtcError ERR_INVALID_CONFIG naming the bad field. */
  constructor(options: TransportOptions)
  readonly peerId: string
  readonly started: boolean
  readonly config: {
    signalingUrl: string; peerId: string; maxPeers: number; jitterBufferMs: number
    jitterBufferMinMs: number
    enableDataChannel: boolean; dataChannelMode: DataChannelMode; autoConnect: boolean
    bindAddress: string; videoBitrate: number; audioBitrate: number
  }
  start(): Promise<void>
  connectPeer(peerId: string): Promise<Peer>
  disconnectPeer(peerId: string): Promise<void>
  getPeer(peerId: string): Peer
  /** One frame (10/20/40/60 ms at 48 kHz, interleaved) to a peer with an audio track. */
  sendAudio(peerId: string, samples: Float32Array | Int16Array): Promise<void>
  /** One packed I420 frame to a peer with a video track; copied within the call, encoded off the
   *  JS thread. */
  sendVideo(peerId: string, frame: VideoFrameInput): Promise<void>
  /** Encodes once, sends to every connected peer with a video track. */
  broadcastVideo(frame: VideoFrameInput): Promise<{
    sent: number
    failed: Array<{ peerId: string; code: ErrorCode; message: string }>
  }>
  /** Encodes once, sends to every connected peer with an audio track. */
  broadcastAudio(samples: Float32Array | Int16Array): Promise<{
    sent: number
    failed: Array<{ peerId: string; code: ErrorCode; message: string }>
  }>
  listPeers(): string[]
  listAllPeers(): Array<{ peerId: string; state: PeerStateName }>
  /** The latest quality measurement of every connected peer. */
  getStats(): Record<string, QualityMetrics>
  /** A new session (ERR_SESSION_EXISTS if the id is taken; the manifest is validated). */
  createSession(id: string, options?: { maxPeers?: number; manifest?: string }): Promise<Session>
  /** ERR_SESSION_NOT_FOUND if there is none. */
  getSession(id: string): Session
  hasSession(id: string): boolean
  listSessions(): string[]
  removeSession(id: string): Promise<void>
  /** The peer must be connected (ERR_PEER_NOT_FOUND); ERR_MAX_PEERS when the session is full. */
  addPeerToSession(sessionId: string, peerId: string): Promise<Session>
  /** Recreates a session from a snapshot and reconnects its peers (ERR_INVALID_DATA for a corrupt
   *  or foreign snapshot: nothing is created). */
  restoreSession(snapshot: SessionSnapshot): Promise<Session>
  shutdown(): Promise<void>
  close(): Promise<void>
  /** A started transport keeps Node running until shutdown(), like a socket; unref() lets it exit. */
  unref(): this
  ref(): this
}

/** An unknown key, or a number that is not a whole number in range (NaN, ±Infinity, -1, 1.5),
 *  is ERR_INVALID_CONFIG naming the key. */
export interface SignalingServerOptions {
  host?: string
  /** 0 = any free port. */
  port?: number
  maxPeers?: number
  pingIntervalMs?: number
  /** A socket that has not announced by then is closed (1008). Default 10000. */
  announceTimeoutMs?: number
  /** Most open connections from one IP; extra ones get HTTP 503. Default 64. */
  maxConnectionsPerIp?: number
  /** Most open connections in total; extra ones get HTTP 503. Default 4096. */
  maxConnections?: number
  /** Web origins allowed to connect besides same-origin pages and non-browser clients
   * (no Origin header); '*' allows any. Others get HTTP 403. Default []. */
  allowedOrigins?: string[]
  /** HS256 secret (at least 32 bytes): every announce must then present a token (JWT) whose
   * `sub` is its peer id and whose `exp` has not passed: the announce's `token` param, the
   * transport's `signalingToken`, or `?token=` on the WebSocket URL. Refused announces get
   * JSON-RPC error -32001. Without it anyone may take any free peer id. */
  authSecret?: string
  /** HTML served at GET /. */
  httpPage?: string
}

export class SignalingServer extends EventEmitter<{
  'peer-announced': [PeerAnnouncedEvent]
  'peer-left': [{ peerId: string }]
}> {
  static listen(options?: SignalingServerOptions): Promise<SignalingServer>
  readonly url: string
  readonly port: number
  readonly peerIds: string[]
  close(): Promise<void>
  /** A listening server keeps Node running until close(), like net.Server; unref() lets it exit. */
  unref(): this
  ref(): this
}

type PresetOptions = Omit<TransportOptions, 'preset'>
export const presets: {
  lowLatency(options: PresetOptions): TransportOptions
  highQuality(options: PresetOptions): TransportOptions
  mobileNetwork(options: PresetOptions): TransportOptions
}

/** One node of a pipeline manifest. */
export interface PipelineNodeSpec {
  id: string
  /** Input, Output, Passthrough, Gain, Resample, VoiceActivityDetection, AudioMixer, VideoScale,
   *  or a type registered with Pipeline.registerNode. */
  node_type: string
  params?: Record<string, unknown>
}

export interface PipelineManifest {
  nodes: PipelineNodeSpec[]
  connections: Array<{ from: string; to: string }>
}

export interface PipelineAudioInput {
  samples: Float32Array
  sampleRate?: number
  channels?: number
  peerId?: string
  timestampUs?: number
}

export interface PipelineVideoInput {
  /** Packed I420. */
  data: Buffer | Uint8Array
  width: number
  height: number
  peerId?: string
  timestampUs?: number
}

export type PipelineOutput =
  | { nodeId: string; frame: { samples: Float32Array; sampleRate: number; channels: number; peerId: string | null; timestampUs: number } }
  | { nodeId: string; frame: { data: Buffer; width: number; height: number; format: 'i420'; peerId: string | null; timestampUs: number } }
  | { nodeId: string; event: { name: string; data: unknown; peerId?: string } }
  | { nodeId: string; error: { code: string; message: string } }

/** A frame as a JS node gets it (and may return it, changed or not). */
export interface PipelineAudioFrame {
  samples: Float32Array
  sampleRate: number
  channels: number
  peerId: string | null
  timestampUs: number
}
export interface PipelineVideoFrame {
  /** Packed I420. */
  data: Buffer
  width: number
  height: number
  format: 'i420'
  peerId: string | null
  timestampUs: number
}
/** What a JS node gets besides the frame: its id, type and manifest params. */
export interface PipelineNodeContext {
  nodeId: string
  nodeType: string
  params: Record<string, unknown>
}
/** An event a JS node reports: comes out as `{ nodeId, event: { name, data } }`. */
export interface PipelineNodeEvent {
  event: string
  /** JSON-serializable. */
  data?: unknown
}
/** What a JS node returns: a frame (fields it leaves out are taken from the input frame), an
 *  event, several of them, or null/undefined to drop the frame. */
export type PipelineNodeResult =
  | Partial<PipelineAudioFrame> & { samples: Float32Array }
  | Partial<PipelineVideoFrame> & { data: Buffer | Uint8Array }
  | PipelineNodeEvent
  | Array<(Partial<PipelineAudioFrame> & { samples: Float32Array }) | (Partial<PipelineVideoFrame> & { data: Buffer | Uint8Array }) | PipelineNodeEvent>
  | null
  | undefined
/** A node written in JS/TS. A throw, a rejection or a bad return value gives an error output
 *  `{ nodeId, error: { code, message } }` for that frame (code: the thrown error's `ERR_*` code,
 *  ERR_INVALID_DATA for a bad return value, else ERR_INTERNAL); later frames still go through. */
export type PipelineNodeFunction = (
  frame: PipelineAudioFrame | PipelineVideoFrame,
  ctx: PipelineNodeContext,
) => PipelineNodeResult | Promise<PipelineNodeResult>

export interface PipelineStreamOptions {
  /** Frames waiting to be processed, and outputs waiting to be read, before write() waits
   *  (default 16). */
  highWaterMark?: number
}

/** A pipeline in streaming mode: write frames, read outputs with `for await`. */
export interface PipelineStream extends AsyncIterableIterator<PipelineOutput> {
  readonly highWaterMark: number
  /** True after end() or close(). */
  readonly ended: boolean
  /** Frames written and not yet taken for processing (queued, plus writes waiting for room). */
  readonly writableLength: number
  /** Synchronous backpressure signal (as Node's Writable): true once highWaterMark frames are
   *  queued, i.e. a write now would wait. A writer that does not await each write stops while it
   *  is true and resumes when its last write resolves. */
  readonly writableNeedDrain: boolean
  /** Resolves once the frame has a place in the input queue (backpressure). Rejects with
   *  ERR_INVALID_DATA for a bad frame (the stream carries on), ERR_SHUT_DOWN after end()/close()
   *  or when close() drops a waiting write. */
  write(input: PipelineAudioInput | PipelineVideoInput): Promise<void>
  /** No more input: the iterator finishes once everything written has come out. Idempotent. */
  end(): void
  /** Stop now: queued frames and outputs are dropped, the iterator finishes. Idempotent. */
  close(): void
}

/** A processing pipeline from a manifest, validated before use (ERR_INVALID_MANIFEST names the
 *  node or connection at fault). */
export class Pipeline {
  /** A path to a .yaml/.yml/.json file, manifest text, or a manifest object. Uses the JS node
   *  types registered at this moment. */
  static fromManifest(source: string | PipelineManifest): Promise<Pipeline>
  static fromText(text: string): Pipeline
  /** Registers a node type written in JS/TS; manifests built afterwards can use it as
   *  `node_type`. Registering a name again replaces it for pipelines built later. Throws
   *  WebRtcError ERR_INVALID_CONFIG for a built-in type name, a name that is not
   *  `[A-Za-z_][A-Za-z0-9_.-]*` (at most 64), or a non-function. JS nodes run in
   *  `execute()` / `stream()` only: sessions refuse manifests with JS nodes
   *  (ERR_INVALID_MANIFEST). `timeoutMs` (default 5000, 1..=600000): a Promise that takes
   *  longer drops its frame with an ERR_TIMEOUT error output. */
  static registerNode(name: string, fn: PipelineNodeFunction, options?: { timeoutMs?: number }): void
  /** Whether the type was registered. Pipelines already built keep it. */
  static unregisterNode(name: string): boolean
  static registeredNodes(): string[]
  /** Node ids in the order they run. */
  readonly executionOrder: string[]
  /** The manifest as JSON text. */
  readonly manifestText: string
  /** Ids of the nodes run by JS functions. */
  readonly jsNodeIds: string[]
  /** Runs one frame through the pipeline (unary mode). Calls on one pipeline run one after
   *  another. ERR_INVALID_DATA for a bad frame; ERR_INVALID_CONFIG when called from one of this
   *  pipeline's own JS nodes (it would wait for itself). */
  execute(input: PipelineAudioInput | PipelineVideoInput): Promise<PipelineOutput[]>
  /** Streaming mode, with its own instance of the manifest (node state carries over between
   *  the stream's frames). */
  stream(options?: PipelineStreamOptions): PipelineStream
}

export interface SessionSnapshot {
  kind: 'remotemedia-session'
  version: 1
  id: string
  maxPeers: number
  peers: string[]
  /** Routing: the members above and the manifest (its Output nodes name their recipients). */
  manifest: string | null
  /** What each connected member's sync stage learned; a restored member starts from it. */
  sync?: Record<string, SyncSeed>
}

/** Sync state that carries over to a new connection with the same peer. */
export interface SyncSeed {
  /** Adaptive jitter targets, ms (clamped to the receiver's bounds when applied). */
  audioTargetMs?: number | null
  videoTargetMs?: number | null
  /** Drift correction of the RTP → wall-clock mapping, 0.99..=1.01. */
  correctionFactor?: number | null
}

export interface SessionOutput {
  sessionId: string
  nodeId: string
  peerId: string | null
  event?: { name: string; data: unknown }
  error?: { code: string; message: string }
}

/** A named group of a transport's peers, with an optional pipeline manifest: each member's
 *  decoded audio and video run through it; frames an Output node emits go to the members its
 *  `route` param names (`sender`, the default: the member the frame is tagged with; `all`;
 *  `others`; `peers` with `peers: [ids]`) on the tracks this transport sends them; events arrive
 *  as 'output'. A member that leaves is forgotten by the pipeline at once. */
export class Session extends EventEmitter<{ output: [SessionOutput] }> {
  readonly id: string
  readonly maxPeers: number
  readonly manifest: string | null
  /** Connected peers in the session (a peer that disconnects leaves it). */
  readonly peers: string[]
  /** After restoreSession: peers that could not be reconnected. */
  failedPeers?: string[]
  addPeer(peerId: string): Promise<Session>
  /** Runs the members' media through this pipeline from now on (replacing any other). */
  attachPipeline(pipeline: Pipeline | string): Promise<Session>
  /** Whether the peer was in the session. */
  removePeer(peerId: string): boolean
  snapshot(): SessionSnapshot
  close(): Promise<void>
}

/** An HS256 signaling token (JWT, `sub` = peerId) valid for `ttlSeconds` (default 3600),
 *  signed with a server's `authSecret`: what a backend hands the client that will announce as
 *  `peerId` (its `signalingToken`, or `?token=` in a browser's WebSocket URL). */
export function issueSignalingToken(secret: string, peerId: string, ttlSeconds?: number): string
