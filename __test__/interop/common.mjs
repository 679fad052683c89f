// Shared helpers of the interop matrix (__test__/interop/<peer>.test.mjs, one file per peer): the
// test signals of every suite (../signals.mjs, re-exported) and the per-cell timings each file
// records (connect and first-message times) into target/interop-timings.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
export * from '../signals.mjs'

// Records one cell's timings (ms), e.g. record('werift', 'connect', 12.3): kept in
// target/interop-timings.json as { peer: { what: [ms, ...] } }.
const TIMINGS = new URL('../../target/interop-timings.json', import.meta.url)
export function record(peer, what, ms) {
  let all = {}
  try {
    all = JSON.parse(readFileSync(TIMINGS, 'utf8'))
  } catch {}
  all[peer] ??= {}
  all[peer][what] ??= []
  all[peer][what].push(Math.round(ms * 10) / 10)
  mkdirSync(new URL('.', TIMINGS), { recursive: true })
  writeFileSync(TIMINGS, JSON.stringify(all, null, 2))
}
