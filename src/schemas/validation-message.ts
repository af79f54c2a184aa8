import type { FastifySchemaValidationError } from 'fastify/types/schema.js'
import { USER_ID_PATTERN } from './narrative.ts'

/** Patterns too cryptic to quote, said in words. */
const PATTERN_PHRASES: Record<string, string> = {
  [USER_ID_PATTERN]: 'must not contain control characters (U+0000 to U+001F, U+007F to U+009F) or lone surrogates'
}

/** The property names and indexes of an Ajv instancePath (a JSON Pointer: `/messages/0/role`), unescaped. */
export function instancePathParts (instancePath: string): string[] {
  return instancePath.split('/').filter(Boolean).map(p => p.replace(/~1/g, '/').replace(/~0/g, '~'))
}

function pathOf (dataVar: string, instancePath: string): string {
  return [dataVar, ...instancePathParts(instancePath)].join('.')
}

/** Ajv puts the offending property name on the error itself for propertyNames failures. */
function propertyNameOf (error: FastifySchemaValidationError): string | undefined {
  const name = (error as { propertyName?: unknown }).propertyName ?? (error.params as Record<string, unknown>).propertyName
  return typeof name === 'string' ? name : undefined
}

function describe (error: FastifySchemaValidationError, dataVar: string): string {
  const path = pathOf(dataVar, error.instancePath)
  const params: Record<string, unknown> = { ...error.params as Record<string, unknown>, propertyName: propertyNameOf(error) }
  switch (error.keyword) {
    case 'additionalProperties':
      return `${path} has unknown property '${String(params.additionalProperty)}'`
    case 'required':
      return `${path}.${String(params.missingProperty)} is required`
    case 'enum':
      return `${path} must be one of ${(params.allowedValues as unknown[]).map(v => JSON.stringify(v)).join(', ')}`
    case 'type':
      return `${path} must be of type ${String(params.type)}`
    case 'pattern':
      if (params.propertyName !== undefined) return `${path} has an invalid name '${String(params.propertyName)}'`
      return `${path} ${PATTERN_PHRASES[String(params.pattern)] ?? error.message ?? 'is invalid'}`
    case 'not':
      return params.propertyName !== undefined
        ? `${path} has a reserved name '${String(params.propertyName)}'`
        : `${path} ${error.message ?? 'is invalid'}`
    default:
      return `${path} ${error.message ?? 'is invalid'}`
  }
}

/**
 * Turns Ajv's first relevant error into a message that names the field, e.g.
 * "body.profile has unknown property 'extra'". Ajv reports the inner failure
 * first, then wrappers (if/then, propertyNames) that only repeat it.
 */
export function formatValidationError (errors: FastifySchemaValidationError[], dataVar: string): Error {
  const useful = errors.find(e => e.keyword !== 'if' && e.keyword !== 'propertyNames') ?? errors[0]
  const text = useful === undefined ? `${dataVar} is invalid` : describe(useful, dataVar)
  const error = new Error(text) as Error & { statusCode: number, code: string, validation: unknown }
  error.statusCode = 400
  error.code = 'FST_ERR_VALIDATION'
  error.validation = errors
  return error
}
