// A long-running js-libp2p node driven by JSON lines: the independent implementation that
// auraed's libp2p swarm is tested against (identify, ping, Kademlia providers and routing).
//
//   node peer.mjs [--listen <multiaddr>]... [--bootstrap <multiaddr with /p2p/>]...
//
// Stack: TCP, Noise, Yamux, identify, ping, and kad-dht on `/ipfs/kad/1.0.0` in server
// mode with `passthroughMapper` (loopback and private addresses stay in the routing table).
//
// Protocol. stdout carries JSON lines only (logs go to stderr: set DEBUG=libp2p:* for
// js-libp2p's own). The first line is one of
//   {"event":"ready","peerId":"12D3...","addrs":["/ip4/.../tcp/.../p2p/12D3..."],
//    "bootstrapped":["12D3..."],"routingTable":["12D3..."]}
//   {"event":"error","error":"..."}      (then exit 1: e.g. a bootstrap peer did not answer)
// Every bootstrap address is dialled before "ready"; "routingTable" is the DHT's table at that
// moment (the node waits up to 10 s for the bootstrap peers to enter it).
// Then each stdin line is one command object; each gets exactly one answer line carrying the
// same "id", either {"id":..,"ok":true,...} or {"id":..,"ok":false,"error":"..."}. Commands run
// concurrently, so answers may come out of order: match them by id.
//   {"id":1,"cmd":"dial","addr":"<multiaddr with /p2p/>","force":false} -> "peerId","remoteAddr"
//        (like js-libp2p, an open connection to that peer is reused unless "force" is true)
//   {"id":2,"cmd":"ping","peer":"<peerId>"}                -> "rttMs" (dials if not connected)
//   {"id":3,"cmd":"identify","peer":"<peerId>"}            -> "peerId","agentVersion",
//        "protocolVersion","protocols" (sorted),"addrs" (the peer store's, after identify),
//        "observedAddr" (how the remote sees us; null when identify gave none)
//   {"id":4,"cmd":"provide","name":"<text>"}               -> "key","sentTo":[peerIds]
//   {"id":5,"cmd":"findProviders","name":"<text>","timeoutMs":10000,"count":1}
//        -> "key","providers":[{"peerId","addrs"}],"timedOut":bool. Stops early once "count"
//        distinct providers are known (optional; default: run the query to its end).
//   {"id":6,"cmd":"getClosestPeers","name":"<text>"}       -> "key","peers":[peerIds]
//   {"id":7,"cmd":"peers"}                                 -> "peers":[{"peerId","addrs"}]
//        (connected peers; addrs are the connections' remote addresses)
//   {"id":8,"cmd":"routingTable"}                          -> "peers":[peerIds]
//   {"id":9,"cmd":"stop"}                                  -> answered, then the node stops
//   {"id":10,"cmd":"localProviders","name":"<text>"}       -> "key","providers":[peerIds]
//        (the provider records this node itself stores for the name: what others'
//        ADD_PROVIDER left here; kad-dht drops a record that carries no address)
// Every command takes an optional "timeoutMs" (default 30000; 10000 for findProviders).
// kad-dht holds every query (provide, findProviders, getClosestPeers) until its routing table
// has a peer: on a node without any, they run into their timeout.
// stdin EOF, SIGTERM and SIGINT stop the node too. After a stop the last line is
// {"event":"stopped"} and the process exits 0.
//
// DHT key of a name (the Rust side must compute the same): the name's UTF-8 bytes are hashed
// with sha2-256 and wrapped as a CID v1 with the raw codec (0x55). Kademlia keys by the CID's
// multihash, so the key on the wire (ADD_PROVIDER / GET_PROVIDERS / FIND_NODE) is
//   0x12 0x20 || sha256(name)          (34 bytes)
// In rust-libp2p: `kad::RecordKey::new(&Multihash::<64>::wrap(0x12, &sha256(name))?.to_bytes())`
// for providers, and the same bytes for `get_closest_peers`. Answers report it as "key" (hex).

import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

const KAD_PROTOCOL = '/ipfs/kad/1.0.0'
const DEFAULT_TIMEOUT_MS = 30_000
const DEFAULT_FIND_TIMEOUT_MS = 10_000
const BOOTSTRAP_TABLE_WAIT_MS = 10_000

/** Writes one JSON line to stdout (the only thing that ever goes there). */
function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function log (...args) {
  process.stderr.write(`[peer.mjs] ${args.join(' ')}\n`)
}

function errorText (err) {
  if (err == null) return 'unknown error'
  const name = err.name != null && err.name !== 'Error' ? `${err.name}: ` : ''
  return `${name}${err.message ?? String(err)}`
}

process.stdout.on('error', (err) => {
  // The reader went away (EPIPE): nobody is listening any more, so stop.
  log('stdout closed:', errorText(err))
  process.exit(1)
})
process.on('unhandledRejection', (err) => log('unhandled rejection:', errorText(err)))

/** The CID of a name: v1, raw codec, sha2-256 of its UTF-8 bytes (see the top comment). */
async function cidOfName (name) {
  if (typeof name !== 'string' || name.length === 0) {
    throw new Error('"name" must be a non-empty string')
  }
  const digest = await sha256.digest(new TextEncoder().encode(name))
  return CID.createV1(raw.code, digest)
}

function hex (bytes) {
  return Buffer.from(bytes).toString('hex')
}

function parsePeer (text) {
  if (typeof text !== 'string') throw new Error('"peer" must be a peer id string')
  return peerIdFromString(text)
}

function timeoutSignal (cmd, fallbackMs) {
  const ms = cmd.timeoutMs ?? fallbackMs
  if (!Number.isFinite(ms) || ms <= 0) throw new Error('"timeoutMs" must be a positive number')
  return AbortSignal.timeout(ms)
}

function isAbort (err, signal) {
  return signal.aborted || err?.name === 'AbortError' || err?.name === 'TimeoutError'
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

const { values: args } = parseArgs({
  options: {
    listen: { type: 'string', multiple: true },
    bootstrap: { type: 'string', multiple: true }
  },
  strict: true
})
const listen = args.listen ?? ['/ip4/127.0.0.1/tcp/0']
const bootstrapAddrs = (args.bootstrap ?? []).map((a) => multiaddr(a))

const node = await createLibp2p({
  addresses: { listen },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({
      protocol: KAD_PROTOCOL,
      clientMode: false,
      peerInfoMapper: passthroughMapper
    })
  }
})
const dht = node.services.dht

/** Peer ids in the DHT routing table (reads kad-dht's internal k-bucket: pinned version). */
function routingTablePeers () {
  const kb = dht.routingTable?.kb
  if (kb == null) return []
  return [...kb.toIterable()].map((contact) => contact.peerId.toString())
}

/** An open connection to `peerId`, dialling it (from the peer store's addresses) if needed. */
async function connectionTo (peerId, signal) {
  const open = node.getConnections(peerId).find((c) => c.status === 'open')
  return open ?? node.dial(peerId, { signal })
}

async function bootstrap () {
  const bootstrapped = []
  for (const addr of bootstrapAddrs) {
    try {
      const conn = await node.dial(addr, { signal: AbortSignal.timeout(DEFAULT_TIMEOUT_MS) })
      bootstrapped.push(conn.remotePeer.toString())
    } catch (err) {
      throw new Error(`bootstrap peer ${addr.toString()} could not be dialled: ${errorText(err)}`)
    }
  }
  const deadline = Date.now() + BOOTSTRAP_TABLE_WAIT_MS
  while (Date.now() < deadline) {
    const table = new Set(routingTablePeers())
    if (bootstrapped.every((id) => table.has(id))) break
    await sleep(50)
  }
  return bootstrapped
}

const commands = {
  async dial (cmd) {
    if (typeof cmd.addr !== 'string') throw new Error('"addr" must be a multiaddr string')
    const conn = await node.dial(multiaddr(cmd.addr), {
      signal: timeoutSignal(cmd, DEFAULT_TIMEOUT_MS),
      force: cmd.force === true
    })
    return { peerId: conn.remotePeer.toString(), remoteAddr: conn.remoteAddr.toString() }
  },

  async ping (cmd) {
    const rttMs = await node.services.ping.ping(parsePeer(cmd.peer), {
      signal: timeoutSignal(cmd, DEFAULT_TIMEOUT_MS)
    })
    return { rttMs }
  },

  async identify (cmd) {
    const peerId = parsePeer(cmd.peer)
    const signal = timeoutSignal(cmd, DEFAULT_TIMEOUT_MS)
    const conn = await connectionTo(peerId, signal)
    let result = null
    let identifyError = null
    try {
      result = await node.services.identify.identify(conn, { signal })
    } catch (err) {
      // The identify run on connection open may hold the stream; its result lands in the
      // peer store, so wait for that instead.
      identifyError = err
    }
    let agentVersion
    let peer
    for (;;) {
      peer = await node.peerStore.get(peerId)
      agentVersion = peer.metadata.get('AgentVersion')
      if (agentVersion != null || result != null) break
      if (signal.aborted) throw new Error(`identify failed: ${errorText(identifyError)}`)
      await sleep(50)
    }
    const protocolVersion = peer.metadata.get('ProtocolVersion')
    const decode = (bytes) => (bytes == null ? null : new TextDecoder().decode(bytes))
    return {
      peerId: peerId.toString(),
      agentVersion: decode(agentVersion),
      protocolVersion: decode(protocolVersion),
      protocols: [...peer.protocols].sort(),
      addrs: peer.addresses.map(({ multiaddr: ma }) => ma.toString()),
      observedAddr: result?.observedAddr?.toString() ?? null
    }
  },

  async provide (cmd) {
    const cid = await cidOfName(cmd.name)
    const signal = timeoutSignal(cmd, DEFAULT_TIMEOUT_MS)
    const sentTo = new Set()
    const errors = []
    for await (const event of dht.provide(cid, { signal })) {
      if (event.name === 'PEER_RESPONSE' && event.messageName === 'ADD_PROVIDER') {
        sentTo.add(event.from.toString())
      } else if (event.name === 'QUERY_ERROR') {
        errors.push(`${event.from}: ${errorText(event.error)}`)
      }
    }
    return { key: hex(cid.multihash.bytes), sentTo: [...sentTo], errors }
  },

  async findProviders (cmd) {
    const cid = await cidOfName(cmd.name)
    const signal = timeoutSignal(cmd, DEFAULT_FIND_TIMEOUT_MS)
    const wanted = cmd.count ?? Infinity
    const providers = new Map()
    let timedOut = false
    try {
      for await (const event of dht.findProviders(cid, { signal })) {
        if (event.name !== 'PROVIDER') continue
        for (const info of event.providers) {
          const id = info.id.toString()
          const addrs = providers.get(id) ?? new Set()
          info.multiaddrs.forEach((ma) => addrs.add(ma.toString()))
          providers.set(id, addrs)
        }
        if (providers.size >= wanted) break
      }
    } catch (err) {
      if (!isAbort(err, signal)) throw err
      timedOut = true
    }
    return {
      key: hex(cid.multihash.bytes),
      providers: [...providers].map(([peerId, addrs]) => ({ peerId, addrs: [...addrs] })),
      timedOut
    }
  },

  async getClosestPeers (cmd) {
    const cid = await cidOfName(cmd.name)
    const key = cid.multihash.bytes
    const peers = new Set()
    for await (const event of dht.getClosestPeers(key, { signal: timeoutSignal(cmd, DEFAULT_TIMEOUT_MS) })) {
      if (event.name === 'FINAL_PEER') peers.add(event.peer.id.toString())
    }
    return { key: hex(key), peers: [...peers] }
  },

  async peers () {
    const peers = new Map()
    for (const conn of node.getConnections()) {
      const id = conn.remotePeer.toString()
      const addrs = peers.get(id) ?? []
      addrs.push(conn.remoteAddr.toString())
      peers.set(id, addrs)
    }
    return { peers: [...peers].map(([peerId, addrs]) => ({ peerId, addrs })) }
  },

  async routingTable () {
    return { peers: routingTablePeers() }
  },

  async localProviders (cmd) {
    const cid = await cidOfName(cmd.name)
    // kad-dht's own provider store (internal: pinned version, like routingTablePeers).
    const store = dht.providers
    if (store?.getProviders == null) throw new Error('this kad-dht version has no provider store to read')
    const peers = await store.getProviders(cid, { signal: timeoutSignal(cmd, DEFAULT_TIMEOUT_MS) })
    return { key: hex(cid.multihash.bytes), providers: peers.map((id) => id.toString()) }
  }
}

let stopping = null

/** Stops the node once, prints {"event":"stopped"} and exits. */
function shutdown (reason) {
  if (stopping != null) return stopping
  log('stopping:', reason)
  stopping = (async () => {
    let code = 0
    try {
      await Promise.race([
        node.stop(),
        sleep(10_000).then(() => { throw new Error('node.stop() took more than 10 s') })
      ])
    } catch (err) {
      log('stop failed:', errorText(err))
      code = 1
    }
    emit({ event: 'stopped' })
    process.exit(code)
  })()
  return stopping
}

async function handleLine (line) {
  if (line.trim() === '') return
  let cmd
  try {
    cmd = JSON.parse(line)
    if (cmd === null || typeof cmd !== 'object' || Array.isArray(cmd)) throw new Error('not a JSON object')
  } catch (err) {
    emit({ id: null, ok: false, error: `bad command line: ${errorText(err)}` })
    return
  }
  const id = cmd.id ?? null
  if (cmd.cmd === 'stop') {
    emit({ id, ok: true })
    await shutdown('stop command')
    return
  }
  const run = Object.hasOwn(commands, cmd.cmd) ? commands[cmd.cmd] : null
  if (run == null) {
    emit({ id, ok: false, error: `unknown command ${JSON.stringify(cmd.cmd)}` })
    return
  }
  try {
    emit({ id, ok: true, ...(await run(cmd)) })
  } catch (err) {
    emit({ id, ok: false, error: errorText(err) })
  }
}

try {
  const bootstrapped = await bootstrap()
  emit({
    event: 'ready',
    peerId: node.peerId.toString(),
    addrs: node.getMultiaddrs().map((ma) => ma.toString()),
    bootstrapped,
    routingTable: routingTablePeers()
  })
} catch (err) {
  emit({ event: 'error', error: errorText(err) })
  await node.stop().catch(() => {})
  process.exit(1)
}

process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', (line) => { handleLine(line) })
lines.on('close', () => shutdown('stdin closed'))
