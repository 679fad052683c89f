// Interop with a real Firefox (issue 13): Firefox ESR 153.8.0esr (Debian's firefox-esr, Gecko
// rv:153.0), headless, driven by puppeteer-core over WebDriver BiDi, with its fake camera (a
// 640x480 colour pattern at 30 fps) and fake microphone (a 1 kHz tone). The page is
// __test__/pages/media-peer.html (our signaling protocol over a plain WebSocket; answers every
// offer) with __test__/pages/interop-peer.html appended (data-channel echo, getStats counters,
// WebAudio analysis of what Firefox hears), served by our SignalingServer on 127.0.0.1.
//
// Each offer direction gets its own connection: "Node offers" (connectPeer) and "Firefox offers"
// (the page opens a data channel and sends the first offer itself). In both, media tracks are
// added by whoever sends them, so each connection also carries renegotiations offered by both
// sides. Cells, per direction:
// - data: channels Node opens (Firefox echoes) and channels Firefox opens (Node echoes): ordered
//   reliable echo of 50 mixed text/binary messages (order and content), an unreliable channel
//   (negotiated unordered with no retransmits, ≥ 90 % of 100 messages, each intact), a channel
//   opened after 2.5 s of silence, 1 MiB in 64 KiB messages (content checked).
// - audio both ways: Firefox's fake microphone identified in Node as 1 kHz (±5 Hz) with ≥ 90 %
//   of the audio Firefox's outbound-rtp says it sent over the same window; Node's 440 Hz tone
//   identified in Firefox (±5 Hz), with ≥ 90 % of Node's packets counted by Firefox's
//   inbound-rtp. Firefox records 1.6 s of the received track (MediaRecorder) and decodes it with
//   WebAudio (OfflineAudioContext.decodeAudioData): an AnalyserNode needs a running AudioContext,
//   and headless Firefox on a machine without a sound device never starts one (resume() hangs).
// - video both ways, VP8 and VP9 (a Node transport per codec): Node decodes ≥ 90 % of Firefox's
//   outbound-rtp framesEncoded over the same window, at Firefox's size (640x480, as its
//   outbound-rtp and track settings say); Firefox's inbound-rtp framesDecoded is ≥ 90 % of the
//   frames Node sent, at Node's size (320x240), in the codec expected. Firefox's codec is chosen
//   with setCodecPreferences (the page's sendCameraAs: media-peer's sendCamera filters on
//   Chromium's fmtp lines and prefers nothing for Firefox's VP9). With its default start bitrate
//   Firefox sends 320x240, then 480x360, and 640x480 after ~9 s as our congestion feedback raises
//   its estimate; media.peerconnection.video.lock_scaling keeps it at its capture size.
// - renegotiation: with audio flowing both ways, each side removes its video track and adds it
//   again mid-call; audio flows throughout, video stops after the removal and flows after the add.
// - timings: record('firefox', 'connect' | 'first-message', ms) when Node offers (connectPeer →
//   default channel open; Node → Firefox echo → Node), and 'connect-firefox-offers' |
//   'first-message-firefox-offers' when Firefox offers (its offer → Node's channel open;
//   Firefox → Node echo → Firefox, timed in the page).
// Also: Firefox's first offer carrying its microphone, camera (VP9) and a data channel at once.
// The cells of one connection run in order and build on each other (the renegotiation cell
// removes the video tracks the video cell added), so run the file whole, not one test by -t.
// Not covered: H.264 (this Firefox has no OpenH264 plugin, so it offers none). Messages are at
// most 256 KiB (maxMessageSize's limit, what webrtc-rs 0.21 honours; the last case).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { readFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { lib, until, once } from '../helpers.mjs'
import { tone, frequency, channel, concat, testPattern, record, sleep } from './common.mjs'

const require = createRequire(import.meta.url)
const puppeteer = require('puppeteer-core')
const FIREFOX = process.env.FIREFOX_PATH || '/usr/bin/firefox-esr'
const page = readFileSync(new URL('../pages/media-peer.html', import.meta.url), 'utf8').replace(
  '</body>',
  readFileSync(new URL('../pages/interop-peer.html', import.meta.url), 'utf8') + '</body>',
)
const FF = 'firefox'
const MIB = 1 << 20

const PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  'app.update.enabled': false,
  'app.update.auto': false,
  'datareporting.healthreport.uploadEnabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.unified': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'browser.safebrowsing.downloads.enabled': false,
  'browser.safebrowsing.downloads.remote.enabled': false,
  'browser.safebrowsing.blockedURIs.enabled': false,
  'browser.safebrowsing.provider.google.updateURL': '',
  'browser.safebrowsing.provider.google4.updateURL': '',
  'browser.safebrowsing.provider.mozilla.updateURL': '',
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'extensions.update.enabled': false,
  'browser.newtabpage.enabled': false,
  // Firefox starts its bandwidth estimate low and encodes its 640x480 camera at 320x240, then
  // 480x360, reaching 640x480 after ~9 s as our feedback raises the estimate. Lock the scaling
  // so it encodes at its capture size from the first frame.
  'media.peerconnection.video.lock_scaling': true,
}

let profile
function launchFirefox() {
  if (!existsSync(FIREFOX)) throw new Error(`Firefox not found at ${FIREFOX}: install Debian's firefox-esr (or set FIREFOX_PATH)`)
  profile = mkdtempSync(join(tmpdir(), 'ff-interop-'))
  return puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    env: { ...process.env, MOZ_DISABLE_NONLOCAL_CONNECTIONS: '1' },
    extraPrefsFirefox: PREFS,
  })
}

// Calls fn(i) for i in 0..n-1, one every `ms` on the wall clock (no drift), awaiting each.
async function pace(n, ms, fn) {
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const wait = t0 + i * ms - performance.now()
    if (wait > 0) await sleep(wait)
    await fn(i)
  }
}

// A background sender: fn(i) every `ms` until stop() (which resolves once the loop ended).
function pump(ms, fn) {
  let stopped = false
  let sent = 0
  const errors = []
  const done = (async () => {
    const t0 = performance.now()
    for (let i = 0; !stopped; i++) {
      const wait = t0 + i * ms - performance.now()
      if (wait > 0) await sleep(wait)
      if (stopped) break
      try {
        await fn(i)
        sent++
      } catch (e) {
        errors.push(e)
      }
    }
  })()
  // stop() resolves once the loop ended, and fails if any send did.
  return { get sent() { return sent }, stop: async () => {
    stopped = true
    await done
    if (errors.length) throw new Error(`${errors.length} sends failed, first: ${errors[0].code} ${errors[0].message}`)
  } }
}

// Echoes every channel the remote side opens, as it came.
function echoRemoteChannels(node) {
  node.on('data-channel', (ch) => {
    ch.on('message', (m) => {
      ch.send(m.kind === 'json' ? JSON.stringify(m.data) : m.data).catch(() => {})
    })
  })
}

const mixed = (n) => Array.from({ length: n }, (_, i) =>
  i % 2 ? { t: 'bin', buf: Buffer.from(Array.from({ length: i * 37 + 1 }, (_, k) => (k * 31 + i) & 0xff)) } : { t: 'text', d: `m-${i}-${'é'.repeat(i)}` })
const toPage = (msgs) => msgs.map((m) => (m.t === 'text' ? m : { t: 'bin', d: m.buf.toString('base64') }))

function collect(ch) {
  const got = []
  ch.on('message', (m) => got.push(m))
  return got
}

async function rtp(tab) {
  return tab.evaluate(() => window.rtpStats())
}
const sum = (stats, type, kind, field) => stats.filter((s) => s.type === type && s.kind === kind).reduce((n, s) => n + s[field], 0)
const biggest = (stats, type, kind, field) => stats.filter((s) => s.type === type && s.kind === kind).sort((a, b) => b[field] - a[field])[0]

async function pageErrors(tab) {
  return tab.evaluate(() => window.peer.errors)
}

// A Node transport (videoCodec), a Firefox tab on our page, and the connection between them,
// offered by Node ('node') or by Firefox ('firefox'). Records the connect and first-message times.
async function connect(ctx, direction, videoCodec, extra = {}) {
  ctx.node = new lib.WebRtcTransport({ signalingUrl: ctx.server.url, peerId: `node-${direction}-${videoCodec}`, bindAddress: '127.0.0.1', videoCodec, ...extra })
  ctx.errors = []
  ctx.node.on('error', (e) => ctx.errors.push(e))
  echoRemoteChannels(ctx.node)
  await ctx.node.start()
  ctx.tab = await ctx.browser.newPage()
  const announced = once(ctx.node, 'peer-announced', (e) => e.peerId.startsWith('browser-'), 20000)
  await ctx.tab.goto(`http://127.0.0.1:${ctx.server.port}/`)
  ctx.browserId = (await announced).peerId
  await until(() => ctx.tab.evaluate(() => window.peer.announced), 10000)
  const t0 = performance.now()
  if (direction === 'node') {
    ctx.peer = await ctx.node.connectPeer(ctx.browserId)
    const ch = ctx.peer.defaultChannel
    await until(() => ch.readyState === 'open', 15000)
    record(FF, 'connect', performance.now() - t0)
    // First message: Node → Firefox (echo) → Node.
    const got = collect(ch)
    const t1 = performance.now()
    await ch.send('first')
    await until(() => got.length > 0, 10000)
    record(FF, 'first-message', performance.now() - t1)
    expect(got[0]).toEqual({ kind: 'text', data: 'first' })
  } else {
    const connected = once(ctx.node, 'peer-connected', (p) => p.peerId === ctx.browserId, 20000)
    const channelled = once(ctx.node, 'data-channel', (ch) => ch.label === 'ff-default', 20000)
    await ctx.tab.evaluate((id) => window.connectTo(id, 'ff-default'), ctx.node.peerId)
    ctx.peer = await connected
    const [ch] = await channelled
    await until(() => ch.readyState === 'open', 15000)
    record(FF, 'connect-firefox-offers', performance.now() - t0)
    // First message: Firefox → Node (echo) → Firefox.
    const ms = await ctx.tab.evaluate(async () => {
      const t = performance.now()
      window.sendOn('ff-default', [{ t: 'text', d: 'first' }])
      while (window.receivedOn('ff-default').length === 0) await new Promise((r) => setTimeout(r, 2))
      return performance.now() - t
    })
    record(FF, 'first-message-firefox-offers', ms)
    expect(await ctx.tab.evaluate(() => window.receivedOn('ff-default'))).toEqual([{ t: 'text', d: 'first' }])
  }
  expect(ctx.peer.state).toBe('connected')
}

async function closeCtx(ctx) {
  await ctx.tab?.close().catch(() => {})
  await ctx.node?.shutdown()
}

// Firefox → Node: its fake camera, preferring `mime`; Node decodes ≥ 90 % of what Firefox's
// outbound-rtp says it encoded over one window, at Firefox's size.
async function videoFromFirefox(ctx, mime) {
  const frames = []
  const onFrame = (f) => frames.push(f)
  ctx.peer.on('video-frame', onFrame)
  try {
    const tracked = once(ctx.peer, 'track', (t) => t.kind === 'video', 20000)
    await ctx.tab.evaluate((m) => window.sendCameraAs(m), mime)
    await tracked
    await until(() => frames.length >= 15, 20000)
    const settings = await ctx.tab.evaluate(() => window.cameraSettings())
    const s0 = await rtp(ctx.tab)
    const n0 = frames.length
    await sleep(3000)
    const s1 = await rtp(ctx.tab)
    const n1 = frames.length
    const out = biggest(s1, 'outbound-rtp', 'video', 'framesEncoded')
    expect(out.mimeType).toBe(mime)
    const encoded = sum(s1, 'outbound-rtp', 'video', 'framesEncoded') - sum(s0, 'outbound-rtp', 'video', 'framesEncoded')
    const decoded = n1 - n0
    expect(encoded).toBeGreaterThan(30) // the window saw video at all
    expect(decoded).toBeGreaterThanOrEqual(Math.floor(0.9 * encoded))
    expect([settings.width, settings.height]).toEqual([640, 480])
    expect([out.frameWidth, out.frameHeight]).toEqual([640, 480])
    for (const f of frames.slice(n0, n1)) {
      expect([f.width, f.height]).toEqual([out.frameWidth, out.frameHeight])
      expect(f.data.length).toBe(f.width * f.height * 1.5)
    }
    console.info(`firefox → node ${mime}: Firefox encoded ${encoded}, Node decoded ${decoded} (${out.frameWidth}x${out.frameHeight})`)
    return { encoded, decoded }
  } finally {
    ctx.peer.off('video-frame', onFrame)
  }
}

// Node → Firefox: `n` frames of 320x240 at 30 fps; Firefox's inbound-rtp framesDecoded ≥ 90 % of them.
async function videoToFirefox(ctx, mime, n = 90) {
  const before = await rtp(ctx.tab)
  const ssrcsBefore = new Set(before.filter((s) => s.type === 'inbound-rtp' && s.kind === 'video').map((s) => s.ssrc))
  await ctx.peer.addVideoTrack({ width: 320, height: 240, framerate: 30, keyframeInterval: 60 })
  await pace(n, 1000 / 30, (i) =>
    ctx.node.sendVideo(ctx.browserId, { data: testPattern(320, 240, i), width: 320, height: 240, timestampUs: Math.round((i * 1e6) / 30), keyframe: i === 0 }))
  let inbound = null
  await until(async () => {
    const s = await rtp(ctx.tab)
    inbound = s.filter((x) => x.type === 'inbound-rtp' && x.kind === 'video' && !ssrcsBefore.has(x.ssrc)).sort((a, b) => b.framesDecoded - a.framesDecoded)[0]
    return inbound && inbound.framesDecoded >= n
  }, 3000).catch(() => {})
  expect(inbound, 'Firefox has an inbound video stream').toBeTruthy()
  expect(inbound.mimeType).toBe(mime)
  expect(inbound.framesDecoded).toBeGreaterThanOrEqual(Math.ceil(0.9 * n))
  expect([inbound.frameWidth, inbound.frameHeight]).toEqual([320, 240])
  console.info(`node → firefox ${mime}: Node sent ${n}, Firefox decoded ${inbound.framesDecoded}`)
  return inbound
}

const nodeAudioFrames = (peer) => {
  const frames = []
  peer.on('audio-frame', (f) => frames.push(f))
  return frames
}
const seconds = (frames) => frames.reduce((n, f) => n + (f.concealed ? 0 : f.samples.length / f.channels / f.sampleRate), 0)

describe('interop with a real Firefox', () => {
  const ctx0 = {}
  beforeAll(async () => {
    ctx0.server = await lib.SignalingServer.listen({ host: '127.0.0.1', port: 0, httpPage: page })
    ctx0.browser = await launchFirefox()
    const version = await ctx0.browser.version()
    if (!/^firefox\/\d+/.test(version)) throw new Error(`not a Firefox: ${version}`)
  }, 60000)
  afterAll(async () => {
    await ctx0.browser?.close()
    await ctx0.server?.close()
    if (profile) rmSync(profile, { recursive: true, force: true })
  })

  // One call for the cells of the describe it is made in: connected before them, closed after.
  function call(direction, codec, options) {
    const ctx = {}
    beforeAll(async () => {
      Object.assign(ctx, { server: ctx0.server, browser: ctx0.browser })
      await connect(ctx, direction, codec, options)
    }, 60000)
    afterAll(() => closeCtx(ctx))
    return ctx
  }

  for (const direction of ['node', 'firefox']) {
    describe(`${direction === 'node' ? 'Node' : 'Firefox'} offers (VP8 transport)`, () => {
      const ctx = call(direction, 'vp8')

      it('data: ordered reliable echo of mixed text/binary, both sides opening', async () => {
        const msgs = mixed(50)
        // Node opens, Firefox echoes.
        const ch = await ctx.peer.createDataChannel('mixed')
        await until(() => ch.readyState === 'open', 10000)
        const got = collect(ch)
        for (const m of msgs) await ch.send(m.t === 'text' ? m.d : m.buf)
        await until(() => got.length >= msgs.length, 10000)
        expect(got.length).toBe(msgs.length)
        got.forEach((g, i) => {
          if (msgs[i].t === 'text') expect(g).toEqual({ kind: 'text', data: msgs[i].d })
          else expect(g.kind === 'binary' && g.data.equals(msgs[i].buf)).toBe(true)
        })
        const remote = await ctx.tab.evaluate(() => window.remoteChannel('mixed'))
        expect(remote).toMatchObject({ ordered: true, maxRetransmits: null, maxPacketLifeTime: null })
        // Firefox opens, Node echoes.
        await ctx.tab.evaluate(() => window.openChannel('ff-mixed'))
        await ctx.tab.evaluate((m) => window.sendOn('ff-mixed', m), toPage(msgs))
        await until(() => ctx.tab.evaluate((n) => window.receivedOn('ff-mixed').length >= n, msgs.length), 10000)
        const back = await ctx.tab.evaluate(() => window.receivedOn('ff-mixed'))
        expect(back.map(({ t, d }) => ({ t, d }))).toEqual(toPage(msgs))
        expect(ctx.peer.channels.find((c) => c.label === 'ff-mixed')?.mode).toBe('reliable')
        expect(await pageErrors(ctx.tab)).toEqual([])
      }, 30000)

      it('data: an unreliable channel (unordered, no retransmits), both sides opening', async () => {
        const n = 100
        const ch = await ctx.peer.createDataChannel('lossy', { mode: 'unreliable' })
        await until(() => ch.readyState === 'open', 10000)
        const got = collect(ch)
        for (let i = 0; i < n; i++) await ch.send(`u-${i}`)
        await until(() => got.length >= n, 3000).catch(() => {})
        expect(got.length).toBeGreaterThanOrEqual(0.9 * n)
        expect(new Set(got.map((m) => m.data)).size).toBe(got.length)
        for (const m of got) expect(m.data).toMatch(/^u-\d+$/)
        expect(await ctx.tab.evaluate(() => window.remoteChannel('lossy'))).toMatchObject({ ordered: false, maxRetransmits: 0 })

        const info = await ctx.tab.evaluate(() => window.openChannel('ff-lossy', { ordered: false, maxRetransmits: 0 }))
        expect(info).toMatchObject({ ordered: false, maxRetransmits: 0 })
        await until(() => ctx.peer.channels.some((c) => c.label === 'ff-lossy'), 5000)
        expect(ctx.peer.channels.find((c) => c.label === 'ff-lossy').mode).toBe('unreliable')
        await ctx.tab.evaluate((k) => window.sendOn('ff-lossy', Array.from({ length: k }, (_, i) => ({ t: 'text', d: `f-${i}` }))), n)
        await until(() => ctx.tab.evaluate((k) => window.receivedOn('ff-lossy').length >= k, n), 3000).catch(() => {})
        const back = (await ctx.tab.evaluate(() => window.receivedOn('ff-lossy'))).map((m) => m.d)
        expect(back.length).toBeGreaterThanOrEqual(0.9 * n)
        expect(new Set(back).size).toBe(back.length)
        for (const d of back) expect(d).toMatch(/^f-\d+$/)
      }, 30000)

      it('data: channels opened after 2.5 s of silence work, both sides opening', async () => {
        await sleep(2500)
        const ch = await ctx.peer.createDataChannel('after-silence')
        await until(() => ch.readyState === 'open', 10000)
        const got = collect(ch)
        await ch.send('still here')
        await until(() => got.length > 0, 10000)
        expect(got).toEqual([{ kind: 'text', data: 'still here' }])
        await ctx.tab.evaluate(() => window.openChannel('ff-after-silence'))
        await ctx.tab.evaluate(() => window.sendOn('ff-after-silence', [{ t: 'text', d: 'me too' }]))
        await until(() => ctx.tab.evaluate(() => window.receivedOn('ff-after-silence').length > 0), 10000)
        expect(await ctx.tab.evaluate(() => window.receivedOn('ff-after-silence'))).toEqual([{ t: 'text', d: 'me too' }])
      }, 30000)

      it('data: 1 MiB each way in 64 KiB messages, content checked', async () => {
        const chunk = 64 << 10
        const all = Buffer.from(Array.from({ length: MIB }, (_, i) => (i * 11 + (i >> 10)) & 0xff))
        const ch = await ctx.peer.createDataChannel('big')
        await until(() => ch.readyState === 'open', 10000)
        const got = collect(ch)
        for (let o = 0; o < MIB; o += chunk) await ch.send(all.subarray(o, o + chunk))
        await until(() => got.reduce((n, m) => n + m.data.length, 0) >= MIB, 20000)
        expect(got.length).toBe(MIB / chunk)
        expect(got.every((m) => m.kind === 'binary')).toBe(true)
        expect(Buffer.concat(got.map((m) => m.data)).equals(all)).toBe(true)

        await ctx.tab.evaluate(() => window.openChannel('ff-big'))
        const back = await ctx.tab.evaluate((t, c) => window.sendBig('ff-big', t, c, 20000), MIB, chunk)
        expect(back).toEqual({ bytes: MIB, messages: MIB / chunk, same: true })
        expect(await pageErrors(ctx.tab)).toEqual([])
      }, 60000)

      it('audio both ways: Firefox\'s 1 kHz microphone in Node, Node\'s 440 Hz tone in Firefox', async () => {
        // Firefox → Node.
        const frames = nodeAudioFrames(ctx.peer)
        await ctx.tab.evaluate(() => window.sendMicrophone())
        await until(() => frames.length >= 25, 15000)
        const s0 = await rtp(ctx.tab)
        const t0 = seconds(frames)
        const i0 = frames.length
        await sleep(2000)
        const s1 = await rtp(ctx.tab)
        const t1 = seconds(frames)
        const i1 = frames.length
        const sent = (sum(s1, 'outbound-rtp', 'audio', 'packetsSent') - sum(s0, 'outbound-rtp', 'audio', 'packetsSent')) * 0.02
        expect(sent).toBeGreaterThan(1)
        expect(t1 - t0).toBeGreaterThanOrEqual(0.9 * sent)
        const mic = frames.slice(i0, i1)
        const mono = concat(mic.map((f) => channel(f.samples, f.channels)))
        expect(Math.abs(frequency(mono, mic[0].sampleRate) - 1000)).toBeLessThanOrEqual(5)

        // Node → Firefox.
        await ctx.peer.addAudioTrack()
        await until(() => ctx.tab.evaluate(() => window.transceivers().some((t) => t.kind === 'audio' && /recv/.test(t.currentDirection || ''))), 10000)
        const before = sum(await rtp(ctx.tab), 'inbound-rtp', 'audio', 'packetsReceived')
        const n = 150
        const samples = tone(440, n)
        let heard = null
        await pace(n, 20, async (i) => {
          await ctx.node.sendAudio(ctx.browserId, samples[i])
          // Firefox records 1.6 s of what it plays, from 0.6 s in.
          if (i === 30) heard = ctx.tab.evaluate(() => window.hear(1600))
        })
        heard = await heard
        await sleep(300)
        const received = sum(await rtp(ctx.tab), 'inbound-rtp', 'audio', 'packetsReceived') - before
        expect(received).toBeGreaterThanOrEqual(0.9 * n)
        expect(heard.seconds).toBeGreaterThan(1)
        expect(heard.rms).toBeGreaterThan(0.1)
        expect(Math.abs(heard.frequency - 440)).toBeLessThanOrEqual(5)
        expect(await pageErrors(ctx.tab)).toEqual([])
      }, 60000)

      it('video both ways (VP8): Node decodes Firefox\'s camera, Firefox decodes Node\'s', async () => {
        await videoFromFirefox(ctx, 'video/VP8')
        await videoToFirefox(ctx, 'video/VP8')
        expect(await pageErrors(ctx.tab)).toEqual([])
        expect(ctx.errors).toEqual([])
      }, 60000)

      it('renegotiation: each side removes its video and adds it again, audio flowing throughout', async () => {
        const audio = nodeAudioFrames(ctx.peer)
        const video = []
        ctx.peer.on('video-frame', (f) => video.push(f))
        const samples = tone(440, 50)
        const audioOut = pump(20, (i) => ctx.node.sendAudio(ctx.browserId, samples[i % 50]))
        let k = 1000
        let videoOut = pump(1000 / 30, () => ctx.node.sendVideo(ctx.browserId, { data: testPattern(320, 240, k), width: 320, height: 240, timestampUs: Math.round((k++ * 1e6) / 30) }))
        // Audio both ways over a second: Node hears Firefox's tone, Firefox receives Node's packets.
        const audioFlows = async () => {
          const a0 = audio.length
          const p0 = sum(await rtp(ctx.tab), 'inbound-rtp', 'audio', 'packetsReceived')
          await sleep(1000)
          const p1 = sum(await rtp(ctx.tab), 'inbound-rtp', 'audio', 'packetsReceived')
          expect(audio.length - a0).toBeGreaterThan(35)
          expect(p1 - p0).toBeGreaterThan(35)
        }
        const inboundVideo = async () => sum(await rtp(ctx.tab), 'inbound-rtp', 'video', 'framesDecoded')
        try {
          // Before: everything flows.
          await audioFlows()
          const v0 = video.length
          const d0 = await inboundVideo()
          await sleep(500)
          expect(video.length).toBeGreaterThan(v0)
          expect(await inboundVideo()).toBeGreaterThan(d0)

          // Node removes its video: Firefox stops decoding it; audio goes on.
          await videoOut.stop()
          await ctx.peer.removeTrack('video')
          expect(ctx.peer.hasVideoTrack).toBe(false)
          await sleep(300)
          const d1 = await inboundVideo()
          await audioFlows()
          expect(await inboundVideo()).toBe(d1)

          // Firefox removes its camera: Node gets track-ended and no more frames; audio goes on.
          const ended = once(ctx.peer, 'track-ended', (t) => t.kind === 'video', 15000)
          await ctx.tab.evaluate(() => window.stopCamera())
          await ended
          await sleep(300)
          const v1 = video.length
          await audioFlows()
          expect(video.length).toBe(v1)

          // Both add video again: each decodes the other's again; audio goes on.
          const d2 = await inboundVideo()
          await ctx.peer.addVideoTrack({ width: 320, height: 240, framerate: 30, keyframeInterval: 60 })
          await ctx.node.sendVideo(ctx.browserId, { data: testPattern(320, 240, k), width: 320, height: 240, timestampUs: Math.round((k++ * 1e6) / 30), keyframe: true })
          videoOut = pump(1000 / 30, () => ctx.node.sendVideo(ctx.browserId, { data: testPattern(320, 240, k), width: 320, height: 240, timestampUs: Math.round((k++ * 1e6) / 30) }))
          const tracked = once(ctx.peer, 'track', (t) => t.kind === 'video', 15000)
          await ctx.tab.evaluate(() => window.sendCameraAs('video/VP8'))
          await tracked
          await until(() => video.length >= v1 + 15, 15000)
          await until(async () => (await inboundVideo()) >= d2 + 15, 15000)
          await audioFlows()
          expect(await pageErrors(ctx.tab)).toEqual([])
          expect(ctx.errors).toEqual([])
        } finally {
          await videoOut.stop()
          await audioOut.stop()
        }
      }, 90000)
    })

    describe(`${direction === 'node' ? 'Node' : 'Firefox'} offers (VP9 transport)`, () => {
      const ctx = call(direction, 'vp9')

      it('video both ways (VP9): Node decodes Firefox\'s camera, Firefox decodes Node\'s', async () => {
        await videoFromFirefox(ctx, 'video/VP9')
        await videoToFirefox(ctx, 'video/VP9')
        expect(await pageErrors(ctx.tab)).toEqual([])
        expect(ctx.errors).toEqual([])
      }, 60000)
    })
  }

  // Firefox's very first offer carries its microphone, camera and a data channel.
  describe('Firefox offers media in its first offer', () => {
    const ctx = { errors: [] }
    beforeAll(async () => {
      Object.assign(ctx, { server: ctx0.server, browser: ctx0.browser })
      ctx.node = new lib.WebRtcTransport({ signalingUrl: ctx.server.url, peerId: 'node-first-offer', bindAddress: '127.0.0.1', videoCodec: 'vp9' })
      ctx.node.on('error', (e) => ctx.errors.push(e))
      echoRemoteChannels(ctx.node)
      await ctx.node.start()
      ctx.tab = await ctx.browser.newPage()
      const announced = once(ctx.node, 'peer-announced', (e) => e.peerId.startsWith('browser-'), 20000)
      await ctx.tab.goto(`http://127.0.0.1:${ctx.server.port}/`)
      ctx.browserId = (await announced).peerId
      await until(() => ctx.tab.evaluate(() => window.peer.announced), 10000)
    }, 60000)
    afterAll(() => closeCtx(ctx))

    it('Node answers it and decodes the 1 kHz tone and the VP9 camera; the channel echoes', async () => {
      const audio = []
      const video = []
      const connected = once(ctx.node, 'peer-connected', (p) => p.peerId === ctx.browserId, 20000)
      ctx.node.on('audio-frame', (f, p) => p?.peerId === ctx.browserId && audio.push(f))
      ctx.node.on('video-frame', (f, p) => p?.peerId === ctx.browserId && video.push(f))
      await ctx.tab.evaluate((id) => window.connectWithMedia(id, 'ff-first', 'video/VP9'), ctx.node.peerId)
      ctx.peer = await connected
      await until(() => audio.length >= 75 && video.length >= 30, 20000)
      const tail = audio.slice(-50)
      const mono = concat(tail.map((f) => channel(f.samples, f.channels)))
      expect(Math.abs(frequency(mono, tail[0].sampleRate) - 1000)).toBeLessThanOrEqual(5)
      for (const f of video) expect([f.width, f.height]).toEqual([640, 480])
      const out = biggest(await rtp(ctx.tab), 'outbound-rtp', 'video', 'framesEncoded')
      expect(out.mimeType).toBe('video/VP9')
      await ctx.tab.evaluate(() => window.sendOn('ff-first', [{ t: 'text', d: 'with media' }]))
      await until(() => ctx.tab.evaluate(() => window.receivedOn('ff-first').length > 0), 10000)
      expect(await ctx.tab.evaluate(() => window.receivedOn('ff-first'))).toEqual([{ t: 'text', d: 'with media' }])
      expect(await pageErrors(ctx.tab)).toEqual([])
      expect(ctx.errors).toEqual([])
    }, 60000)
  })

  // maxMessageSize is what the SCTP stack honours (webrtc-rs 0.21 caps it at 256 KiB): a
  // larger setting is refused with a coded error instead of being taken and then not honoured
  // (it once was: the offer said 262144 and a larger send failed). At the cap, one message of
  // exactly 256 KiB goes each way with Firefox.
  describe('maxMessageSize: up to the 256 KiB the stack honours, refused above', () => {
    const ctx = call('node', 'vp8', { maxMessageSize: 256 * 1024 })

    it('a setting above 256 KiB is ERR_INVALID_CONFIG; a 256 KiB message goes each way', async () => {
      expect(() => new lib.WebRtcTransport({ signalingUrl: ctx0.server.url, maxMessageSize: MIB }))
        .toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
      const offered = await ctx.tab.evaluate(() => pc.remoteDescription.sdp)
      const size = 256 * 1024
      expect(Number(/a=max-message-size:(\d+)/.exec(offered)?.[1])).toBe(size)
      const all = Buffer.from(Array.from({ length: size }, (_, i) => (i * 11 + (i >> 10)) & 0xff))
      const ch = await ctx.peer.createDataChannel('big1')
      await until(() => ch.readyState === 'open', 10000)
      const got = collect(ch)
      await ch.send(all)
      await until(() => got.length > 0, 20000)
      expect(got[0].kind === 'binary' && got[0].data.equals(all)).toBe(true)
      await ctx.tab.evaluate(() => window.openChannel('ff-big1'))
      expect(await ctx.tab.evaluate((t) => window.sendBig('ff-big1', t, t, 20000), size)).toEqual({ bytes: size, messages: 1, same: true })
    }, 60000)
  })
})
