'use strict'
const { EventEmitter } = require('node:events')
const native = require('./native')
const { callAsync, callSync, invalid } = require('./errors')
const { KeepAlive } = require('./keepalive')

// The options of SignalingServer.listen (anything else is refused, not ignored).
const LISTEN_KEYS = new Set([
  'host', 'port', 'maxPeers', 'pingIntervalMs', 'httpPage',
  'announceTimeoutMs', 'maxConnectionsPerIp', 'maxConnections', 'allowedOrigins', 'authSecret',
])

function show(v) {
  try {
    return JSON.stringify(v) ?? String(v)
  } catch {
    return typeof v
  }
}

// The JSON-RPC 2.0 signaling server. Events: 'peer-announced', 'peer-left'.
class SignalingServer extends EventEmitter {
  constructor(n) {
    super()
    this._native = n
    this._closed = false
    this._keepAlive = new KeepAlive()
    n.setEventHandler((batch) => {
      for (const ev of batch) {
        if (this._closed) return
        if (ev.kind === 'peer-announced') {
          this.emit('peer-announced', {
            peerId: ev.peerId,
            capabilities: ev.capabilities || [],
            userData: ev.userData == null ? null : JSON.parse(ev.userData),
          })
        } else if (ev.kind === 'peer-left') {
          this.emit('peer-left', { peerId: ev.peerId })
        }
      }
    })
  }

  // options: { host = '127.0.0.1', port = 0 (any free port), maxPeers, pingIntervalMs, httpPage,
  // announceTimeoutMs, maxConnectionsPerIp, maxConnections, allowedOrigins }. An unknown key, or
  // a number that is not a whole number in range (NaN, ±Infinity, -1, 1.5 included), is
  // ERR_INVALID_CONFIG naming the key.
  static async listen(options = {}) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw invalid('ERR_INVALID_CONFIG', 'options must be an object')
    }
    const given = {}
    for (const key of Object.keys(options)) {
      if (!LISTEN_KEYS.has(key)) {
        throw invalid('ERR_INVALID_CONFIG', `unknown option '${key}' (known: ${[...LISTEN_KEYS].join(', ')})`)
      }
      if (options[key] !== undefined) given[key] = options[key]
    }
    const { port, host } = given
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
      throw invalid('ERR_INVALID_CONFIG', `port must be an integer in 0..=65535, got ${show(port)}`)
    }
    if (host !== undefined && typeof host !== 'string') throw invalid('ERR_INVALID_CONFIG', 'host must be a string')
    const n = await callAsync(() => native.NativeSignalingServer.listen(given))
    return new SignalingServer(n)
  }

  get url() { return this._native.url }
  get port() { return this._native.port }
  get peerIds() { return this._native.peerIds() }

  // A listening server keeps Node running until close(), like net.Server; unref() lets it exit.
  unref() { this._keepAlive.unref(); return this }
  ref() { this._keepAlive.ref(); return this }

  async close() {
    if (this._closed) return
    this._closed = true
    this._keepAlive.release()
    await callAsync(() => this._native.close())
    this.removeAllListeners()
  }
}

// An HS256 signaling token for `peerId`, valid `ttlSeconds` (a backend hands it to its client).
function issueSignalingToken(secret, peerId, ttlSeconds = 3600) {
  if (typeof secret !== 'string' || typeof peerId !== 'string') {
    throw invalid('ERR_INVALID_CONFIG', 'issueSignalingToken(secret: string, peerId: string, ttlSeconds?: number)')
  }
  return callSync(() => native.issueSignalingToken(secret, peerId, ttlSeconds))
}

module.exports = { SignalingServer, issueSignalingToken }
