import type { Narrative } from './narrative.ts'
import type { NormalizedProfile } from './profile.ts'
import { systemsByWeight } from './profile.ts'

export const TEMPLATE_ENGINE = 'template'

function pct (value: number): string {
  return `${value.toFixed(1).replace(/\.0$/, '')}%`
}

function listOf (names: string[]): string {
  if (names.length <= 1) return names.join('')
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`
}

/**
 * Deterministic prose from the profile alone: the same normalized profile always
 * gives the same text, so it can be cached like the model's when it is the
 * configured narrator, and it needs nothing that can fail when it stands in.
 */
export function templateNarrative (profile: NormalizedProfile): Narrative {
  const systems = systemsByWeight(profile)
  const top = systems[0]
  let summary: string
  if (profile.classification === 'primary' && profile.primary !== undefined) {
    const primary = profile.primary
    const share = profile.percentages[primary]
    // The primary need not hold the largest share: name the others, whatever their rank.
    const others = systems.filter(s => s.name !== primary).slice(0, 3).map(s => s.name)
    summary = `Your profile is anchored in ${primary}` +
      (share !== undefined ? `, at ${pct(share)} of your signature.` : '.') +
      (others.length > 0 ? ` Its character is coloured by ${listOf(others)}, which ${others.length === 1 ? 'adds its' : 'add their'} own notes.` : '') +
      ` ${primary} is the lens through which the rest of your profile is best read.`
  } else if (profile.classification === 'hybrid' && profile.hybrid !== undefined && profile.hybrid.length > 0) {
    summary = `Your profile is a hybrid of ${listOf(profile.hybrid)}: no single system leads, and the way they meet is what defines you.` +
      (top !== undefined ? ` ${top.name} is the strongest thread at ${pct(top.percent)}.` : '')
  } else {
    summary = 'Your profile is still unresolved: several systems speak in it, none loudly enough to lead.' +
      (top !== undefined ? ` The clearest voice so far is ${top.name}, at ${pct(top.percent)}.` : '')
  }
  const bullets = systems.slice(0, 5).map(s => `${s.name}: ${pct(s.percent)} of your resonance.`)
  return { summary, bullets }
}
