'use strict'
const fs = require('node:fs')
const native = require('./native')
const { callSync, invalid } = require('./errors')

// A processing pipeline from a manifest (YAML or JSON): { nodes: [{ id, node_type, params }],
// connections: [{ from, to }] }. Validated before use: ERR_INVALID_MANIFEST names the node or
// connection at fault. Built-in node types: Input, Output, Passthrough, Gain, Resample,
// VoiceActivityDetection, AudioMixer, VideoScale.
class Pipeline {
  constructor(handle) {
    this._native = handle
  }

  // `source`: a path to a .yaml/.yml/.json file, or the manifest text itself, or an object.
  static async fromManifest(source) {
    if (source !== null && typeof source === 'object') return Pipeline.fromText(JSON.stringify(source))
    if (typeof source !== 'string') throw invalid('ERR_INVALID_MANIFEST', 'manifest must be a path, manifest text or an object')
    const isText = /[\n{:]/.test(source) && !fs.existsSync(source)
    if (isText) return Pipeline.fromText(source)
    if (!fs.existsSync(source)) throw invalid('ERR_INVALID_MANIFEST', `manifest file not found: ${source}`)
    return new Pipeline(callSync(() => native.NativePipeline.fromFile(source)))
  }

  static fromText(text) {
    return new Pipeline(callSync(() => native.NativePipeline.fromText(String(text))))
  }

  // The manifest as JSON text (sessions build their own instance from it).
  get manifestText() { return this._native.manifestJson }

  // Node ids in the order they run.
  get executionOrder() { return this._native.executionOrder }

  // Runs one frame through the pipeline (unary mode) and returns what came out:
  // [{ nodeId, frame }] for frames out of Output nodes, [{ nodeId, event: { name, data } }] for
  // node events (e.g. VAD speech-start), [{ nodeId, error }] for a node that failed on this frame
  // (the pipeline keeps running). Input: audio { samples: Float32Array, sampleRate, channels,
  // peerId?, timestampUs? } or video { data: Buffer (I420), width, height, peerId?, timestampUs? }.
  async execute(input) {
    if (input === null || typeof input !== 'object') throw invalid('ERR_INVALID_DATA', 'input must be an audio or video frame object')
    let outs
    if (input.samples !== undefined) {
      if (!(input.samples instanceof Float32Array)) throw invalid('ERR_INVALID_DATA', 'samples must be a Float32Array')
      outs = callSync(() => this._native.executeAudio(input.samples, input.sampleRate ?? 48000, input.channels ?? 1, input.peerId ?? null, input.timestampUs ?? null))
    } else if (input.data !== undefined) {
      if (!Buffer.isBuffer(input.data) && !(input.data instanceof Uint8Array)) throw invalid('ERR_INVALID_DATA', 'data must be a Buffer (I420)')
      const data = Buffer.isBuffer(input.data) ? input.data : Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength)
      outs = callSync(() => this._native.executeVideo(data, input.width, input.height, input.peerId ?? null, input.timestampUs ?? null))
    } else {
      throw invalid('ERR_INVALID_DATA', 'input needs samples (audio) or data (video)')
    }
    return outs.map(toOutput)
  }
}

function toOutput(o) {
  if (o.kind === 'audio') {
    return { nodeId: o.nodeId, frame: { samples: o.samples, sampleRate: o.sampleRate, channels: o.channels, peerId: o.peerId ?? null, timestampUs: o.timestampUs } }
  }
  if (o.kind === 'video') {
    return { nodeId: o.nodeId, frame: { data: o.data, width: o.width, height: o.height, format: 'i420', peerId: o.peerId ?? null, timestampUs: o.timestampUs } }
  }
  if (o.kind === 'event') {
    return { nodeId: o.nodeId, event: { name: o.name, data: o.json ? JSON.parse(o.json) : null, ...(o.peerId ? { peerId: o.peerId } : {}) } }
  }
  return { nodeId: o.nodeId, error: { code: o.errorCode, message: o.errorMessage } }
}

module.exports = { Pipeline }
