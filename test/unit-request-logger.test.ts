// src/request-logger.ts: a request's logger writes what pino's child would,
// request id included, and makes no child for lines below the level.
import t from 'tap'
import { pino } from 'pino'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import { RequestLogger, requestLogger } from '../src/request-logger.ts'

function capture (level: string): { logger: pino.Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _encoding, done) { lines.push(JSON.parse(String(chunk))); done() } })
  return { logger: pino({ level }, stream), lines }
}

t.test('below the level: nothing written and no child made; at the level: the child\'s line, bindings included', async t => {
  const { logger, lines } = capture('warn')
  let children = 0
  const child = logger.child.bind(logger)
  logger.child = ((...args: Parameters<typeof child>) => { children++; return child(...args) }) as typeof logger.child
  const log = new RequestLogger(logger, { reqId: 'req-1' }, {})
  log.info({ a: 1 }, 'not written')
  log.debug('nor this')
  t.equal(children, 0, 'no child for lines below the level')
  t.equal(log.level, 'warn')
  log.warn({ a: 2 }, 'written')
  log.error('and this, with %s', 'arguments')
  t.equal(children, 1, 'one child, made once')
  t.match(lines, [{ level: 40, reqId: 'req-1', a: 2, msg: 'written' }, { level: 50, reqId: 'req-1', msg: 'and this, with arguments' }])
  log.level = 'info'
  log.info('now at info')
  t.match(lines[2], { level: 30, reqId: 'req-1', msg: 'now at info' }, 'its level can be changed, as a child\'s can')
  t.equal(logger.level, 'warn', 'the parent\'s level untouched')
})

t.test('as Fastify\'s childLoggerFactory: request lines carry the request id, and a route\'s logLevel is honoured', async t => {
  const { logger, lines } = capture('warn')
  const app = Fastify({ loggerInstance: logger, childLoggerFactory: requestLogger, genReqId: () => 'req-abc' })
  t.teardown(() => app.close())
  app.get('/quiet', async (request) => { request.log.info('dropped'); request.log.warn('kept'); return 'ok' })
  app.get('/chatty', { logLevel: 'info' }, async (request) => { request.log.info('kept at the route\'s level'); return 'ok' })
  await app.inject('/quiet')
  await app.inject('/chatty')
  const ours = lines.filter(l => l.reqId === 'req-abc').map(l => l.msg)
  t.ok(ours.includes('kept'))
  t.notOk(ours.includes('dropped'))
  t.ok(ours.includes('kept at the route\'s level'))
})
