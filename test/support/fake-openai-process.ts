// The fake OpenAI server (fake-openai.ts) in a process of its own, for load
// tests. In the test's own process it shares one event loop with the load's
// clients: the fleet test's 1,000 clients held its requests back 5 to 15 s
// (measured against the instances' send times), so a model configured to
// answer in 300 ms answered past the instances' 10 s generation deadline, and
// the test measured its own saturation rather than the fleet's. Run as a
// child, it answers as configured, and reports what it saw when asked.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { lastUserMessage, startFakeOpenAI, type FakeOpenAIOptions } from './fake-openai.ts'
import { track } from './reaper.ts'

/** One chat-completions request, as the child saw it. */
export interface ReportedRequest {
  at: number
  /** The caller named in the base URL's first segment (see RecordedRequest.caller). */
  caller: string | undefined
  abandoned: boolean
  /** The last user message: the prompt. */
  prompt: string
}

export interface FakeOpenAIReport {
  calls: number
  completed: number
  abandoned: number
  requests: ReportedRequest[]
}

export interface FakeOpenAIProcess {
  /** http://127.0.0.1:PORT: add `/v1`, or `/<caller>/v1` to name the caller. */
  readonly origin: string
  report(): Promise<FakeOpenAIReport>
  close(): Promise<void>
}

type ToChild = { type: 'report' } | { type: 'close' }
type FromChild = { type: 'ready', port: number } | { type: 'report', report: FakeOpenAIReport } | { type: 'closed' }

/** Starts the fake in a child process (plain Node 24: its types are stripped) with `options`. */
export async function startFakeOpenAIProcess (options: Omit<FakeOpenAIOptions, 'reply'> = {}): Promise<FakeOpenAIProcess> {
  const child = fork(fileURLToPath(import.meta.url), [JSON.stringify(options)], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const untrack = child.pid !== undefined ? track('pid', child.pid) : () => {}
  const exited = new Promise<void>(resolve => child.once('exit', () => { untrack(); resolve() }))
  const next = async <T extends FromChild['type']>(type: T, timeoutMs: number): Promise<Extract<FromChild, { type: T }>> => await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.off('message', onMessage); reject(new Error(`fake OpenAI process: no '${type}' within ${timeoutMs} ms`)) }, timeoutMs)
    const onMessage = (message: FromChild): void => {
      if (message.type !== type) return
      clearTimeout(timer)
      child.off('message', onMessage)
      resolve(message as Extract<FromChild, { type: T }>)
    }
    child.on('message', onMessage)
  })
  const send = (message: ToChild): void => { child.send(message) }
  let ready: { port: number }
  try {
    ready = await next('ready', 10_000)
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  return {
    origin: `http://127.0.0.1:${ready.port}`,
    async report () {
      const answer = next('report', 30_000)
      send({ type: 'report' })
      return (await answer).report
    },
    async close () {
      if (child.exitCode !== null || child.signalCode !== null) return
      const closed = next('closed', 5000).catch(() => undefined)
      send({ type: 'close' })
      await closed
      child.kill('SIGKILL')
      await exited
    }
  }
}

async function runChild (): Promise<void> {
  const fake = await startFakeOpenAI(JSON.parse(process.argv[2] ?? '{}') as FakeOpenAIOptions)
  const send = (message: FromChild): void => { process.send?.(message) }
  process.on('message', (message: ToChild) => {
    if (message.type === 'report') {
      send({
        type: 'report',
        report: {
          calls: fake.calls,
          completed: fake.completed,
          abandoned: fake.abandoned,
          requests: fake.requests.map(r => ({ at: r.at, caller: r.caller, abandoned: r.abandoned, prompt: lastUserMessage(r.body) }))
        }
      })
    } else if (message.type === 'close') {
      fake.close().finally(() => { send({ type: 'closed' }); process.disconnect?.() }).catch(() => {})
    }
  })
  // The parent went away without closing: so does the fake.
  process.on('disconnect', () => { fake.close().finally(() => process.exit(0)).catch(() => {}) })
  send({ type: 'ready', port: fake.port })
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.send !== undefined) await runChild()
