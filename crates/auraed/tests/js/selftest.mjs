// Proves peer.mjs against itself before any Rust code is tested against it: three peers on
// loopback (B and C bootstrap to A), a provider record put by B is found by C and A, and
// dial, ping, identify, getClosestPeers, peers, error answers and both ways of stopping work.
//
//   "$(scripts/js-deps)" crates/auraed/tests/js/selftest.mjs
//
// Prints one line per check and a closing "selftest: N passed, N failed"; exits non-zero on
// any failure. Bounded: everything is killed after 90 s.

import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const PEER = join(dirname(fileURLToPath(import.meta.url)), 'peer.mjs')
const peers = []
let passed = 0
let failed = 0

const deadline = setTimeout(() => {
  console.log('selftest: FAIL: still running after 90 s')
  for (const p of peers) p.child.kill('SIGKILL')
  process.exit(1)
}, 90_000)

/** One peer.mjs process: its ready line, and `call(cmd)` that resolves with the answer. */
function startPeer (label, bootstrap = []) {
  const argv = [PEER]
  for (const addr of bootstrap) argv.push('--bootstrap', addr)
  const child = spawn(process.execPath, argv, { stdio: ['pipe', 'pipe', 'pipe'] })
  const peer = { label, child, pending: new Map(), nextId: 1, events: [], stderr: '' }
  peers.push(peer)
  child.stderr.on('data', (d) => { peer.stderr += d })
  peer.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  let onReady
  peer.ready = new Promise((resolve, reject) => {
    onReady = { resolve, reject }
    peer.exited.then(({ code }) => reject(new Error(`${label} exited (${code}) before ready:\n${peer.stderr}`)))
  })
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line)
    if (msg.event != null) {
      peer.events.push(msg)
      if (msg.event === 'ready') onReady.resolve(msg)
      if (msg.event === 'error') onReady.reject(new Error(`${label}: ${msg.error}`))
      return
    }
    const waiter = peer.pending.get(msg.id)
    if (waiter == null) throw new Error(`${label}: answer to unknown id ${msg.id}: ${line}`)
    peer.pending.delete(msg.id)
    waiter(msg)
  })
  peer.call = (cmd) => new Promise((resolve) => {
    const id = peer.nextId++
    peer.pending.set(id, resolve)
    child.stdin.write(JSON.stringify({ id, ...cmd }) + '\n')
  })
  return peer
}

function check (what, ok, detail = '') {
  if (ok) passed++
  else failed++
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail === '' ? '' : `: ${detail}`}`)
}

/** Calls `cmd` on `peer`, checks that it answered ok, returns the answer. */
async function expectOk (peer, cmd) {
  const started = Date.now()
  const answer = await peer.call(cmd)
  check(`${peer.label} ${cmd.cmd} answers ok (${Date.now() - started} ms)`, answer.ok === true,
    answer.ok === true ? '' : answer.error)
  return answer
}

try {
  const a = startPeer('A')
  const readyA = await a.ready
  check('A is ready with a 12D3 (Ed25519) peer id and a /p2p/ address',
    readyA.peerId.startsWith('12D3') && readyA.addrs.some((x) => x.endsWith(`/p2p/${readyA.peerId}`)),
    JSON.stringify(readyA))
  const b = startPeer('B', [readyA.addrs[0]])
  const c = startPeer('C', [readyA.addrs[0]])
  const [readyB, readyC] = await Promise.all([b.ready, c.ready])
  for (const [label, r] of [['B', readyB], ['C', readyC]]) {
    check(`${label} bootstrapped to A and has A in its routing table`,
      r.bootstrapped.includes(readyA.peerId) && r.routingTable.includes(readyA.peerId), JSON.stringify(r))
  }

  const name = `aurae-selftest-${randomBytes(6).toString('hex')}`
  const provided = await expectOk(b, { cmd: 'provide', name })
  check('B sent its provider record to A', provided.sentTo?.includes(readyA.peerId), JSON.stringify(provided))
  const expectedKey = '1220' + createHash('sha256').update(name, 'utf8').digest('hex')
  check('the key is 0x12 0x20 + sha256(name) (the multihash of the raw CID v1)',
    provided.key === expectedKey, `${provided.key} (expected ${expectedKey})`)

  for (const finder of [c, a]) {
    const found = await expectOk(finder, { cmd: 'findProviders', name, timeoutMs: 10_000 })
    const hit = found.providers?.find((p) => p.peerId === readyB.peerId)
    check(`${finder.label} finds B as the provider, with B's addresses`,
      hit != null && hit.addrs.length > 0 && found.key === provided.key, JSON.stringify(found))
  }
  const missing = await expectOk(c, { cmd: 'findProviders', name: `${name}-never-provided`, timeoutMs: 3_000 })
  check('a name nobody provides has no providers', missing.providers?.length === 0, JSON.stringify(missing))

  const dialled = await expectOk(c, { cmd: 'dial', addr: readyB.addrs[0] })
  check('C dials B and reaches B\'s peer id', dialled.peerId === readyB.peerId, JSON.stringify(dialled))
  const pinged = await expectOk(c, { cmd: 'ping', peer: readyB.peerId })
  check('C pings B', Number.isFinite(pinged.rttMs) && pinged.rttMs >= 0, JSON.stringify(pinged))

  const id = await expectOk(c, { cmd: 'identify', peer: readyB.peerId })
  const needed = ['/ipfs/id/1.0.0', '/ipfs/kad/1.0.0', '/ipfs/ping/1.0.0']
  check('C identifies B: kad, identify and ping protocols and a js-libp2p agent',
    needed.every((p) => id.protocols?.includes(p)) && /^js-libp2p\//.test(id.agentVersion ?? '') &&
      id.addrs?.length > 0, JSON.stringify(id))

  const closest = await expectOk(c, { cmd: 'getClosestPeers', name })
  check('C\'s closest peers to the name include A and B',
    closest.peers?.includes(readyA.peerId) && closest.peers?.includes(readyB.peerId), JSON.stringify(closest))

  const connected = await expectOk(a, { cmd: 'peers' })
  const ids = connected.peers?.map((p) => p.peerId) ?? []
  check('A is connected to B and C', ids.includes(readyB.peerId) && ids.includes(readyC.peerId), JSON.stringify(connected))

  const table = await expectOk(a, { cmd: 'routingTable' })
  check('A has B and C in its routing table',
    table.peers?.includes(readyB.peerId) && table.peers?.includes(readyC.peerId), JSON.stringify(table))

  const again = await expectOk(c, { cmd: 'dial', addr: readyB.addrs[0], force: true })
  const fromC = await expectOk(c, { cmd: 'peers' })
  const toB = fromC.peers?.find((p) => p.peerId === readyB.peerId)
  check('a forced dial opens a second connection to B', again.peerId === readyB.peerId &&
    toB?.addrs.length >= 2, JSON.stringify(fromC))
  const bad = await c.call({ cmd: 'dial', addr: '/ip4/127.0.0.1/tcp/1/p2p/' + readyB.peerId, force: true, timeoutMs: 5_000 })
  check('a dial to a closed port answers ok:false with an error', bad.ok === false && bad.error?.length > 0, JSON.stringify(bad))
  const unknown = await c.call({ cmd: 'fly' })
  check('an unknown command answers ok:false', unknown.ok === false, JSON.stringify(unknown))

  const stopAnswer = await a.call({ cmd: 'stop' })
  check('A answers the stop command', stopAnswer.ok === true, JSON.stringify(stopAnswer))
  b.child.stdin.end()
  c.child.stdin.end()
  for (const [p, how] of [[a, 'the stop command'], [b, 'stdin EOF'], [c, 'stdin EOF']]) {
    const { code, signal } = await p.exited
    check(`${p.label} stops cleanly on ${how} (exit 0, last line "stopped")`,
      code === 0 && p.events.at(-1)?.event === 'stopped', `code=${code} signal=${signal}`)
  }
} catch (err) {
  check('selftest ran to its end', false, err?.stack ?? String(err))
  for (const p of peers) if (p.stderr !== '') console.log(`--- ${p.label} stderr\n${p.stderr}`)
} finally {
  clearTimeout(deadline)
  for (const p of peers) if (p.child.exitCode == null && p.child.signalCode == null) p.child.kill('SIGKILL')
}

console.log(`selftest: ${passed} passed, ${failed} failed`)
process.exit(failed === 0 && passed > 0 ? 0 : 1)
