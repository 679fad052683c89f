import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
export const lib = require('../index.js')
const { WebRtcTransport, SignalingServer } = lib

let n = 0
export const uid = (p) => `${p}-${process.pid}-${++n}`

export async function withServer() {
  return SignalingServer.listen({ host: '127.0.0.1', port: 0 })
}

export async function transport(server, peerId, extra = {}) {
  const t = new WebRtcTransport({ signalingUrl: server.url, peerId, bindAddress: '127.0.0.1', ...extra })
  await t.start()
  return t
}

export function once(emitter, name, pred = () => true, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(name, on)
      reject(new Error(`timed out waiting for '${name}'`))
    }, timeoutMs)
    function on(...args) {
      if (!pred(...args)) return
      clearTimeout(timer)
      emitter.off(name, on)
      resolve(args.length > 1 ? args : args[0])
    }
    emitter.on(name, on)
  })
}

export async function until(fn, timeoutMs = 10000, stepMs = 20) {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) throw new Error('condition not reached in time')
    await new Promise((r) => setTimeout(r, stepMs))
  }
}

export async function rejectsWithCode(promiseOrFn, code) {
  let err
  try {
    await (typeof promiseOrFn === 'function' ? promiseOrFn() : promiseOrFn)
  } catch (e) {
    err = e
  }
  if (!err) throw new Error(`expected rejection with ${code}, got success`)
  if (!(err instanceof lib.WebRtcError)) throw new Error(`expected WebRtcError, got ${err && err.stack}`)
  if (err.code !== code) throw new Error(`expected ${code}, got ${err.code}: ${err.message}`)
  return err
}
