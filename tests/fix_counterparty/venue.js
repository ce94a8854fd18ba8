'use strict'
// The FIX 4.4 counterparty of jetexec's FIX venue tests: an acceptor on jspurefix (a TypeScript FIX
// engine, independent of the QuickFIX engine the venue worker uses) around a small matching executor.
//
//   node venue.js --port P --control-port C --store DIR [--sender VENUE] [--target JETEXEC]
//                 [--symbols '{"AAPL.OQ":"190.00"}']
//
// Session layer (logon, heartbeats, test requests, sequence numbers in a file store, ResendRequest
// and gap fill with PossDupFlag) is jspurefix's own. The executor:
//   NewOrderSingle (D)   MARKET: filled at the symbol's price in two executions (a partial, then the
//                        rest); LIMIT: filled at once if it crosses the price, else rests.
//                        A ClOrdID seen before is refused (OrdRejReason 6); every D is counted.
//   OrderCancelReplaceRequest (G)  a live LIMIT re-priced/re-sized under its new ClOrdID
//                        (ExecType 5); an unknown or closed order gets OrderCancelReject (9).
//   OrderCancelRequest (F)         ExecType 4; unknown or closed: OrderCancelReject (9).
//   OrderStatusRequest (H)         ExecType I with the order's state; unknown: OrdStatus 8,
//                        OrdRejReason 5.
// The control port (127.0.0.1, one JSON object a line, one answer a line) lets a test move the
// market and look inside: {"cmd":"price","symbol":S,"price":P} sets a price and fills what it
// crosses; {"cmd":"fill","symbol":S,"qty":Q[,"order":ID]} fills resting orders of S (or the one first sent
// as ID) at their limit up to Q (partial fills); {"cmd":"orders"} lists every order and how often its ClOrdID arrived;
// {"cmd":"stats"}; {"cmd":"drop"} closes the FIX connection from this side.
require('reflect-metadata')
const net = require('net')
const path = require('path')
const { SessionLauncher, AsciiSession, MsgType, FixMsgAsciiStoreResend, FixMsgStoreRecord } = require('jspurefix')

function args () {
  const a = { port: 0, controlPort: 0, store: '', sender: 'VENUE', target: 'JETEXEC', symbols: '{}', heartbeat: 30 }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '')
    const v = argv[i + 1]
    if (k === 'port') a.port = Number(v)
    else if (k === 'control-port') a.controlPort = Number(v)
    else if (k === 'store') a.store = v
    else if (k === 'sender') a.sender = v
    else if (k === 'target') a.target = v
    else if (k === 'symbols') a.symbols = v
    else if (k === 'heartbeat') a.heartbeat = Number(v)
    else throw new Error(`unknown option --${k}`)
  }
  if (!a.port || !a.controlPort || !a.store) throw new Error('--port, --control-port and --store are required')
  return a
}

// Decimal-safe arithmetic on quantities and prices: integers of 1e-8.
const SCALE = 100000000n
function toUnits (x) {
  const s = String(x)
  const neg = s.startsWith('-')
  const [i, f = ''] = (neg ? s.slice(1) : s).split('.')
  const u = BigInt(i || '0') * SCALE + BigInt((f + '00000000').slice(0, 8))
  return neg ? -u : u
}
function fromUnits (u) {
  const neg = u < 0n
  const a = neg ? -u : u
  const i = a / SCALE
  let f = (a % SCALE).toString().padStart(8, '0').replace(/0+$/, '')
  return (neg ? '-' : '') + i.toString() + (f ? '.' + f : '')
}

class Executor {
  constructor (prices) {
    this.prices = new Map(Object.entries(prices).map(([s, p]) => [s, toUnits(p)]))
    this.orders = new Map() // by current ClOrdID
    this.arrivals = new Map() // ClOrdID -> how many NewOrderSingle carried it
    this.byOrderId = new Map()
    this.seq = 0
    this.execSeq = 0
    this.duplicates = 0
    this.session = null
    this.unsent = 0
    this.sent = new Map() // MsgSeqNum -> the application message sent under it (for resends)
  }

  send (type, body) {
    if (!this.session) { this.unsent++; return }
    this.session.send(type, body, (err, result) => {
      const seq = result?.header?.MsgSeqNum
      if (!err && seq) this.sent.set(seq, { type, body, ts: new Date() })
    })
  }

  sentBetween (from, to) {
    const out = []
    for (let seq = from; seq <= to; seq++) {
      const m = this.sent.get(seq)
      if (m) out.push(new FixMsgStoreRecord(m.type, m.ts, seq, { ...m.body }))
    }
    return out
  }

  execId () { return `E${++this.execSeq}` }

  report (o, execType, extra = {}) {
    const avg = o.cum > 0n ? o.notional * SCALE / o.cum : 0n
    this.send(MsgType.ExecutionReport, {
      OrderID: o.orderId,
      ClOrdID: o.clOrdId,
      ...(o.origClOrdId ? { OrigClOrdID: o.origClOrdId } : {}),
      ExecID: this.execId(),
      ExecType: execType,
      OrdStatus: o.status,
      Instrument: { Symbol: o.symbol },
      Side: o.side,
      OrderQtyData: { OrderQty: Number(fromUnits(o.qty)) },
      OrdType: o.ordType,
      ...(o.price !== null ? { Price: Number(fromUnits(o.price)) } : {}),
      LeavesQty: Number(fromUnits(o.live ? o.qty - o.cum : 0n)),
      CumQty: Number(fromUnits(o.cum)),
      AvgPx: Number(fromUnits(avg)),
      TransactTime: new Date(),
      ...extra
    })
  }

  reject (view, clOrdId, reason, text) {
    this.send(MsgType.ExecutionReport, {
      OrderID: 'NONE',
      ClOrdID: clOrdId,
      ExecID: this.execId(),
      ExecType: '8',
      OrdStatus: '8',
      OrdRejReason: reason,
      Instrument: { Symbol: view.Instrument?.Symbol ?? '' },
      Side: view.Side ?? '1',
      LeavesQty: 0,
      CumQty: 0,
      AvgPx: 0,
      Text: text,
      TransactTime: new Date()
    })
  }

  fill (o, qty, px) {
    o.cum += qty
    o.notional += qty * px / SCALE
    o.status = o.cum >= o.qty ? '2' : '1'
    o.live = o.cum < o.qty
    this.report(o, 'F', { LastQty: Number(fromUnits(qty)), LastPx: Number(fromUnits(px)) })
  }

  crosses (o, px) {
    return o.side === '1' ? o.price >= px : o.price <= px
  }

  onNew (m) {
    const clOrdId = m.ClOrdID
    this.arrivals.set(clOrdId, (this.arrivals.get(clOrdId) || 0) + 1)
    if (this.orders.has(clOrdId) || this.arrivals.get(clOrdId) > 1) {
      this.duplicates++
      return this.reject(m, clOrdId, 6, 'duplicate ClOrdID')
    }
    const symbol = m.Instrument?.Symbol
    const px = this.prices.get(symbol)
    const qty = toUnits(m.OrderQtyData?.OrderQty ?? 0)
    if (px === undefined) return this.reject(m, clOrdId, 1, `unknown symbol ${symbol}`)
    if (qty <= 0n) return this.reject(m, clOrdId, 13, 'quantity must be > 0')
    if (m.OrdType === '2' && !(m.Price > 0)) return this.reject(m, clOrdId, 99, 'LIMIT needs a price')
    const o = {
      orderId: `O${++this.seq}`, clOrdId, origClOrdId: null, symbol, side: m.Side, ordType: m.OrdType,
      qty, price: m.OrdType === '2' ? toUnits(m.Price) : null, cum: 0n, notional: 0n, status: '0', live: true, history: [clOrdId]
    }
    this.orders.set(clOrdId, o)
    this.byOrderId.set(o.orderId, o)
    this.report(o, '0')
    if (o.ordType === '1') {
      const first = (qty / 2n / SCALE) * SCALE // whole units: the venue fills in round lots
      if (first > 0n && first < qty) this.fill(o, first, px)
      this.fill(o, o.qty - o.cum, px)
    } else if (this.crosses(o, px)) {
      this.fill(o, o.qty, o.price)
    }
  }

  find (clOrdId) {
    const direct = this.orders.get(clOrdId)
    if (direct) return direct
    for (const o of this.orders.values()) if (o.history.includes(clOrdId)) return o
    return null
  }

  cancelReject (m, responseTo, reason, text) {
    this.send(MsgType.OrderCancelReject, {
      OrderID: m.OrderID || 'NONE',
      ClOrdID: m.ClOrdID,
      OrigClOrdID: m.OrigClOrdID,
      OrdStatus: reason === 1 ? '8' : (this.find(m.OrigClOrdID)?.status ?? '8'),
      CxlRejResponseTo: responseTo,
      CxlRejReason: reason,
      Text: text,
      TransactTime: new Date()
    })
  }

  onReplace (m) {
    const o = this.find(m.OrigClOrdID)
    if (!o || o.clOrdId !== m.OrigClOrdID) return this.cancelReject(m, '2', 1, 'unknown order')
    if (!o.live) return this.cancelReject(m, '2', 0, 'too late to replace: order closed')
    if (o.ordType !== '2') return this.cancelReject(m, '2', 99, 'only LIMIT orders can be replaced')
    const qty = m.OrderQtyData?.OrderQty !== undefined ? toUnits(m.OrderQtyData.OrderQty) : o.qty
    if (qty <= o.cum) return this.cancelReject(m, '2', 99, 'new quantity not above the filled quantity')
    this.orders.delete(o.clOrdId)
    o.origClOrdId = o.clOrdId
    o.clOrdId = m.ClOrdID
    o.history.push(m.ClOrdID)
    this.orders.set(o.clOrdId, o)
    if (m.Price !== undefined) o.price = toUnits(m.Price)
    o.qty = qty
    this.report(o, '5')
    const px = this.prices.get(o.symbol)
    if (this.crosses(o, px)) this.fill(o, o.qty - o.cum, o.price)
  }

  onCancel (m) {
    const o = this.find(m.OrigClOrdID)
    if (!o) return this.cancelReject(m, '1', 1, 'unknown order')
    if (!o.live) return this.cancelReject(m, '1', 0, 'too late to cancel: order closed')
    o.live = false
    o.status = '4'
    this.orders.delete(o.clOrdId)
    o.origClOrdId = o.clOrdId
    o.clOrdId = m.ClOrdID
    o.history.push(m.ClOrdID)
    this.orders.set(o.clOrdId, o)
    this.report(o, '4')
  }

  onStatus (m) {
    const o = this.find(m.ClOrdID)
    if (!o) {
      return this.send(MsgType.ExecutionReport, {
        OrderID: 'NONE', ClOrdID: m.ClOrdID, ExecID: this.execId(), ExecType: 'I', OrdStatus: '8', OrdRejReason: 5,
        Instrument: { Symbol: m.Instrument?.Symbol ?? '' }, Side: m.Side ?? '1', LeavesQty: 0, CumQty: 0, AvgPx: 0,
        Text: 'unknown order', TransactTime: new Date()
      })
    }
    this.report(o, 'I', m.OrdStatusReqID ? { OrdStatusReqID: m.OrdStatusReqID } : {})
  }

  setPrice (symbol, price) {
    const px = toUnits(price)
    this.prices.set(symbol, px)
    let n = 0
    for (const o of this.orders.values()) {
      if (o.live && o.symbol === symbol && o.ordType === '2' && this.crosses(o, px)) { this.fill(o, o.qty - o.cum, o.price); n++ }
    }
    return n
  }

  fillResting (symbol, qty, first) {
    let left = toUnits(qty)
    let n = 0
    for (const o of this.orders.values()) {
      if (left <= 0n) break
      if (!o.live || o.symbol !== symbol || o.ordType !== '2') continue
      if (first && o.history[0] !== first) continue
      const q = o.qty - o.cum < left ? o.qty - o.cum : left
      this.fill(o, q, o.price)
      left -= q
      n++
    }
    return n
  }

  snapshot () {
    const orders = {}
    for (const o of this.orders.values()) {
      orders[o.history[0]] = { order_id: o.orderId, cl_ord_id: o.clOrdId, history: o.history, status: o.status, live: o.live, qty: fromUnits(o.qty), cum_qty: fromUnits(o.cum), price: o.price === null ? null : fromUnits(o.price), symbol: o.symbol, side: o.side }
    }
    return { orders, arrivals: Object.fromEntries(this.arrivals), duplicates: this.duplicates, executions: this.execSeq, unsent: this.unsent, connected: this.session !== null }
  }
}

const a = args()
const executor = new Executor(JSON.parse(a.symbols))

class VenueSession extends AsciiSession {
  constructor (config) {
    super(config)
    this.logReceivedMsgs = false
    this.fixLog = config.logFactory.plain(path.join(a.store, 'messages.log'))
    this.logger = config.logFactory.logger('counterparty')
    // Replay a ResendRequest from what the executor sent (the engine's default resender reads a
    // per-connection memory store, empty after a reconnect; jspurefix documents supplying your own).
    // Only application messages are replayed; the engine's resender gap-fills the rest
    // (SequenceReset-GapFill) and stamps PossDupFlag / OrigSendingTime.
    this.resender = new FixMsgAsciiStoreResend({
      getSeqNumRange: async (from, to) => executor.sentBetween(from, to)
    }, config)
  }

  onApplicationMsg (msgType, view) {
    const m = view.toObject()
    switch (msgType) {
      case MsgType.NewOrderSingle: return executor.onNew(m)
      case MsgType.OrderCancelReplaceRequest: return executor.onReplace(m)
      case MsgType.OrderCancelRequest: return executor.onCancel(m)
      case MsgType.OrderStatusRequest: return executor.onStatus(m)
      default: this.logger.info(`ignored message type ${msgType}`)
    }
  }

  onDecoded (msgType, txt) { this.fixLog.info(`in  ${txt}`) }
  onEncoded (msgType, txt) { this.fixLog.info(`out ${txt}`) }
  onLogon () { return true }
  onReady () {
    executor.session = this
    console.log(JSON.stringify({ event: 'logon' }))
  }

  onStopped () {
    if (executor.session === this) executor.session = null
    console.log(JSON.stringify({ event: 'logout' }))
  }
}

class Launcher extends SessionLauncher {
  constructor () {
    super(null, {
      application: { type: 'acceptor', name: 'counterparty', tcp: { host: '127.0.0.1', port: a.port }, protocol: 'ascii', dictionary: 'qf44' },
      Username: '',
      Password: '',
      EncryptMethod: 0,
      ResetSeqNumFlag: false,
      HeartBtInt: a.heartbeat,
      SenderCompId: a.sender,
      TargetCompID: a.target,
      BeginString: 'FIX.4.4',
      store: { type: 'file', directory: a.store }
    })
    this.root = path.join(path.dirname(require.resolve('jspurefix/package.json')), '/')
  }

  makeFactory () {
    return { makeSession: (config) => new VenueSession(config) }
  }
}

const control = net.createServer((socket) => {
  let buf = ''
  socket.on('data', (chunk) => {
    buf += chunk.toString()
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      let answer
      try {
        const req = JSON.parse(line)
        if (req.cmd === 'price') answer = { filled: executor.setPrice(req.symbol, req.price) }
        else if (req.cmd === 'fill') answer = { filled: executor.fillResting(req.symbol, req.qty, req.order) }
        else if (req.cmd === 'orders' || req.cmd === 'stats') answer = executor.snapshot()
        else if (req.cmd === 'drop') { answer = { dropped: executor.session !== null }; executor.session?.requestStop?.('dropped by the test') }
        else answer = { error: `unknown cmd ${req.cmd}` }
      } catch (e) {
        answer = { error: String(e) }
      }
      socket.write(JSON.stringify(answer) + '\n')
    }
  })
  socket.on('error', () => {})
})
control.listen(a.controlPort, '127.0.0.1', () => console.log(JSON.stringify({ event: 'listening', port: a.port, control_port: a.controlPort })))

const launcher = new Launcher()
launcher.run().catch((e) => { console.error(e); process.exit(1) })
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { launcher.stop(); control.close(); process.exit(0) })
