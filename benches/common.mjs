// Shared helpers for the benchmarks in this folder: installing the comparison libraries,
// statistics, markdown tables, time limits and process figures. Loopback only: every peer
// connection made here binds to, or is only given candidates on, 127.0.0.1.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url))
export const ROOT_DIR = path.dirname(BENCH_DIR)
const benchRequire = createRequire(path.join(BENCH_DIR, 'package.json'))
const rootRequire = createRequire(path.join(ROOT_DIR, 'package.json'))

export const now = () => performance.now()
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// The library under test, from the repo root (index.js).
export function loadRemotemedia() {
  return rootRequire(path.join(ROOT_DIR, 'index.js'))
}

// Installs benches/package.json's dependencies when benches/node_modules is missing, so the
// root `npm install` stays lean. Returns nothing; failures show up per library in loadOptional.
export function ensureBenchDeps() {
  if (existsSync(path.join(BENCH_DIR, 'node_modules'))) return
  console.error('[bench] benches/node_modules missing: npm install --prefix benches ...')
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  try {
    execFileSync(npm, ['install', '--prefix', BENCH_DIR, '--no-audit', '--no-fund'], {
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: 300_000,
    })
  } catch (e) {
    console.error(`[bench] npm install --prefix benches failed: ${e.message}`)
  }
}

// { mod } or { error } (the reason a comparison library is unavailable, printed in the table).
export function loadOptional(name) {
  try {
    const mod = benchRequire(name)
    let version = '?'
    try {
      version = JSON.parse(readFileSync(path.join(BENCH_DIR, 'node_modules', name, 'package.json'), 'utf8')).version
    } catch {}
    return { mod, version }
  } catch (e) {
    return { error: String(e && e.message ? e.message : e).split('\n')[0] }
  }
}

// Exits the process (code 2) if the whole script runs longer than `ms`. The timer is ref'd on
// purpose: it also keeps Node alive while the only pending work is inside a native addon.
export function processDeadline(ms, label) {
  const t = setTimeout(() => {
    console.error(`[bench] ${label}: overall time limit of ${ms} ms reached, exiting`)
    process.exit(2)
  }, ms)
  return () => clearTimeout(t)
}

// Rejects with a labelled error if `p` does not settle within `ms`.
export function withTimeout(p, ms, label) {
  let t
  return Promise.race([
    p,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${label}`)), ms)
    }),
  ]).finally(() => clearTimeout(t))
}

// Nearest-rank percentile of an ascending array.
export function percentile(sorted, p) {
  if (!sorted.length) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

export function stats(values) {
  const s = [...values].sort((a, b) => a - b)
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1)
  return { n: s.length, p50: percentile(s, 50), p95: percentile(s, 95), min: s[0], max: s[s.length - 1], mean }
}

export const fmt = (x, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '—')

export function markdownTable(headers, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n')
}

export function machineInfo() {
  let cpu = os.cpus()[0]?.model ?? 'unknown'
  try {
    const m = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (m) cpu = m[1].trim()
  } catch {}
  return `${os.cpus().length} CPUs (${cpu}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ${os.platform()} ${os.release()}`
}

// Open file descriptors and OS threads of this process (Linux /proc; null elsewhere).
export function procCounts() {
  try {
    const fds = readdirSync('/proc/self/fd').length
    const threads = Number(/Threads:\s*(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1])
    return { fds, threads }
  } catch {
    return { fds: null, threads: null }
  }
}

// Host-wide UDP datagrams dropped because a socket's receive buffer was full (Linux
// /proc/net/snmp Udp RcvbufErrors; null elsewhere). Only this benchmark uses UDP here.
export function udpRcvbufErrors() {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'))
    const names = lines[0].trim().split(/\s+/)
    const values = lines[1].trim().split(/\s+/)
    return Number(values[names.indexOf('RcvbufErrors')])
  } catch {
    return null
  }
}

export const isLoopbackCandidate = (c) => / 127\.0\.0\.1 /.test(c)

// A promise with its resolve/reject exposed.
export function deferred() {
  let resolve, reject
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

// Runs `node [nodeArgs] script args` and resolves with the JSON object on the last line of its
// stdout ({ error } if it crashed, printed nothing parseable, or ran past timeoutMs). Each
// library is measured in its own process: native addons of different WebRTC stacks loaded into
// one process can clash (OpenSSL, usrsctp), and one crash must not take the others with it.
export function runJsonChild(script, args, { nodeArgs = [], timeoutMs = 300_000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const line = out.trim().split('\n').pop() ?? ''
      try {
        resolve(JSON.parse(line))
      } catch {
        resolve({ error: `child process ended with ${signal ?? `exit code ${code}`} without a result` })
      }
    })
  })
}

// Child side of runJsonChild: prints the result (or { error }) as one JSON line, then exits.
export async function childMain(fn, timeoutMs) {
  const stop = processDeadline(timeoutMs, 'child')
  let out
  try {
    out = await fn()
  } catch (e) {
    out = { error: e && e.message ? e.message : String(e) }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
  stop()
  process.exit(0)
}
