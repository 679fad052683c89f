import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { lib, withServer, transport, once, until, uid, rejectsWithCode } from './helpers.mjs'

const { WebRtcTransport } = lib

describe('two transports through the signaling server', () => {
  let server, a, b
  beforeAll(async () => {
    server = await withServer()
    a = await transport(server, uid('alice'))
    b = await transport(server, uid('bob'))
  })
  afterAll(async () => {
    await a?.shutdown()
    await b?.shutdown()
    await server?.close()
  })

  it('connects, and both sides see each other connected', async () => {
    const incoming = once(b, 'peer-connected')
    const peer = await a.connectPeer(b.peerId)
    expect(peer.peerId).toBe(b.peerId)
    expect(peer.state).toBe('connected')
    expect(peer.outgoing).toBe(true)
    const other = await incoming
    expect(other.peerId).toBe(a.peerId)
    expect(a.listPeers()).toEqual([b.peerId])
    await until(() => b.listPeers().includes(a.peerId))
    expect(b.listAllPeers()).toEqual([{ peerId: a.peerId, state: 'connected' }])
    // Connecting again resolves with the same peer.
    expect((await a.connectPeer(b.peerId)).peerId).toBe(b.peerId)
  })

  it('delivers 1000 ordered reliable messages of mixed kinds, none lost', async () => {
    const peer = a.getPeer(b.peerId)
    const ch = peer.defaultChannel
    expect(ch.label).toBe('default')
    expect(ch.mode).toBe('reliable')
    const remote = b.getPeer(a.peerId).channels.find((c) => c.label === 'default')
    expect(remote).toBeTruthy()
    const got = []
    const done = new Promise((resolve) => {
      remote.on('message', (m) => {
        got.push(m)
        if (got.length === 1000) resolve()
      })
    })
    const sent = []
    for (let i = 0; i < 1000; i++) {
      if (i % 3 === 0) sent.push({ kind: 'json', data: { i, nested: { s: 'x'.repeat(i % 50) } } })
      else if (i % 3 === 1) sent.push({ kind: 'text', data: `text message ${i}` })
      else sent.push({ kind: 'binary', data: Buffer.from(Uint32Array.of(i, i * 7, 0xdeadbeef).buffer) })
    }
    // Not awaited one by one: call order must be send order.
    await Promise.all(sent.map((m) => ch.send(m.data)))
    await done
    expect(got.length).toBe(1000)
    for (let i = 0; i < 1000; i++) {
      expect(got[i].kind).toBe(sent[i].kind)
      if (sent[i].kind === 'binary') expect(Buffer.compare(got[i].data, sent[i].data)).toBe(0)
      else expect(got[i].data).toEqual(sent[i].data)
    }
  })

  it('carries pipeline control messages as control events', async () => {
    const remote = b.getPeer(a.peerId).channels.find((c) => c.label === 'default')
    const ctl = once(remote, 'control')
    await a.getPeer(b.peerId).defaultChannel.sendControl({ type: 'pipeline-start', sessionId: 's1' })
    expect(await ctl).toEqual({ type: 'pipeline-start', sessionId: 's1' })
    await rejectsWithCode(a.getPeer(b.peerId).defaultChannel.sendControl({ type: 'reboot', sessionId: 's1' }), 'ERR_INVALID_DATA')
  })

  it('opens further channels; the remote side gets them as data-channel events', async () => {
    const onTransport = once(b, 'data-channel', (ch) => ch.label === 'telemetry')
    const onPeer = once(b.getPeer(a.peerId), 'data-channel', (ch) => ch.label === 'telemetry')
    const ch = await a.getPeer(b.peerId).createDataChannel('telemetry', { mode: 'unreliable' })
    expect(ch.mode).toBe('unreliable')
    expect(ch.readyState).toBe('open')
    const [remote, peer] = await onTransport
    expect(peer.peerId).toBe(a.peerId)
    expect(remote.mode).toBe('unreliable')
    expect((await onPeer).label).toBe('telemetry')
    const msg = once(remote, 'message')
    await ch.send('over unreliable')
    expect(await msg).toEqual({ kind: 'text', data: 'over unreliable' })
    // And back the other way.
    const back = once(ch, 'message')
    await remote.send({ ok: true })
    expect(await back).toEqual({ kind: 'json', data: { ok: true } })
  })

  it('refuses bad sends with codes and keeps the channel usable', async () => {
    const ch = a.getPeer(b.peerId).defaultChannel
    await rejectsWithCode(ch.send(undefined), 'ERR_INVALID_DATA')
    await rejectsWithCode(ch.send(42), 'ERR_INVALID_DATA')
    await rejectsWithCode(ch.send(Buffer.alloc(0)), 'ERR_INVALID_DATA')
    await rejectsWithCode(ch.send(Buffer.alloc(256 * 1024 + 1)), 'ERR_INVALID_DATA')
    const cyclic = {}
    cyclic.self = cyclic
    await expect(ch.send(cyclic)).rejects.toThrow()
    await rejectsWithCode(a.getPeer(b.peerId).createDataChannel('x', { mode: 'sometimes' }), 'ERR_INVALID_DATA')
    const remote = b.getPeer(a.peerId).channels.find((c) => c.label === 'default')
    const msg = once(remote, 'message')
    await ch.send('still fine')
    expect((await msg).data).toBe('still fine')
  })

  it('carries messages up to maxMessageSize (256 KiB), past SCTP\'s 64 KiB default', async () => {
    const ch = a.getPeer(b.peerId).defaultChannel
    const remote = b.getPeer(a.peerId).channels.find((c) => c.label === 'default')
    const big = Buffer.alloc(256 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff
    const got = once(remote, 'message')
    await ch.send(big)
    const m = await got
    expect(m.kind).toBe('binary')
    expect(Buffer.compare(m.data, big)).toBe(0)
  })

  it('applies backpressure: the send queue is bounded and what it accepted arrives in order', async () => {
    const ch = await a.getPeer(b.peerId).createDataChannel('bulk')
    const remote = await until(() => b.getPeer(a.peerId).channels.find((c) => c.label === 'bulk'))
    const chunk = 64 * 1024
    // 125 MiB offered in one synchronous loop: far more than the 16 MiB queue holds plus what
    // SCTP can drain while the loop runs (~300 MB/s on loopback).
    const total = 2000
    const arrived = []
    remote.on('message', (m) => arrived.push(m.data.readUInt32LE(0)))
    const buf = Buffer.alloc(chunk)
    const results = await Promise.allSettled(
      Array.from({ length: total }, (_, i) => {
        buf.writeUInt32LE(i, 0) // send() copies, so one buffer can be reused
        return ch.send(buf)
      }),
    )
    const accepted = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []))
    const refused = results.filter((r) => r.status === 'rejected')
    expect(refused.length).toBeGreaterThan(0)
    for (const r of refused) {
      expect(r.reason.code).toBe('ERR_INVALID_DATA')
      expect(r.reason.message).toMatch(/send queue full/)
    }
    // The first 16 MiB fit before anything could be refused.
    expect(accepted.slice(0, 256)).toEqual(Array.from({ length: 256 }, (_, i) => i))
    // Everything accepted arrives, once, in send order.
    await until(() => arrived.length === accepted.length, 20000)
    expect(arrived).toEqual(accepted)
    expect(ch.bufferedAmount).toBe(0)
  })

  it('disconnectPeer tells the other side (user_requested)', async () => {
    const gone = once(b, 'peer-disconnected')
    const closed = once(a.getPeer(b.peerId), 'close')
    await a.disconnectPeer(b.peerId)
    await closed
    expect(await gone).toEqual({ peerId: a.peerId, reason: 'user_requested' })
    expect(a.listPeers()).toEqual([])
    await until(() => b.listAllPeers().length === 0)
    await rejectsWithCode(a.disconnectPeer(b.peerId), 'ERR_PEER_NOT_FOUND')
    // And they can connect again, from the other side this time.
    const p = await b.connectPeer(a.peerId)
    expect(p.state).toBe('connected')
  })
})

describe('mesh', () => {
  it('a 5-peer autoConnect mesh forms fully (20 channel ends) and tears down cleanly', async () => {
    const server = await withServer()
    const peers = []
    const channels = new Map()
    try {
      for (let i = 0; i < 5; i++) {
        const t = await transport(server, uid(`m${i}`), { autoConnect: true })
        channels.set(t.peerId, new Set())
        t.on('data-channel', (ch, peer) => channels.get(t.peerId).add(peer.peerId))
        t.on('peer-connected', (peer) => {
          if (peer.outgoing) channels.get(t.peerId).add(peer.peerId)
        })
        peers.push(t)
      }
      await until(() => peers.every((t) => t.listPeers().length === 4), 20000)
      await until(() => [...channels.values()].reduce((s, c) => s + c.size, 0) === 20, 10000)
      for (const t of peers) {
        const others = peers.filter((o) => o !== t).map((o) => o.peerId).sort()
        expect(t.listPeers()).toEqual(others)
        expect([...channels.get(t.peerId)].sort()).toEqual(others)
      }
      // Every pair can talk.
      const m0 = peers[0]
      const m4 = peers[4]
      const ch = m0.getPeer(m4.peerId).channels[0]
      const remote = m4.getPeer(m0.peerId).channels[0]
      const got = once(remote, 'message')
      await ch.send({ hop: 1 })
      expect((await got).data).toEqual({ hop: 1 })
    } finally {
      for (const t of peers) await t.shutdown()
      await until(() => server.peerIds.length === 0, 5000)
      await server.close()
    }
  })
})

describe('limits and errors', () => {
  let server
  beforeAll(async () => {
    server = await withServer()
  })
  afterAll(async () => server?.close())

  it('enforces maxPeers on outgoing and incoming connections', async () => {
    const a = await transport(server, uid('full'), { maxPeers: 1 })
    const b = await transport(server, uid('b'))
    const c = await transport(server, uid('c'), { connectTimeoutMs: 3000 })
    try {
      await a.connectPeer(b.peerId)
      await rejectsWithCode(a.connectPeer(c.peerId), 'ERR_MAX_PEERS')
      const refused = once(a, 'error')
      const err = await c.connectPeer(a.peerId).then(() => null, (e) => e)
      expect(err).toBeInstanceOf(lib.WebRtcError)
      expect(['ERR_CONNECTION_FAILED', 'ERR_TIMEOUT']).toContain(err.code)
      expect((await refused).code).toBe('ERR_MAX_PEERS')
      expect(a.listPeers()).toEqual([b.peerId])
    } finally {
      await a.shutdown()
      await b.shutdown()
      await c.shutdown()
    }
  })

  it('rejects bad configuration with ERR_INVALID_CONFIG naming the field', () => {
    const url = server.url
    const bad = [
      [undefined, 'signalingUrl'],
      [{}, 'signalingUrl'],
      [{ signalingUrl: 'http://x' }, 'signalingUrl'],
      [{ signalingUrl: url, maxPeers: 0 }, 'maxPeers'],
      [{ signalingUrl: url, maxPeers: 257 }, 'maxPeers'],
      [{ signalingUrl: url, jitterBufferMs: 10 }, 'jitterBufferMs'],
      [{ signalingUrl: url, jitterBufferMinMs: 5 }, 'jitterBufferMinMs'],
      [{ signalingUrl: url, jitterBufferMs: 50, jitterBufferMinMs: 60 }, 'jitterBufferMinMs'],
      [{ signalingUrl: url, peerId: 'no spaces' }, 'peerId'],
      [{ signalingUrl: url, stunServers: ['stun.example.org'] }, 'stunServers'],
      [{ signalingUrl: url, turnServers: ['turn:h:1'] }, 'turn'],
      [{ signalingUrl: url, videoCodec: 'av2' }, 'videoCodec'],
      [{ signalingUrl: url, dataChannelMode: 'maybe' }, 'dataChannelMode'],
      [{ signalingUrl: url, maxPeerz: 3 }, 'maxPeerz'],
      [{ signalingUrl: url, maxPeers: 'ten' }, 'options'],
      [{ signalingUrl: url, bindAddress: 'localhost' }, 'bindAddress'],
      [{ signalingUrl: url, preset: 'fast' }, 'preset'],
    ]
    for (const [opts, field] of bad) {
      let err
      try {
        new WebRtcTransport(opts)
      } catch (e) {
        err = e
      }
      expect(err, JSON.stringify(opts)).toBeInstanceOf(lib.WebRtcError)
      expect(err.code).toBe('ERR_INVALID_CONFIG')
      expect(err.message).toContain(field)
    }
  })

  it('presets give their values and can be overridden', () => {
    const t = new WebRtcTransport(lib.presets.lowLatency({ signalingUrl: server.url, peerId: 'p1' }))
    expect(t.config.jitterBufferMs).toBe(50)
    expect(t.config.jitterBufferMinMs).toBe(20)
    expect(t.config.dataChannelMode).toBe('unreliable')
    const h = new WebRtcTransport(lib.presets.highQuality({ signalingUrl: server.url }))
    expect(h.config.videoBitrate).toBe(4_000_000)
    const m = new WebRtcTransport(lib.presets.mobileNetwork({ signalingUrl: server.url, jitterBufferMs: 180 }))
    expect(m.config.jitterBufferMs).toBe(180)
    expect(m.config.jitterBufferMinMs).toBe(180)
    expect(m.config.videoBitrate).toBe(800_000)
  })

  it('gives every bad call its code', async () => {
    const t = new WebRtcTransport({ signalingUrl: server.url, peerId: uid('e'), bindAddress: '127.0.0.1' })
    await rejectsWithCode(t.connectPeer('x'), 'ERR_NOT_STARTED')
    await t.start()
    try {
      await rejectsWithCode(t.start(), 'ERR_ALREADY_STARTED')
      await rejectsWithCode(t.connectPeer(123), 'ERR_INVALID_DATA')
      await rejectsWithCode(t.connectPeer('bad id'), 'ERR_INVALID_DATA')
      await rejectsWithCode(t.connectPeer(t.peerId), 'ERR_INVALID_DATA')
      await rejectsWithCode(t.connectPeer('nobody-here'), 'ERR_PEER_NOT_FOUND')
      await rejectsWithCode(t.disconnectPeer('nobody-here'), 'ERR_PEER_NOT_FOUND')
      await rejectsWithCode(() => t.getPeer('nobody-here'), 'ERR_PEER_NOT_FOUND')
      expect(t.listPeers()).toEqual([])
    } finally {
      await t.shutdown()
    }
    const dead = new WebRtcTransport({ signalingUrl: 'ws://127.0.0.1:1', signalingTimeoutMs: 1000 })
    await rejectsWithCode(dead.start(), 'ERR_SIGNALING')
    await dead.shutdown()
    await rejectsWithCode(lib.SignalingServer.listen({ port: -1 }), 'ERR_INVALID_CONFIG')
    await rejectsWithCode(lib.SignalingServer.listen({ port: 70000 }), 'ERR_INVALID_CONFIG')
    await rejectsWithCode(lib.SignalingServer.listen({ host: 'not a host' }), 'ERR_SIGNALING')
  })

  it('a duplicate peer id is refused by the server', async () => {
    const id = uid('dup')
    const t1 = await transport(server, id)
    const t2 = new WebRtcTransport({ signalingUrl: server.url, peerId: id })
    try {
      const err = await rejectsWithCode(t2.start(), 'ERR_SIGNALING')
      expect(err.message).toMatch(/already|registered/i)
    } finally {
      await t1.shutdown()
      await t2.shutdown()
    }
  })

  it('after shutdown every call fails with ERR_SHUT_DOWN and no event fires', async () => {
    const a = await transport(server, uid('sa'))
    const b = await transport(server, uid('sb'))
    const peer = await a.connectPeer(b.peerId)
    const ch = peer.defaultChannel
    let events = 0
    for (const name of ['peer-connected', 'peer-disconnected', 'peer-state', 'data-channel', 'error']) {
      a.on(name, () => events++)
    }
    const bLearns = once(b, 'peer-disconnected')
    await a.shutdown()
    await a.shutdown() // idempotent
    await rejectsWithCode(a.connectPeer(b.peerId), 'ERR_SHUT_DOWN')
    await rejectsWithCode(a.start(), 'ERR_SHUT_DOWN')
    await rejectsWithCode(a.disconnectPeer(b.peerId), 'ERR_SHUT_DOWN')
    await rejectsWithCode(ch.send('late'), 'ERR_SHUT_DOWN')
    await rejectsWithCode(peer.createDataChannel('late'), 'ERR_SHUT_DOWN')
    expect(a.listPeers()).toEqual([])
    // The other side learns of it.
    expect((await bLearns).peerId).toBe(a.peerId)
    await new Promise((r) => setTimeout(r, 200))
    expect(events).toBe(0)
    await b.shutdown()
  })
})

describe('signaling client', () => {
  it('reconnects with backoff and re-announces when the signaling server comes back', async () => {
    const first = await withServer()
    const port = first.port
    const t = await transport(first, uid('rc'), {
      reconnection: { maxRetries: 20, backoffInitialMs: 50, backoffMaxMs: 200, jitter: false },
    })
    try {
      const reconnecting = once(t, 'signaling-reconnecting')
      await first.close()
      expect((await reconnecting).attempt).toBeGreaterThanOrEqual(1)
      const second = await lib.SignalingServer.listen({ host: '127.0.0.1', port })
      try {
        const announced = once(second, 'peer-announced', (e) => e.peerId === t.peerId)
        await once(t, 'signaling-reconnected')
        await announced
        expect(second.peerIds).toContain(t.peerId)
        // And it is usable again: another peer can dial it.
        const other = await transport(second, uid('rc2'))
        const p = await other.connectPeer(t.peerId)
        expect(p.state).toBe('connected')
        await other.shutdown()
      } finally {
        await t.shutdown()
        await second.close()
      }
    } finally {
      await t.shutdown()
    }
  })
})
