import { describe, it, expect } from 'vitest'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { lib } from './helpers.mjs'

const { Pipeline } = lib
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

function tone(freq, n, amp, rate = 48000) {
  return Float32Array.from({ length: n }, (_, i) => amp * Math.sin((2 * Math.PI * freq * i) / rate))
}
const rms = (x) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length)

async function rejectsCode(p, code) {
  await expect(p).rejects.toMatchObject({ code })
}

describe('Pipeline from a manifest', () => {
  it('runs the shipped examples: loopback returns the frame, vad reports speech-start and speech-end', async () => {
    const loop = await Pipeline.fromManifest(path.join(root, 'examples/loopback.yaml'))
    const input = tone(440, 960, 0.5)
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
    await feed(tone(300, 960, 0.5), 30) // 600 ms of loud tone
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
    const x = tone(1000, 960, 0.5)
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
