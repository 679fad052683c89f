import { describe, it, expect } from 'vitest'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { lib, withServer, transport, uid } from './helpers.mjs'
import { toneFrame, rms } from './signals.mjs'

const { Pipeline } = lib
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')


async function rejectsCode(p, code) {
  await expect(p).rejects.toMatchObject({ code })
}

describe('Pipeline from a manifest', () => {
  it('runs the shipped examples: loopback returns the frame, vad reports speech-start and speech-end', async () => {
    const loop = await Pipeline.fromManifest(path.join(root, 'examples/loopback.yaml'))
    const input = toneFrame(440)
    const out = await loop.execute({ samples: input, sampleRate: 48000, channels: 1, peerId: 'p1' })
    const frames = out.filter((o) => o.frame)
    expect(frames).toHaveLength(1)
    expect(Array.from(frames[0].frame.samples)).toEqual(Array.from(input))
    expect(frames[0].frame.peerId).toBe('p1')

    const vad = await Pipeline.fromManifest(path.join(root, 'examples/vad.yaml'))
    const events = []
    const feed = async (block, n) => {
      for (let i = 0; i < n; i++) {
        for (const o of await vad.execute({ samples: block, sampleRate: 48000, channels: 1, peerId: 'p1' })) if (o.event) events.push(o.event.name)
      }
    }
    await feed(new Float32Array(960), 20) // 400 ms silence
    await feed(toneFrame(300), 30) // 600 ms of loud tone
    await feed(new Float32Array(960), 40) // 800 ms silence
    expect(events).toEqual(['speech-start', 'speech-end'])
  })

  it('gain from a JSON manifest object changes the level; nodes run in topological order', async () => {
    const p = await Pipeline.fromManifest({
      nodes: [
        { id: 'out', node_type: 'Output' },
        { id: 'gain', node_type: 'Gain', params: { gain_db: -6 } },
        { id: 'in', node_type: 'Input' },
      ],
      connections: [{ from: 'in', to: 'gain' }, { from: 'gain', to: 'out' }],
    })
    expect(p.executionOrder).toEqual(['in', 'gain', 'out'])
    const x = toneFrame(1000)
    const [o] = (await p.execute({ samples: x })).filter((o) => o.frame)
    expect(20 * Math.log10(rms(o.frame.samples) / rms(x))).toBeCloseTo(-6, 1)
  })

  it('video frames are scaled by VideoScale', async () => {
    const p = Pipeline.fromText(`
nodes:
  - { id: in, node_type: Input }
  - { id: scale, node_type: VideoScale, params: { width: 160, height: 120 } }
  - { id: out, node_type: Output }
connections:
  - { from: in, to: scale }
  - { from: scale, to: out }
`)
    const data = Buffer.alloc(320 * 240 * 1.5, 100)
    const [o] = (await p.execute({ data, width: 320, height: 240 })).filter((o) => o.frame)
    expect([o.frame.width, o.frame.height, o.frame.data.length]).toEqual([160, 120, 160 * 120 * 1.5])
    expect(o.frame.data.every((v) => v === 100)).toBe(true)
    await rejectsCode(p.execute({ data: Buffer.alloc(10), width: 320, height: 240 }), 'ERR_INVALID_DATA')
    await rejectsCode(p.execute({ data, width: 321, height: 240 }), 'ERR_INVALID_DATA')
  })

  it('bad manifests are refused with ERR_INVALID_MANIFEST naming the node or connection', async () => {
    const bad = [
      [{ nodes: [{ id: 'in', node_type: 'Input' }, { id: 'x', node_type: 'Nope' }, { id: 'out', node_type: 'Output' }], connections: [{ from: 'in', to: 'x' }, { from: 'x', to: 'out' }] }, /x/],
      [{ nodes: [{ id: 'in', node_type: 'Input' }, { id: 'g', node_type: 'Gain', params: { gain_db: 500 } }, { id: 'out', node_type: 'Output' }], connections: [{ from: 'in', to: 'g' }, { from: 'g', to: 'out' }] }, /g/],
      [{ nodes: [{ id: 'in', node_type: 'Input' }, { id: 'out', node_type: 'Output' }], connections: [{ from: 'in', to: 'ghost' }] }, /ghost/],
      [{ nodes: [{ id: 'in', node_type: 'Input' }], connections: [] }, /Output/],
    ]
    for (const [m, names] of bad) {
      const e = await Pipeline.fromManifest(m).then(() => null, (err) => err)
      expect(e?.code).toBe('ERR_INVALID_MANIFEST')
      expect(e.message).toMatch(names)
    }
    await rejectsCode(Pipeline.fromManifest('/nonexistent/manifest.yaml'), 'ERR_INVALID_MANIFEST')
    await rejectsCode(Pipeline.fromManifest('nodes: [ {'), 'ERR_INVALID_MANIFEST')
    const p = await Pipeline.fromManifest(path.join(root, 'examples/loopback.yaml'))
    await rejectsCode(p.execute(null), 'ERR_INVALID_DATA')
    await rejectsCode(p.execute({ samples: [1, 2] }), 'ERR_INVALID_DATA')
    await rejectsCode(p.execute({ samples: new Float32Array(3), channels: 2 }), 'ERR_INVALID_DATA')
  })
})

const GAIN_JS = (type) => ({
  nodes: [
    { id: 'in', node_type: 'Input' },
    { id: 'half', node_type: 'Gain', params: { gain: 0.5 } },
    { id: 'js', node_type: type, params: { by: 3 } },
    { id: 'out', node_type: 'Output' },
  ],
  connections: [{ from: 'in', to: 'half' }, { from: 'half', to: 'js' }, { from: 'js', to: 'out' }],
})
const tick = () => new Promise((r) => setImmediate(r))

describe('JS nodes (Pipeline.registerNode)', () => {
  it('a JS node between Gain and Output sees the gained frame and its output comes out', async () => {
    const seen = []
    Pipeline.registerNode('TestTriple', (frame, ctx) => {
      seen.push({ samples: Array.from(frame.samples), peerId: frame.peerId, sampleRate: frame.sampleRate, ctx })
      return { ...frame, samples: frame.samples.map((s) => s * ctx.params.by) }
    })
    const p = await Pipeline.fromManifest(GAIN_JS('TestTriple'))
    expect(p.jsNodeIds).toEqual(['js'])
    const out = await p.execute({ samples: Float32Array.from([0.2, -0.4, 0.1, 0]), sampleRate: 16000, peerId: 'p1', timestampUs: 20000 })
    expect(seen).toHaveLength(1)
    expect(seen[0].samples.map((v) => +v.toFixed(6))).toEqual([0.1, -0.2, 0.05, 0])
    expect(seen[0]).toMatchObject({ peerId: 'p1', sampleRate: 16000, ctx: { nodeId: 'js', params: { by: 3 } } })
    expect(out).toHaveLength(1)
    expect(out[0].nodeId).toBe('out')
    expect(Array.from(out[0].frame.samples).map((v) => +v.toFixed(6))).toEqual([0.3, -0.6, 0.15, 0])
    expect(out[0].frame).toMatchObject({ sampleRate: 16000, channels: 1, peerId: 'p1', timestampUs: 20000 })
  })

  it('a JS node can emit events, several frames, drop frames, and handle video; async nodes work too', async () => {
    Pipeline.registerNode('TestEvents', (frame) => {
      if (frame.data) return { ...frame, data: Buffer.alloc(frame.data.length, 7) }
      const level = Math.max(...frame.samples.map(Math.abs))
      if (level === 0) return null // drop silence
      return [{ event: 'level', data: { level: +level.toFixed(3), peer: frame.peerId } }, frame, frame]
    })
    const p = await Pipeline.fromManifest(GAIN_JS('TestEvents'))
    const out = await p.execute({ samples: Float32Array.from([0.8, -0.2]), peerId: 'a' })
    expect(out.map((o) => (o.event ? `event:${o.event.name}` : o.frame ? 'frame' : 'error'))).toEqual(['event:level', 'frame', 'frame'])
    expect(out[0]).toEqual({ nodeId: 'js', event: { name: 'level', data: { level: 0.4, peer: 'a' } } })
    expect(await p.execute({ samples: new Float32Array(4) })).toEqual([])
    const [v] = await p.execute({ data: Buffer.alloc(4 * 4 * 1.5, 1), width: 4, height: 4 })
    expect([v.frame.width, v.frame.height, v.frame.format, [...v.frame.data].every((b) => b === 7)]).toEqual([4, 4, 'i420', true])

    Pipeline.registerNode('TestAsync', async (frame, ctx) => {
      await tick()
      return [{ event: 'async', data: ctx.nodeId }, frame]
    })
    const a = await Pipeline.fromManifest(GAIN_JS('TestAsync'))
    const res = await Promise.all([1, 2, 3].map((k) => a.execute({ samples: Float32Array.from([k]), timestampUs: k })))
    // Concurrent executes are run one after another, each with its own outputs.
    expect(res.map((r) => r.map((o) => o.event?.name ?? o.frame.timestampUs))).toEqual([['async', 1], ['async', 2], ['async', 3]])
  })

  it('a throwing JS node gives an error output for that frame and the next frame goes through', async () => {
    Pipeline.registerNode('TestPicky', (frame) => {
      if (frame.samples[0] < 0) throw new Error('negative first sample')
      if (frame.samples[0] > 0.4) return { samples: [1, 2, 3] } // not a Float32Array
      if (frame.samples[0] > 0.3) return 42
      return frame
    })
    const p = await Pipeline.fromManifest(GAIN_JS('TestPicky'))
    const bad = await p.execute({ samples: Float32Array.from([-0.5]) })
    expect(bad).toHaveLength(1)
    expect(bad[0].nodeId).toBe('js')
    expect(bad[0].error.code).toBe('ERR_INTERNAL')
    expect(bad[0].error.message).toMatch(/js.*negative first sample/)
    for (const x of [0.9, 0.7]) {
      const [o] = await p.execute({ samples: Float32Array.from([x]) })
      expect(o).toMatchObject({ nodeId: 'js', error: { code: 'ERR_INVALID_DATA' } })
    }
    const good = await p.execute({ samples: Float32Array.from([0.5]) })
    expect(good.map((o) => [o.nodeId, o.frame?.samples[0]])).toEqual([['out', 0.25]])
    // A thrown coded error keeps its code.
    Pipeline.registerNode('TestCoded', () => { throw Object.assign(new Error('nope'), { code: 'ERR_DECODING' }) })
    const c = await Pipeline.fromManifest(GAIN_JS('TestCoded'))
    expect((await c.execute({ samples: new Float32Array(1) }))[0].error.code).toBe('ERR_DECODING')
    // A rejecting async node too.
    Pipeline.registerNode('TestRejects', async () => { throw new Error('later') })
    const r = await Pipeline.fromManifest(GAIN_JS('TestRejects'))
    expect((await r.execute({ samples: new Float32Array(1) }))[0].error.message).toMatch(/later/)
    // A node that runs its own pipeline would wait for itself: refused, as an error output.
    let self = null
    Pipeline.registerNode('TestSelf', async (frame) => { await self.execute(frame); return frame })
    self = await Pipeline.fromManifest(GAIN_JS('TestSelf'))
    const [o] = await self.execute({ samples: new Float32Array(1) })
    expect(o).toMatchObject({ nodeId: 'js', error: { code: 'ERR_INVALID_CONFIG' } })
    expect(o.error.message).toMatch(/own pipeline/)
  })

  it('registerNode refuses built-in and invalid names and non-functions with ERR_INVALID_CONFIG; unknown types stay refused', async () => {
    for (const [name, fn] of [['Gain', (f) => f], ['Input', (f) => f], ['', (f) => f], ['my node', (f) => f], ['9x', (f) => f], [42, (f) => f], ['TestNotFn', 'nope'], ['TestNotFn', null]]) {
      let err = null
      try { Pipeline.registerNode(name, fn) } catch (e) { err = e }
      expect(err?.code, String(name)).toBe('ERR_INVALID_CONFIG')
      expect(err.name).toBe('WebRtcError')
    }
    expect(Pipeline.registeredNodes()).not.toContain('TestNotFn')
    const e = await Pipeline.fromManifest(GAIN_JS('TestNeverRegistered')).then(() => null, (x) => x)
    expect(e?.code).toBe('ERR_INVALID_MANIFEST')
    expect(e.message).toMatch(/node 'js'.*TestNeverRegistered/)
    // Unregistered: pipelines built afterwards refuse it, the ones built before keep it.
    Pipeline.registerNode('TestGone', (f) => f)
    const before = await Pipeline.fromManifest(GAIN_JS('TestGone'))
    expect(Pipeline.unregisterNode('TestGone')).toBe(true)
    await rejectsCode(Pipeline.fromManifest(GAIN_JS('TestGone')), 'ERR_INVALID_MANIFEST')
    expect((await before.execute({ samples: new Float32Array(2) }))[0].nodeId).toBe('out')
  })

  it('sessions refuse manifests with JS nodes, naming the node', async () => {
    Pipeline.registerNode('TestSessionNode', (f) => f)
    const server = await withServer()
    const t = await transport(server, uid('jsnode'))
    try {
      const p = await Pipeline.fromManifest(GAIN_JS('TestSessionNode'))
      const s = await t.createSession(uid('s'))
      const e1 = await s.attachPipeline(p).then(() => null, (x) => x)
      expect(e1?.code).toBe('ERR_INVALID_MANIFEST')
      expect(e1.message).toMatch(/node 'js'.*Pipeline\.execute\/stream only/)
      const e2 = await t.createSession(uid('s'), { manifest: p.manifestText }).then(() => null, (x) => x)
      expect(e2?.code).toBe('ERR_INVALID_MANIFEST')
      expect(e2.message).toMatch(/node 'js'/)
      // Built-in-only manifests still attach.
      await s.attachPipeline(await Pipeline.fromManifest(path.join(root, 'examples/loopback.yaml')))
    } finally {
      await t.shutdown()
      await server.close()
    }
  })
})

const vadFrame = (block, k) => ({ samples: block, sampleRate: 48000, channels: 1, peerId: 'p1', timestampUs: k * 20000 })

describe('pipeline.stream()', () => {
  it('50 frames through the VAD example: speech-start then speech-end, every frame comes out in order', async () => {
    const vad = await Pipeline.fromManifest(path.join(root, 'examples/vad.yaml'))
    const loud = toneFrame(300)
    // The pipeline's own instance is in speech now; the stream's instance starts fresh.
    let started = 0
    for (let k = 0; k < 20; k++) started += (await vad.execute(vadFrame(loud, k))).filter((o) => o.event?.name === 'speech-start').length
    expect(started).toBe(1)
    const s = vad.stream()
    const writer = (async () => {
      for (let k = 0; k < 50; k++) await s.write(vadFrame(k < 20 ? loud : new Float32Array(960), k))
      s.end()
      s.end() // idempotent
    })()
    const seq = []
    for await (const o of s) seq.push(o.event ? o.event.name : o.frame ? o.frame.timestampUs : `error ${o.error.message}`)
    await writer
    const events = seq.filter((x) => typeof x === 'string')
    expect(events).toEqual(['speech-start', 'speech-end'])
    const ts = seq.filter((x) => typeof x === 'number')
    expect(ts).toEqual(Array.from({ length: 50 }, (_, k) => k * 20000))
    // speech-start comes during the tone, speech-end after it.
    expect(seq.indexOf('speech-start')).toBeLessThan(seq.indexOf(20 * 20000))
    expect(seq.indexOf('speech-end')).toBeGreaterThan(seq.indexOf(20 * 20000))
  })

  it('backpressure: writes wait while nobody reads, and resume when the reader catches up', async () => {
    Pipeline.registerNode('TestCount', (frame) => frame)
    const p = await Pipeline.fromManifest(GAIN_JS('TestCount'))
    const s = p.stream({ highWaterMark: 2 })
    const done = []
    const writes = []
    for (let k = 0; k < 10; k++) {
      const w = s.write({ samples: Float32Array.from([k]), timestampUs: k })
      w.then(() => done.push(k))
      writes.push(w)
    }
    for (let i = 0; i < 20; i++) await tick()
    // At most highWaterMark frames queued in, highWaterMark outputs queued out, one under way.
    expect(done.length).toBeGreaterThanOrEqual(2)
    expect(done.length).toBeLessThanOrEqual(5)
    const stuck = done.length
    expect(done).toEqual(Array.from({ length: stuck }, (_, k) => k))
    // Reading lets the rest in.
    const got = []
    const reader = (async () => { for await (const o of s) got.push(o.frame.timestampUs) })()
    await Promise.all(writes)
    expect(done).toHaveLength(10)
    s.end()
    await reader
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  })

  it('bad input rejects the write with ERR_INVALID_DATA and the stream carries on; node errors are outputs; end() and close() finish the iterator', async () => {
    Pipeline.registerNode('TestStreamPicky', (frame) => {
      if (frame.samples[0] < 0) throw new Error('negative')
      return frame
    })
    const p = await Pipeline.fromManifest(GAIN_JS('TestStreamPicky'))
    const s = p.stream()
    await s.write({ samples: Float32Array.from([1]), timestampUs: 1 })
    for (const bad of [null, 7, { samples: [1, 2] }, { samples: new Float32Array(3), channels: 2 }, { data: Buffer.alloc(3), width: 4, height: 4 }, {}]) {
      await rejectsCode(s.write(bad), 'ERR_INVALID_DATA')
    }
    await s.write({ samples: Float32Array.from([-1]), timestampUs: 2 })
    await s.write({ samples: Float32Array.from([1]), timestampUs: 3 })
    s.end()
    await rejectsCode(s.write({ samples: new Float32Array(1) }), 'ERR_SHUT_DOWN')
    const outs = []
    for await (const o of s) outs.push(o.frame ? o.frame.timestampUs : `${o.nodeId}:${o.error.code}`)
    expect(outs).toEqual([1, 'js:ERR_INTERNAL', 3])
    // The iterator stays finished.
    expect(await s.next()).toEqual({ value: undefined, done: true })

    // close(): pending reads finish, pending writes reject, idempotent.
    const c = p.stream({ highWaterMark: 1 })
    const pending = []
    for (let k = 0; k < 6; k++) pending.push(c.write({ samples: Float32Array.from([k]) }).then(() => 'ok', (e) => e.code))
    for (let i = 0; i < 10; i++) await tick()
    c.close()
    c.close()
    const results = await Promise.all(pending)
    expect(results).toContain('ERR_SHUT_DOWN')
    expect(await c.next()).toEqual({ value: undefined, done: true })

    // A stream with nothing written ends at end().
    const e = p.stream()
    const it = e[Symbol.asyncIterator]()
    const first = it.next()
    e.end()
    expect(await first).toEqual({ value: undefined, done: true })
  })
})
