// `serve` with authentication: it refuses a public address without it, and with --auth-secret
// only clients holding a token for their peer id get in (a transport, and Chromium on the demo
// page with ?token=). Everything stays on 127.0.0.1.
import { describe, it, expect, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { launchChromium } from '../chromium.mjs'
import { lib, once } from '../helpers.mjs'

const { WebRtcTransport, issueSignalingToken } = lib
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = path.join(ROOT, 'bin', 'remotemedia-webrtc.js')
const READY = /serving http:\/\/127\.0\.0\.1:(\d+)\//
const SECRET = 'serve-auth-test-secret-0123456789abcdef'

function runCli(args, env = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, WEBRTC_AUTH_SECRET: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const out = { stdout: '', stderr: '' }
  child.stdout.setEncoding('utf8').on('data', (d) => { out.stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d) => { out.stderr += d })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  return { child, out, exited }
}

async function ready(run) {
  const end = Date.now() + 15000
  while (Date.now() < end) {
    const m = READY.exec(run.out.stdout)
    if (m) return Number(m[1])
    if (run.child.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`serve not ready\nstdout: ${run.out.stdout}\nstderr: ${run.out.stderr}`)
}

const runs = []
let browser
afterAll(async () => {
  if (browser) await browser.close().catch(() => {})
  for (const r of runs) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      r.child.kill('SIGKILL')
      await r.exited
    }
  }
})

describe('serve with authentication', () => {
  it('refuses a non-loopback address without --auth-secret or --insecure', async () => {
    const run = runCli(['serve', '--host', '0.0.0.0', '--port', '0'])
    runs.push(run)
    const { code } = await run.exited
    expect(code).toBe(2)
    expect(run.out.stderr).toMatch(/refusing to listen on 0\.0\.0\.0 without authentication/)
  })

  it('admits only tokens for their own peer id, from a transport and from the demo page', async () => {
    const run = runCli(['serve', '--host', '127.0.0.1', '--port', '0', '--auth-secret', SECRET])
    runs.push(run)
    const port = await ready(run)
    expect(run.out.stdout).toMatch(/authentication: every announce needs an HS256 token/)
    const url = `ws://127.0.0.1:${port}/ws`

    // No token, and a token for another id: start() fails with the server's reason.
    const bare = new WebRtcTransport({ signalingUrl: url, peerId: 'anon', bindAddress: '127.0.0.1' })
    await expect(bare.start()).rejects.toMatchObject({ code: 'ERR_SIGNALING', message: expect.stringMatching(/unauthorized/) })
    await bare.shutdown()
    const thief = new WebRtcTransport({
      signalingUrl: url, peerId: 'remotemedia-server-2', bindAddress: '127.0.0.1',
      signalingToken: issueSignalingToken(SECRET, 'someone-else', 60),
    })
    await expect(thief.start()).rejects.toMatchObject({ code: 'ERR_SIGNALING' })
    await thief.shutdown()

    // The right token: connects to the server peer and gets an echo.
    const t = new WebRtcTransport({
      signalingUrl: url, peerId: 'alice', bindAddress: '127.0.0.1',
      signalingToken: issueSignalingToken(SECRET, 'alice', 60),
    })
    await t.start()
    const peer = await t.connectPeer('remotemedia-server')
    const echoed = once(peer.defaultChannel, 'message')
    await peer.defaultChannel.send('hello with a token')
    expect((await echoed).data).toBe('hello with a token')
    await t.shutdown()

    // Chromium on the demo page, its token in the page URL.
    browser = await launchChromium({ media: false })
    const page = await browser.newPage()
    const token = issueSignalingToken(SECRET, 'browser-with-token', 60)
    await page.goto(`http://127.0.0.1:${port}/?media=none&token=${token}`)
    await page.waitForFunction(() => window.demo && window.demo.state === 'open', null, { timeout: 15000 })
    const echo = await page.evaluate(() => window.demo.send('hi from the page'))
    expect(echo.text).toBe('hi from the page')
    expect(run.out.stdout).toMatch(/peer connected: browser-with-token/)
  })
})
