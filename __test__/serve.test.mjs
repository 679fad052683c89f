// `remotemedia-webrtc serve`: the CLI, its echoing server peer, the demo page, and a real Chromium
// talking to it. Everything stays on 127.0.0.1.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import fs, { readFileSync } from 'node:fs'
import os from 'node:os'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { launchChromium } from './chromium.mjs'
import { tone, frequency, concat } from './signals.mjs'

const require = createRequire(import.meta.url)
const { WebRtcTransport } = require('../index.js')

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CLI = path.join(ROOT, 'bin', 'remotemedia-webrtc.js')
const READY = /remotemedia-webrtc serving http:\/\/127\.0\.0\.1:(\d+)\/ \(signaling ws:\/\/127\.0\.0\.1:(\d+)\/ws\)/

// Runs the CLI; `exited` resolves with { code, signal }.
function runCli(args, env = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const out = { stdout: '', stderr: '' }
  child.stdout.setEncoding('utf8').on('data', (d) => { out.stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d) => { out.stderr += d })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  return { child, out, exited }
}

function waitReady(run, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = READY.exec(run.out.stdout)
      if (m) {
        cleanup()
        resolve(Number(m[1]))
      }
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`no ready line within ${timeoutMs} ms\nstdout: ${run.out.stdout}\nstderr: ${run.out.stderr}`))
    }, timeoutMs)
    const onExit = ({ code, signal }) => {
      cleanup()
      reject(new Error(`serve exited early (${code ?? signal})\nstdout: ${run.out.stdout}\nstderr: ${run.out.stderr}`))
    }
    function cleanup() {
      clearTimeout(timer)
      run.child.stdout.off('data', check)
    }
    run.child.stdout.on('data', check)
    run.exited.then(onExit)
    check()
  })
}

function nextMessage(channel, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no echo within 5 s')), timeoutMs)
    channel.once('message', (m) => {
      clearTimeout(timer)
      resolve(m)
    })
  })
}

async function withTimeout(promise, ms, what) {
  let timer
  const t = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms) })
  try {
    return await Promise.race([promise, t])
  } finally {
    clearTimeout(timer)
  }
}

describe('remotemedia-webrtc serve', () => {
  let run
  let port
  let client
  let browser

  beforeAll(async () => {
    run = runCli(['serve', '--host', '127.0.0.1', '--port', '0', '--manifest', 'examples/loopback.yaml'])
    port = await waitReady(run)
  })

  afterAll(async () => {
    if (browser) await browser.close().catch(() => {})
    if (client) await client.shutdown().catch(() => {})
    if (run && run.child.exitCode === null && run.child.signalCode === null) {
      run.child.kill('SIGKILL')
      await run.exited
    }
  })

  it('prints the real port and says each client gets its own pipeline', () => {
    expect(port).toBeGreaterThan(0)
    expect(run.out.stdout).toMatch(/manifest examples\/loopback\.yaml: each client's audio runs through its own pipeline/)
  })

  it('serves the demo page at GET /', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/text\/html/)
    const body = await res.text()
    expect(body).toBe(readFileSync(path.join(ROOT, 'demo', 'index.html'), 'utf8'))
  })

  it('echoes json, text and binary to a Node client', async () => {
    client = new WebRtcTransport({
      signalingUrl: `ws://127.0.0.1:${port}/ws`,
      peerId: `node-client-${process.pid}`,
      bindAddress: '127.0.0.1',
    })
    await client.start()
    const peer = await client.connectPeer('remotemedia-server')
    const ch = peer.defaultChannel
    expect(ch).not.toBeNull()

    const json = { hello: 'world', n: 42, list: [1, 2, { deep: true }] }
    let echoed = nextMessage(ch)
    await ch.send(json)
    expect(await echoed).toEqual({ kind: 'json', data: json })

    echoed = nextMessage(ch)
    await ch.send('plain text ✓')
    expect(await echoed).toEqual({ kind: 'text', data: 'plain text ✓' })

    const bytes = Buffer.from([0, 1, 2, 127, 128, 254, 255])
    echoed = nextMessage(ch)
    await ch.send(bytes)
    const m = await echoed
    expect(m.kind).toBe('binary')
    expect(Buffer.compare(m.data, bytes)).toBe(0)

    await client.shutdown()
    client = null
  })

  it('sends a Node client\'s tone back through its loopback pipeline, with quality on the events channel', async () => {
    client = new WebRtcTransport({
      signalingUrl: `ws://127.0.0.1:${port}/ws`,
      peerId: `node-media-${process.pid}`,
      bindAddress: '127.0.0.1',
    })
    const serverChannels = []
    client.on('data-channel', (ch) => serverChannels.push(ch))
    await client.start()
    const peer = await client.connectPeer('remotemedia-server')
    const back = []
    peer.on('audio-frame', (f) => back.push(f))
    await peer.addAudioTrack({})
    // 3 s of 20 ms frames of a 660 Hz tone.
    for (const frame of tone(660, 150)) {
      await client.sendAudio('remotemedia-server', frame)
      await new Promise((r) => setTimeout(r, 20))
    }
    await expect.poll(() => back.length, { timeout: 5000 }).toBeGreaterThan(60)
    // Frequency by zero crossings over the last second that came back.
    const hz = frequency(concat(back.slice(-50)))
    expect(Math.abs(hz - 660)).toBeLessThan(10)
    // The server opened its 'events' channel, which carries its quality measurements.
    const events = serverChannels.find((c) => c.label === 'events')
    expect(events).toBeDefined()
    const quality = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no quality message within 3 s')), 3000)
      events.on('message', (m) => {
        if (m.kind === 'json' && m.data.type === 'quality') {
          clearTimeout(t)
          resolve(m.data)
        }
      })
    })
    expect(quality.qualityScore).toBeGreaterThan(0)
    await client.shutdown()
    client = null
  })

  it('echoes messages to Chromium running the demo page', async () => {
    browser = await launchChromium({ media: false })
    const page = await browser.newPage()
    const pageErrors = []
    page.on('pageerror', (e) => pageErrors.push(e.message))
    const framesIn = []
    const framesOut = []
    page.on('websocket', (ws) => {
      ws.on('framereceived', (f) => framesIn.push(JSON.parse(f.payload)))
      ws.on('framesent', (f) => framesOut.push(JSON.parse(f.payload)))
    })
    await page.goto(`http://127.0.0.1:${port}/?media=none`)
    try {
      await page.waitForFunction(() => window.demo && window.demo.state === 'open', null, { timeout: 15000 })
    } catch (e) {
      const state = await page.evaluate(() => window.demo && window.demo.state).catch(() => '?')
      const log = await page.evaluate(() => document.getElementById('log').innerText).catch(() => '?')
      throw new Error(`demo data channel never opened (state ${state}); page log:\n${log}\n` +
        `page errors: ${pageErrors.join('; ')}\nserve stdout: ${run.out.stdout}\nserve stderr: ${run.out.stderr}`)
    }
    const texts = ['hello', 'hello again', 'hello ✓ 3']
    for (const text of texts) {
      const echo = await withTimeout(page.evaluate((t) => window.demo.send(t), text), 5000, `echo of '${text}'`)
      expect(echo.text).toBe(text)
      expect(echo.rttMs).toBeGreaterThanOrEqual(0)
    }
    const echoes = await page.evaluate(() => window.demo.echoes.map((e) => e.text))
    expect(echoes).toEqual(texts)
    expect(pageErrors).toEqual([])
    // The signaling went as the protocol says: no JSON-RPC errors, candidates both ways.
    expect(framesIn.filter((f) => f.error)).toEqual([])
    expect(framesIn.some((f) => f.method === 'peer.answer')).toBe(true)
    expect(framesIn.some((f) => f.method === 'peer.ice_candidate' && f.params.candidate)).toBe(true)
    const sent = () => framesOut.filter((f) => f.method === 'peer.ice_candidate')
    expect(sent().some((f) => f.params.candidate)).toBe(true)
    // Gathering ends with an end-of-candidates "" (it may finish after the channel opened).
    await expect.poll(() => sent().at(-1).params.candidate, { timeout: 10000 }).toBe('')
    await browser.close()
    browser = null
  })

  it('exits 0 on SIGTERM', async () => {
    run.child.kill('SIGTERM')
    const { code, signal } = await withTimeout(run.exited, 10000, 'exit after SIGTERM')
    expect({ code, signal }).toEqual({ code: 0, signal: null })
  })
})

// A mono 48 kHz WAV for Chromium's fake microphone (it loops the file): 0.6 s of a 440 Hz tone at
// half scale, then 0.9 s of silence, so a voice activity detector sees speech start and end.
function writeToneBurstWav(file) {
  const rate = 48000
  const samples = Math.round(rate * 1.5)
  const buf = Buffer.alloc(44 + samples * 2)
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + samples * 2, 4); buf.write('WAVE', 8)
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22)
  buf.writeUInt32LE(rate, 24); buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34)
  buf.write('data', 36); buf.writeUInt32LE(samples * 2, 40)
  for (let i = 0; i < samples; i++) {
    const v = i < rate * 0.6 ? 0.5 * Math.sin((2 * Math.PI * 440 * i) / rate) : 0
    buf.writeInt16LE(Math.round(v * 32767), 44 + i * 2)
  }
  fs.writeFileSync(file, buf)
}

function launchChromiumWithMic(wav) {
  return launchChromium({ args: [`--use-file-for-fake-audio-capture=${wav}`] })
}

// Opens the demo page and waits for its data channel; on failure the page log and serve's output.
async function openDemo(browser, port, run) {
  const page = await browser.newPage()
  const pageErrors = []
  page.on('pageerror', (e) => pageErrors.push(e.message))
  await page.goto(`http://127.0.0.1:${port}/`)
  try {
    await page.waitForFunction(() => window.demo && window.demo.state === 'open', null, { timeout: 15000 })
  } catch (e) {
    const log = await page.evaluate(() => document.getElementById('log').innerText).catch(() => '?')
    throw new Error(`demo never opened; page log:\n${log}\npage errors: ${pageErrors.join('; ')}\n` +
      `serve stdout: ${run.out.stdout}\nserve stderr: ${run.out.stderr}`)
  }
  return { page, pageErrors }
}

describe('remotemedia-webrtc serve runs each client\'s media through the manifest (Chromium)', () => {
  let dir
  let wav
  let browser
  const runs = []

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmw-serve-media-'))
    wav = path.join(dir, 'tone-bursts.wav')
    writeToneBurstWav(wav)
    browser = await launchChromiumWithMic(wav)
  })

  afterAll(async () => {
    if (browser) await browser.close().catch(() => {})
    for (const run of runs) {
      if (run.child.exitCode === null && run.child.signalCode === null) {
        run.child.kill('SIGKILL')
        await run.exited
      }
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  it('sends Chromium\'s microphone back through the loopback manifest, and reports quality', async () => {
    const run = runCli(['serve', '--host', '127.0.0.1', '--port', '0', '--manifest', 'examples/loopback.yaml'])
    runs.push(run)
    const port = await waitReady(run)
    const { page, pageErrors } = await openDemo(browser, port, run)
    expect(await page.evaluate(() => window.demo.media)).toBe('audio+video')
    // The server's answer carried its audio track: no renegotiation needed.
    await page.waitForFunction(() => window.demo.remoteTracks.includes('audio'), null, { timeout: 10000 })
    const inbound = () => page.evaluate(async () => {
      const stats = await window.demo.pc.getStats()
      for (const s of stats.values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') return { packetsReceived: s.packetsReceived, audioLevel: s.audioLevel ?? 0 }
      }
      return null
    })
    // What comes back is Chromium's own tone bursts: packets arrive and they are not silent.
    await expect.poll(async () => (await inbound())?.packetsReceived ?? 0, { timeout: 15000 }).toBeGreaterThan(50)
    let maxLevel = 0
    for (let i = 0; i < 40 && maxLevel === 0; i++) {
      maxLevel = Math.max(maxLevel, (await inbound()).audioLevel)
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(maxLevel).toBeGreaterThan(0)
    // The camera comes back too: the loopback returns its 640x480 frames on the server's video
    // track (which follows the size of the frames it is given).
    await page.waitForFunction(() => window.demo.remoteTracks.includes('video'), null, { timeout: 10000 })
    const video = () => page.evaluate(async () => {
      for (const s of (await window.demo.pc.getStats()).values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'video') return { framesDecoded: s.framesDecoded ?? 0, frameWidth: s.frameWidth ?? 0, frameHeight: s.frameHeight ?? 0 }
      }
      return { framesDecoded: 0 }
    })
    await expect.poll(async () => (await video()).framesDecoded, { timeout: 15000 }).toBeGreaterThan(10)
    const v = await video()
    expect([v.frameWidth, v.frameHeight]).toEqual([640, 480])
    // The server's measure of this connection arrives on the 'events' channel, every second;
    // from the second one on it has a rate for the media it receives.
    await page.waitForFunction(() => window.demo.quality !== null, null, { timeout: 10000 })
    await page.waitForFunction(() => window.demo.quality.bitrateKbps.in > 0, null, { timeout: 5000 })
    const q = await page.evaluate(() => window.demo.quality)
    expect(q.qualityScore).toBeGreaterThan(0)
    expect(q.qualityScore).toBeLessThanOrEqual(100)
    expect(q.bitrateKbps.out).toBeGreaterThan(0)
    // The page shows it.
    expect(await page.evaluate(() => document.getElementById('quality').innerText)).toMatch(/score\s+\d+(\.\d)? \/ 100/)
    expect(pageErrors).toEqual([])
    await page.close()
    run.child.kill('SIGTERM')
    expect(await withTimeout(run.exited, 10000, 'exit after SIGTERM')).toEqual({ code: 0, signal: null })
  })

  it('sends voice activity events of Chromium\'s microphone over the data channel with vad.yaml', async () => {
    const run = runCli(['serve', '--host', '127.0.0.1', '--port', '0', '--manifest', 'examples/vad.yaml'])
    runs.push(run)
    const port = await waitReady(run)
    const { page, pageErrors } = await openDemo(browser, port, run)
    // 0.6 s tone, 0.9 s silence, looped: speech-start then speech-end, from the 'vad' node.
    await page.waitForFunction(() => {
      const names = window.demo.events.filter((e) => e.nodeId === 'vad').map((e) => e.event)
      const start = names.indexOf('speech-start')
      return start >= 0 && names.indexOf('speech-end', start) > start
    }, null, { timeout: 15000 }).catch(async (e) => {
      const events = await page.evaluate(() => JSON.stringify(window.demo.events))
      throw new Error(`no speech-start then speech-end: events ${events}\nserve: ${run.out.stdout}${run.out.stderr}`)
    })
    const events = await page.evaluate(() => window.demo.events)
    expect(events.filter((e) => e.error)).toEqual([])
    const names = events.filter((e) => e.nodeId === 'vad').map((e) => e.event)
    // Starts and ends alternate.
    for (let i = 1; i < names.length; i++) expect(names[i]).not.toBe(names[i - 1])
    expect(await page.evaluate(() => document.getElementById('speech').textContent)).toMatch(/speaking|silent/)
    expect(pageErrors).toEqual([])
    await page.close()
    run.child.kill('SIGTERM')
    expect(await withTimeout(run.exited, 10000, 'exit after SIGTERM')).toEqual({ code: 0, signal: null })
  })
})

describe('remotemedia-webrtc command line errors', () => {
  it('rejects a missing manifest file with exit code 2', async () => {
    const r = runCli(['serve', '--port', '0', '--manifest', 'examples/does-not-exist.yaml'])
    const { code } = await withTimeout(r.exited, 10000, 'exit')
    expect(code).toBe(2)
    expect(r.out.stderr).toMatch(/manifest file not found: examples\/does-not-exist\.yaml/)
    expect(r.out.stdout).not.toMatch(READY)
  })

  it('rejects an invalid manifest with exit code 2, naming the node at fault', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmw-manifest-'))
    const file = path.join(dir, 'bad.yaml')
    fs.writeFileSync(file, 'nodes:\n  - { id: in, node_type: Input }\n  - { id: loud, node_type: Gain, params: { gain_db: 900 } }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: loud }\n  - { from: loud, to: out }\n')
    const r = runCli(['serve', '--port', '0', '--manifest', file])
    const { code } = await withTimeout(r.exited, 10000, 'exit')
    fs.rmSync(dir, { recursive: true })
    expect(code).toBe(2)
    expect(r.out.stderr).toMatch(/invalid manifest .*ERR_INVALID_MANIFEST.*loud/)
    expect(r.out.stdout).not.toMatch(READY)
  })

  it('rejects an unknown flag with exit code 2 and the usage', async () => {
    const r = runCli(['serve', '--no-such-flag'])
    const { code } = await withTimeout(r.exited, 10000, 'exit')
    expect(code).toBe(2)
    expect(r.out.stderr).toMatch(/Usage: remotemedia-webrtc serve/)
  })

  it('prints the usage for --help and exits 0', async () => {
    const r = runCli(['--help'])
    const { code } = await withTimeout(r.exited, 10000, 'exit')
    expect(code).toBe(0)
    expect(r.out.stdout).toMatch(/Usage: remotemedia-webrtc serve/)
  })
})
