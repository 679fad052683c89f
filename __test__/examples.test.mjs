import { describe, it, expect } from 'vitest'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

describe('the README example', () => {
  it('type-checks against index.d.ts, runs, and exits by itself', () => {
    const out = path.join(root, 'examples', '.build')
    execFileSync(process.execPath, [
      path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
      '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
      '--skipLibCheck', 'false', '--types', 'node', '--rootDir', path.join(root, 'examples'), '--outDir', out,
      path.join(root, 'examples', 'quickstart.mts'),
    ], { cwd: root, stdio: 'pipe' })
    const r = spawnSync(process.execPath, [path.join(out, 'quickstart.mjs')], { cwd: root, timeout: 20000, encoding: 'utf8' })
    expect(r.error).toBeUndefined()
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe('alice got {"kind":"json","data":{"echo":{"hello":"bob"}}}')
  })

  it('counts under 25 lines of code', async () => {
    const { readFileSync } = await import('node:fs')
    const code = readFileSync(path.join(root, 'examples', 'quickstart.mts'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.trim().startsWith('//'))
    expect(code.length).toBeLessThan(25)
  })
})

describe('process lifetime', () => {
  it('a script that closes everything exits on its own, even with listeners still attached', () => {
    const script = `
      const { SignalingServer, WebRtcTransport } = require(${JSON.stringify(path.join(root, 'index.js'))})
      ;(async () => {
        const server = await SignalingServer.listen({ port: 0 })
        server.on('peer-announced', () => {})
        const a = new WebRtcTransport({ signalingUrl: server.url, peerId: 'a', bindAddress: '127.0.0.1' })
        const b = new WebRtcTransport({ signalingUrl: server.url, peerId: 'b', bindAddress: '127.0.0.1' })
        await a.start(); await b.start()
        b.on('data-channel', (ch) => ch.on('message', () => {}))
        const p = await a.connectPeer('b')
        await p.createDataChannel('extra')
        await p.defaultChannel.send('x')
        await a.shutdown(); await b.shutdown(); await server.close()
        console.log('closed')
      })()
    `
    const t0 = Date.now()
    const r = spawnSync(process.execPath, ['-e', script], { timeout: 15000, encoding: 'utf8' })
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('closed')
    expect(r.status).toBe(0)
    expect(r.signal).toBeNull()
    expect(Date.now() - t0).toBeLessThan(15000)
  })

  it('a listening server and a started transport keep Node alive until closed or unref()d', () => {
    const lib = JSON.stringify(path.join(root, 'index.js'))
    const open = `
      const { SignalingServer, WebRtcTransport } = require(${lib})
      ;(async () => {
        const s = await SignalingServer.listen({ port: 0 })
        const t = new WebRtcTransport({ signalingUrl: s.url, peerId: 'k' })
        await t.start()
        if (process.argv[1] === 'unref') { s.unref(); t.unref() }
        console.log('up')
      })()
    `
    const kept = spawnSync(process.execPath, ['-e', open, 'ref'], { timeout: 2000, encoding: 'utf8' })
    expect(kept.stdout.trim()).toBe('up')
    expect(kept.signal).toBe('SIGTERM') // still running when the timeout killed it
    const gone = spawnSync(process.execPath, ['-e', open, 'unref'], { timeout: 10000, encoding: 'utf8' })
    expect(gone.stdout.trim()).toBe('up')
    expect(gone.status).toBe(0)
    expect(gone.signal).toBeNull()
  })
})

describe('examples/conference-server.mjs', () => {
  it('three clients each hear the two others\' tones and not their own, then it exits 0', () => {
    const r = spawnSync(process.execPath, [path.join(root, 'examples', 'conference-server.mjs')], { cwd: root, timeout: 60000, encoding: 'utf8' })
    expect(r.error).toBeUndefined()
    expect(r.stderr).toBe('')
    const lines = r.stdout.trim().split('\n')
    expect(lines).toHaveLength(4)
    expect(lines[0]).toMatch(/^alice \(300 Hz\) hears bob 500 Hz, carol 700 Hz; own tone -\d+ dB below/)
    expect(lines[1]).toMatch(/^bob \(500 Hz\) hears alice 300 Hz, carol 700 Hz; own tone -\d+ dB below/)
    expect(lines[2]).toMatch(/^carol \(700 Hz\) hears alice 300 Hz, bob 500 Hz; own tone -\d+ dB below/)
    expect(lines[3]).toBe('conference ok: every client heard the two others and not itself')
    expect(r.status).toBe(0)
  }, 70000)
})

describe('examples/one-port-server.mjs', () => {
  it('serves JSON on / and signaling on /ws of one port; a client reaches the media peer through it and gets an echo; SIGTERM exits 0', async () => {
    const { WebRtcTransport } = await import('../index.js')
    const child = spawn(process.execPath, [path.join(root, 'examples', 'one-port-server.mjs')], { cwd: root, env: { ...process.env, PORT: '0' } })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d })
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
    let client
    try {
      const ready = /one-port server on http:\/\/127\.0\.0\.1:(\d+)\/ \(signaling ws:\/\/127\.0\.0\.1:(\d+)\/ws\)/
      const end = Date.now() + 20000
      while (!ready.test(stdout)) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`not ready: ${stdout} ${stderr}`)
        await new Promise((r) => setTimeout(r, 50))
      }
      const [, port, wsPort] = stdout.match(ready)
      expect(wsPort).toBe(port)
      const res = await fetch(`http://127.0.0.1:${port}/`)
      expect(res.status).toBe(200)
      const info = await res.json()
      expect(info).toEqual({ signaling: `ws://127.0.0.1:${port}/ws`, mediaPeer: 'media-server' })
      expect((await fetch(`http://127.0.0.1:${port}/nothing`)).status).toBe(404)

      client = new WebRtcTransport({ signalingUrl: info.signaling, peerId: `one-port-${process.pid}`, bindAddress: '127.0.0.1' })
      await client.start()
      const peer = await client.connectPeer(info.mediaPeer)
      const reply = new Promise((r) => peer.defaultChannel.once('message', r))
      await peer.defaultChannel.send({ hello: 'one port' })
      expect(await reply).toEqual({ kind: 'json', data: { echo: { hello: 'one port' } } })
      const text = new Promise((r) => peer.defaultChannel.once('message', r))
      await peer.defaultChannel.send('plain text')
      expect(await text).toEqual({ kind: 'text', data: 'plain text' })
      await client.shutdown()
      client = null

      child.kill('SIGTERM')
      expect(await exited).toEqual({ code: 0, signal: null })
      expect(stderr).toBe('')
    } finally {
      await client?.shutdown()
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }, 60000)
})

