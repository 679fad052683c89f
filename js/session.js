'use strict'
const { EventEmitter } = require('node:events')
const { callSync, callAsync, invalid, toJson } = require('./errors')
const { refuseJsNodes } = require('./pipeline')

// A named group of a transport's peers, with an optional pipeline manifest. Its state lives in
// the native transport: `peers` and `snapshot()` always read it afresh.
// Events: 'output' ({ sessionId, nodeId, peerId, event: { name, data } } or { ..., error }): what
// the session's pipeline reports, e.g. { nodeId: 'vad', event: { name: 'speech-start', ... } }.
class Session extends EventEmitter {
  constructor(transport, info) {
    super()
    this._transport = transport
    this.id = info.id
    this.maxPeers = info.maxPeers
    this.manifest = info.manifest ?? null
  }

  get peers() { return this._transport._sessionInfo(this.id).peers }

  async addPeer(peerId) { return this._transport.addPeerToSession(this.id, peerId) }

  // Runs the members' audio and video through `pipeline` (a Pipeline, or manifest text) from now on,
  // replacing any pipeline the session had. The session builds its own instance of it.
  async attachPipeline(pipeline) {
    const text = typeof pipeline === 'string' ? pipeline : pipeline?.manifestText
    if (typeof text !== 'string') throw invalid('ERR_INVALID_MANIFEST', 'attachPipeline takes a Pipeline or manifest text')
    refuseJsNodes(typeof pipeline === 'string' ? text : pipeline) // JS nodes cannot run on the transport's threads
    const info = JSON.parse(callSync(() => this._transport._native.sessionAttach(this.id, text)))
    this.manifest = info.manifest
    return this
  }

  removePeer(peerId) {
    return callSync(() => this._transport._native.sessionRemovePeer(this.id, String(peerId)))
  }

  // JSON-serializable: { kind: 'remotemedia-session', version: 1, id, maxPeers, peers, manifest }.
  snapshot() { return JSON.parse(callSync(() => this._transport._native.sessionSnapshot(this.id))) }

  close() { return this._transport.removeSession(this.id).catch((e) => { if (e.code !== 'ERR_SESSION_NOT_FOUND') throw e }) }
}

// Session methods of WebRtcTransport (mixed into its prototype).
const sessionMethods = {
  // options: { maxPeers (1..=256, default 16), manifest (YAML or JSON text) }. ERR_SESSION_EXISTS.
  async createSession(id, options = {}) {
    this._checkOpen()
    if (options === null || typeof options !== 'object') throw invalid('ERR_INVALID_CONFIG', 'session options must be an object')
    refuseJsNodes(options.manifest) // JS nodes cannot run on the transport's threads
    const info = JSON.parse(callSync(() => this._native.sessionCreate(String(id), toJson(options, 'session options', 'ERR_INVALID_CONFIG'))))
    return this._sessionObject(info)
  },
  getSession(id) { return this._sessionObject(this._sessionInfo(id)) },
  hasSession(id) { return !this._closed && this._native.sessionList().includes(String(id)) },
  listSessions() { return this._closed ? [] : this._native.sessionList() },
  async removeSession(id) {
    this._checkOpen()
    callSync(() => this._native.sessionRemove(String(id)))
    this._sessionObjects?.delete(String(id))
  },
  // The peer must be connected (ERR_PEER_NOT_FOUND); ERR_MAX_PEERS when the session is full.
  async addPeerToSession(sessionId, peerId) {
    this._checkOpen()
    const info = JSON.parse(callSync(() => this._native.sessionAddPeer(String(sessionId), String(peerId))))
    return this._sessionObject(info)
  },
  // Recreates a session from snapshot() and reconnects its peers. A corrupt or foreign snapshot
  // is ERR_INVALID_DATA and creates nothing. Resolves to the session; peers that could not be
  // reached are in session.failedPeers.
  async restoreSession(snapshot) {
    this._checkOpen()
    if (snapshot === null || typeof snapshot !== 'object') throw invalid('ERR_INVALID_DATA', 'session snapshot must be an object')
    const r = JSON.parse(await callAsync(() => this._native.sessionRestore(toJson(snapshot, 'session snapshot', 'ERR_INVALID_DATA'))))
    const s = this._sessionObject(r.session)
    s.failedPeers = r.failed
    return s
  },
  // One Session object per id, so its 'output' listeners keep working.
  _sessionObject(info) {
    if (!this._sessionObjects) this._sessionObjects = new Map()
    let s = this._sessionObjects.get(info.id)
    if (!s) {
      s = new Session(this, info)
      this._sessionObjects.set(info.id, s)
    }
    return s
  },
  _sessionInfo(id) {
    this._checkOpen()
    return JSON.parse(callSync(() => this._native.sessionGet(String(id))))
  },
}

module.exports = { Session, sessionMethods }
