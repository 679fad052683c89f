#!/usr/bin/env node
'use strict'
// remotemedia-webrtc serve: the JSON-RPC signaling server, a server-side peer
// ('remotemedia-server') that answers every client's offer, and a demo page at GET /.
// Each client gets its own session running the manifest (one pipeline instance per client): its
// audio and video go through the pipeline and what comes out is sent back on the server's tracks;
// node events (e.g. VAD) and the connection's quality go to the client over a data channel
// 'events' the server opens. Data channels the client opens are echoed.

const fs = require('node:fs')
const path = require('node:path')
const net = require('node:net')
const { parseArgs } = require('node:util')

const SERVER_PEER_ID = 'remotemedia-server'
const DEMO_PAGE = path.join(__dirname, '..', 'demo', 'index.html')
const EVENTS_CHANNEL = 'events'
// Without --manifest every client gets this one: its audio straight back.
const LOOPBACK_MANIFEST = JSON.stringify({
  nodes: [{ id: 'input', node_type: 'Input' }, { id: 'output', node_type: 'Output' }],
  connections: [{ from: 'input', to: 'output' }],
})

const USAGE = `Usage: remotemedia-webrtc serve [options]

Serves the JSON-RPC signaling endpoint at ws://HOST:PORT/ws, a server-side peer
'${SERVER_PEER_ID}' that answers every client's offer, and a demo page at http://HOST:PORT/.
Each client's audio and video run through its own instance of the manifest's pipeline and come
back on the server's tracks; node events and quality metrics arrive on a data channel 'events'
(JSON: { type: 'pipeline', nodeId, event, data } or { type: 'quality', ...metrics }). Messages on
the client's own data channels are echoed. Without a manifest, media is looped back as it is.

Options:
  --host HOST        address to listen on (default 127.0.0.1)
  --port PORT        port to listen on, 0 = any free port (default 8080)
  --manifest FILE    pipeline manifest (YAML or JSON); default $WEBRTC_PIPELINE_MANIFEST
  --auth-secret S    require an HS256 token (JWT, sub = peer id) on every announce, signed with
                     S (at least 32 bytes); default $WEBRTC_AUTH_SECRET. Browsers pass theirs
                     as ?token= in the page's URL
  --insecure         allow a non-loopback --host without --auth-secret (anyone who reaches the
                     port can then take any peer id)
  -h, --help         show this help

Environment:
  WEBRTC_MAX_PEERS            clients served at once (1..256, default 10)
  WEBRTC_STUN_SERVERS         comma-separated stun: URLs
  WEBRTC_TURN_SERVERS         comma-separated turn:host:port:username:credential
  WEBRTC_ENABLE_DATA_CHANNEL  true/false (default true)
  WEBRTC_JITTER_BUFFER_MS     50..200 (default 100)
  WEBRTC_JITTER_BUFFER_MIN_MS 10..WEBRTC_JITTER_BUFFER_MS, floor of the adaptive buffer
  WEBRTC_PIPELINE_MANIFEST    manifest used when --manifest is not given
  WEBRTC_AUTH_SECRET          secret used when --auth-secret is not given
  RUST_LOG                    log filter of the native core
`

class UsageError extends Error {}

function fail(code, message, withUsage) {
  process.stderr.write(`remotemedia-webrtc: ${message}\n`)
  if (withUsage) process.stderr.write(`\n${USAGE}`)
  process.exit(code)
}

function parseCommandLine(argv) {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        manifest: { type: 'string' },
        'auth-secret': { type: 'string' },
        insecure: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (e) {
    throw new UsageError(e.message)
  }
  const { values, positionals } = parsed
  if (values.help) return { help: true }
  if (positionals.length === 0) throw new UsageError('missing command (only `serve` exists)')
  if (positionals[0] !== 'serve') throw new UsageError(`unknown command '${positionals[0]}'`)
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`)

  const host = values.host ?? '127.0.0.1'
  if (host === '') throw new UsageError('--host must not be empty')
  let port = 8080
  if (values.port !== undefined) {
    if (!/^\d{1,5}$/.test(values.port) || Number(values.port) > 65535) {
      throw new UsageError(`--port must be an integer in 0..65535, got '${values.port}'`)
    }
    port = Number(values.port)
  }
  return {
    help: false,
    host,
    port,
    manifest: values.manifest,
    authSecret: values['auth-secret'],
    insecure: values.insecure === true,
  }
}

// Loopback hosts: 127.0.0.0/8, ::1 and localhost. Anything else is reachable from elsewhere.
function isLoopbackHost(host) {
  const h = host.replace(/^\[|\]$/g, '')
  if (h === 'localhost' || h === '::1') return true
  return net.isIPv4(h) && h.startsWith('127.')
}

// Environment variables (docs/spec/api.md); flags override them.
function envConfig(env) {
  const cfg = {}
  const int = (name, min, max) => {
    const v = env[name]
    if (v === undefined || v.trim() === '') return undefined
    if (!/^\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) {
      throw new UsageError(`${name} must be an integer in ${min}..${max}, got '${v}'`)
    }
    return Number(v)
  }
  const list = (name) => {
    const v = env[name]
    if (v === undefined) return undefined
    return v.split(',').map((s) => s.trim()).filter(Boolean)
  }
  cfg.maxPeers = int('WEBRTC_MAX_PEERS', 1, 256)
  cfg.jitterBufferMs = int('WEBRTC_JITTER_BUFFER_MS', 50, 200)
  cfg.jitterBufferMinMs = int('WEBRTC_JITTER_BUFFER_MIN_MS', 10, 200)
  cfg.stunServers = list('WEBRTC_STUN_SERVERS')
  cfg.turnServers = list('WEBRTC_TURN_SERVERS')
  const dc = env.WEBRTC_ENABLE_DATA_CHANNEL
  if (dc !== undefined && dc.trim() !== '') {
    const v = dc.trim().toLowerCase()
    if (['1', 'true', 'yes', 'on'].includes(v)) cfg.enableDataChannel = true
    else if (['0', 'false', 'no', 'off'].includes(v)) cfg.enableDataChannel = false
    else throw new UsageError(`WEBRTC_ENABLE_DATA_CHANNEL must be true or false, got '${dc}'`)
  }
  cfg.manifest = env.WEBRTC_PIPELINE_MANIFEST || undefined
  cfg.authSecret = env.WEBRTC_AUTH_SECRET || undefined
  for (const k of Object.keys(cfg)) if (cfg[k] === undefined) delete cfg[k]
  return cfg
}

// 'ws://HOST:PORT' with IPv6 literals bracketed; wildcard hosts are reached over loopback.
function urlHost(host, forConnecting) {
  if (forConnecting && (host === '0.0.0.0' || host === '::' || host === '[::]')) {
    host = host === '0.0.0.0' ? '127.0.0.1' : '::1'
  }
  return net.isIPv6(host) ? `[${host}]` : host
}

function echo(channel, peer, log) {
  channel.on('message', (m) => {
    // json → the same value as json, text → the same text, binary → the same bytes.
    channel.send(m.data).catch((e) => {
      log(`echo to ${peer.peerId}/${channel.label} failed: ${e.code || ''} ${e.message}`)
    })
  })
}

// The connected clients: each has a session (id = its peer id) running its own instance of the
// manifest, and the 'events' data channel its pipeline events and quality go out on.
class Clients {
  constructor(transport, manifestText, log) {
    this.transport = transport
    this.manifestText = manifestText
    this.log = log
    this.byPeer = new Map() // peerId → { channel, session, closed }
  }

  async add(peer) {
    const id = peer.peerId
    const client = { channel: null, session: null, closed: false }
    this.byPeer.set(id, client)
    try {
      // A session left from an earlier connection of the same client id is replaced.
      if (this.transport.hasSession(id)) await this.transport.removeSession(id)
      const session = await this.transport.createSession(id, { manifest: this.manifestText, maxPeers: 1 })
      client.session = session
      if (client.closed) {
        await this.transport.removeSession(id)
        return
      }
      session.on('output', (o) => {
        const msg = o.error
          ? { type: 'pipeline', nodeId: o.nodeId, error: o.error }
          : { type: 'pipeline', nodeId: o.nodeId, event: o.event.name, data: o.event.data }
        this.send(id, msg)
      })
      await this.transport.addPeerToSession(id, id)
      if (client.closed) return
      client.channel = await peer.createDataChannel(EVENTS_CHANNEL)
      if (client.closed) client.channel.close()
    } catch (e) {
      if (!client.closed) this.log(`client ${id}: ${e.code || ''} ${e.message}`)
    }
  }

  send(peerId, msg) {
    const c = this.byPeer.get(peerId)
    if (!c || !c.channel || c.closed) return
    c.channel.send(msg).catch((e) => {
      if (!c.closed) this.log(`event to ${peerId} not sent: ${e.code || ''} ${e.message}`)
    })
  }

  remove(peerId) {
    const c = this.byPeer.get(peerId)
    if (!c) return
    c.closed = true
    this.byPeer.delete(peerId)
    // The session goes away with its only member; removing it frees its pipeline now.
    this.transport.removeSession(peerId).catch(() => {})
  }
}

async function serve(opts, env) {
  const envCfg = envConfig(env)
  const authSecret = opts.authSecret ?? envCfg.authSecret
  if (!authSecret && !opts.insecure && !isLoopbackHost(opts.host)) {
    throw new UsageError(
      `refusing to listen on ${opts.host} without authentication: give --auth-secret ` +
        '(or WEBRTC_AUTH_SECRET), or --insecure to accept any client',
    )
  }
  const manifest = opts.manifest ?? envCfg.manifest
  let manifestText = LOOPBACK_MANIFEST
  if (manifest !== undefined) {
    let st
    try {
      st = fs.statSync(manifest)
    } catch {
      fail(2, `manifest file not found: ${manifest}`)
    }
    if (!st.isFile()) fail(2, `manifest is not a file: ${manifest}`)
    // Validated before anything starts: a bad manifest names the node or connection at fault.
    const { Pipeline } = require('..')
    try {
      manifestText = (await Pipeline.fromManifest(manifest)).manifestText
    } catch (e) {
      fail(2, `invalid manifest ${manifest}: ${e.code}: ${e.message}`)
    }
  }
  let httpPage
  try {
    httpPage = fs.readFileSync(DEMO_PAGE, 'utf8')
  } catch (e) {
    fail(1, `cannot read the demo page ${DEMO_PAGE}: ${e.message}`)
  }

  const { SignalingServer, WebRtcTransport, issueSignalingToken } = require('..')
  const log = (line) => process.stdout.write(`${line}\n`)

  const server = await SignalingServer.listen({
    host: opts.host,
    port: opts.port,
    httpPage,
    ...(authSecret && { authSecret }),
  })
  const port = server.port
  const signalingUrl = `ws://${urlHost(opts.host, true)}:${port}/ws`
  const bindAddress = net.isIP(opts.host) && opts.host !== '0.0.0.0' ? opts.host : '0.0.0.0'

  let transport
  try {
    transport = new WebRtcTransport({
      signalingUrl,
      peerId: SERVER_PEER_ID,
      bindAddress,
      // The server peer signs its own token; it must outlive the process (every signaling
      // reconnection presents it again), so it is valid for ten years.
      ...(authSecret && { signalingToken: issueSignalingToken(authSecret, SERVER_PEER_ID, 10 * 365 * 86400) }),
      // The answer to a client that sends audio (video) carries our track of that kind, which
      // its pipeline's output goes back on.
      answerMedia: true,
      maxPeers: envCfg.maxPeers ?? 10,
      ...(envCfg.stunServers && { stunServers: envCfg.stunServers }),
      ...(envCfg.turnServers && { turnServers: envCfg.turnServers }),
      ...(envCfg.enableDataChannel !== undefined && { enableDataChannel: envCfg.enableDataChannel }),
      ...(envCfg.jitterBufferMs !== undefined && { jitterBufferMs: envCfg.jitterBufferMs }),
      ...(envCfg.jitterBufferMinMs !== undefined && { jitterBufferMinMs: envCfg.jitterBufferMinMs }),
    })
    transport.on('error', (e) => log(`error${e.peerId ? ` (${e.peerId})` : ''}: ${e.code} ${e.message}`))
    const clients = new Clients(transport, manifestText, log)
    transport.on('peer-connected', (peer) => {
      log(`peer connected: ${peer.peerId}`)
      clients.add(peer)
    })
    transport.on('peer-disconnected', ({ peerId, reason }) => {
      log(`peer disconnected: ${peerId} (${reason})`)
      clients.remove(peerId)
    })
    transport.on('quality', (metrics, peer) => { if (peer) clients.send(peer.peerId, { type: 'quality', ...metrics }) })
    transport.on('data-channel', (channel, peer) => echo(channel, peer, log))
    await transport.start()
  } catch (e) {
    await server.close().catch(() => {})
    throw e
  }

  // The native server and transport hold no reference on Node's event loop (their event
  // callbacks are weak), so this timer is what keeps the process serving until a signal.
  const keepAlive = setInterval(() => {}, 1 << 30)
  let stopping = false
  const stop = async (signal) => {
    if (stopping) return
    stopping = true
    clearInterval(keepAlive)
    log(`${signal}: shutting down`)
    const force = setTimeout(() => fail(1, 'shutdown took longer than 5 s'), 5000)
    force.unref()
    try {
      await transport.shutdown()
      await server.close()
    } catch (e) {
      fail(1, `shutdown failed: ${e.code || ''} ${e.message}`)
    }
    process.exit(0)
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))

  if (manifest !== undefined) {
    log(`manifest ${manifest}: each client's audio runs through its own pipeline; ` +
      'data channel messages are echoed')
  } else {
    log('no manifest: each client\'s audio is looped back; data channel messages are echoed')
  }
  const h = urlHost(opts.host, false)
  if (authSecret) log('authentication: every announce needs an HS256 token (sub = peer id)')
  log(`remotemedia-webrtc serving http://${h}:${port}/ (signaling ws://${h}:${port}/ws)`)
}

function main() {
  let opts
  try {
    opts = parseCommandLine(process.argv.slice(2))
  } catch (e) {
    if (e instanceof UsageError) fail(2, e.message, true)
    throw e
  }
  if (opts.help) {
    process.stdout.write(USAGE)
    return
  }
  serve(opts, process.env).catch((e) => {
    if (e instanceof UsageError) fail(2, e.message, true)
    if (e.code === 'ERR_INVALID_CONFIG') fail(2, `${e.code}: ${e.message}`)
    fail(1, `${e.code ? `${e.code}: ` : ''}${e.message}`)
  })
}

main()
