// Codec interop with a real Chromium (issue 13): Node negotiates only what it decodes. A browser
// that prefers AV1 (setCodecPreferences, as Firefox does by default) still sends VP8 or VP9 to
// Node, and Node decodes it; an offer of AV1 alone is answered rejected, with an
// ERR_UNSUPPORTED_CODEC error naming what was offered.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { readFileSync } from 'node:fs'
import { lib, until, once } from '../helpers.mjs'
import { launchChromium } from '../chromium.mjs'

const page = readFileSync(new URL('../pages/media-peer.html', import.meta.url), 'utf8')

// In the page: send the camera with the codecs matching `first` (a regexp source over mime
// types) preferred, or, with `only`, nothing else; then renegotiate (the page's own offer).
function sendCameraPreferring(first, only) {
  return window.eval(`(async () => {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } })
    const [track] = stream.getVideoTracks()
    const tr = pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream] })
    const codecs = RTCRtpSender.getCapabilities('video').codecs
    const re = new RegExp(${JSON.stringify(first)}, 'i')
    const preferred = codecs.filter((c) => re.test(c.mimeType))
    const rest = codecs.filter((c) => !preferred.includes(c) && (!${only} || /rtx|red|ulpfec/i.test(c.mimeType)))
    tr.setCodecPreferences([...preferred, ...rest])
    window.transceiver = tr
    await renegotiate()
    return preferred.map((c) => c.mimeType)
  })()`)
}

describe('codecs with a real Chromium that prefers AV1', () => {
  let server, node, browser, tab, browserId, peer
  const errors = []
  beforeAll(async () => {
    server = await lib.SignalingServer.listen({ host: '127.0.0.1', port: 0, httpPage: page })
    node = new lib.WebRtcTransport({ signalingUrl: server.url, peerId: 'node', bindAddress: '127.0.0.1' })
    node.on('error', (e) => errors.push(e))
    await node.start()
    browser = await launchChromium()
    tab = await browser.newPage()
    const announced = once(node, 'peer-announced', (e) => e.peerId.startsWith('browser-'), 15000)
    await tab.goto(`http://127.0.0.1:${server.port}/`)
    browserId = (await announced).peerId
    peer = await node.connectPeer(browserId)
  }, 60000)
  afterAll(async () => {
    await browser?.close()
    await node?.shutdown()
    await server?.close()
  })

  // (A video track's section offers the track's codec, VP8 by default, and its RTX.)
  it('Node offers no AV1, HEVC or other VP9 profiles', async () => {
    await peer.addVideoTrack({ width: 320, height: 240 })
    await until(async () => (await tab.evaluate(() => pc.remoteDescription?.sdp ?? '')).includes('m=video'), 15000)
    const sdp = await tab.evaluate(() => pc.remoteDescription.sdp)
    const rtpmaps = sdp.split('\r\n').filter((l) => l.startsWith('a=rtpmap:')).map((l) => l.split(' ')[1].split('/')[0].toUpperCase())
    expect(rtpmaps).toContain('VP8')
    for (const c of ['AV1', 'H265', 'HEVC']) expect(rtpmaps).not.toContain(c)
    expect(sdp).not.toMatch(/profile-id=[123]/)
  }, 30000)

  it('Chromium preferring AV1 sends VP8 or VP9, and Node decodes it', async () => {
    const frames = []
    peer.on('video-frame', (f) => frames.push(f))
    const preferred = await tab.evaluate(`(${sendCameraPreferring})('AV1', false)`)
    // Without AV1 in this Chromium the test would prove nothing.
    expect(preferred).toContain('video/AV1')
    await until(() => frames.length >= 10, 20000)
    for (const f of frames) expect([f.width, f.height]).toEqual([640, 480])
    const codecs = await tab.evaluate(() => window.videoCodecs())
    expect(['video/VP8', 'video/VP9']).toContain(codecs.outbound.mimeType)
    expect(await tab.evaluate(() => window.peer.errors)).toEqual([])
    expect(errors.filter((e) => e.code === 'ERR_UNSUPPORTED_CODEC')).toEqual([])
  }, 60000)

  it('an offer of AV1 alone is refused (answered inactive), with ERR_UNSUPPORTED_CODEC naming AV1', async () => {
    const reported = once(node, 'error', (e) => e.code === 'ERR_UNSUPPORTED_CODEC', 15000)
    await tab.evaluate(`(${sendCameraPreferring})('AV1', true)`)
    const e = await reported
    expect(e.peerId).toBe(browserId)
    expect(e.message).toMatch(/AV1/)
    // Node's answer refuses the section (inactive; port 0 would stop it): Chromium sends nothing there.
    await until(async () => ['inactive', 'stopped'].includes(await tab.evaluate(() => window.transceiver.currentDirection)), 15000)
    expect(await tab.evaluate(() => window.peer.errors)).toEqual([])
    // The connection and the VP8/VP9 track carry on.
    expect(peer.state).toBe('connected')
  }, 60000)
})
