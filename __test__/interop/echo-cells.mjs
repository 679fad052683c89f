// The cells of the interop matrix that a non-browser peer echoing our RTP shares with the others
// (werift.test.mjs, node-datachannel.test.mjs): opening channels from the peer's side (the data
// cells of data-cells.mjs when the peer offers), Opus and VP8/VP9 echoed on the peer's own track,
// renegotiation mid-call (Node adds and removes video; the peer offers), and a renegotiation
// offer with a new o= session id. Each file says how to make its peer:
//   name                 the peer's name in titles and in record()
//   node(extra)          a Node transport of the file (errors collected in t.errors)
//   dataPeer()           a peer echoing every message of every channel (sp.channels: its own)
//   mediaPeer(opts)      a peer echoing every RTP packet on its own sender of the same section;
//                        opts.keepSession keeps its first o= session id
//   echoed(sp)           what it echoed: { audio: packets, videoFrames: marker bits }
//   openChannel(sp, label, init)   the peer opens a channel that echoes
//   codecSdp(sp)         a description of the call in which the negotiated video codec shows
//   audioTrackId         (optional) the track id Node must see for the echoed audio
//   afterVideoRemoved(sp)(optional) waits until the peer took our video section's removal in
//   unreliableMode       (optional) what Node calls an unreliable channel the peer opened
//   peerViewWhenNodeOffers  (optional) assert the peer's own view of the channels Node opens
import { describe, it, expect, beforeAll } from 'vitest'
import { until, once } from '../helpers.mjs'
import { record } from './common.mjs'
import { dataCells, collect } from './data-cells.mjs'
import { sleep, sendTone, sendVideo, toneOf } from './common.mjs'

// The peer's own view of one of its channels, { ordered, maxRetransmits }, or null.
function theirs(sp, label) {
  const c = sp.channels.find((x) => x.label === label)
  return c ? { ordered: c.ordered, maxRetransmits: c.maxRetransmits } : null
}

// Node offers (connectPeer); the connect and first-message times recorded. For dataCells().
export function nodeOffersData(p) {
  return async () => {
    const t = await p.node()
    const sp = await p.dataPeer()
    const t0 = performance.now()
    const peer = await t.connectPeer(sp.peerId)
    record(p.name, 'connect', performance.now() - t0)
    const channel = peer.defaultChannel
    const first = once(channel, 'message')
    await channel.send(`hello ${p.name}`)
    expect((await first).data).toBe(`hello ${p.name}`)
    record(p.name, 'first-message', performance.now() - t0)
    return {
      channel,
      theirs: p.peerViewWhenNodeOffers ? (label) => theirs(sp, label) : undefined,
      open: (label, mode) => peer.createDataChannel(label, { mode }),
    }
  }
}

// The peer offers, with a first channel 'echo' of its own; Node answers. For dataCells().
export function peerOffersData(p) {
  return async () => {
    const t = await p.node()
    const sp = await p.dataPeer()
    p.openChannel(sp, 'echo')
    const connected = once(t, 'peer-connected', (x) => x.peerId === sp.peerId, 15000)
    const firstChannel = once(t, 'data-channel', (ch) => ch.label === 'echo', 15000).then(([ch]) => ch)
    await sp.offer(t.peerId)
    const peer = await connected
    expect(peer.outgoing).toBe(false)
    return {
      channel: await firstChannel,
      theirs: (label) => theirs(sp, label),
      unreliableMode: p.unreliableMode,
      open: async (label, mode) => {
        const ours = once(t, 'data-channel', (ch) => ch.label === label, 15000).then(([ch]) => ch)
        p.openChannel(sp, label, mode === 'unreliable' ? { ordered: false, maxRetransmits: 0 } : {})
        return ours
      },
    }
  }
}

export function echoCells(p) {
  describe(`audio: ${p.name} echoes our Opus RTP on its own track`, () => {
    it('Node offers: ≥ 90 % of 100 frames come back, 440 ± 5 Hz', async () => {
      const t = await p.node()
      const sp = await p.mediaPeer()
      const peer = await t.connectPeer(sp.peerId)
      const track = once(peer, 'track', (i) => i.kind === 'audio', 15000)
      await peer.addAudioTrack()
      const frames = []
      peer.on('audio-frame', (f) => frames.push(f))
      await sendTone(t, sp.peerId, 440, 100)
      await until(() => frames.length >= 100, 3000).catch(() => {})
      const info = await track
      if (p.audioTrackId) expect(info.trackId).toMatch(p.audioTrackId)
      expect(p.echoed(sp).audio).toBeGreaterThanOrEqual(90)
      expect(frames.length).toBeGreaterThanOrEqual(90)
      expect(frames.every((f) => f.sampleRate === 48000)).toBe(true)
      expect(Math.abs(toneOf(frames) - 440)).toBeLessThanOrEqual(5)
      expect(t.errors).toEqual([])
      expect(sp.errors).toEqual([])
    }, 30000)
  })

  describe.each(['vp8', 'vp9'])(`video %s: ${p.name} echoes our RTP on its own track`, (codec) => {
    it(`Node decodes ≥ 90 % of the frames ${p.name} echoed and we sent, at our size`, async () => {
      const t = await p.node({ videoCodec: codec })
      const sp = await p.mediaPeer()
      const peer = await t.connectPeer(sp.peerId)
      await peer.addVideoTrack({ width: 320, height: 240, framerate: 30, keyframeInterval: 30 })
      expect(p.codecSdp(sp)).toMatch(new RegExp(`a=rtpmap:\\d+ ${codec.toUpperCase()}/90000`))
      const frames = []
      peer.on('video-frame', (f) => frames.push(f))
      const sent = 60
      await sendVideo(t, sp.peerId, sent)
      await until(() => frames.length >= sent, 3000).catch(() => {})
      const echoed = p.echoed(sp).videoFrames
      expect(echoed).toBeGreaterThanOrEqual(sent * 0.9)
      expect(frames.length).toBeGreaterThanOrEqual(Math.ceil(echoed * 0.9))
      expect(frames.length).toBeGreaterThanOrEqual(sent * 0.9)
      for (const f of frames) expect([f.width, f.height]).toEqual([320, 240])
      expect(t.errors).toEqual([])
      expect(sp.errors).toEqual([])
    }, 30000)
  })

  describe(`renegotiation mid-call (${p.name})`, () => {
    let t, sp, peer
    const audio = []
    const video = []
    beforeAll(async () => {
      t = await p.node()
      sp = await p.mediaPeer()
      peer = await t.connectPeer(sp.peerId)
      await peer.addAudioTrack()
      peer.on('audio-frame', (f) => audio.push(f))
      peer.on('video-frame', (f) => video.push(f))
    }, 30000)

    // Audio and (when asked) video for `frames` × 20 ms; what came back meanwhile.
    async function flow(frames, withVideo) {
      const a0 = audio.length
      const v0 = video.length
      await Promise.all([sendTone(t, sp.peerId, 440, frames), withVideo ? sendVideo(t, sp.peerId, Math.floor(frames * 0.6)) : null])
      await sleep(400)
      return { audio: audio.slice(a0), video: video.slice(v0) }
    }

    it('Node adds a video track while audio flows; both come back, then it removes it and audio flows on', async () => {
      const before = await flow(50, false)
      expect(before.audio.length).toBeGreaterThanOrEqual(45)
      expect(Math.abs(toneOf(before.audio) - 440)).toBeLessThanOrEqual(5)

      const videoTrack = once(peer, 'track', (i) => i.kind === 'video', 15000)
      await peer.addVideoTrack({ width: 320, height: 240, keyframeInterval: 30 })
      const both = await flow(50, true)
      await videoTrack
      expect(both.audio.length).toBeGreaterThanOrEqual(45)
      expect(both.video.length).toBeGreaterThanOrEqual(27)
      for (const f of both.video) expect([f.width, f.height]).toEqual([320, 240])

      await peer.removeTrack('video')
      expect(peer.hasVideoTrack).toBe(false)
      if (p.afterVideoRemoved) await p.afterVideoRemoved(sp)
      const after = await flow(50, false)
      expect(after.audio.length).toBeGreaterThanOrEqual(45)
      expect(Math.abs(toneOf(after.audio) - 440)).toBeLessThanOrEqual(5)
      expect(after.video.length).toBe(0)
      expect(t.errors).toEqual([])
      expect(sp.errors).toEqual([])
    }, 40000)

    it(`${p.name} renegotiates by its own offer mid-call: answered, a channel it opens then echoes, audio flows on`, async () => {
      p.openChannel(sp, 'renegotiated')
      const opened = once(t, 'data-channel', (c) => c.label === 'renegotiated', 15000)
      await sp.offer()
      const [ch] = await opened
      const got = collect(ch)
      await ch.send(`after ${p.name} offered`)
      await until(() => got.length >= 1, 10000)
      expect(got[0].data).toBe(`after ${p.name} offered`)
      const after = await flow(50, false)
      expect(after.audio.length).toBeGreaterThanOrEqual(45)
      expect(t.errors).toEqual([])
      expect(sp.errors).toEqual([])
    }, 30000)
  })

  // werift and libdatachannel draw a new o= session id for each description. Our transport once
  // took such a renegotiation offer for a new connection of the remote and replaced its own
  // (libdatachannel then refused our answer's new ICE credentials, werift's call went through a
  // reconnection); a new connection is now told by its DTLS fingerprint (is_new_session in
  // peer/full_reconnect.rs). A renegotiation offer as the peer sends it:
  describe('a renegotiation offer with a new o= session id', () => {
    it(`${p.name} offers mid-call with its own o= line: the call goes on, no reconnection`, async () => {
      const t = await p.node()
      const sp = await p.mediaPeer({ keepSession: false })
      const peer = await t.connectPeer(sp.peerId)
      const reconnecting = []
      peer.on('reconnecting', (e) => reconnecting.push(e))
      const got = collect(peer.defaultChannel)
      await peer.defaultChannel.send('before')
      await until(() => got.length >= 1, 10000)
      p.openChannel(sp, 'x')
      await Promise.race([sp.offer(), sleep(5000)])
      await sleep(500)
      await peer.defaultChannel.send('after').catch(() => {})
      await until(() => got.length >= 2, 5000).catch(() => {})
      expect(sp.errors).toEqual([])
      expect(reconnecting).toEqual([])
      expect(got.map((m) => m.data)).toEqual(['before', 'after'])
    }, 30000)
  })
}
