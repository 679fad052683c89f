// H.264 video (the cargo feature `h264`): Node ↔ Node and Node ↔ Chromium. The default build
// has no H.264: there, videoCodec 'h264' is refused (naming the feature), H.264 is not offered
// (a Chromium preferring it sends VP8), and the H.264 tests are skipped, visibly. CI runs this file again against an addon built
// with the feature (REMOTEMEDIA_WEBRTC_NATIVE names it) with REMOTEMEDIA_WEBRTC_EXPECT_H264=1,
// which makes a build without H.264 a failure instead of a skip.
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { lib, withServer, transport, until, uid, once } from './helpers.mjs'
import { testPattern } from './signals.mjs'
import { launchChromium, expectNodeDecodesChromiumsVideo, sendVideoToChromium } from './chromium.mjs'

const EXPECT_H264 = process.env.REMOTEMEDIA_WEBRTC_EXPECT_H264 === '1'

// Whether this addon was built with H.264: its config validation says.
function probe() {
  try {
    new lib.WebRtcTransport({ signalingUrl: 'ws://127.0.0.1:1', videoCodec: 'h264' })
    return { built: true }
  } catch (e) {
    if (e.code === 'ERR_INVALID_CONFIG' && /cargo feature `h264`/.test(e.message)) return { built: false, error: e }
    throw e
  }
}
const { built: H264, error: refusal } = probe()

describe('H.264 availability', () => {
  it(H264 ? 'this addon is built with H.264' : "without the feature, videoCodec 'h264' is ERR_INVALID_CONFIG naming it", () => {
    if (EXPECT_H264) expect(H264, 'REMOTEMEDIA_WEBRTC_EXPECT_H264=1 but this addon has no H.264').toBe(true)
    if (!H264) {
      expect(refusal.code).toBe('ERR_INVALID_CONFIG')
      expect(refusal.message).toMatch(/videoCodec 'h264'.*cargo feature `h264`/)
    }
  })
})

describe.skipIf(!H264)('H.264 between Node transports (built with the feature)', () => {
  it('I420 frames arrive decoded with the right size (≥ 90 %), keyframes on request', async () => {
    const server = await withServer()
    const a = await transport(server, uid('h264a'), { videoCodec: 'h264' })
    const b = await transport(server, uid('h264b'), { videoCodec: 'h264' })
    try {
      const peer = await a.connectPeer(b.peerId)
      const [w, h] = [640, 480]
      await peer.addVideoTrack({ width: w, height: h, framerate: 30, bitrate: 1000000, keyframeInterval: 0 })
      await a.sendVideo(b.peerId, { data: testPattern(w, h, 0), width: w, height: h, timestampUs: 0, keyframe: true })
      const got = []
      b.getPeer(a.peerId).on('video-frame', (f) => got.push(f))
      for (let i = 1; i <= 60; i++) {
        if (i === 40) await b.getPeer(a.peerId).requestKeyframe()
        await a.sendVideo(b.peerId, { data: testPattern(w, h, i), width: w, height: h, timestampUs: i * 33333 })
        await new Promise((r) => setTimeout(r, 30))
      }
      await until(() => got.length >= 57, 5000).catch(() => {})
      expect(got.length).toBeGreaterThanOrEqual(54)
      expect(got[0].keyframe).toBe(true)
      for (const f of got) {
        expect([f.width, f.height]).toEqual([w, h])
        expect(f.data.length).toBe((w * h * 3) / 2)
      }
      // The PLI asked for at frame 40 came back as an IDR (the first one is frame 0).
      expect(got.slice(1).some((f) => f.keyframe)).toBe(true)
      // The pattern survives: the moving square's row is bright, the rest is not flat.
      const last = got.at(-1).data
      expect(Math.max(...last.subarray(60 * w, 60 * w + w))).toBeGreaterThan(200)
    } finally {
      await a.shutdown()
      await b.shutdown()
      await server.close()
    }
  }, 30000)
})

// A signaling server serving the test page, a started Node transport 'node' and a Chromium tab
// (fake camera) connected to it; `run` gets { node, tab, peer, browserId }.
async function withChromium(options, run) {
  const page = readFileSync(new URL('./pages/media-peer.html', import.meta.url), 'utf8')
  const server = await lib.SignalingServer.listen({ host: '127.0.0.1', port: 0, httpPage: page })
  const node = new lib.WebRtcTransport({ signalingUrl: server.url, peerId: 'node', bindAddress: '127.0.0.1', ...options })
  let browser
  try {
    await node.start()
    browser = await launchChromium()
    const tab = await browser.newPage()
    const announced = once(node, 'peer-announced', (e) => e.peerId.startsWith('browser-'), 15000)
    await tab.goto(`http://127.0.0.1:${server.port}/`)
    const browserId = (await announced).peerId
    const peer = await node.connectPeer(browserId)
    await run({ node, tab, peer, browserId })
  } finally {
    await browser?.close()
    await node.shutdown()
    await server.close()
  }
}

describe.skipIf(H264)('H.264 not built in: not offered', () => {
  it('a Chromium that prefers H.264 sends VP8 instead, decoded here', async () => {
    await withChromium({}, async ({ tab, peer }) => {
      const frames = []
      peer.on('video-frame', (f) => frames.push(f))
      await tab.evaluate(() => window.sendCamera('video/H264'))
      await until(() => frames.length >= 5, 15000)
      expect((await tab.evaluate(() => window.videoCodecs())).outbound.mimeType).toBe('video/VP8')
      expect([frames[0].width, frames[0].height]).toEqual([640, 480])
    })
  }, 60000)
})

describe.skipIf(!H264)('H.264 with a real Chromium (built with the feature)', () => {
  it("decodes Chromium's camera sent as H.264 (640x480), and Chromium decodes the H.264 Node sends", async () => {
    await withChromium({ videoCodec: 'h264' }, async ({ node, tab, peer, browserId }) => {
      // Chromium → Node: its fake camera, H.264 preferred.
      const frames = []
      peer.on('video-frame', (f) => frames.push(f))
      await tab.evaluate(() => window.sendCamera('video/H264'))
      await until(() => frames.length >= 10, 15000)
      const sent = (await tab.evaluate(() => window.videoCodecs())).outbound
      console.log('Chromium sends', JSON.stringify(sent))
      expect(sent.mimeType).toBe('video/H264')
      expect(sent.sdpFmtpLine).toMatch(/packetization-mode=1/)
      expect(frames[0].keyframe).toBe(true)
      // Over 4 s, Node decodes ≥ 90 % of the frames Chromium reports encoding.
      await expectNodeDecodesChromiumsVideo(tab, frames, [640, 480])

      // Node → Chromium: H.264 from OpenH264.
      await peer.addVideoTrack({ width: 320, height: 240, framerate: 30, keyframeInterval: 30 })
      // Chromium decodes ≥ 90 % of the 90 frames (3 s) Node sends.
      const count = 90
      const stats = await sendVideoToChromium(tab, node, browserId, count)
      const received = (await tab.evaluate(() => window.videoCodecs())).inbound
      console.log('Chromium receives', JSON.stringify(received), JSON.stringify(stats))
      expect(await tab.evaluate(() => window.peer.errors)).toEqual([])
      expect(received.mimeType).toBe('video/H264')
      expect(stats.packetsReceived).toBeGreaterThan(0)
      expect(stats.framesDecoded).toBeGreaterThanOrEqual(Math.ceil(count * 0.9))
      expect(stats.frameWidth).toBe(320)
    })
  }, 60000)
})
