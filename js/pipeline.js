'use strict'
const fs = require('node:fs')
const { AsyncLocalStorage } = require('node:async_hooks')
const native = require('./native')
const { callSync, invalid, toWebRtcError, toJson } = require('./errors')

// Node types written in JS: name → { fn, timeoutMs } (Pipeline.registerNode).
const jsNodeTypes = new Map()
// How long a JS node's promise may take on one frame before the frame is dropped with an
// ERR_TIMEOUT error output (a promise that never settles would otherwise stall the pipeline).
const DEFAULT_NODE_TIMEOUT_MS = 5000
const MAX_NODE_TIMEOUT_MS = 600000
// The Pipeline whose JS node is running (also across the node's awaits): a node that ran its
// own pipeline would wait for itself forever, so execute() refuses that.
const insideNode = new AsyncLocalStorage()

// A processing pipeline from a manifest (YAML or JSON): { nodes: [{ id, node_type, params }],
// connections: [{ from, to }] }. Validated before use: ERR_INVALID_MANIFEST names the node or
// connection at fault. Built-in node types: Input, Output, Passthrough, Gain, Resample,
// VoiceActivityDetection, AudioMixer, VideoScale; plus the JS node types registered with
// Pipeline.registerNode when the pipeline is built.
//
// JS nodes: the native pipeline runs a frame until it reaches a JS node, hands that frame back
// here, and this file calls the node's function and gives its result back (resume). One frame
// runs at a time per Pipeline; execute() calls queue up behind each other.
class Pipeline {
  constructor(handle, jsFns) {
    this._native = handle
    // nodeId → { fn, ctx } for the JS nodes of this manifest (functions as registered when the
    // pipeline was built).
    this._jsNodes = new Map()
    this._jsFns = jsFns
    const manifest = JSON.parse(handle.manifestJson)
    for (const n of manifest.nodes) {
      const t = jsFns.get(n.node_type)
      if (t) this._jsNodes.set(n.id, { fn: t.fn, timeoutMs: t.timeoutMs, ctx: Object.freeze({ nodeId: n.id, nodeType: n.node_type, params: n.params ?? {} }) })
    }
    this._tail = Promise.resolve()
  }

  // Registers a node type written in JS: manifests built afterwards can use `node_type: name`.
  // fn(frame, ctx) gets each audio frame { samples: Float32Array, sampleRate, channels, peerId,
  // timestampUs } or video frame { data: Buffer (I420), width, height, format: 'i420', peerId,
  // timestampUs } that reaches the node, and ctx { nodeId, nodeType, params }. It returns a frame
  // (fields it leaves out are taken from the input frame), an event { event: name, data }, an
  // array of those, or null/undefined (drop the frame); or a Promise of any of these. A throw,
  // a rejection or a bad return value gives an error output for that frame and the pipeline
  // carries on. Registering a name again replaces the function for pipelines built later.
  // options: { timeoutMs: how long a returned Promise may take (default 5000, 1..=600000); past
  // it the frame is dropped with an ERR_TIMEOUT error output and the next frame runs }.
  // ERR_INVALID_CONFIG: a name that is not [A-Za-z_][A-Za-z0-9_.-]* (≤ 64), a built-in type
  // name, fn not a function, or a bad timeoutMs.
  static registerNode(name, fn, options = {}) {
    if (typeof name !== 'string') throw invalid('ERR_INVALID_CONFIG', 'node type name must be a string')
    callSync(() => native.NativePipeline.checkNodeTypeName(name))
    if (typeof fn !== 'function') throw invalid('ERR_INVALID_CONFIG', `node type '${name}': the node must be a function (frame, ctx) => output`)
    if (options === null || typeof options !== 'object') throw invalid('ERR_INVALID_CONFIG', 'registerNode options must be an object')
    const timeoutMs = options.timeoutMs ?? DEFAULT_NODE_TIMEOUT_MS
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_NODE_TIMEOUT_MS) {
      throw invalid('ERR_INVALID_CONFIG', `node type '${name}': timeoutMs must be an integer in 1..=${MAX_NODE_TIMEOUT_MS}`)
    }
    jsNodeTypes.set(name, { fn, timeoutMs })
  }

  // Removes a JS node type (pipelines already built keep it); returns whether it was registered.
  static unregisterNode(name) { return jsNodeTypes.delete(name) }

  // Names of the registered JS node types.
  static registeredNodes() { return [...jsNodeTypes.keys()] }

  // `source`: a path to a .yaml/.yml/.json file, or the manifest text itself, or an object.
  static async fromManifest(source) {
    if (source !== null && typeof source === 'object') return Pipeline.fromText(toJson(source, 'manifest', 'ERR_INVALID_MANIFEST'))
    if (typeof source !== 'string') throw invalid('ERR_INVALID_MANIFEST', 'manifest must be a path, manifest text or an object')
    const isText = /[\n{:]/.test(source) && !fs.existsSync(source)
    if (isText) return Pipeline.fromText(source)
    if (!fs.existsSync(source)) throw invalid('ERR_INVALID_MANIFEST', `manifest file not found: ${source}`)
    const fns = new Map(jsNodeTypes)
    return new Pipeline(callSync(() => native.NativePipeline.fromFile(source, [...fns.keys()])), fns)
  }

  static fromText(text) {
    const fns = new Map(jsNodeTypes)
    return new Pipeline(callSync(() => native.NativePipeline.fromText(String(text), [...fns.keys()])), fns)
  }

  // The manifest as JSON text (sessions build their own instance from it).
  get manifestText() { return this._native.manifestJson }

  // Node ids in the order they run.
  get executionOrder() { return this._native.executionOrder }

  // Ids of this pipeline's JS nodes.
  get jsNodeIds() { return [...this._jsNodes.keys()] }

  // Runs one frame through the pipeline (unary mode) and returns what came out:
  // [{ nodeId, frame }] for frames out of Output nodes, [{ nodeId, event: { name, data } }] for
  // node events (e.g. VAD speech-start), [{ nodeId, error: { code, message } }] for a node that
  // failed on this frame (the pipeline keeps running). Input: audio { samples: Float32Array,
  // sampleRate?, channels?, peerId?, timestampUs? } or video { data: Buffer (I420), width,
  // height, peerId?, timestampUs? }; ERR_INVALID_DATA otherwise.
  async execute(input) {
    if (insideNode.getStore() === this) throw invalid('ERR_INVALID_CONFIG', "a JS node cannot execute its own pipeline (it would wait for itself)")
    const frame = checkInput(input)
    const outs = []
    await this._enqueue(() => this._run(frame, (o) => outs.push(o)))
    return outs
  }

  // Streaming mode: a PipelineStream with its own instance of this manifest (node state, e.g.
  // VAD, carries over from frame to frame of the stream, and is separate from execute()'s).
  // options: { highWaterMark: frames queued on each side before write() waits (default 16) }.
  stream(options = {}) {
    if (options === null || typeof options !== 'object') throw invalid('ERR_INVALID_CONFIG', 'stream options must be an object')
    const hwm = options.highWaterMark ?? 16
    if (!Number.isInteger(hwm) || hwm < 1) throw invalid('ERR_INVALID_CONFIG', 'highWaterMark must be an integer ≥ 1')
    const handle = callSync(() => native.NativePipeline.fromText(this._native.manifestJson, [...this._jsFns.keys()]))
    return new PipelineStream(new Pipeline(handle, this._jsFns), hwm)
  }

  // Runs `fn` after every run queued before it (one frame under way per native instance).
  _enqueue(fn) {
    const run = this._tail.then(fn)
    this._tail = run.catch(() => {})
    return run
  }

  // Drives one checked frame through the native pipeline, running JS nodes as they come up;
  // every output goes to `sink` in order.
  async _run(frame, sink) {
    const n = this._native
    let step = frame.kind === 'audio'
      ? callSync(() => n.beginAudio(frame.samples, frame.sampleRate, frame.channels, frame.peerId, frame.timestampUs))
      : callSync(() => n.beginVideo(frame.data, frame.width, frame.height, frame.peerId, frame.timestampUs))
    try {
      for (;;) {
        for (const o of step.outputs) sink(toOutput(o))
        if (!step.call) return
        const call = step.call
        const node = this._jsNodes.get(call.nodeId)
        const input = toOutput(call).frame
        let failure = null
        let outs = []
        try {
          if (!node) throw invalid('ERR_INTERNAL', `no JS function for node '${call.nodeId}'`)
          let result = insideNode.run(this, () => node.fn(input, node.ctx))
          if (result !== null && typeof result === 'object' && typeof result.then === 'function') result = await settleWithin(result, node.timeoutMs, call.nodeId)
          outs = nodeOutputs(result, input, call.nodeId)
          step = callSync(() => n.resume(outs))
          continue
        } catch (e) {
          failure = nodeError(e, call.nodeId)
        }
        sink({ nodeId: call.nodeId, error: failure })
        step = callSync(() => n.resume([]))
      }
    } finally {
      n.abort()
    }
  }
}

// A pipeline in streaming mode: write frames in, read outputs out with `for await`.
//   const s = pipeline.stream()
//   (async () => { for (const f of frames) await s.write(f); s.end() })()
//   for await (const out of s) ...        // { nodeId, frame } | { nodeId, event } | { nodeId, error }
// Backpressure: at most highWaterMark frames wait to be processed and at most highWaterMark
// outputs wait to be read (writableNeedDrain says, synchronously, when the input side is full); processing pauses while the outputs are full, and write() resolves
// only once its frame has a place in the input queue (so a writer that awaits each write waits
// for a slow reader). write(bad input) rejects with ERR_INVALID_DATA and the stream carries on;
// write after end()/close() rejects with ERR_SHUT_DOWN. A node's error is an output, not a
// stream failure. end(): no more input; the iterator finishes once everything written has come
// out. close(): stop now; pending writes reject (ERR_SHUT_DOWN), queued frames and outputs are
// dropped, the iterator finishes. Both idempotent. One reader at a time.
class PipelineStream {
  constructor(pipeline, highWaterMark) {
    this._p = pipeline
    this.highWaterMark = highWaterMark
    this._in = [] // checked frames waiting to be processed
    this._writers = [] // { frame, resolve, reject } waiting for room in _in
    this._out = [] // outputs waiting to be read
    this._readers = [] // { resolve } waiting for an output
    this._ended = false
    this._closed = false
    this._busy = false // the pump is running
    this._idle = [] // resolvers waiting for the pump to stop (close())
  }

  get ended() { return this._ended || this._closed }

  // Frames written and not yet taken for processing (queued, plus writes waiting for room).
  get writableLength() { return this._in.length + this._writers.length }

  // The synchronous backpressure signal (as Node's Writable): true once the input queue holds
  // highWaterMark frames, i.e. a write now would wait. A writer that does not await each write
  // stops while this is true and resumes when its last write resolves; the stream then holds at
  // most highWaterMark + 1 of its frames. Writes made anyway are still accepted (they wait).
  get writableNeedDrain() { return !this._closed && !this._ended && this._in.length + this._writers.length >= this.highWaterMark }

  write(input) {
    if (this._ended || this._closed) return Promise.reject(invalid('ERR_SHUT_DOWN', 'write after end() or close()'))
    let frame
    try {
      frame = checkInput(input)
    } catch (e) {
      return Promise.reject(e)
    }
    if (this._in.length < this.highWaterMark && this._writers.length === 0) {
      this._in.push(frame)
      this._pump()
      return Promise.resolve()
    }
    return new Promise((resolve, reject) => {
      this._writers.push({ frame, resolve, reject })
    })
  }

  end() {
    if (this._ended || this._closed) return
    this._ended = true
    this._pump()
    this._settleReaders()
  }

  close() {
    if (this._closed) return
    this._closed = true
    this._ended = true
    for (const w of this._writers.splice(0)) w.reject(invalid('ERR_SHUT_DOWN', 'stream closed'))
    this._in.length = 0
    this._out.length = 0
    this._settleReaders()
  }

  [Symbol.asyncIterator]() { return this }

  next() {
    if (this._out.length > 0) {
      const value = this._out.shift()
      this._pump()
      return Promise.resolve({ value, done: false })
    }
    if (this._finished()) return Promise.resolve({ value: undefined, done: true })
    return new Promise((resolve) => this._readers.push(resolve))
  }

  // `break` out of for-await closes the stream.
  return() {
    this.close()
    return Promise.resolve({ value: undefined, done: true })
  }

  _finished() {
    return this._closed || (this._ended && !this._busy && this._in.length === 0 && this._writers.length === 0 && this._out.length === 0)
  }

  _settleReaders() {
    while (this._readers.length > 0 && this._out.length > 0) this._readers.shift()({ value: this._out.shift(), done: false })
    if (this._finished()) for (const r of this._readers.splice(0)) r({ value: undefined, done: true })
  }

  _emit(out) {
    if (this._closed) return
    if (this._readers.length > 0) this._readers.shift()({ value: out, done: false })
    else this._out.push(out)
  }

  _refill() {
    while (this._in.length < this.highWaterMark && this._writers.length > 0) {
      const w = this._writers.shift()
      this._in.push(w.frame)
      w.resolve()
    }
  }

  async _pump() {
    if (this._busy) return
    this._busy = true
    try {
      while (!this._closed && this._in.length > 0 && this._out.length < this.highWaterMark) {
        const frame = this._in.shift()
        this._refill()
        try {
          await this._p._enqueue(() => this._p._run(frame, (o) => this._emit(o)))
        } catch (e) {
          // Not a node's failure (those are outputs): report it as an output too.
          const err = toWebRtcError(e)
          this._emit({ nodeId: null, error: { code: err.code, message: err.message } })
        }
      }
      this._refill()
    } finally {
      this._busy = false
      this._settleReaders()
    }
    // Room may have appeared while the last frame was under way.
    if (!this._closed && this._in.length > 0 && this._out.length < this.highWaterMark) this._pump()
  }
}

// Checks a frame given to execute()/write(); ERR_INVALID_DATA for anything else.
function checkInput(input) {
  if (input === null || typeof input !== 'object') throw invalid('ERR_INVALID_DATA', 'input must be an audio or video frame object')
  const peerId = input.peerId ?? null
  if (peerId !== null && typeof peerId !== 'string') throw invalid('ERR_INVALID_DATA', 'peerId must be a string')
  const timestampUs = input.timestampUs ?? 0
  if (!Number.isFinite(timestampUs)) throw invalid('ERR_INVALID_DATA', 'timestampUs must be a finite number')
  if (input.samples !== undefined) {
    if (!(input.samples instanceof Float32Array)) throw invalid('ERR_INVALID_DATA', 'samples must be a Float32Array')
    const sampleRate = input.sampleRate ?? 48000
    const channels = input.channels ?? 1
    // Only the types here: what an audio frame may be is the core's rule (AudioFrame::checked).
    if (!Number.isInteger(sampleRate) || sampleRate < 0 || sampleRate > 0xffffffff) throw invalid('ERR_INVALID_DATA', 'sampleRate must be a non-negative integer')
    if (!Number.isInteger(channels) || channels < 0 || channels > 0xffffffff) throw invalid('ERR_INVALID_DATA', 'channels must be a non-negative integer')
    callSync(() => native.checkAudioFrame(input.samples.length, sampleRate, channels))
    return { kind: 'audio', samples: input.samples, sampleRate, channels, peerId, timestampUs }
  }
  if (input.data !== undefined) {
    if (!Buffer.isBuffer(input.data) && !(input.data instanceof Uint8Array)) throw invalid('ERR_INVALID_DATA', 'data must be a Buffer (I420)')
    const { width, height } = input
    // Only the types here: the sizes and length of an I420 frame are the core's rule
    // (VideoFrame::checked).
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0 || width > 0xffffffff || height > 0xffffffff) {
      throw invalid('ERR_INVALID_DATA', 'width and height must be non-negative integers')
    }
    if (input.data.length > 0xffffffff) throw invalid('ERR_INVALID_DATA', 'video frame: data too large')
    callSync(() => native.checkVideoFrame(input.data.length, width, height))
    const data = Buffer.isBuffer(input.data) ? input.data : Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength)
    return { kind: 'video', data, width, height, peerId, timestampUs }
  }
  throw invalid('ERR_INVALID_DATA', 'input needs samples (audio) or data (video)')
}

// What a JS node returned → native outputs; ERR_INVALID_DATA (naming the node) for anything
// that is not a frame, an event, an array of those, null or undefined.
function nodeOutputs(result, input, nodeId) {
  if (result === null || result === undefined) return []
  const items = Array.isArray(result) ? result : [result]
  return items.map((item, k) => {
    const where = Array.isArray(result) ? `JS node '${nodeId}' output #${k + 1}` : `JS node '${nodeId}' output`
    if (item === null || typeof item !== 'object') throw invalid('ERR_INVALID_DATA', `${where}: expected a frame or an event, got ${item === null ? 'null' : typeof item}`)
    if (item.event !== undefined) {
      if (typeof item.event !== 'string' || item.event === '') throw invalid('ERR_INVALID_DATA', `${where}: event must be a non-empty string`)
      let json
      try {
        json = item.data === undefined ? undefined : JSON.stringify(item.data)
      } catch (e) {
        throw invalid('ERR_INVALID_DATA', `${where}: event data is not JSON-serializable (${e.message})`)
      }
      return { kind: 'event', name: item.event, json: json ?? undefined }
    }
    // Fields a frame leaves out come from the input frame (when it is of the same kind).
    const inherit = { peerId: 'peerId' in item ? item.peerId : input.peerId, timestampUs: item.timestampUs ?? input.timestampUs }
    if (item.samples !== undefined && input.samples) Object.assign(inherit, { sampleRate: item.sampleRate ?? input.sampleRate, channels: item.channels ?? input.channels })
    if (item.samples === undefined && item.data !== undefined && input.data) Object.assign(inherit, { width: item.width ?? input.width, height: item.height ?? input.height })
    let f
    try {
      f = checkInput({ ...item, ...inherit })
    } catch (e) {
      throw invalid('ERR_INVALID_DATA', `${where}: ${e.message}`)
    }
    if (f.kind === 'audio') return { kind: 'audio', samples: f.samples, sampleRate: f.sampleRate, channels: f.channels, peerId: f.peerId ?? undefined, timestampUs: f.timestampUs }
    return { kind: 'video', data: f.data, width: f.width, height: f.height, peerId: f.peerId ?? undefined, timestampUs: f.timestampUs }
  })
}

// A JS node's throw → the error of its error output: WebRtcErrors and errors with an ERR_* code
// keep it; anything else is ERR_INTERNAL. The message names the node.
// `p`, or ERR_TIMEOUT once `ms` have passed (the late result, if any, is ignored).
function settleWithin(p, ms, nodeId) {
  let timer
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(invalid('ERR_TIMEOUT', `JS node '${nodeId}' did not settle within ${ms} ms; its frame is dropped`)), ms)
  })
  return Promise.race([Promise.resolve(p), late]).finally(() => clearTimeout(timer))
}

function nodeError(e, nodeId) {
  const code = e && typeof e.code === 'string' && /^ERR_[A-Z0-9_]+$/.test(e.code) ? e.code : 'ERR_INTERNAL'
  const msg = e && typeof e.message === 'string' ? e.message : String(e)
  return { code, message: msg.includes(`'${nodeId}'`) ? msg : `JS node '${nodeId}': ${msg}` }
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

// Sessions run their pipelines on the transport's threads, where JS cannot be called: a
// manifest (a Pipeline, or text) with JS nodes is refused there with ERR_INVALID_MANIFEST
// naming the node. Text that does not parse is left for the session to report.
function refuseJsNodes(pipelineOrText) {
  let nodes
  if (pipelineOrText instanceof Pipeline) {
    nodes = [...pipelineOrText._jsNodes.values()].map((n) => ({ id: n.ctx.nodeId, nodeType: n.ctx.nodeType }))
  } else if (typeof pipelineOrText === 'string') {
    try {
      nodes = native.NativePipeline.manifestNodes(pipelineOrText).filter((n) => jsNodeTypes.has(n.nodeType))
    } catch {
      return
    }
  } else {
    return
  }
  if (nodes.length > 0) {
    const n = nodes[0]
    throw invalid('ERR_INVALID_MANIFEST', `node '${n.id}' (${n.nodeType}) is a JS node: JS nodes run in Pipeline.execute/stream only, not in sessions`)
  }
}

module.exports = { Pipeline, PipelineStream, refuseJsNodes }
