'use strict'
const { EventEmitter } = require('node:events')
const native = require('./native')
const { callSync, callAsync, invalid, toWebRtcError, toJson } = require('./errors')
const { Peer } = require('./peer')
const { DataChannel } = require('./channel')
const { KeepAlive } = require('./keepalive')

// A value for an error message (never throws: BigInt, cycles and Symbols included).
function show(v) {
  try {
    return JSON.stringify(v) ?? String(v)
  } catch {
    return typeof v
  }
}

function checkPeerId(peerId) {
  if (typeof peerId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(peerId)) {
    throw invalid('ERR_INVALID_DATA', `peerId must match ^[A-Za-z0-9_-]{1,64}$, got ${show(peerId)}`)
  }
}

// Checks a raw video frame ({ data, width, height, format, timestampUs, keyframe }).
function videoInput(frame) {
  if (!frame || typeof frame !== 'object') throw invalid('ERR_INVALID_DATA', 'frame must be an object')
  const { data, width, height, format = 'i420', timestampUs = 0, keyframe = false } = frame
  if (format !== 'i420') throw invalid('ERR_INVALID_DATA', `format must be 'i420', got ${show(format)}`)
  if (!(data instanceof Uint8Array)) throw invalid('ERR_INVALID_DATA', 'frame.data must be a Buffer or Uint8Array')
  // Only the type here: the sizes an I420 frame may have are the core's rule (check_dimensions).
  for (const [k, v] of [['width', width], ['height', height]]) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw invalid('ERR_INVALID_DATA', `frame.${k} must be a non-negative integer, got ${show(v)}`)
  }
  if (typeof timestampUs !== 'number' || !Number.isFinite(timestampUs)) throw invalid('ERR_INVALID_DATA', 'frame.timestampUs must be a number')
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  return { buf, width, height, timestampUs, keyframe: Boolean(keyframe) }
}

function rethrow(e) { throw toWebRtcError(e) }

// A broadcast's result as plain objects: { sent, failed: [{ peerId, code, message }] }.
function outcome(r) {
  return { sent: r.sent, failed: r.failed.map((f) => ({ peerId: f.peerId, code: f.code, message: f.message })) }
}

// One local peer in a mesh of up to `maxPeers` remote peers.
// Events: 'peer-announced', 'peer-connected' (peer), 'peer-disconnected', 'peer-state',
// 'data-channel' (channel, peer), 'signaling-reconnecting', 'signaling-reconnected', 'error'.
class WebRtcTransport extends EventEmitter {
  constructor(options) {
    super()
    if (!options || typeof options !== 'object' || Array.isArray(options)) {
      throw invalid('ERR_INVALID_CONFIG', 'options must be an object with at least signalingUrl')
    }
    if (typeof options.signalingUrl !== 'string') {
      throw invalid('ERR_INVALID_CONFIG', 'signalingUrl must be a ws:// URL string')
    }
    const json = toJson(options, 'options', 'ERR_INVALID_CONFIG')
    this._native = callSync(() => new native.NativeTransport(json))
    this._peers = new Map()
    this._channels = new Map()
    this._closed = false
    this._native.setEventHandler((batch) => this._onEvents(batch))
  }

  get peerId() { return this._native.peerId }
  get config() { return this._native.config }
  get started() { return this._native.isStarted }

  async start() {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', 'transport is shut down')
    await callAsync(() => this._native.start())
    this._keepAlive = new KeepAlive()
    if (this._unrefd) this._keepAlive.unref()
  }

  // A started transport keeps Node running until shutdown(), like a socket; unref() lets the
  // process exit while it is still connected, ref() undoes that.
  unref() { this._unrefd = true; this._keepAlive?.unref(); return this }
  ref() { this._unrefd = false; this._keepAlive?.ref(); return this }

  // Resolves with the Peer once connected (and its default data channel open).
  async connectPeer(peerId) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', 'transport is shut down')
    checkPeerId(peerId)
    const n = await callAsync(() => this._native.connectPeer(peerId))
    return this._peerFor(n)
  }

  async disconnectPeer(peerId) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', 'transport is shut down')
    checkPeerId(peerId)
    await callAsync(() => this._native.disconnectPeer(peerId))
    this._dropPeer(peerId)
  }

  getPeer(peerId) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', 'transport is shut down')
    checkPeerId(peerId)
    return this._peerFor(callSync(() => this._native.getPeer(peerId)))
  }

  // One frame of PCM (Float32Array or Int16Array, 10/20/40/60 ms at 48 kHz, interleaved) to a
  // peer with an audio track. Encoded synchronously, so call order is send order.
  sendAudio(peerId, samples) {
    try {
      if (this._closed) throw invalid('ERR_SHUT_DOWN', 'transport is shut down')
      checkPeerId(peerId)
      let r
      if (samples instanceof Float32Array) r = this._native.sendAudio(peerId, samples)
      else if (samples instanceof Int16Array) r = this._native.sendAudioI16(peerId, samples)
      else throw invalid('ERR_INVALID_DATA', 'samples must be a Float32Array or an Int16Array')
      // true: encoded and handed to the connection within the call (the usual case).
      return r === true ? Promise.resolve() : r.catch(rethrow)
    } catch (e) {
      return Promise.reject(toWebRtcError(e))
    }
  }

  // One raw video frame: { data: Buffer | Uint8Array (packed I420), width, height,
  // format: 'i420', timestampUs, keyframe }. Copied within the call (`data` may be reused or
  // transferred as soon as this returns), encoded off the JS thread.
  async sendVideo(peerId, frame) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', 'transport is shut down')
    checkPeerId(peerId)
    const f = videoInput(frame)
    await callAsync(() => this._native.sendVideo(peerId, f.buf, f.width, f.height, f.timestampUs, f.keyframe))
  }

  // Encodes one frame once and sends it to every connected peer with a video track.
  async broadcastVideo(frame) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', 'transport is shut down')
    const f = videoInput(frame)
    const r = await callAsync(() => this._native.broadcastVideo(f.buf, f.width, f.height, f.timestampUs, f.keyframe))
    return outcome(r)
  }

  // Encodes once and sends to every connected peer with an audio track: { sent, failed }.
  async broadcastAudio(samples) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', 'transport is shut down')
    let r
    if (samples instanceof Float32Array) r = await callAsync(() => this._native.broadcastAudio(samples))
    else if (samples instanceof Int16Array) r = await callAsync(() => this._native.broadcastAudioI16(samples))
    else throw invalid('ERR_INVALID_DATA', 'samples must be a Float32Array or an Int16Array')
    return outcome(r)
  }

  listPeers() { return this._closed ? [] : this._native.listPeers() }
  listAllPeers() { return this._closed ? [] : this._native.listAllPeers() }

  // The latest quality measurement of every connected peer: { [peerId]: metrics }.
  getStats() {
    const out = {}
    for (const id of this.listPeers()) {
      try { out[id] = this.getPeer(id).getMetrics() } catch { /* closed meanwhile */ }
    }
    return out
  }

  // Closes every peer, channel and the signaling socket. Idempotent; no event after it.
  async shutdown() {
    if (this._closed) return
    this._closed = true
    this._keepAlive?.release()
    await callAsync(() => this._native.shutdown())
    for (const ch of this._channels.values()) ch._markClosed()
    for (const p of this._peers.values()) p._markClosed()
    this._channels.clear()
    this._peers.clear()
    this.removeAllListeners()
  }

  close() { return this.shutdown() }

  _peerFor(n) {
    let p = this._peers.get(n.peerId)
    if (!p || p._closed) {
      p = new Peer(this, n)
      this._peers.set(n.peerId, p)
    } else {
      p._native = n
    }
    return p
  }

  _channelFor(n) {
    let ch = this._channels.get(n.key)
    if (!ch) {
      ch = new DataChannel(n)
      this._channels.set(n.key, ch)
    }
    return ch
  }

  _nativeChannel(peerId, key) {
    try {
      return this._native.getPeer(peerId).channel(key)
    } catch {
      return null
    }
  }

  _dropPeer(peerId) {
    const p = this._peers.get(peerId)
    if (!p) return
    this._peers.delete(peerId)
    for (const [key, ch] of this._channels) {
      if (ch.peerId === peerId) {
        this._channels.delete(key)
        ch._markClosed()
      }
    }
    p._markClosed()
  }

  _onEvents(batch) {
    for (const ev of batch) {
      if (this._closed) return
      try {
        this._onEvent(ev)
      } catch (e) {
        // A listener threw: report it without breaking event delivery.
        process.nextTick(() => { throw e })
      }
    }
  }

  _onEvent(ev) {
    switch (ev.kind) {
      case 'peer-announced':
        this.emit('peer-announced', {
          peerId: ev.peerId,
          capabilities: ev.capabilities || [],
          userData: ev.userData === undefined || ev.userData === null ? null : JSON.parse(ev.userData),
        })
        break
      case 'peer-connected': {
        let n
        try { n = this._native.getPeer(ev.peerId) } catch { return }
        this.emit('peer-connected', this._peerFor(n))
        break
      }
      case 'peer-disconnected':
        this._dropPeer(ev.peerId)
        this.emit('peer-disconnected', { peerId: ev.peerId, reason: ev.reason })
        break
      case 'peer-state': {
        this.emit('peer-state', { peerId: ev.peerId, state: ev.state })
        const p = this._peers.get(ev.peerId)
        if (p) p.emit('state', ev.state)
        break
      }
      case 'data-channel': {
        const n = this._nativeChannel(ev.peerId, ev.channelKey)
        if (!n) return
        let peer
        try { peer = this._peerFor(this._native.getPeer(ev.peerId)) } catch { return }
        const ch = this._channelFor(n)
        peer.emit('data-channel', ch)
        this.emit('data-channel', ch, peer)
        break
      }
      case 'message': {
        let ch = this._channels.get(ev.channelKey)
        if (!ch) {
          const n = this._nativeChannel(ev.peerId, ev.channelKey)
          if (!n) return
          ch = this._channelFor(n)
        }
        ch._deliver(ev)
        break
      }
      case 'channel-close': {
        const ch = this._channels.get(ev.channelKey)
        if (ch) {
          this._channels.delete(ev.channelKey)
          ch._markClosed()
        }
        break
      }
      case 'reconnecting':
      case 'reconnected':
      case 'reconnect-failed': {
        // The peer's path broke and is being recovered (ICE restarts, then full reconnections,
        // per config.reconnection), came back, or recovery gave up (the peer then closes:
        // 'peer-disconnected' follows).
        const p = this._peers.get(ev.peerId)
        const info = { peerId: ev.peerId, attempt: ev.attempt }
        if (ev.kind === 'reconnected') {
          info.isFullReconnect = ev.isFullReconnect
          info.previousDurationMs = ev.previousDurationMs
        }
        if (p) p.emit(ev.kind, info)
        this.emit(ev.kind, info, p ?? null)
        break
      }
      case 'session-output': {
        // What a session's pipeline reported: { sessionId, nodeId, peerId, event: { name, data } }
        // or { ..., error: { code, message } }.
        const out = JSON.parse(ev.json)
        if (!out.event) delete out.event
        if (!out.error) delete out.error
        this._sessionObjects?.get(out.sessionId)?.emit('output', out)
        this.emit('session-output', out)
        break
      }
      case 'quality': {
        const p = this._peers.get(ev.peerId)
        const m = JSON.parse(ev.json)
        if (p) p.emit('quality', m)
        this.emit('quality', m, p ?? null)
        break
      }
      case 'track':
      case 'track-ended': {
        // A remote track started, or ended (the peer removed it and renegotiated).
        const p = this._peers.get(ev.peerId)
        const info = { kind: ev.trackKind, trackId: ev.trackId }
        if (p) p.emit(ev.kind, info)
        this.emit(ev.kind, info, p ?? null)
        break
      }
      case 'audio-frame': {
        const p = this._peers.get(ev.peerId)
        // wallClockUs is on the sender's clock once an RTCP sender report arrived (confidence
        // 1.0), on the local arrival clock before (0.5); bufferDelayMs is the jitter-buffer wait.
        const frame = {
          samples: ev.samples,
          sampleRate: ev.sampleRate,
          channels: ev.channels,
          rtpTimestamp: ev.rtpTimestamp,
          wallClockUs: ev.wallClockUs,
          bufferDelayMs: ev.bufferDelayMs,
          syncConfidence: ev.syncConfidence,
          driftPpm: ev.driftPpm,
          concealed: ev.concealed,
        }
        if (p) p.emit('audio-frame', frame)
        this.emit('audio-frame', frame, p ?? null)
        break
      }
      case 'video-frame': {
        const p = this._peers.get(ev.peerId)
        const frame = {
          data: ev.data,
          width: ev.width,
          height: ev.height,
          format: 'i420',
          rtpTimestamp: ev.rtpTimestamp,
          wallClockUs: ev.wallClockUs,
          keyframe: ev.keyframe,
          framerate: ev.framerate ?? null,
          syncConfidence: ev.syncConfidence,
          driftPpm: ev.driftPpm,
          bufferDelayMs: ev.bufferDelayMs,
          // Video wall clock − audio playout position (negative: video behind); null while the
          // peer sends no audio. Video is held or released to keep it within ±40 ms.
          audioSyncOffsetMs: ev.audioSyncOffsetMs ?? null,
        }
        if (p) p.emit('video-frame', frame)
        this.emit('video-frame', frame, p ?? null)
        break
      }
      case 'signaling-reconnecting':
        this.emit('signaling-reconnecting', { attempt: ev.attempt })
        break
      case 'signaling-reconnected':
        this.emit('signaling-reconnected', {})
        break
      case 'error':
        if (this.listenerCount('error') > 0) {
          const e = invalid(ev.errorCode, ev.errorMessage)
          e.peerId = ev.peerId ?? null
          this.emit('error', e)
        }
        break
      default:
        break
    }
  }
}

const { Session, sessionMethods } = require('./session')
Object.assign(WebRtcTransport.prototype, sessionMethods, {
  _checkOpen() {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', 'transport is shut down')
  },
})

module.exports = { WebRtcTransport, Session }
