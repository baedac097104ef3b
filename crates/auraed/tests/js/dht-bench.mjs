// The js-libp2p side of bench/peer.rs: an N-node Kademlia network of js-libp2p nodes in this
// one Node process, on loopback, timing provider lookups.
//
//   node dht-bench.mjs --nodes 64 --pairs '[[from,to],...]' [--bootstrap 3] [--settle-ms 5000]
//                      [--budget-ms 300000]
//
// Each node: TCP on 127.0.0.1, Noise, Yamux, identify, ping, and kad-dht in server mode on a
// private protocol name (/aurae-bench-js/kad/1.0.0, so nothing leaves the machine) with
// `passthroughMapper` (loopback addresses stay in the routing table). Node i (i >= 1) dials
// `--bootstrap` random earlier nodes (fewer when there are fewer), as the Rust side does, and
// at once (as auraed does on its first connection) puts its name record under
// `/aurae/name/n<i>@bench`. After `--settle-ms`, node i provides `svc@n<i>@bench` (all nodes
// at once), and after another settle each pair [from, to] is resolved from node `from` the
// way auraed's Discovery.Resolve does: the name record `/aurae/name/n<to>@bench` (dht.get),
// then the providers of `svc@n<to>@bench` (findProviders), each query run to its end (as
// rust-libp2p's get_record and get_providers are), one pair at a time. Each query gives up
// after 30 s (its time counts as it is); pairs not started within `--budget-ms` of the first
// lookup are left out (the report says how many ran): 64 nodes on one event loop can be slow.
//
// Name records: js-kad-dht refuses keys of a namespace it has no validator for, so the
// `aurae` namespace gets one here that accepts any non-empty value (it checks no signature;
// auraed checks an ed25519 signature, a few microseconds) and a selector taking the first.
// The value is JSON {name, peer, addrs}, about the size of auraed's signed record.
//
// Key of a provided name: sha2-256 of its UTF-8 bytes as a CID v1 (raw codec); Kademlia keys
// by the multihash, 0x12 0x20 || sha256(name), the same bytes as auraed's
// `records::provider_key`.
//
// stdout: one JSON line at the end,
//   {"nodes":64,"pairs":128,"lookups":[{"from":..,"to":..,"nameMs":..,"nameFound":bool,
//    "providersMs":..,"found":bool}],"providedMs":..,"lookupCpuShare":..,
//    "routingTable":{"min":..,"median":..,"max":..}}
// (lookupCpuShare: CPU time of this process over wall time while the lookups ran; near 1.0
// means the one event loop all nodes share was saturated.)
// progress goes to stderr. Exits 1 on any error; bounded by a 10 min watchdog.

import { parseArgs } from 'node:util'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

const KAD_PROTOCOL = '/aurae-bench-js/kad/1.0.0'
const LOOKUP_TIMEOUT_MS = 30_000

function log (...args) {
  process.stderr.write(`[dht-bench.mjs] ${args.join(' ')}\n`)
}

const watchdog = setTimeout(() => {
  log('still running after 10 min: giving up')
  process.exit(1)
}, 900_000)

const { values: args } = parseArgs({
  options: {
    nodes: { type: 'string', default: '64' },
    pairs: { type: 'string' },
    bootstrap: { type: 'string', default: '3' },
    'settle-ms': { type: 'string', default: '5000' },
    'budget-ms': { type: 'string', default: '300000' },
    seed: { type: 'string', default: '7' }
  },
  strict: true
})
const count = Number.parseInt(args.nodes, 10)
const fanout = Number.parseInt(args.bootstrap, 10)
const settleMs = Number.parseInt(args['settle-ms'], 10)
const budgetMs = Number.parseInt(args['budget-ms'], 10)
if (!(count >= 2) || !(fanout >= 1) || !(settleMs >= 0)) {
  throw new Error('--nodes must be >= 2, --bootstrap >= 1, --settle-ms >= 0')
}
const pairs = JSON.parse(args.pairs ?? '[]')
if (!Array.isArray(pairs) || pairs.length === 0) throw new Error('--pairs must be a non-empty JSON array')
for (const pair of pairs) {
  if (!Array.isArray(pair) || pair.length !== 2 || pair.some((n) => !Number.isInteger(n) || n < 0 || n >= count)) {
    throw new Error(`bad pair ${JSON.stringify(pair)} for ${count} nodes`)
  }
}

/** mulberry32: a small seeded generator, so that a run's topology can be repeated. */
function rng (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const random = rng(Number.parseInt(args.seed, 10))

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function cidOfName (name) {
  const digest = await sha256.digest(new TextEncoder().encode(name))
  return CID.createV1(raw.code, digest)
}

/** The `aurae` namespace's validator: any non-empty value (see the top comment). */
async function acceptNameRecord (_key, value) {
  if (value == null || value.length === 0) throw new Error('empty name record')
}

function nameKey (i) {
  return new TextEncoder().encode(`/aurae/name/n${i}@bench`)
}

/** Puts node i's name record, to the end of the put query. */
async function publishName (node, i) {
  const value = new TextEncoder().encode(JSON.stringify({
    name: `n${i}@bench`,
    peer: node.peerId.toString(),
    addrs: node.getMultiaddrs().map((ma) => ma.toString())
  }))
  for await (const _ of node.services.dht.put(nameKey(i), value, { signal: AbortSignal.timeout(60_000) })) {
    // Run the put to its end.
  }
}

/** Dials `addr`, up to 3 tries of 30 s: the shared event loop may be too busy for one. */
async function dialWithRetries (node, addr) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await node.dial(addr, { signal: AbortSignal.timeout(30_000) })
    } catch (err) {
      if (attempt === 3) throw err
      log(`dial ${addr} failed (try ${attempt} of 3): ${err?.message ?? err}`)
    }
  }
}

async function startNode () {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    // Every node is on 127.0.0.1: js-libp2p's per-host inbound rate limit (5 a second)
    // would reset the dials of a loopback network, so loopback is allowed. auraed's swarm
    // has no per-host rate limit (at most 64 pending inbound connections).
    connectionManager: {
      allow: ['/ip4/127.0.0.1'],
      inboundConnectionThreshold: 1000,
      maxIncomingPendingConnections: 64,
      // 64 nodes share one event loop: a handshake may wait for it longer than the 10 s
      // default.
      inboundUpgradeTimeout: 30_000
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: KAD_PROTOCOL,
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        validators: { aurae: acceptNameRecord },
        selectors: { aurae: () => 0 }
      })
    }
  })
}

function routingTableSize (node) {
  return node.services.dht.routingTable?.size ?? 0
}

const nodes = []
const published = []
try {
  for (let i = 0; i < count; i++) {
    const node = await startNode()
    const earlier = [...nodes.keys()]
    for (let b = 0; b < Math.min(fanout, earlier.length); b++) {
      const pick = earlier.splice(Math.floor(random() * earlier.length), 1)[0]
      await dialWithRetries(node, nodes[pick].getMultiaddrs()[0])
    }
    // As peer.mjs does: wait (at most 10 s) for the bootstrap peers to enter the routing
    // table before the next node starts, so that the joins do not pile up on the event loop.
    const deadline = Date.now() + 10_000
    while (routingTableSize(node) < Math.min(fanout, nodes.length) && Date.now() < deadline) {
      await sleep(50)
    }
    published.push(publishName(node, nodes.length))
    nodes.push(node)
  }
  log(`${count} nodes started; settling ${settleMs} ms`)
  await sleep(settleMs)
  await Promise.all(published)

  const provideStart = performance.now()
  await Promise.all(nodes.map(async (node, i) => {
    const cid = await cidOfName(`svc@n${i}@bench`)
    for await (const _ of node.services.dht.provide(cid, { signal: AbortSignal.timeout(60_000) })) {
      // Run the provide to its end.
    }
  }))
  const providedMs = performance.now() - provideStart
  log(`provided in ${providedMs.toFixed(0)} ms; settling ${settleMs} ms`)
  await sleep(settleMs)

  const lookups = []
  const cpuBefore = process.cpuUsage()
  const lookupsStart = performance.now()
  for (const [from, to] of pairs) {
    if (performance.now() - lookupsStart > budgetMs) break
    const cid = await cidOfName(`svc@n${to}@bench`)
    const wanted = nodes[to].peerId.toString()
    let nameFound = false
    const nameStart = performance.now()
    try {
      const signal = AbortSignal.timeout(LOOKUP_TIMEOUT_MS)
      for await (const event of nodes[from].services.dht.get(nameKey(to), { signal })) {
        if (event.name === 'VALUE') {
          nameFound ||= JSON.parse(new TextDecoder().decode(event.value)).peer === wanted
        }
      }
    } catch (err) {
      log(`name lookup ${from} -> ${to} failed: ${err?.message ?? err}`)
    }
    const nameMs = performance.now() - nameStart
    let found = false
    const start = performance.now()
    try {
      const signal = AbortSignal.timeout(LOOKUP_TIMEOUT_MS)
      for await (const event of nodes[from].services.dht.findProviders(cid, { signal })) {
        if (event.name === 'PROVIDER' && event.providers.some((p) => p.id.toString() === wanted)) {
          found = true
        }
      }
    } catch (err) {
      log(`provider lookup ${from} -> ${to} failed: ${err?.message ?? err}`)
    }
    lookups.push({ from, to, nameMs, nameFound, providersMs: performance.now() - start, found })
  }
  // The share of one core the process used while the lookups ran: near 1, the one event
  // loop all the nodes share was busy the whole time.
  const cpu = process.cpuUsage(cpuBefore)
  const lookupCpuShare = (cpu.user + cpu.system) / 1000 / (performance.now() - lookupsStart)
  const tables = nodes.map(routingTableSize).sort((a, b) => a - b)
  process.stdout.write(JSON.stringify({
    nodes: count,
    pairs: pairs.length,
    lookups,
    providedMs,
    lookupCpuShare,
    routingTable: { min: tables[0], median: tables[Math.floor(tables.length / 2)], max: tables[tables.length - 1] }
  }) + '\n')
} catch (err) {
  log(`failed: ${err?.stack ?? err}`)
  process.exitCode = 1
} finally {
  await Promise.race([Promise.all(nodes.map((node) => node.stop().catch(() => {}))), sleep(10_000)])
  clearTimeout(watchdog)
  // Queries still in flight after a failure would keep the process alive.
  process.exit(process.exitCode ?? 0)
}
