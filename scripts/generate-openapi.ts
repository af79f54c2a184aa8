import { writeFile } from 'node:fs/promises'
import { openapiDocument } from './openapi-document.ts'

/** npm run openapi: regenerates openapi/openapi.json; test/openapi.test.ts fails on drift. */
const target = new URL('../openapi/openapi.json', import.meta.url)
await writeFile(target, await openapiDocument())
process.stdout.write(`wrote ${target.pathname}\n`)
