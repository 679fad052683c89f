'use strict'
const { EventEmitter } = require('node:events')
const { callSync, callAsync, invalid, toWebRtcError, toJson } = require('./errors')

const CONTROL_TYPES = new Set(['pipeline-start', 'pipeline-stop', 'pipeline-pause'])
// Messages held for a channel nobody listens to yet. The backlog is bounded by count and by
// bytes: per channel BACKLOG_BYTES, and per remote peer BACKLOG_PEER_BYTES across all its
// channels (the remote chooses how many channels to open). A message that does not fit is
// dropped (the newest: what is kept stays a gap-free, in-order prefix) and counted in
// droppedMessages / droppedBytes. Dropping, not backpressure: the core hands each message to
// JS as it arrives, so there is no SCTP read to pause from here.
const BACKLOG_LIMIT = 10000
const BACKLOG_BYTES = 4 * 1024 * 1024
const BACKLOG_PEER_BYTES = 16 * 1024 * 1024
// peerId → bytes held in the backlogs of that peer's channels.
const peerBacklogBytes = new Map()

// A data channel of one peer. Events: 'message' ({ kind, data }), 'control', 'close'.
class DataChannel extends EventEmitter {
  constructor(native) {
    super()
    this._native = native
    this._key = native.key
    this._closed = false
    this._backlog = []
    this._backlogBytes = 0
    this.droppedMessages = 0
    this.droppedBytes = 0
    this.on('newListener', (name) => {
      if (name === 'message' && this._backlog.length) setImmediate(() => this._flush())
    })
  }

  get label() { return this._native.label }
  get peerId() { return this._native.peerId }
  get mode() { return this._native.mode }
  get readyState() { return this._closed ? 'closed' : this._native.state }
  get bufferedAmount() { return this._native.bufferedAmount }
  // Bytes of received messages held for want of a 'message' listener (≤ 4 MiB).
  get backlogBytes() { return this._backlogBytes }

  // JSON for objects, text for strings, binary for Buffer/TypedArray/ArrayBuffer. Resolves once
  // the message is handed to SCTP; call order is send order.
  send(message) {
    if (this._closed) return Promise.reject(invalid('ERR_SHUT_DOWN', 'data channel is closed'))
    try {
      if (typeof message === 'string') return callAsync(() => this._native.sendText('text', message))
      if (Buffer.isBuffer(message)) return callAsync(() => this._native.sendBinary(message))
      if (ArrayBuffer.isView(message)) {
        return callAsync(() => this._native.sendBinary(Buffer.from(message.buffer, message.byteOffset, message.byteLength)))
      }
      if (message instanceof ArrayBuffer) return callAsync(() => this._native.sendBinary(Buffer.from(message)))
      if (message !== null && typeof message === 'object') {
        const text = toJson(message, 'message', 'ERR_INVALID_DATA', { finite: false })
        if (text === undefined) throw invalid('ERR_INVALID_DATA', 'message is not JSON-serializable')
        return callAsync(() => this._native.sendText('json', text))
      }
      throw invalid('ERR_INVALID_DATA', `cannot send a ${message === null ? 'null' : typeof message}: use an object, a string or a Buffer`)
    } catch (e) {
      return Promise.reject(toWebRtcError(e))
    }
  }

  // Pipeline control: { type: 'pipeline-start' | 'pipeline-stop' | 'pipeline-pause', sessionId }.
  sendControl(control) {
    if (!control || !CONTROL_TYPES.has(control.type) || typeof control.sessionId !== 'string') {
      return Promise.reject(invalid('ERR_INVALID_DATA',
        "control must be { type: 'pipeline-start' | 'pipeline-stop' | 'pipeline-pause', sessionId: string }"))
    }
    return this.send(control)
  }

  async close() {
    if (this._closed) return
    await callAsync(() => this._native.close())
    this._markClosed()
  }

  _deliver(ev) {
    if (this._closed) return
    let msg
    if (ev.messageKind === 'binary') msg = { kind: 'binary', data: ev.data }
    else if (ev.messageKind === 'json') {
      try { msg = { kind: 'json', data: JSON.parse(ev.text) } } catch { msg = { kind: 'text', data: ev.text } }
    } else msg = { kind: 'text', data: ev.text }
    if (this.listenerCount('message') === 0) {
      const size = ev.messageKind === 'binary' ? ev.data.length : Buffer.byteLength(ev.text ?? '')
      const peer = this._native.peerId
      const peerBytes = peerBacklogBytes.get(peer) ?? 0
      if (this._backlog.length < BACKLOG_LIMIT && this._backlogBytes + size <= BACKLOG_BYTES &&
          peerBytes + size <= BACKLOG_PEER_BYTES) {
        this._backlog.push(msg)
        this._backlogBytes += size
        peerBacklogBytes.set(peer, peerBytes + size)
      } else {
        this.droppedMessages++
        this.droppedBytes += size
      }
      return
    }
    // A listener came before the backlog's flush ran: the backlog goes first (order kept).
    if (this._backlog.length) this._flush()
    this._emitMessage(msg)
  }

  _emitMessage(msg) {
    this.emit('message', msg)
    if (msg.kind === 'json' && msg.data && CONTROL_TYPES.has(msg.data.type)) this.emit('control', msg.data)
  }

  _flush() {
    const queued = this._backlog
    this._backlog = []
    if (this._backlogBytes) {
      const peer = this._native.peerId
      const left = (peerBacklogBytes.get(peer) ?? 0) - this._backlogBytes
      if (left > 0) peerBacklogBytes.set(peer, left)
      else peerBacklogBytes.delete(peer)
      this._backlogBytes = 0
    }
    for (const m of queued) this._emitMessage(m)
  }

  _markClosed() {
    if (this._closed) return
    this._flush()
    this._closed = true
    this.emit('close')
    this.removeAllListeners()
  }
}

module.exports = { DataChannel, CONTROL_TYPES, BACKLOG_BYTES, BACKLOG_PEER_BYTES }
