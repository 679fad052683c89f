import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { withServer, transport, until, uid, rejectsWithCode } from './helpers.mjs'
import { tone, frequency, rms, testPattern } from './signals.mjs'

describe('audio between Node transports', () => {
  let server, a, b
  beforeAll(async () => {
    server = await withServer()
    a = await transport(server, uid('sa'))
    b = await transport(server, uid('sb'))
  })
  afterAll(async () => {
    await a?.shutdown()
    await b?.shutdown()
    await server?.close()
  })

  it('a 440 Hz tone arrives as 440 Hz ± 5 Hz with its level within 3 dB', async () => {
    const peer = await a.connectPeer(b.peerId)
    await peer.addAudioTrack({ bitrate: 64000 })
    expect(peer.hasAudioTrack).toBe(true)
    const frames = []
    const remote = b.getPeer(a.peerId)
    remote.on('audio-frame', (f) => frames.push(f))
    const sent = tone(440, 100)
    for (const f of sent) {
      await a.sendAudio(b.peerId, f)
      await new Promise((r) => setTimeout(r, 20))
    }
    await until(() => frames.length >= 95, 5000).catch(() => {})
    expect(frames.length).toBeGreaterThanOrEqual(90)
    for (const f of frames) {
      expect(f.samples).toBeInstanceOf(Float32Array)
      expect(f.sampleRate).toBe(48000)
      expect(f.channels).toBe(1)
      expect(typeof f.rtpTimestamp).toBe('number')
      expect(f.wallClockUs).toBeGreaterThan(Date.now() * 1000 - 60e6)
      expect([0.5, 0.75, 1]).toContain(f.syncConfidence)
      expect(Number.isFinite(f.driftPpm)).toBe(true)
    }
    // webrtc-rs sends a sender report about every second: the later frames are on its clock.
    expect(frames.at(-1).syncConfidence).toBe(1)
    const all = new Float32Array(frames.slice(frames.length / 4).flatMap((f) => Array.from(f.samples)))
    expect(Math.abs(frequency(all) - 440)).toBeLessThanOrEqual(5)
    const levelDb = 20 * Math.log10(rms(all) / (0.5 / Math.SQRT2))
    expect(Math.abs(levelDb)).toBeLessThanOrEqual(3)
  })

  // The next audio frame from `peer` holding `n` samples (frames of earlier tests may still be
  // leaving the jitter buffer).
  function frameOfLength(peer, n) {
    return new Promise((resolve) => {
      const on = (f) => {
        if (f.samples.length !== n) return
        peer.off('audio-frame', on)
        resolve(f)
      }
      peer.on('audio-frame', on)
    })
  }

  it('accepts Int16Array frames too', async () => {
    const got = frameOfLength(b.getPeer(a.peerId), 480)
    const pcm = new Int16Array(480) // 10 ms
    await a.sendAudio(b.peerId, pcm)
    expect((await got).samples.length).toBe(480)
  })

  it('refuses bad frames and configs with codes, and keeps working', async () => {
    await rejectsWithCode(a.sendAudio(b.peerId, new Float32Array(123)), 'ERR_INVALID_DATA')
    await rejectsWithCode(a.sendAudio(b.peerId, [0, 0, 0]), 'ERR_INVALID_DATA')
    await rejectsWithCode(a.sendAudio(b.peerId, new Float32Array(0)), 'ERR_INVALID_DATA')
    await rejectsWithCode(a.sendAudio('nobody', new Float32Array(960)), 'ERR_PEER_NOT_FOUND')
    await rejectsWithCode(b.sendAudio(a.peerId, new Float32Array(960)), 'ERR_PEER_NOT_CONNECTED')
    const peer = a.getPeer(b.peerId)
    await rejectsWithCode(peer.addAudioTrack(), 'ERR_INVALID_DATA') // already has one
    const back = b.getPeer(a.peerId)
    await rejectsWithCode(back.addAudioTrack({ sampleRate: 44100 }), 'ERR_INVALID_DATA')
    await rejectsWithCode(back.addAudioTrack({ bitrate: 1 }), 'ERR_INVALID_CONFIG')
    await rejectsWithCode(back.addAudioTrack({ channels: 3 }), 'ERR_INVALID_CONFIG')
    await rejectsWithCode(back.addAudioTrack('loud'), 'ERR_INVALID_DATA')
    const got = new Promise((r) => b.getPeer(a.peerId).once('audio-frame', r))
    await a.sendAudio(b.peerId, tone(440, 1)[0])
    expect((await got).samples.length).toBe(960)
  })
})

describe('jitter buffer floor', () => {
  it('with jitterBufferMinMs the buffer settles below jitterBufferMs on a steady path; without it, it stays at jitterBufferMs', async () => {
    const server = await withServer()
    const a = await transport(server, uid('fa'))
    const low = await transport(server, uid('fl'), { jitterBufferMs: 50, jitterBufferMinMs: 20 })
    const plain = await transport(server, uid('fp'), { jitterBufferMs: 50 })
    try {
      for (const r of [low, plain]) {
        const peer = await a.connectPeer(r.peerId)
        await peer.addAudioTrack()
      }
      const delays = { low: [], plain: [] }
      low.getPeer(a.peerId).on('audio-frame', (f) => delays.low.push(f.bufferDelayMs))
      plain.getPeer(a.peerId).on('audio-frame', (f) => delays.plain.push(f.bufferDelayMs))
      // 4 s of 20 ms frames, paced: the target moves 1/128 of the way per frame.
      const start = Date.now()
      for (const [i, f] of tone(440, 200).entries()) {
        await a.broadcastAudio(f)
        const wait = start + (i + 1) * 20 - Date.now()
        if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      }
      await until(() => delays.low.length >= 190 && delays.plain.length >= 190, 5000)
      const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1]
      const lowStats = low.getPeer(a.peerId).getBufferStatistics().audio
      const plainStats = plain.getPeer(a.peerId).getBufferStatistics().audio
      expect(lowStats.targetDelayMs).toBeGreaterThanOrEqual(20)
      expect(lowStats.targetDelayMs).toBeLessThan(40)
      expect(plainStats.targetDelayMs).toBeGreaterThanOrEqual(50)
      expect(median(delays.low.slice(-50))).toBeLessThan(40)
      expect(median(delays.plain.slice(-50))).toBeGreaterThanOrEqual(45)
    } finally {
      await a.shutdown()
      await low.shutdown()
      await plain.shutdown()
      await server.close()
    }
  })
})

describe('renegotiation from the answering side', () => {
  it('the peer that answered the first offer can add a track too (DTLS roles kept)', async () => {
    const server = await withServer()
    const a = await transport(server, uid('ra'))
    const b = await transport(server, uid('rb'))
    try {
      await a.connectPeer(b.peerId)
      await until(() => b.listPeers().includes(a.peerId))
      await b.getPeer(a.peerId).addAudioTrack()
      const got = new Promise((r) => a.getPeer(b.peerId).once('audio-frame', r))
      await b.sendAudio(a.peerId, tone(500, 1)[0])
      expect((await got).samples.length).toBe(960)
      // The data channel still works after the renegotiation.
      const msg = new Promise((r) => b.getPeer(a.peerId).channels[0].once('message', r))
      await a.getPeer(b.peerId).defaultChannel.send('after')
      expect((await msg).data).toBe('after')
    } finally {
      await a.shutdown()
      await b.shutdown()
      await server.close()
    }
  })
})

describe('broadcast', () => {
  it('encodes once and reaches every peer with an audio track', async () => {
    const server = await withServer()
    const hub = await transport(server, uid('hub'))
    const others = []
    try {
      for (let i = 0; i < 3; i++) others.push(await transport(server, uid(`l${i}`)))
      const counts = new Map(others.map((t) => [t.peerId, 0]))
      for (const t of others) {
        t.on('audio-frame', (f, p) => counts.set(t.peerId, counts.get(t.peerId) + 1))
        const p = await hub.connectPeer(t.peerId)
        await p.addAudioTrack()
      }
      // A fourth peer without an audio track is not a target.
      const silent = await transport(server, uid('quiet'))
      others.push(silent)
      await hub.connectPeer(silent.peerId)
      for (const f of tone(300, 10)) {
        const r = await hub.broadcastAudio(f)
        expect(r).toEqual({ sent: 3, failed: [] })
      }
      await until(() => [...counts.values()].every((c) => c >= 9), 5000)
      await rejectsWithCode(hub.broadcastAudio(new Float32Array(7)), 'ERR_INVALID_DATA')
    } finally {
      for (const t of others) await t.shutdown()
      await hub.shutdown()
      await server.close()
    }
  })
})

describe('video between Node transports', () => {
  for (const codec of ['vp8', 'vp9']) {
    it(`${codec}: I420 frames arrive decoded with the right size (≥ 90 %)`, async () => {
      const server = await withServer()
      const a = await transport(server, uid(`${codec}a`), { videoCodec: codec })
      const b = await transport(server, uid(`${codec}b`), { videoCodec: codec })
      try {
        const peer = await a.connectPeer(b.peerId)
        const [w, h] = [320, 240]
        await peer.addVideoTrack({ width: w, height: h, framerate: 30, bitrate: 600000, keyframeInterval: 30 })
        expect(peer.hasVideoTrack).toBe(true)
        await a.sendVideo(b.peerId, { data: testPattern(w, h, 0), width: w, height: h, timestampUs: 0, keyframe: true })
        const got = []
        b.getPeer(a.peerId).on('video-frame', (f) => got.push(f))
        for (let i = 1; i <= 60; i++) {
          await a.sendVideo(b.peerId, { data: testPattern(w, h, i), width: w, height: h, format: 'i420', timestampUs: i * 33333 })
          await new Promise((r) => setTimeout(r, 30))
        }
        await until(() => got.length >= 57, 5000).catch(() => {})
        expect(got.length).toBeGreaterThanOrEqual(54)
        for (const f of got) {
          expect(f.width).toBe(w)
          expect(f.height).toBe(h)
          expect(f.format).toBe('i420')
          expect(Buffer.isBuffer(f.data)).toBe(true)
          expect(f.data.length).toBe((w * h * 3) / 2)
        }
        expect(got.at(-1).framerate).toBeGreaterThan(15)
      } finally {
        await a.shutdown()
        await b.shutdown()
        await server.close()
      }
    })
  }

  it('refuses bad frames with codes (never a crash) and keeps working', async () => {
    const server = await withServer()
    const a = await transport(server, uid('bva'))
    const b = await transport(server, uid('bvb'))
    try {
      const peer = await a.connectPeer(b.peerId)
      await rejectsWithCode(a.sendVideo(b.peerId, { data: Buffer.alloc(10), width: 2, height: 2 }), 'ERR_PEER_NOT_CONNECTED')
      await rejectsWithCode(peer.addVideoTrack({ width: 0 }), 'ERR_INVALID_CONFIG')
      await peer.addVideoTrack({ width: 64, height: 48 })
      const ok = { data: testPattern(64, 48, 0), width: 64, height: 48 }
      await a.sendVideo(b.peerId, ok)
      await rejectsWithCode(a.sendVideo(b.peerId, { ...ok, data: Buffer.alloc(100) }), 'ERR_INVALID_DATA')
      await rejectsWithCode(a.sendVideo(b.peerId, { ...ok, width: 63 }), 'ERR_INVALID_DATA')
      // A frame of another valid size is taken (the track follows the size it is given), but
      // its data must match its own dimensions.
      await rejectsWithCode(a.sendVideo(b.peerId, { ...ok, width: 32, height: 24 }), 'ERR_INVALID_DATA')
      await rejectsWithCode(a.sendVideo(b.peerId, { ...ok, format: 'nv12' }), 'ERR_INVALID_DATA')
      await rejectsWithCode(a.sendVideo(b.peerId, { ...ok, data: 'pixels' }), 'ERR_INVALID_DATA')
      await rejectsWithCode(a.sendVideo(b.peerId, null), 'ERR_INVALID_DATA')
      await rejectsWithCode(peer.addVideoTrack(), 'ERR_INVALID_DATA') // already has one
      await rejectsWithCode(peer.requestKeyframe(), 'ERR_PEER_NOT_CONNECTED') // b sends a no video
      const got = new Promise((r) => b.getPeer(a.peerId).once('video-frame', r))
      await a.sendVideo(b.peerId, { ...ok, keyframe: true, timestampUs: 100000 })
      expect((await got).width).toBe(64)
      const small = new Promise((r) => b.getPeer(a.peerId).on('video-frame', (f) => { if (f.width === 32) r(f) }))
      for (let i = 0; i < 3; i++) await a.sendVideo(b.peerId, { data: testPattern(32, 24, i), width: 32, height: 24, timestampUs: 200000 + i * 33333 })
      expect((await small).height).toBe(24)
    } finally {
      await a.shutdown()
      await b.shutdown()
      await server.close()
    }
  })
})

describe('video broadcast', () => {
  it('encodes once and reaches every peer with a video track', async () => {
    const server = await withServer()
    const hub = await transport(server, uid('vhub'))
    const others = []
    try {
      const counts = new Map()
      for (let i = 0; i < 3; i++) {
        const t = await transport(server, uid(`vl${i}`))
        others.push(t)
        counts.set(t.peerId, 0)
        t.on('video-frame', (f) => {
          expect(f.width).toBe(64)
          counts.set(t.peerId, counts.get(t.peerId) + 1)
        })
        const p = await hub.connectPeer(t.peerId)
        await p.addVideoTrack({ width: 64, height: 48, keyframeInterval: 10 })
        await hub.sendVideo(t.peerId, { data: testPattern(64, 48, 0), width: 64, height: 48, keyframe: true })
      }
      for (let i = 1; i <= 20; i++) {
        const r = await hub.broadcastVideo({ data: testPattern(64, 48, i), width: 64, height: 48, timestampUs: i * 33333, keyframe: i === 1 })
        expect(r).toEqual({ sent: 3, failed: [] })
        await new Promise((res) => setTimeout(res, 20))
      }
      await until(() => [...counts.values()].every((c) => c >= 18), 5000)
      await rejectsWithCode(hub.broadcastVideo({ data: Buffer.alloc(5), width: 64, height: 48 }), 'ERR_INVALID_DATA')
    } finally {
      for (const t of others) await t.shutdown()
      await hub.shutdown()
      await server.close()
    }
  })
})

describe('resolution ladder', () => {
  it('a lower video bitrate steps the sent picture down (smaller, then fewer frames) and back up; a drop it can hold changes nothing', async () => {
    const server = await withServer()
    const a = await transport(server, uid('lda'))
    const b = await transport(server, uid('ldb'))
    try {
      const peer = await a.connectPeer(b.peerId)
      const [w, h] = [640, 480]
      await peer.addVideoTrack({ width: w, height: h, framerate: 30, bitrate: 800000, keyframeInterval: 0 })
      let i = 0
      const frame = (keyframe = false) => ({ data: testPattern(w, h, i), width: w, height: h, timestampUs: i++ * 33333, keyframe })
      await a.sendVideo(b.peerId, frame(true))
      const got = []
      b.getPeer(a.peerId).on('video-frame', (f) => got.push(f))
      // Sends n frames at ~30 fps; returns the frames received for them (the ones of `size`
      // after the first of that size: those of the previous step may still be in flight).
      const phase = async (n, [pw, ph]) => {
        const start = got.length
        for (let k = 0; k < n; k++) {
          await a.sendVideo(b.peerId, frame())
          await new Promise((r) => setTimeout(r, 30))
        }
        await new Promise((r) => setTimeout(r, 300))
        const mine = got.slice(start)
        const first = mine.findIndex((f) => f.width === pw && f.height === ph)
        return first < 0 ? [] : mine.slice(first)
      }
      const video = () => peer.getMetrics().video

      // The configured bitrate, a higher one, and a drop the configured picture still holds:
      // full size, every frame.
      expect(video()).toEqual({ width: 640, height: 480, framerate: 30, targetBitrateBps: 800000 })
      for (const bps of [800000, 1000000, 400000]) {
        peer.setBitrate('video', bps)
        expect(video()).toEqual({ width: 640, height: 480, framerate: 30, targetBitrateBps: bps })
      }
      let frames = await phase(30, [w, h])
      expect(frames.length).toBeGreaterThanOrEqual(27)
      expect(frames.every((f) => f.width === w && f.height === h)).toBe(true)

      // 150 kbit/s: half the size (same aspect ratio), still 30 fps.
      peer.setBitrate('video', 150000)
      expect(video()).toEqual({ width: 320, height: 240, framerate: 30, targetBitrateBps: 150000 })
      frames = await phase(30, [320, 240])
      expect(frames.length).toBeGreaterThanOrEqual(20)
      expect(frames.every((f) => f.width === 320 && f.height === 240 && f.data.length === (320 * 240 * 3) / 2)).toBe(true)

      // 60 kbit/s: 320x240 at 15 fps, so about every other frame sent arrives.
      peer.setBitrate('video', 60000)
      expect(video()).toEqual({ width: 320, height: 240, framerate: 15, targetBitrateBps: 60000 })
      const before = got.length
      frames = await phase(40, [320, 240])
      const arrived = got.length - before
      expect(arrived).toBeGreaterThanOrEqual(14)
      expect(arrived).toBeLessThanOrEqual(24)
      expect(frames.every((f) => f.width === 320 && f.height === 240)).toBe(true)
      // RTP timestamps 2 frames apart: 66.7 ms at 90 kHz.
      const gaps = frames.slice(1).map((f, k) => (f.rtpTimestamp - frames[k].rtpTimestamp) >>> 0)
      expect(gaps.filter((g) => g === 6000).length).toBeGreaterThan(gaps.length / 2)

      // Back to the configured bitrate: full size and rate again.
      peer.setBitrate('video', 800000)
      expect(video()).toEqual({ width: 640, height: 480, framerate: 30, targetBitrateBps: 800000 })
      frames = await phase(30, [w, h])
      expect(frames.length).toBeGreaterThanOrEqual(24)
      expect(frames.every((f) => f.width === w && f.height === h)).toBe(true)

      // The receiving side has no local video track: no video entry.
      expect(b.getPeer(a.peerId).getMetrics().video).toBeUndefined()
    } finally {
      await a.shutdown()
      await b.shutdown()
      await server.close()
    }
  })
})

describe('removing tracks', () => {
  it('bitrates change at run time; the remote side gets track and track-ended events, media of the removed kind stops, and the kind can be added again', async () => {
    const server = await withServer()
    const a = await transport(server, uid('rta'))
    const b = await transport(server, uid('rtb'))
    try {
      const started = []
      const ended = []
      b.on('track', (t, p) => started.push({ ...t, from: p?.peerId }))
      b.on('track-ended', (t, p) => ended.push({ ...t, from: p?.peerId }))
      const peer = await a.connectPeer(b.peerId)
      await peer.addAudioTrack()
      await peer.addVideoTrack({ width: 64, height: 48 })
      const pic = { data: testPattern(64, 48, 0), width: 64, height: 48 }
      // Both tracks are negotiated once added: media of each kind starts the remote track.
      await a.sendAudio(b.peerId, new Float32Array(960))
      await a.sendVideo(b.peerId, pic)
      await until(() => started.length === 2, 5000)
      expect(started.map((t) => t.kind).sort()).toEqual(['audio', 'video'])
      expect(started.every((t) => t.from === a.peerId && typeof t.trackId === 'string')).toBe(true)

      // Bitrates change at run time; bad ones are refused.
      peer.setBitrate('video', 150000)
      peer.setBitrate('audio', 24000)
      expect(() => peer.setBitrate('video', 10)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
      expect(() => peer.setBitrate('audio', 1e9)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
      expect(() => peer.setBitrate('data', 1000)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_DATA' }))
      expect(() => b.getPeer(a.peerId).setBitrate('video', 150000)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_DATA' }))

      // Bad requests are refused and change nothing.
      await rejectsWithCode(peer.removeTrack('data'), 'ERR_INVALID_DATA')
      await rejectsWithCode(b.getPeer(a.peerId).removeTrack('video'), 'ERR_INVALID_DATA') // b sends none

      const videoTrackId = started.find((t) => t.kind === 'video').trackId
      await peer.removeTrack('video')
      expect(peer.hasVideoTrack).toBe(false)
      await until(() => ended.length === 1, 5000)
      expect(ended[0]).toEqual({ kind: 'video', trackId: videoTrackId, from: a.peerId })
      await rejectsWithCode(a.sendVideo(b.peerId, pic), 'ERR_PEER_NOT_CONNECTED')
      await rejectsWithCode(peer.removeTrack('video'), 'ERR_INVALID_DATA') // already gone

      // Audio still flows.
      const audio = []
      b.getPeer(a.peerId).on('audio-frame', (f) => audio.push(f))
      for (const f of tone(440, 10)) await a.sendAudio(b.peerId, f)
      await until(() => audio.length >= 8, 5000)

      // Video again: a new track arrives and decodes.
      await peer.addVideoTrack({ width: 64, height: 48 })
      await until(() => started.length === 3, 5000)
      expect(started[2].kind).toBe('video')
      const frames = []
      b.getPeer(a.peerId).on('video-frame', (f) => frames.push(f))
      for (let i = 0; i < 100 && frames.length === 0; i++) {
        await a.sendVideo(b.peerId, { ...pic, keyframe: true, timestampUs: i * 33333 })
        await new Promise((r) => setTimeout(r, 30))
      }
      expect(frames.length).toBeGreaterThan(0)
      expect(ended.length).toBe(1)
    } finally {
      await a.shutdown()
      await b.shutdown()
      await server.close()
    }
  })
})
