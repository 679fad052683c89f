// Hostile input from plain JS at the binding boundary (issue 12): options JSON cannot carry,
// wrapped numbers, unknown keys, values JSON.stringify throws on, URLs the build cannot serve,
// and writers that never await. (Memory given away during a call: js-memory.test.mjs.)
import { describe, it, expect } from 'vitest'
import { lib, withServer, transport, uid, until, rejectsWithCode } from '../helpers.mjs'

const { WebRtcTransport, SignalingServer, Pipeline, WebRtcError } = lib

function throwsCode(fn, code, re) {
  let err
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect(err, 'expected a throw').toBeInstanceOf(WebRtcError)
  expect(err.code).toBe(code)
  if (re) expect(err.message).toMatch(re)
  return err
}

// A healthy pair exchanging messages through `server` while an attack runs; stop() checks that
// every message came back, in order.
async function canary(server) {
  const a = await transport(server, uid('canary-a'))
  const b = await transport(server, uid('canary-b'))
  b.on('data-channel', (ch) => ch.on('message', (m) => ch.send(m.data)))
  const peer = await a.connectPeer(b.peerId)
  const ch = peer.defaultChannel
  const got = []
  ch.on('message', (m) => got.push(m.data.n))
  let sent = 0
  let running = true
  const loop = (async () => {
    while (running) {
      await ch.send({ n: sent++ })
      await new Promise((r) => setTimeout(r, 5))
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      await until(() => got.length === sent, 5000)
      expect(got).toEqual(Array.from({ length: sent }, (_, k) => k))
      expect(sent).toBeGreaterThan(0)
      await a.shutdown()
      await b.shutdown()
    },
  }
}

describe('hostile JS input: options JSON cannot carry', () => {
  it('NaN and ±Infinity in transport options are ERR_INVALID_CONFIG naming the key, not the default', () => {
    const url = 'ws://127.0.0.1:1/ws'
    throwsCode(() => new WebRtcTransport({ signalingUrl: url, maxPeers: NaN }), 'ERR_INVALID_CONFIG', /maxPeers.*NaN/)
    throwsCode(() => new WebRtcTransport({ signalingUrl: url, jitterBufferMs: Infinity }), 'ERR_INVALID_CONFIG', /jitterBufferMs.*Infinity/)
    throwsCode(() => new WebRtcTransport({ signalingUrl: url, connectTimeoutMs: -Infinity }), 'ERR_INVALID_CONFIG', /connectTimeoutMs/)
    throwsCode(() => new WebRtcTransport({ signalingUrl: url, reconnection: { backoffMultiplier: NaN } }), 'ERR_INVALID_CONFIG', /reconnection\.backoffMultiplier/)
    // Finite values still work.
    const t = new WebRtcTransport({ signalingUrl: url, maxPeers: 3 })
    expect(t.config.maxPeers).toBe(3)
  })

  it('values JSON.stringify throws on are ERR_INVALID_CONFIG in options, not a raw TypeError', () => {
    const url = 'ws://127.0.0.1:1/ws'
    const cyclic = { signalingUrl: url }
    cyclic.self = cyclic
    throwsCode(() => new WebRtcTransport(cyclic), 'ERR_INVALID_CONFIG')
    throwsCode(() => new WebRtcTransport({ signalingUrl: url, maxPeers: 3n }), 'ERR_INVALID_CONFIG')
  })

  it('an unknown transport option is ERR_INVALID_CONFIG naming it', () => {
    throwsCode(() => new WebRtcTransport({ signalingUrl: 'ws://127.0.0.1:1/ws', maxPeer: 3 }), 'ERR_INVALID_CONFIG', /maxPeer/)
  })

  it('NaN and ±Infinity in session, track and stream options are ERR_INVALID_CONFIG', async () => {
    const server = await withServer()
    const a = await transport(server, uid('nan-a'))
    const b = await transport(server, uid('nan-b'))
    try {
      await rejectsWithCode(a.createSession('s', { maxPeers: NaN }), 'ERR_INVALID_CONFIG')
      await rejectsWithCode(a.createSession('s', { maxPeers: Infinity }), 'ERR_INVALID_CONFIG')
      expect(a.hasSession('s')).toBe(false)
      const peer = await a.connectPeer(b.peerId)
      const e = await rejectsWithCode(peer.addVideoTrack({ bitrate: NaN }), 'ERR_INVALID_CONFIG')
      expect(e.message).toMatch(/bitrate/)
      await rejectsWithCode(peer.addAudioTrack({ bitrate: -Infinity }), 'ERR_INVALID_CONFIG')
      expect(peer.hasVideoTrack).toBe(false)
      expect(peer.hasAudioTrack).toBe(false)
      const p = await Pipeline.fromManifest({ nodes: [{ id: 'in', node_type: 'Input' }, { id: 'out', node_type: 'Output' }], connections: [{ from: 'in', to: 'out' }] })
      throwsCode(() => p.stream({ highWaterMark: NaN }), 'ERR_INVALID_CONFIG')
      throwsCode(() => p.stream({ highWaterMark: Infinity }), 'ERR_INVALID_CONFIG')
      await rejectsWithCode(Pipeline.fromManifest({ nodes: [{ id: 'g', node_type: 'Gain', params: { gain: NaN } }], connections: [] }), 'ERR_INVALID_MANIFEST')
    } finally {
      await a.shutdown()
      await b.shutdown()
      await server.close()
    }
  })

  it('a wss:// signaling URL is ERR_INVALID_CONFIG at construction: TLS is not built in', () => {
    throwsCode(() => new WebRtcTransport({ signalingUrl: 'wss://127.0.0.1:1/ws' }), 'ERR_INVALID_CONFIG', /TLS/)
  })
})

describe('hostile JS input: SignalingServer.listen options', () => {
  it('numbers that would wrap or are not whole are ERR_INVALID_CONFIG naming the key', async () => {
    for (const [key, v] of [['maxPeers', -1], ['maxPeers', NaN], ['maxPeers', Infinity], ['maxPeers', 1.5], ['maxPeers', 2 ** 32],
      ['pingIntervalMs', -1], ['pingIntervalMs', NaN], ['pingIntervalMs', Infinity], ['port', NaN], ['port', -1], ['port', 1.5]]) {
      const e = await rejectsWithCode(SignalingServer.listen({ host: '127.0.0.1', port: 0, [key]: v }), 'ERR_INVALID_CONFIG')
      expect(e.message).toContain(key)
    }
    // In-range values still work.
    const s = await SignalingServer.listen({ host: '127.0.0.1', port: 0, maxPeers: 2, pingIntervalMs: 1000 })
    await s.close()
  })

  it('an unknown key is ERR_INVALID_CONFIG naming it, not ignored', async () => {
    const e = await rejectsWithCode(SignalingServer.listen({ host: '127.0.0.1', port: 0, maxPeer: 3 }), 'ERR_INVALID_CONFIG')
    expect(e.message).toMatch(/'maxPeer'/)
    await rejectsWithCode(SignalingServer.listen([]), 'ERR_INVALID_CONFIG')
  })
})

describe('hostile JS input: every rejection is a coded WebRtcError', () => {
  it('ch.send of a cycle, a BigInt or a throwing toJSON rejects with ERR_INVALID_DATA while a canary pair carries on', async () => {
    const server = await withServer()
    const c = await canary(server)
    const a = await transport(server, uid('cyc-a'))
    const b = await transport(server, uid('cyc-b'))
    try {
      const got = []
      b.on('data-channel', (ch) => ch.on('message', (m) => got.push(m.data)))
      const ch = (await a.connectPeer(b.peerId)).defaultChannel
      const cyclic = { a: 1 }
      cyclic.self = cyclic
      await rejectsWithCode(ch.send(cyclic), 'ERR_INVALID_DATA')
      await rejectsWithCode(ch.send({ n: 1n }), 'ERR_INVALID_DATA')
      await rejectsWithCode(ch.send({ toJSON() { throw new Error('boom') } }), 'ERR_INVALID_DATA')
      await rejectsWithCode(ch.send(Symbol('s')), 'ERR_INVALID_DATA')
      // The channel still works.
      await ch.send({ ok: true })
      await until(() => got.length === 1)
      expect(got).toEqual([{ ok: true }])
      // Other entry points given values that make JSON.stringify or string conversion throw.
      await rejectsWithCode(a.connectPeer(1n), 'ERR_INVALID_DATA')
      await rejectsWithCode(a.getPeer(b.peerId).createDataChannel('x', { mode: 7 }), 'ERR_INVALID_DATA')
      throwsCode(() => a.getPeer(cyclic), 'ERR_INVALID_DATA')
      await rejectsWithCode(a.sendVideo(b.peerId, { data: Buffer.alloc(6), width: 2, height: 2, format: 1n }), 'ERR_INVALID_DATA')
      await rejectsWithCode(a.createSession('c', cyclic), 'ERR_INVALID_CONFIG')
      await rejectsWithCode(a.restoreSession(cyclic), 'ERR_INVALID_DATA')
      await rejectsWithCode(Pipeline.fromManifest(cyclic), 'ERR_INVALID_MANIFEST')
    } finally {
      await a.shutdown()
      await b.shutdown()
      await c.stop()
      await server.close()
    }
  })
})

describe('hostile JS input: a writer that never awaits', () => {
  it('pipeline.stream(): writableNeedDrain turns true once highWaterMark frames wait, so a writer that honours it holds a bounded number of frames', async () => {
    let release
    const gate = new Promise((r) => { release = r })
    Pipeline.registerNode('HostileGate', async (frame) => { await gate; return frame })
    const p = await Pipeline.fromManifest({
      nodes: [{ id: 'in', node_type: 'Input' }, { id: 'g', node_type: 'HostileGate' }, { id: 'out', node_type: 'Output' }],
      connections: [{ from: 'in', to: 'g' }, { from: 'g', to: 'out' }],
    })
    const hwm = 4
    const s = p.stream({ highWaterMark: hwm })
    expect(s.writableNeedDrain).toBe(false)
    // A writer that does not await, but stops on the signal (as with Node's Writable).
    const writes = []
    let k = 0
    while (!s.writableNeedDrain && k < 1000) writes.push(s.write({ samples: Float32Array.from([k]), timestampUs: k++ }))
    expect(k).toBeLessThanOrEqual(hwm + 1)
    expect(s.writableLength).toBeLessThanOrEqual(hwm)
    // The first frame is under way (held by the gate) and cannot leave; the signal stays set.
    await new Promise((r) => setTimeout(r, 20))
    expect(s.writableNeedDrain).toBe(true)
    // Reading and releasing drains it; every frame comes out in order.
    release()
    const got = []
    const reader = (async () => { for await (const o of s) got.push(o.frame.timestampUs) })()
    await Promise.all(writes)
    await until(() => !s.writableNeedDrain)
    s.end()
    await reader
    expect(got).toEqual(Array.from({ length: k }, (_, i) => i))
    Pipeline.unregisterNode('HostileGate')
  })
})

// The sizes an I420 frame may have were once written three times with three limits (the core:
// even, ≤ 7680; the transport's JS: 1..16384, odd allowed; the pipeline's JS: even, ≤ 65535).
// The rule is the core's alone now: the transport and a pipeline refuse the same frames with
// the same message, and a pipeline stream's write() still refuses the frame itself.
describe('hostile JS input: one rule for the size of a video frame', () => {
  const LOOP = 'nodes:\n  - { id: in, node_type: Input }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: out }\n'
  const frame = (w, h, len = (w * h * 3) / 2) => ({ data: Buffer.alloc(Math.max(0, Math.floor(len))), width: w, height: h })
  const bad = [
    [[7682, 2], /at most 7680/],
    [[3, 2], /even/],
    [[0, 2], /non-zero/],
    [[4, 4, 23], /4x4 is 24 bytes, got 23/],
  ]

  it('sendVideo and a pipeline refuse the same frames with the same ERR_INVALID_DATA message', async () => {
    const server = await withServer()
    const a = await transport(server, uid('size-a'))
    const b = await transport(server, uid('size-b'))
    const pipeline = Pipeline.fromText(LOOP)
    try {
      const peer = await a.connectPeer(b.peerId)
      await peer.addVideoTrack({ width: 320, height: 240 })
      for (const [[w, h, len], re] of bad) {
        const sent = await rejectsWithCode(a.sendVideo(b.peerId, frame(w, h, len)), 'ERR_INVALID_DATA')
        expect(sent.message).toMatch(re)
        const run = await rejectsWithCode(pipeline.execute(frame(w, h, len)), 'ERR_INVALID_DATA')
        expect(run.message).toBe(sent.message)
        const s = pipeline.stream()
        expect((await rejectsWithCode(s.write(frame(w, h, len)), 'ERR_INVALID_DATA')).message).toBe(sent.message)
        await s.close()
      }
      // At the limit both take it.
      await a.sendVideo(b.peerId, frame(7680, 2))
      expect((await pipeline.execute(frame(7680, 2))).length).toBe(1)
    } finally {
      await a.shutdown()
      await b.shutdown()
      await server.close()
    }
  }, 30000)
})
