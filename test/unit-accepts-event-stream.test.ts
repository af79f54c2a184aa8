// routes/narrative/stream.ts acceptsEventStream: who asked for Server-Sent Events.
import t from 'tap'
import { acceptsEventStream } from '../routes/narrative/stream.ts'

t.test('text/event-stream is asked for unless its quality is 0', async t => {
  for (const accept of ['text/event-stream', 'TEXT/Event-Stream', 'application/json, text/event-stream;q=0.5', 'text/event-stream; charset=utf-8', 'text/event-stream;q=0.001']) {
    t.ok(acceptsEventStream(accept), accept)
  }
  for (const accept of [undefined, '', 'application/json', '*/*', 'text/event-stream;q=0, application/json', 'text/event-stream; q=0.0', 'text/event-stream;Q=0.000', 'application/x-event-stream']) {
    t.notOk(acceptsEventStream(accept), String(accept))
  }
})
