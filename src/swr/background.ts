import type { Logger } from './logger.ts'
import { describe } from './types.ts'

/** Work that outlives the call that started it (writes, releases, refreshes): close() waits for it. */
export class BackgroundWork {
  private readonly tasks = new Set<Promise<void>>()
  private readonly logger: Logger

  constructor (logger: Logger) {
    this.logger = logger
  }

  track (work: Promise<void>): void {
    const task: Promise<void> = work
      .catch(err => { this.logger.error({ err: describe(err) }, 'background work failed') })
      .finally(() => { this.tasks.delete(task) })
    this.tasks.add(task)
  }

  /** Resolves once the work started so far, and any it started in turn, has ended. */
  async idle (): Promise<void> {
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks])
  }

  /** What is under way now. */
  async settled (): Promise<void> {
    await Promise.allSettled([...this.tasks])
  }
}
