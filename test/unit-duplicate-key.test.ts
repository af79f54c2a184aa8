// src/duplicate-key.ts: a key named twice in one object, and where; never a false alarm.
import t from 'tap'
import { duplicateKey } from '../src/duplicate-key.ts'

t.test('the first key named twice in one object, with its path', async t => {
  t.same(duplicateKey('{"profile":{"percentages":{"Vega":40,"Vega":10}}}'), { key: 'Vega', path: 'body.profile.percentages' })
  t.same(duplicateKey('{"model":"a","model":"b"}'), { key: 'model', path: 'body' })
  t.same(duplicateKey('{"messages":[{"role":"user"},{"role":"user","role":"system"}]}'), { key: 'role', path: 'body.messages[1]' })
  t.same(duplicateKey('[[1,{"a":1}],{"b":{"c":[{},{"d":1,"d":2}]}}]'), { key: 'd', path: 'body[1].b.c[1]' })
  t.same(duplicateKey('{"Vega":1,"Ve\\u0067a":2}'), { key: 'Vega', path: 'body' }, 'keys compared as parsed')
  t.same(duplicateKey('{"a\\"b":1,"a\\"b":2}'), { key: 'a"b', path: 'body' })
})

t.test('no false alarm: the same key in different objects, key-like strings in values, odd characters', async t => {
  const clean = [
    '{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":2}]}',
    '{"a":"\\"a\\":1,","b":"{\\"a\\":1,\\"a\\":2}"}',
    '{"text":"} ] , { [ \\\\","text2":"\\\\"}',
    '{"x":[{"a":1},{"a":1}],"a":2}',
    '{ "a" : 1 ,\n "b" : { "a" : 2 } }',
    '{}', '[]', '"str"', '12', 'null', '{"é":1,"e":2}'
  ]
  for (const text of clean) {
    JSON.parse(text) // only ever given valid JSON
    t.equal(duplicateKey(text), undefined, text)
  }
})
