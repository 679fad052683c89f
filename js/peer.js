'use strict'
const { EventEmitter } = require('node:events')
const { callAsync, callSync, invalid, toJson } = require('./errors')

// One remote peer. Events: 'data-channel' (channel), 'audio-frame', 'video-frame' (frame), 'state' (state), 'close'.
class Peer extends EventEmitter {
  constructor(transport, native) {
    super()
    this._transport = transport
    this._native = native
    this.peerId = native.peerId
    this._closed = false
  }

  get state() { return this._closed ? 'closed' : this._native.state }
  get outgoing() { return this._native.outgoing }

  // The channel opened with an outgoing connection (label 'default'), if any.
  get defaultChannel() {
    const n = this._native.defaultChannel()
    return n ? this._transport._channelFor(n) : null
  }

  get channels() {
    return this._native.channels().map((n) => this._transport._channelFor(n))
  }

  async createDataChannel(label, options = {}) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', `peer ${this.peerId} is closed`)
    if (typeof label !== 'string') throw invalid('ERR_INVALID_DATA', 'label must be a string')
    const mode = (options && options.mode) || 'reliable'
    if (typeof mode !== 'string') throw invalid('ERR_INVALID_DATA', "mode must be 'reliable' or 'unreliable'")
    const n = await callAsync(() => this._native.createDataChannel(label, mode))
    return this._transport._channelFor(n)
  }

  // Adds an Opus track sending to this peer and renegotiates; resolves once the answer has
  // negotiated it (nothing is sent on it before). config: { sampleRate: 48000,
  // channels: 1 | 2, bitrate, complexity, fec, dtx } (defaults for what is missing).
  async addAudioTrack(config = {}) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', `peer ${this.peerId} is closed`)
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw invalid('ERR_INVALID_DATA', 'audio track config must be an object')
    }
    await callAsync(() => this._native.addAudioTrack(toJson(config, 'audio track config', 'ERR_INVALID_CONFIG')))
  }

  get hasAudioTrack() { return !this._closed && this._native.hasAudioTrack }

  // Adds a video track (the transport's videoCodec) and renegotiates; resolves once negotiated.
  // config: { width, height,
  // framerate, bitrate, keyframeInterval } (defaults 1280x720, 30 fps, 2 Mbit/s, 60).
  async addVideoTrack(config = {}) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', `peer ${this.peerId} is closed`)
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw invalid('ERR_INVALID_DATA', 'video track config must be an object')
    }
    await callAsync(() => this._native.addVideoTrack(toJson(config, 'video track config', 'ERR_INVALID_CONFIG')))
  }

  get hasVideoTrack() { return !this._closed && this._native.hasVideoTrack }

  // The latest quality measurement: { rttMs, packetLossRate, jitterMs, bitrateKbps: { in, out },
  // qualityScore, availableBandwidthKbps?, video? } (zeros until the first, one qualityIntervalMs
  // after connecting). The same object arrives with every 'quality' event. video (with a local
  // video track): { width, height, framerate, targetBitrateBps } it sends at now.
  getMetrics() {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', `peer ${this.peerId} is closed`)
    return JSON.parse(callSync(() => this._native.metricsJson()))
  }

  // A/V sync of what this peer sends us: per-stream clock mapping (sender reports, confidence),
  // drift, lip-sync state. Throws ERR_SHUT_DOWN once the peer is closed.
  getSyncState() {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', `peer ${this.peerId} is closed`)
    return JSON.parse(callSync(() => this._native.syncStateJson()))
  }

  // Jitter-buffer statistics of what this peer sends us: { audio, video }, each { buffered,
  // bufferedMs, received, released, late, lost, reordered, discarded, duplicates,
  // currentDelayMs, targetDelayMs, jitterMs }.
  getBufferStatistics() {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', `peer ${this.peerId} is closed`)
    return JSON.parse(callSync(() => this._native.bufferStatisticsJson()))
  }

  // Changes the target bitrate (bit/s) of the 'audio' or 'video' track sending to this peer,
  // from its next frame on. ERR_INVALID_CONFIG out of range, ERR_INVALID_DATA without the track.
  setBitrate(kind, bitrate) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', `peer ${this.peerId} is closed`)
    if (kind !== 'audio' && kind !== 'video') throw invalid('ERR_INVALID_DATA', "track kind must be 'audio' or 'video'")
    if (!Number.isInteger(bitrate) || bitrate <= 0 || bitrate > 0xffffffff) {
      throw invalid('ERR_INVALID_CONFIG', `bitrate must be a positive integer (bit/s), got ${bitrate}`)
    }
    callSync(() => this._native.setBitrate(kind, bitrate))
  }

  // Stops sending the 'audio' or 'video' track and renegotiates; the remote side gets
  // 'track-ended'. A track of that kind can be added again afterwards.
  async removeTrack(kind) {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', `peer ${this.peerId} is closed`)
    if (kind !== 'audio' && kind !== 'video') throw invalid('ERR_INVALID_DATA', "track kind must be 'audio' or 'video'")
    await callAsync(() => this._native.removeTrack(kind))
  }

  // Asks the peer for a keyframe on the video it sends us (RTCP PLI).
  async requestKeyframe() {
    if (this._closed) throw invalid('ERR_SHUT_DOWN', `peer ${this.peerId} is closed`)
    await callAsync(() => this._native.requestKeyframe())
  }

  // Closes the connection (same as transport.disconnectPeer(peer.peerId)).
  close() {
    return this._transport.disconnectPeer(this.peerId).catch((e) => {
      if (e.code !== 'ERR_PEER_NOT_FOUND' && e.code !== 'ERR_SHUT_DOWN') throw e
    })
  }

  _markClosed() {
    if (this._closed) return
    this._closed = true
    this.emit('close')
    this.removeAllListeners()
  }
}

module.exports = { Peer }
