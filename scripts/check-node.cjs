// Refuses an older Node.js with one clear line, before anything fails obscurely.
// Plain CommonJS with no dependencies, so it runs on any Node that can start npm.
const wanted = Number(require('node:fs').readFileSync(require('node:path').join(__dirname, '..', '.nvmrc'), 'utf8').trim())
const major = Number(process.versions.node.split('.')[0])
if (major < wanted) {
  process.stderr.write(`This project needs Node.js ${wanted} or later; this is ${process.version}. ` +
    `Run '. scripts/use-node-24.sh' (installs Node.js ${wanted} from the npm registry into .node/ and puts it on PATH), then try again.\n`)
  process.exit(1)
}
