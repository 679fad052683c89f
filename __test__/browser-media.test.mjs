import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { readFileSync } from 'node:fs'
import { lib, until, once } from './helpers.mjs'
import { toneSource } from './signals.mjs'
import { launchChromium, expectNodeDecodesChromiumsVideo, sendVideoToChromium } from './chromium.mjs'
const page = readFileSync(new URL('./pages/media-peer.html', import.meta.url), 'utf8')

// The signaling server serving the test page, a started Node transport 'node', and a Chromium tab.
async function setUp(options = {}) {
  const server = await lib.SignalingServer.listen({ host: '127.0.0.1', port: 0, httpPage: page })
  const node = new lib.WebRtcTransport({ signalingUrl: server.url, peerId: 'node', bindAddress: '127.0.0.1', ...options })
  await node.start()
  const browser = await launchChromium()
  return { server, node, browser, tab: await browser.newPage() }
}

async function tearDown({ server, node, browser }) {
  await browser?.close()
  await node?.shutdown()
  await server?.close()
}

describe('audio with a real Chromium', () => {
  let server, node, browser, tab
  beforeAll(async () => ({ server, node, browser, tab } = await setUp()))
  afterAll(() => tearDown({ server, node, browser }))

  it('decodes Chromium\'s microphone, and Chromium plays what Node sends', async () => {
    const announced = once(node, 'peer-announced', (e) => e.peerId.startsWith('browser-'), 15000)
    await tab.goto(`http://127.0.0.1:${server.port}/`)
    const browserId = (await announced).peerId
    const peer = await node.connectPeer(browserId)
    expect(peer.state).toBe('connected')

    // Chromium → Node: its fake microphone, Opus, decoded here.
    const frames = []
    peer.on('audio-frame', (f) => frames.push(f))
    await tab.evaluate(() => window.sendMicrophone())
    await until(() => frames.length >= 50, 15000)
    for (const f of frames.slice(0, 50)) {
      expect(f.sampleRate).toBe(48000)
      expect(f.samples.length % f.channels).toBe(0)
      expect(f.samples.length / f.channels).toBe(960) // 20 ms
    }

    // Node → Chromium: a 440 Hz tone it decodes and plays.
    await peer.addAudioTrack()
    const silence = new Float32Array(960)
    await node.sendAudio(browserId, silence)
    const next = toneSource(440)
    const deadline = Date.now() + 15000
    let stats = null
    while (Date.now() < deadline) {
      for (let k = 0; k < 5; k++) {
        await node.sendAudio(browserId, next())
        await new Promise((r) => setTimeout(r, 20))
      }
      stats = await tab.evaluate(() => window.inboundAudio())
      if (stats && stats.packetsReceived > 50 && stats.audioLevel > 0) break
    }
    const errors = await tab.evaluate(() => window.peer.errors)
    expect(errors).toEqual([])
    expect(stats).not.toBeNull()
    expect(stats.packetsReceived).toBeGreaterThan(50)
    expect(stats.audioLevel).toBeGreaterThan(0)
  }, 60000)
})

for (const [codec, mime] of [['vp8', null], ['vp9', 'video/VP9']]) {
  describe(`video with a real Chromium (${codec})`, () => {
    let server, node, browser, tab
    beforeAll(async () => ({ server, node, browser, tab } = await setUp({ videoCodec: codec })))
    afterAll(() => tearDown({ server, node, browser }))

    it(`decodes Chromium's camera (${codec}, 640x480), and Chromium decodes what Node sends`, async () => {
      const announced = once(node, 'peer-announced', (e) => e.peerId.startsWith('browser-'), 15000)
      await tab.goto(`http://127.0.0.1:${server.port}/`)
      const browserId = (await announced).peerId
      const peer = await node.connectPeer(browserId)

      const frames = []
      peer.on('video-frame', (f) => frames.push(f))
      await tab.evaluate((m) => window.sendCamera(m), mime)
      await until(() => frames.length >= 10, 15000)
      expect(frames[0].keyframe).toBe(true)
      // Over 4 s, Node decodes ≥ 90 % of the frames Chromium reports encoding (inter frames
      // too, not only keyframes: VP9's flexible mode once decoded only its keyframes).
      const { got } = await expectNodeDecodesChromiumsVideo(tab, frames, [640, 480])
      expect(frames.filter((f) => !f.keyframe).length).toBeGreaterThan(got / 2)

      await peer.addVideoTrack({ width: 320, height: 240, framerate: 30, keyframeInterval: 30 })
      // Chromium decodes ≥ 90 % of the 90 frames (3 s) Node sends.
      const count = 90
      const stats = await sendVideoToChromium(tab, node, browserId, count)
      expect(await tab.evaluate(() => window.peer.errors)).toEqual([])
      expect(stats).not.toBeNull()
      expect(stats.packetsReceived).toBeGreaterThan(0)
      expect(stats.framesDecoded).toBeGreaterThanOrEqual(Math.ceil(count * 0.9))
      expect(stats.frameWidth).toBe(320)
    }, 60000)
  })
}

// Frames after the first sender report: every one on the sender's clock (confidence 1.0), wall
// clocks increasing and advancing exactly as the RTP clock does. Returns the largest deviation, µs.
function checkSenderClock(frames, rate) {
  expect(frames.length).toBeGreaterThan(20)
  let worst = 0
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i]
    expect(f.syncConfidence).toBe(1)
    if (i === 0) continue
    expect(f.wallClockUs).toBeGreaterThan(frames[i - 1].wallClockUs)
    const rtpUs = (((f.rtpTimestamp - frames[0].rtpTimestamp) >>> 0) * 1e6) / rate
    worst = Math.max(worst, Math.abs(f.wallClockUs - frames[0].wallClockUs - rtpUs))
  }
  return worst
}

describe('A/V sync with a real Chromium', () => {
  let server, node, browser, tab
  beforeAll(async () => ({ server, node, browser, tab } = await setUp({ jitterBufferMs: 100 })))
  afterAll(() => tearDown({ server, node, browser }))

  it('after the first sender report every frame is on the sender\'s clock, video stays within 40 ms of audio, and a removed camera ends its track', async () => {
    const announced = once(node, 'peer-announced', (e) => e.peerId.startsWith('browser-'), 15000)
    await tab.goto(`http://127.0.0.1:${server.port}/`)
    const browserId = (await announced).peerId
    const peer = await node.connectPeer(browserId)
    const audio = []
    const video = []
    peer.on('audio-frame', (f) => audio.push(f))
    peer.on('video-frame', (f) => video.push(f))
    await tab.evaluate(() => window.sendMicrophoneAndCamera())
    // Chromium sends its first sender reports within a few seconds; then 3 s more of media.
    const mapped = (f) => f.syncConfidence === 1
    await until(() => audio.some(mapped) && video.some(mapped), 20000)
    const a0 = audio.findIndex(mapped)
    const v0 = video.findIndex(mapped)
    await new Promise((r) => setTimeout(r, 3000))
    const a = audio.slice(a0)
    const v = video.slice(v0)
    // Before the first report the arrival clock stands in, at confidence 0.5.
    for (const f of [...audio.slice(0, a0), ...video.slice(0, v0)]) expect(f.syncConfidence).toBe(0.5)
    const audioDev = checkSenderClock(a, 48000)
    const videoDev = checkSenderClock(v, 90000)
    expect(audioDev).toBeLessThan(2000)
    expect(videoDev).toBeLessThan(2000)

    // Every frame waited in the jitter buffer; audio at least jitterBufferMs (100) less the
    // pacing of the schedule, never past the 200 ms bound plus a tick.
    for (const f of a) expect(f.bufferDelayMs).toBeGreaterThanOrEqual(0)
    const medianDelay = a.map((f) => f.bufferDelayMs).sort((x, y) => x - y)[a.length >> 1]
    expect(medianDelay).toBeGreaterThan(50)
    expect(medianDelay).toBeLessThan(210)

    // Lip sync: video frames carry their offset from the audio and are held or released to keep
    // it within ±40 ms.
    const offsets = v.map((f) => f.audioSyncOffsetMs).filter((o) => o !== null)
    expect(offsets.length).toBeGreaterThan(v.length / 2)
    const within = offsets.filter((o) => Math.abs(o) <= 40).length
    expect(within / offsets.length).toBeGreaterThanOrEqual(0.9)

    const state = peer.getSyncState()
    expect(state.audio.hasSenderReport).toBe(true)
    expect(state.video.hasSenderReport).toBe(true)
    expect(state.lipSyncActive).toBe(true)
    const stats = peer.getBufferStatistics()
    expect(stats.audio.released).toBeGreaterThanOrEqual(a.length)
    expect(stats.video.released).toBeGreaterThanOrEqual(v.length)
    expect(stats.audio.targetDelayMs).toBeGreaterThanOrEqual(100)

    // Chromium removes its camera: the video track ends, the audio goes on.
    const ended = once(peer, 'track-ended', () => true, 10000)
    await tab.evaluate(() => window.stopCamera())
    expect(await ended).toMatchObject({ kind: 'video' })
    const audioBefore = audio.length
    await until(() => audio.length > audioBefore + 20, 5000)
  }, 60000)
})
