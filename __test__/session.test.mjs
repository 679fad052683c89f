import { describe, it, expect } from 'vitest'
import { withServer, transport, until, uid, rejectsWithCode, lib } from './helpers.mjs'
import { toneFrame, rms, sleep } from './signals.mjs'

const { Pipeline } = lib

const MANIFEST = 'nodes:\n  - { id: in, node_type: Input }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: out }\n'

describe('sessions', () => {
  it('create, get, list, add connected peers, leave on disconnect, remove; errors have codes', async () => {
    const server = await withServer()
    const a = await transport(server, uid('sa'))
    const b = await transport(server, uid('sb'))
    const c = await transport(server, uid('sc'))
    try {
      const s = await a.createSession('room', { maxPeers: 1, manifest: MANIFEST })
      expect([s.id, s.maxPeers, s.manifest, s.peers]).toEqual(['room', 1, MANIFEST, []])
      await rejectsWithCode(a.createSession('room'), 'ERR_SESSION_EXISTS')
      await rejectsWithCode(a.createSession('bad', { manifest: 'nodes: []\nconnections: []\n' }), 'ERR_INVALID_MANIFEST')
      await rejectsWithCode(a.createSession('bad', { maxPeers: 0 }), 'ERR_INVALID_CONFIG')
      await rejectsWithCode(a.createSession('bad', { colour: 'red' }), 'ERR_INVALID_DATA')
      expect(a.hasSession('bad')).toBe(false)
      expect(a.listSessions()).toEqual(['room'])
      expect(() => a.getSession('nope')).toThrow(expect.objectContaining({ code: 'ERR_SESSION_NOT_FOUND' }))

      await rejectsWithCode(a.addPeerToSession('room', b.peerId), 'ERR_PEER_NOT_FOUND') // not connected
      await a.connectPeer(b.peerId)
      await a.connectPeer(c.peerId)
      await a.addPeerToSession('room', b.peerId)
      await rejectsWithCode(a.addPeerToSession('room', c.peerId), 'ERR_MAX_PEERS')
      await rejectsWithCode(a.addPeerToSession('nope', b.peerId), 'ERR_SESSION_NOT_FOUND')
      expect(a.getSession('room').peers).toEqual([b.peerId])

      // A peer that disconnects leaves the session.
      await b.shutdown()
      await until(() => a.getSession('room').peers.length === 0, 10000)
      await a.removeSession('room')
      expect(a.hasSession('room')).toBe(false)
      await rejectsWithCode(a.removeSession('room'), 'ERR_SESSION_NOT_FOUND')
    } finally {
      await a.shutdown()
      await b.shutdown()
      await c.shutdown()
      await server.close()
    }
  })

  it('a snapshot is JSON, restores the session elsewhere with its peers reconnected, and a corrupt one creates nothing', async () => {
    const server = await withServer()
    const a = await transport(server, uid('ra'))
    const b = await transport(server, uid('rb'))
    const a2 = await transport(server, uid('ra2'))
    try {
      await a.connectPeer(b.peerId)
      const s = await a.createSession('call', { manifest: MANIFEST })
      await s.addPeer(b.peerId)
      const snap = JSON.parse(JSON.stringify(s.snapshot()))
      expect(snap).toMatchObject({ kind: 'remotemedia-session', version: 1, id: 'call', peers: [b.peerId], manifest: MANIFEST })
      // Sync state: what a's sync stage learned of b (nothing received yet: the initial targets).
      expect(snap.sync[b.peerId]).toMatchObject({ audioTargetMs: 100, videoTargetMs: 100 })
      snap.sync[b.peerId] = { audioTargetMs: 150, videoTargetMs: 120, correctionFactor: 1.0002 }

      // Another transport restores it: the session exists there, b is connected again, and b's
      // sync stage starts from the snapshot's state.
      const restored = await a2.restoreSession(snap)
      expect(restored.peers).toEqual([b.peerId])
      expect(restored.failedPeers).toEqual([])
      expect(a2.listPeers()).toContain(b.peerId)
      const stats = a2.getPeer(b.peerId).getBufferStatistics()
      expect([stats.audio.targetDelayMs, stats.video.targetDelayMs]).toEqual([150, 120])
      expect(a2.getPeer(b.peerId).getSyncState().correctionFactor).toBe(1.0002)
      expect(a2.getSession('call').snapshot().sync[b.peerId]).toMatchObject({ audioTargetMs: 150, correctionFactor: 1.0002 })
      await rejectsWithCode(a2.restoreSession(snap), 'ERR_SESSION_EXISTS')

      for (const bad of [
        { ...snap, id: 'other', kind: 'foreign' },
        { ...snap, id: 'other', version: 7 },
        { ...snap, id: 'other', peers: ['not a valid id'] },
        { ...snap, id: 'other', manifest: 'nodes: [' },
        { ...snap, id: 'other', unexpected: true },
        { ...snap, id: 'other', sync: { stranger: {} } },
        { ...snap, id: 'other', sync: { [b.peerId]: { audioTargetMs: 'loud' } } },
      ]) {
        await rejectsWithCode(a2.restoreSession(bad), 'ERR_INVALID_DATA')
        expect(a2.hasSession('other')).toBe(false)
      }
      await rejectsWithCode(a2.restoreSession('garbage'), 'ERR_INVALID_DATA')
    } finally {
      await a.shutdown()
      await b.shutdown()
      await a2.shutdown()
      await server.close()
    }
  })
})

describe('a session runs its members\' audio through its pipeline', () => {
  it('loopback: a member hears its own audio back; vad: speech-start and speech-end arrive as session output', async () => {
    const server = await withServer()
    const hub = await transport(server, uid('hub'))
    const member = await transport(server, uid('mem'))
    try {
      const peer = await member.connectPeer(hub.peerId)
      await peer.addAudioTrack()
      const back = hub.getPeer(member.peerId)
      await back.addAudioTrack()
      const loop = await hub.createSession('loop', { manifest: 'nodes:\n  - { id: in, node_type: Input }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: out }\n' })
      await hub.addPeerToSession('loop', member.peerId)
      const echoed = []
      peer.on('audio-frame', (f) => echoed.push(f))
      const tone = toneFrame(440)
      await member.sendAudio(hub.peerId, tone)
      for (let i = 0; i < 30; i++) {
        await member.sendAudio(hub.peerId, tone)
        await new Promise((r) => setTimeout(r, 20))
      }
      await until(() => echoed.length >= 10, 5000)
      const level = rms(echoed.at(-1).samples)
      expect(level).toBeGreaterThan(0.2)

      // A second session with VAD: its events come out as 'output' on the session.
      await hub.removeSession('loop')
      // attachPipeline: a session made without a manifest gets one; a bad one changes nothing.
      const vad = await hub.createSession('vad')
      await expect(vad.attachPipeline('nodes: [')).rejects.toMatchObject({ code: 'ERR_INVALID_MANIFEST' })
      await vad.attachPipeline(await Pipeline.fromManifest('nodes:\n  - { id: in, node_type: Input }\n  - { id: vad, node_type: VoiceActivityDetection, params: { threshold_db: -30 } }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: vad }\n  - { from: vad, to: out }\n'))
      expect(JSON.parse(vad.manifest).nodes.map((n) => n.node_type)).toEqual(['Input', 'VoiceActivityDetection', 'Output'])
      const outputs = []
      vad.on('output', (o) => outputs.push(o))
      await hub.addPeerToSession('vad', member.peerId)
      const send = async (f, n) => { for (let i = 0; i < n; i++) { await member.sendAudio(hub.peerId, f); await new Promise((r) => setTimeout(r, 20)) } }
      await send(new Float32Array(960), 15)
      await send(tone, 30)
      await send(new Float32Array(960), 40)
      await until(() => outputs.some((o) => o.event?.name === 'speech-end'), 5000)
      const names = outputs.filter((o) => o.event).map((o) => o.event.name)
      expect(names).toEqual(['speech-start', 'speech-end'])
      expect(outputs.every((o) => o.sessionId === 'vad' && o.nodeId === 'vad' && o.peerId === member.peerId)).toBe(true)
    } finally {
      await hub.shutdown()
      await member.shutdown()
      await server.close()
    }
  })
})

describe('an Output node routes its frames: sender, all, others, or listed peers', () => {
  it('route: all broadcasts one member\'s audio to every member, route: others to everyone but it', async () => {
    const server = await withServer()
    const hub = await transport(server, uid('hub'))
    const members = [await transport(server, uid('ma')), await transport(server, uid('mb')), await transport(server, uid('mc'))]
    try {
      const heard = new Map() // member peer id → frames it got from the hub
      for (const m of members) {
        const peer = await m.connectPeer(hub.peerId)
        await peer.addAudioTrack()
        // The hub sends back one track to each member, added after the member's (no crossing).
        await hub.getPeer(m.peerId).addAudioTrack()
        heard.set(m.peerId, [])
        peer.on('audio-frame', (f) => heard.get(m.peerId).push(f))
      }
      const manifest = (route) => `nodes:\n  - { id: in, node_type: Input }\n  - { id: out, node_type: Output, params: { route: ${route} } }\nconnections:\n  - { from: in, to: out }\n`
      await expect(hub.createSession('bad', { manifest: manifest('everyone') })).rejects.toMatchObject({ code: 'ERR_INVALID_MANIFEST', message: expect.stringMatching(/node 'out'.*route/) })
      const tone = toneFrame(440)
      const [a] = members
      for (const m of members) await m.sendAudio(hub.peerId, new Float32Array(960))
      // Only a speaks; who hears it (loud) depends on the route.
      const loudFrames = (id) => heard.get(id).filter((f) => rms(f.samples) > 0.2).length
      const run = async (route) => {
        const s = await hub.createSession(route, { manifest: manifest(route) })
        for (const m of members) await hub.addPeerToSession(route, m.peerId)
        for (const m of members) heard.set(m.peerId, [])
        for (let i = 0; i < 40; i++) {
          await a.sendAudio(hub.peerId, tone)
          await new Promise((r) => setTimeout(r, 20))
        }
        await new Promise((r) => setTimeout(r, 400))
        await s.close()
        return members.map((m) => loudFrames(m.peerId))
      }
      const all = await run('all')
      expect(all.every((n) => n >= 15), `route all: loud frames per member ${all}`).toBe(true)
      const others = await run('others')
      expect(others[0], `route others: a heard itself ${others[0]} times`).toBe(0)
      expect(others.slice(1).every((n) => n >= 15), `route others: ${others}`).toBe(true)
    } finally {
      await hub.shutdown()
      for (const m of members) await m.shutdown()
      await server.close()
    }
  })
})

// Packed I420: dark left half, light right half, a white square at 40..120, grey chroma.
function testPattern(w, h) {
  const data = Buffer.alloc((w * h * 3) / 2)
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = x < w / 2 ? 16 : 180
  for (let y = 40; y < 120; y++) for (let x = 40; x < 120; x++) data[y * w + x] = 235
  data.fill(128, w * h)
  return data
}

describe('a session runs its members\' video through its pipeline', () => {
  it('VideoScale loopback: a member sending 640x480 gets 320x240 back', async () => {
    const server = await withServer()
    const a = await transport(server, uid('va'))
    const b = await transport(server, uid('vb'))
    try {
      const peer = await a.connectPeer(b.peerId)
      await peer.addVideoTrack({ width: 640, height: 480, framerate: 30, bitrate: 800000, keyframeInterval: 30 })
      await b.getPeer(a.peerId).addVideoTrack({ width: 320, height: 240, framerate: 30, bitrate: 300000, keyframeInterval: 30 })
      const s = await b.createSession('scaled', { manifest: 'nodes:\n  - { id: in, node_type: Input }\n  - { id: scale, node_type: VideoScale, params: { width: 320, height: 240 } }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: scale }\n  - { from: scale, to: out }\n' })
      await s.addPeer(a.peerId)
      const back = []
      const seenByB = []
      peer.on('video-frame', (f) => back.push(f))
      b.getPeer(a.peerId).on('video-frame', (f) => seenByB.push(f))
      const picture = testPattern(640, 480)
      const frame = (i) => ({ data: picture, width: 640, height: 480, timestampUs: i * 33333, keyframe: i === 0 })
      await a.sendVideo(b.peerId, frame(0))
      for (let i = 1; i <= 60 && back.length < 10; i++) {
        await a.sendVideo(b.peerId, frame(i))
        await sleep(33)
      }
      await until(() => back.length >= 5, 5000)
      // What comes back is the scaled picture: 320x240, the square (40..120 of 640x480) now at
      // 20..60, the halves split at x = 160.
      for (const f of back) {
        expect([f.width, f.height, f.data.length]).toEqual([320, 240, 320 * 240 * 1.5])
      }
      const last = back.at(-1).data
      const y = (x, row) => last[row * 320 + x]
      expect(y(40, 40)).toBeGreaterThan(215) // in the square
      expect(y(70, 40)).toBeLessThan(40) // right of it, dark half
      expect(y(100, 200)).toBeLessThan(40)
      expect(y(250, 200)).toBeGreaterThan(160)
      // The application on B still sees the original frames.
      expect(seenByB.length).toBeGreaterThan(0)
      expect(seenByB.every((f) => f.width === 640 && f.height === 480)).toBe(true)
    } finally {
      await a.shutdown()
      await b.shutdown()
      await server.close()
    }
  })
})

describe('removing a session or a member frees it within 1 s', () => {
  it('no output after removeSession; a removed or disconnected member leaves at once', async () => {
    const server = await withServer()
    const hub = await transport(server, uid('ch'))
    const member = await transport(server, uid('cm'))
    try {
      const peer = await member.connectPeer(hub.peerId)
      await peer.addAudioTrack()
      // VAD with no minimum and no hangover: alternating tone and silence is an event every 100 ms.
      const vad = 'nodes:\n  - { id: in, node_type: Input }\n  - { id: vad, node_type: VoiceActivityDetection, params: { threshold_db: -30, min_speech_ms: 0, hangover_ms: 0 } }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: vad }\n  - { from: vad, to: out }\n'
      const s = await hub.createSession('busy', { manifest: vad })
      await s.addPeer(member.peerId)
      const outputs = []
      hub.on('session-output', (o) => outputs.push({ at: Date.now(), o }))
      const tone = toneFrame(440)
      const silence = new Float32Array(960)
      let sending = true
      const sender = (async () => {
        await member.sendAudio(hub.peerId, silence)
        for (let i = 0; sending; i++) {
          await member.sendAudio(hub.peerId, Math.floor(i / 5) % 2 ? silence : tone).catch(() => {})
          await sleep(20)
        }
      })()
      await until(() => outputs.length >= 4, 5000)
      const removedAt = Date.now()
      await hub.removeSession('busy')
      expect(hub.listSessions()).toEqual([])
      await sleep(2000) // the member keeps talking
      const late = outputs.filter((x) => x.at > removedAt + 1000)
      expect(late).toEqual([])

      // A member removed from a session is out of it at once; one that disconnects within 1 s.
      const again = await hub.createSession('again', { manifest: vad })
      await again.addPeer(member.peerId)
      expect(again.removePeer(member.peerId)).toBe(true)
      expect(again.peers).toEqual([])
      await again.addPeer(member.peerId)
      const n = outputs.length
      await until(() => outputs.length > n, 5000)
      sending = false
      await sender
      const leftAt = Date.now()
      await member.disconnectPeer(hub.peerId)
      await until(() => again.peers.length === 0, 1000, 5)
      expect(Date.now() - leftAt).toBeLessThan(1000)
    } finally {
      await hub.shutdown()
      await member.shutdown()
      await server.close()
    }
  })
})
